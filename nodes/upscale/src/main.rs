//! `upscale`: the classic-resampler stand-in for `unet-infer` (bilinear, bicubic, Lanczos-3 by
//! `factor`), so outputs compare on identical footprints. See README.md beside this file.
use geosr::settings::Settings;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("upscale: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("upscale", &settings.log_dir);
    // With a model given (evaluation), upscale by the model's factor so outputs line up.
    let factor =
        geosr::upscale::factor_for_stage(&settings).map_err(|e| eyre::eyre!("upscale: {e}"))?;
    let (f, method) = (factor as usize, settings.upscale_method.clone());
    tracing::info!(factor = f, method = %method, "upscale ready");
    geosr::stage::map_batches("upscale", &settings.log_dir, |_, lr| {
        Ok(("sr".into(), geosr::upscale::upscale_batch(&lr, f, &method)?))
    })
}
