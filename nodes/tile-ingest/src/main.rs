//! `tile-ingest`: serves HR chips (and LR chips for paired data) one batch per request, or, with
//! `ingest_mode: infer`, the overlapping LR tiles of a raster to super-resolve, in raster order.
//! See README.md beside this file for inputs, outputs and settings.
use dora_node_api::{DoraNode, Event};
use geosr::chips::ChipPlan;
use geosr::flow::{Request, TileCounts};
use geosr::settings::Settings;
use geosr::stage::send_batch;
use geosr::tile::Split;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("tile-ingest: {e}"))?;
    match settings.ingest_mode.as_str() {
        "infer" => return serve_inference_tiles(&settings),
        "evaluate" => return serve_evaluation_tiles(&settings),
        _ => {}
    }
    settings
        .check_run_dir()
        .map_err(|e| eyre::eyre!("tile-ingest: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("tile-ingest", &settings.run_dir);
    let (mut node, mut events) = DoraNode::init_from_env()?;
    // Plan before serving anything: a bad input fails here with one message naming the file.
    let mut plan = ChipPlan::new(&settings).map_err(|e| eyre::eyre!("tile-ingest: {e}"))?;
    let rasters: Vec<_> = plan.rasters().into_iter().cloned().collect();
    let data = serde_json::json!({
        "rasters": rasters,
        "paired_lr": settings.input_lr,
        "chip_size": settings.chip_size,
        "stride": settings.stride(),
        "chips_considered": plan.candidates,
        "chips_skipped_nodata": plan.skipped_nodata,
        "max_nodata_pct": settings.max_nodata_pct,
        "train_chips": plan.train.len(),
        "val_chips": plan.val.len(),
        "train_batches_per_epoch": plan.train_batches(),
        "val_batches": plan.val_batches(),
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "normalisation": plan.norm,
    });
    geosr::checkpoint::write_atomic(
        &settings.run_dir.join("data.json"),
        serde_json::to_string_pretty(&data)?.as_bytes(),
    )?;
    tracing::info!(
        rasters = rasters.len(),
        train_chips = plan.train.len(),
        val_chips = plan.val.len(),
        skipped_nodata = plan.skipped_nodata,
        "chips planned"
    );
    let mut counts = TileCounts::new("tile-ingest");
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } if id.as_str() == "request" => {
                let req = Request::from_arrow(data.as_array().as_ref())?;
                let (hr, lr, suffix) = match req.split {
                    Split::Train => {
                        let (hr, lr) = plan.next_train()?;
                        (hr, lr, "")
                    }
                    _ => {
                        let (hr, lr) = plan.val_batch(req.index as usize)?;
                        (hr, lr, "_val")
                    }
                };
                counts.count_in("request", 1);
                let out = format!("hr{suffix}");
                counts.count_out(&out, send_batch(&mut node, &out, hr)?);
                if let Some(lr) = lr {
                    let out = format!("lr{suffix}");
                    counts.count_out(&out, send_batch(&mut node, &out, lr)?);
                }
            }
            Event::Input { id, .. } => tracing::warn!(input = %id, "ignoring unexpected input"),
            Event::InputClosed { .. } | Event::Stop(_) => break,
            _ => {}
        }
    }
    counts.write(&settings.run_dir)?;
    Ok(())
}

/// Evaluation mode: answers request `i` with batch `i` of overlapping HR tiles on `hr`, cut so
/// that, once degraded by the model's factor, they have the size and overlap of the LR tiles
/// inference uses.
fn serve_evaluation_tiles(settings: &Settings) -> eyre::Result<()> {
    let dir = settings.model.as_ref().ok_or_else(|| {
        eyre::eyre!(
            "tile-ingest: evaluation needs GEOSR_MODEL, the run directory of a trained model"
        )
    })?;
    let card = geosr::checkpoint::load_checkpoint(dir)
        .map_err(|e| eyre::eyre!("tile-ingest: {e}"))?
        .card;
    let plan = geosr::scan::EvalPlan::new(
        &settings.input,
        &card,
        settings.infer_tile,
        settings.overlap,
        settings.infer_batch as usize,
        settings.nodata,
    )
    .map_err(|e| eyre::eyre!("tile-ingest: {e}"))?;
    tracing::info!(
        input = %settings.input.display(),
        rasters = plan.plans.len(),
        batches = plan.batches(),
        "evaluation tiles planned"
    );
    serve_by_index(settings, "hr", |i| plan.batch(i))
}

/// Inference mode: answers `infer` request `i` with LR batch `i` on `lr`.
fn serve_inference_tiles(settings: &Settings) -> eyre::Result<()> {
    let card = match &settings.model {
        Some(dir) => Some(
            geosr::checkpoint::load_checkpoint(dir)
                .map_err(|e| eyre::eyre!("tile-ingest: {e}"))?
                .card,
        ),
        None => None,
    };
    let plan = geosr::scan::ScanPlan::new(
        &settings.input,
        card.as_ref(),
        settings.infer_tile,
        settings.overlap,
        settings.infer_batch as usize,
        settings.nodata,
    )
    .map_err(|e| eyre::eyre!("tile-ingest: {e}"))?;
    tracing::info!(
        raster = %settings.input.display(),
        tiles = plan.windows.len(),
        tile = ?plan.tile,
        batches = plan.batches(),
        "inference tiles planned"
    );
    serve_by_index(settings, "lr", |i| plan.batch(i))
}

/// The request loop of the inference and evaluation modes: request `i` → `batch(i)` on `output`.
/// The plan is made before the node connects, so a bad input fails with its own message first.
fn serve_by_index(
    settings: &Settings,
    output: &str,
    batch: impl Fn(usize) -> geosr::Result<geosr::tile::TileBatch>,
) -> eyre::Result<()> {
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("tile-ingest", &settings.log_dir);
    let (mut node, mut events) = DoraNode::init_from_env()?;
    let mut counts = TileCounts::new("tile-ingest");
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } if id.as_str() == "request" => {
                let req = Request::from_arrow(data.as_array().as_ref())?;
                counts.count_in("request", 1);
                let b = batch(req.index as usize)?;
                counts.count_out(output, send_batch(&mut node, output, b)?);
            }
            Event::InputClosed { .. } | Event::Stop(_) => break,
            _ => {}
        }
    }
    counts.write(&settings.log_dir)?;
    Ok(())
}
