//! `upscale`: the classic-resampler stand-in for `unet-infer` (bilinear, bicubic, Lanczos-3 by
//! `factor`), so outputs compare on identical footprints. See README.md beside this file.
use std::process::ExitCode;

const STAGE: &str = "upscale";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::keep_freed_memory();
        geosr::stage::init(STAGE, &settings.log_dir);
        // With a model given (evaluation), upscale by the model's factor so outputs line up.
        let card = geosr::checkpoint::model_card_of(&settings)?;
        let f = geosr::card::factor_for(&settings, card.as_ref()) as usize;
        let method = settings.upscale_method;
        let mut wire = geosr_raster::upscale::TileWire::new(&settings, f);
        tracing::info!(factor = f, method = %method, "upscale ready");
        geosr::stage::map_batches(node, inbox, &settings.log_dir, |_, lr| {
            let mut sr = geosr_raster::upscale::upscale_batch(&lr, f, method)?;
            sr.wire = wire.for_batch(&sr)?;
            Ok(("sr".into(), sr))
        })
    })
}
