//! The loop of `geotiff-writer`: asks for LR batches through the credit flow, takes their SR
//! versions in index order whatever order they arrive in, blends them into a [`Mosaic`] and
//! puts the file in place when complete.
use crate::mosaic::{Mosaic, MosaicOptions};
use dora_node_api::DoraNode;
use geosr::flow::{CreditWindow, Request, TileCounts};
use geosr::node::{Inbox, Next};
use geosr::settings::Settings;
use geosr::stage::send_array;
use geosr::tile::TileBatch;
use std::path::PathBuf;

/// What a finished write reports.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub tiles: usize,
    /// Batches that arrived before one requested earlier, put back in order.
    pub overtaking: u64,
}

/// Requests every batch, mosaics the replies into `settings.output` and renames it into place.
/// Any failure (a peer that ended, a wait that ran out, a GDAL error) leaves nothing at the
/// output path. `counts` records what crossed each edge, also when it fails.
pub fn write_super_resolved(
    node: &mut DoraNode,
    inbox: &mut Inbox,
    settings: &Settings,
    counts: &mut TileCounts,
) -> eyre::Result<Written> {
    let output = settings.output.clone().ok_or_else(|| {
        eyre::eyre!("GEOSR_OUTPUT is not set; give the path of the GeoTIFF to write")
    })?;
    let opts = MosaicOptions {
        creation_options: settings.creation_option_list(),
        format: settings.output_format,
        overlap: settings.overlap,
    };
    let mut window = CreditWindow::new(settings.prefetch as u64);
    let mut mosaic: Option<Mosaic> = None;
    let sr_from = inbox.source_of("sr");
    let not_written = || format!("{} was not written", output.display());
    while !window.done() {
        for i in window.to_request() {
            send_array(node, "request", Request::infer(i).to_arrow())?;
            counts.count_out("request", 1);
        }
        let waiting = format!("batch {} from `{sr_from}`", window.progress());
        match inbox.next(Some(&waiting))? {
            Next::Input { id, data } => {
                let sr = TileBatch::from_arrow(data.as_ref())
                    .map_err(|e| eyre::eyre!("input `{id}` from `{sr_from}`: {e}"))?;
                counts.count_in(&id, sr.len());
                window.receive(sr.index_in_split as u64, sr.batches_in_split as u64, sr)?;
                while let Some(sr) = window.next_ready() {
                    let m = match &mut mosaic {
                        Some(m) => m,
                        None => mosaic.insert(open_mosaic(&sr, &output, &opts)?),
                    };
                    m.add(&sr)?;
                    let d = window.delivered();
                    if d.is_multiple_of(10) || window.done() {
                        tracing::info!(batch = d, of = window.total(), "progress");
                    }
                }
            }
            Next::Closed { id } => eyre::bail!(
                "the input `{id}` from `{}` ended after batch {}; {}",
                inbox.source_of(&id),
                window.progress(),
                not_written()
            ),
            Next::PeerFailed { node, error } => {
                eyre::bail!("`{node}` failed ({error}); {}", not_written())
            }
            Next::Stop => eyre::bail!(
                "stopped after batch {}; {}",
                window.progress(),
                not_written()
            ),
            Next::Silence => {
                for i in window.missing() {
                    send_array(node, "request", Request::infer(i).to_arrow())?;
                    counts.count_out("request", 1);
                }
            }
        }
    }
    let mosaic = mosaic.ok_or_else(|| eyre::eyre!("no tiles arrived; {}", not_written()))?;
    let tiles = mosaic.tiles_written;
    let path = mosaic.finish()?;
    Ok(Written {
        path,
        tiles,
        overtaking: window.overtaking(),
    })
}

/// The mosaic for the raster the first batch comes from, at the factor its tiles' grids show.
fn open_mosaic(
    first: &TileBatch,
    output: &std::path::Path,
    opts: &MosaicOptions,
) -> eyre::Result<Mosaic> {
    let t = &first.tiles[0];
    let src_gt = crate::raster::RasterSource::open(t.source.as_ref(), &[])?
        .info
        .geotransform;
    let factor = (src_gt[1] / t.geotransform[1]).round();
    if !(1.0..=64.0).contains(&factor) {
        eyre::bail!(
            "tiles of {} have a pixel size of {} against the raster's {}: not an SR batch of it",
            t.source,
            t.geotransform[1],
            src_gt[1]
        );
    }
    tracing::info!(source = %t.source, factor, output = %output.display(), "writing");
    Ok(Mosaic::create(
        t.source.as_ref(),
        output,
        factor as usize,
        opts.clone(),
    )?)
}
