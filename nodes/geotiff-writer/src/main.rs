//! `geotiff-writer`: requests LR tiles in raster order (credit flow), receives their SR
//! versions, blends them into one GeoTIFF/COG at `output` and renames it into place when
//! complete. See README.md beside this file.
use dora_node_api::{DoraNode, Event};
use geosr::flow::{Request, TileCounts};
use geosr::mosaic::{Mosaic, MosaicOptions};
use geosr::settings::Settings;
use geosr::stage::send_array;
use geosr::tile::TileBatch;
use std::time::Instant;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("geotiff-writer: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("geotiff-writer", &settings.log_dir);
    let output = settings.output.clone().ok_or_else(|| {
        eyre::eyre!(
            "geotiff-writer: GEOSR_OUTPUT is not set; give the path of the GeoTIFF to write"
        )
    })?;
    let opts = MosaicOptions {
        creation_options: settings.creation_option_list(),
        format: settings.output_format.clone(),
        overlap: settings.overlap,
    };
    let (mut node, mut events) = DoraNode::init_from_env()?;
    let mut counts = TileCounts::new("geotiff-writer");
    // One request first: the reply says how many batches there are; then `prefetch` in flight.
    let credit = settings.prefetch.max(1) as u64;
    send_array(&mut node, "request", Request::infer(0).to_arrow())?;
    counts.count_out("request", 1);
    let (mut requested, mut received) = (1u64, 0u64);
    let mut mosaic: Option<Mosaic> = None;
    let mut total: Option<u64> = None;
    let started = Instant::now();
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } => {
                let sr = TileBatch::from_arrow(data.as_array().as_ref())
                    .map_err(|e| eyre::eyre!("geotiff-writer: input `{id}`: {e}"))?;
                counts.count_in(id.as_str(), sr.len());
                let n = sr.batches_in_split as u64;
                total = Some(n);
                if mosaic.is_none() {
                    let t = &sr.tiles[0];
                    let src_gt = geosr::raster::RasterSource::open(t.source.as_ref(), &[])?
                        .info
                        .geotransform;
                    let factor = (src_gt[1] / t.geotransform[1]).round() as usize;
                    tracing::info!(source = %t.source, factor, output = %output.display(), "writing");
                    mosaic = Some(
                        Mosaic::create(t.source.as_ref(), &output, factor.max(1), opts.clone())
                            .map_err(|e| eyre::eyre!("geotiff-writer: {e}"))?,
                    );
                }
                mosaic
                    .as_mut()
                    .expect("created")
                    .add(&sr)
                    .map_err(|e| eyre::eyre!("geotiff-writer: {e}"))?;
                received += 1;
                if received % 10 == 0 || received == n {
                    tracing::info!(batch = received, of = n, "progress");
                }
                while requested < n && requested - received < credit {
                    send_array(&mut node, "request", Request::infer(requested).to_arrow())?;
                    counts.count_out("request", 1);
                    requested += 1;
                }
                if received == n {
                    break;
                }
            }
            Event::InputClosed { id } => {
                eyre::bail!("geotiff-writer: input `{id}` closed after {received} of {:?} batches; {} was not written", total, output.display());
            }
            Event::Stop(_) => eyre::bail!(
                "geotiff-writer: stopped after {received} batches; {} was not written",
                output.display()
            ),
            _ => {}
        }
    }
    let mosaic = mosaic.ok_or_else(|| eyre::eyre!("geotiff-writer: no tiles arrived"))?;
    let tiles = mosaic.tiles_written;
    let path = mosaic
        .finish()
        .map_err(|e| eyre::eyre!("geotiff-writer: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    let ds = geosr::raster::RasterSource::open(&path, &[])?;
    let mp = (ds.info.width * ds.info.height) as f64 / 1e6;
    tracing::info!(output = %path.display(), width = ds.info.width, height = ds.info.height, tiles, seconds = format!("{secs:.1}"), megapixels_per_s = format!("{:.2}", mp / secs), "written");
    println!(
        "wrote {} ({}x{}, {} bands, {}) in {secs:.1} s",
        path.display(),
        ds.info.width,
        ds.info.height,
        ds.info.bands.len(),
        ds.info.data_type
    );
    counts.write(&settings.log_dir)?;
    Ok(())
}
