//! `upscale`: the classic-resampler stand-in for `unet-infer` (bilinear, bicubic, Lanczos-3 by
//! `factor`), so outputs compare on identical footprints. See README.md beside this file.
use dora_node_api::{DoraNode, Event};
use geosr::flow::TileCounts;
use geosr::settings::Settings;
use geosr::stage::send_batch;
use geosr::tile::TileBatch;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("upscale: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("upscale", &settings.log_dir);
    let (f, method) = (settings.factor as usize, settings.upscale_method.clone());
    let (mut node, mut events) = DoraNode::init_from_env()?;
    tracing::info!(factor = f, method = %method, "upscale ready");
    let mut counts = TileCounts::new("upscale");
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } => {
                let lr = TileBatch::from_arrow(data.as_array().as_ref())
                    .map_err(|e| eyre::eyre!("upscale: input `{id}`: {e}"))?;
                counts.count_in(id.as_str(), lr.len());
                let mut pixels = Vec::with_capacity(lr.pixels.len() * f * f);
                for tile in lr.pixels.chunks_exact(lr.tile_len()) {
                    pixels.extend(geosr::upscale::upscale(
                        tile, lr.bands, lr.height, lr.width, f, &method,
                    )?);
                }
                let out = lr.derived(lr.bands, lr.height * f, lr.width * f, pixels)?;
                counts.count_out("sr", send_batch(&mut node, "sr", out)?);
            }
            Event::Stop(_) => break,
            _ => {}
        }
    }
    counts.write(&settings.log_dir)?;
    Ok(())
}
