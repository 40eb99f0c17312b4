//! The end-of-run summary: where the run went, loss, validation PSNR/SSIM against bicubic, and
//! a check of every edge of the graph that tiles crossed.
use crate::checkpoint::load_checkpoint;
use crate::error::{Error, Result};
use crate::flow::TileCounts;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

pub use crate::graph::{graph_edges, Edge};

/// Reads `counts/*.json` of a run.
pub fn read_counts(run_dir: &Path) -> Result<BTreeMap<String, TileCounts>> {
    let dir = run_dir.join("counts");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let p = e.map_err(|e| Error::io(&dir, e))?.path();
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let c: TileCounts = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint_caused(&p, "not a tile-counts file", e))?;
        out.insert(c.stage.clone(), c);
    }
    Ok(out)
}

/// Edges whose sent and received counts differ, as sentences; empty when all match.
pub fn edge_mismatches(edges: &[Edge], counts: &BTreeMap<String, TileCounts>) -> Vec<String> {
    let mut bad = Vec::new();
    for e in edges {
        let sent = counts
            .get(&e.from_node)
            .and_then(|c| c.outputs.get(&e.output))
            .copied()
            .unwrap_or_default();
        let got = counts
            .get(&e.to_node)
            .and_then(|c| c.inputs.get(&e.input))
            .copied()
            .unwrap_or_default();
        if sent != got {
            bad.push(format!(
                "{}/{} sent {} batches ({} tiles), {}.{} received {} ({} tiles)",
                e.from_node, e.output, sent[0], sent[1], e.to_node, e.input, got[0], got[1]
            ));
        }
    }
    bad
}

/// The summary text of a finished run; `graph` enables the edge check.
pub fn summarise(run_dir: &Path, graph: Option<&Path>) -> Result<(String, bool)> {
    let ck = load_checkpoint(run_dir)?;
    let card = &ck.card;
    let mut s = String::new();
    let mut ok = true;
    let _ = writeln!(s, "geosr run: {}", run_dir.display());
    let _ = writeln!(
        s,
        "  model     model.safetensors + model.json (U-Net depth {} width {}, x{}), step {}, epoch {}, on {}",
        card.architecture.depth, card.architecture.width, card.downsample_factor, card.step, card.epoch, card.device
    );
    let p = &card.provenance;
    let _ = writeln!(
        s,
        "  data      {} raster(s); {} training and {} validation chips of {} px ({} skipped for nodata)",
        p.rasters.len(),
        p.train_chips,
        p.val_chips,
        p.chip_size,
        p.chips_skipped_nodata
    );
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap_or_default();
    let last_loss = metrics
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split(',')
                .nth(2)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
        .last();
    let stages: Vec<String> = card.losses.iter().map(|l| l.stage.clone()).collect();
    let _ = writeln!(
        s,
        "  loss      last train loss {} ({})",
        last_loss.unwrap_or_else(|| "-".into()),
        stages.join(" + ")
    );
    if let Some(m) = &card.metrics {
        let (sr, bi) = (m.val_psnr, m.bicubic_psnr);
        let _ = writeln!(
            s,
            "  val PSNR  SR {sr:.2} dB vs bicubic {bi:.2} dB ({:+.2} dB) on {} held-out tiles",
            sr - bi,
            m.val_tiles
        );
        let _ = writeln!(
            s,
            "  val SSIM  SR {:.4} vs bicubic {:.4}",
            m.val_ssim, m.bicubic_ssim
        );
    } else {
        let _ = writeln!(s, "  val       no validation (val_split_pct = 0)");
    }
    if let Some(graph) = graph {
        let edges = graph_edges(graph)?;
        let counts = read_counts(run_dir)?;
        let bad = edge_mismatches(&edges, &counts);
        let tiles: u64 = counts
            .values()
            .flat_map(|c| c.outputs.values())
            .map(|v| v[1])
            .sum();
        if bad.is_empty() {
            let _ = writeln!(
                s,
                "  tiles     all {} edges match: {tiles} tiles sent and received, none lost",
                edges.len()
            );
        } else {
            ok = false;
            for b in bad {
                let _ = writeln!(s, "  tiles     MISMATCH: {b}");
            }
        }
    }
    Ok((s, ok))
}
