//! `upscale`: the classic-resampler stand-in for `unet-infer` (bilinear, bicubic, Lanczos-3 by
//! `factor`), so outputs compare on identical footprints. See README.md beside this file.
use std::process::ExitCode;

const STAGE: &str = "upscale";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::pin_mmap_threshold();
        geosr::stage::init(STAGE, &settings.log_dir);
        // With a model given (evaluation), upscale by the model's factor so outputs line up.
        let factor = geosr::upscale::factor_for_stage(&settings)?;
        let (f, method) = (factor as usize, settings.upscale_method.clone());
        tracing::info!(factor = f, method = %method, "upscale ready");
        geosr::stage::map_batches(node, inbox, &settings.log_dir, |_, lr| {
            Ok(("sr".into(), geosr::upscale::upscale_batch(&lr, f, &method)?))
        })
    })
}
