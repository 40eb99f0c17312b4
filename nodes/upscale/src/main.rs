//! `upscale`: the classic-resampler stand-in for `unet-infer` (bilinear, bicubic, Lanczos-3 by
//! `factor`), so outputs compare on identical footprints. See README.md beside this file.
use geosr::settings::Settings;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("upscale: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("upscale", &settings.log_dir);
    // With a model given (evaluation), upscale by the model's factor so outputs line up.
    let factor = match &settings.model {
        Some(dir) => {
            geosr::checkpoint::load_checkpoint(dir)
                .map_err(|e| eyre::eyre!("upscale: {e}"))?
                .card
                .downsample_factor
        }
        None => settings.factor,
    };
    let (f, method) = (factor as usize, settings.upscale_method.clone());
    tracing::info!(factor = f, method = %method, "upscale ready");
    geosr::stage::map_batches("upscale", &settings.log_dir, |_, lr| {
        let mut pixels = Vec::with_capacity(lr.pixels.len() * f * f);
        for tile in lr.pixels.chunks_exact(lr.tile_len()) {
            pixels.extend(geosr::upscale::upscale(
                tile, lr.bands, lr.height, lr.width, f, &method,
            )?);
        }
        Ok((
            "sr".into(),
            lr.derived(lr.bands, lr.height * f, lr.width * f, pixels)?,
        ))
    })
}
