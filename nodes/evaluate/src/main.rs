//! `evaluate`: the end of the evaluation graph. Requests HR tile batches (credit flow), joins
//! for each batch its LR tiles, every method's super-resolved tiles and their VGG scores,
//! mosaics each method into a GeoTIFF and compares every method with the HR raster
//! (`geosr_raster::evaluate_stage`). See README.md beside this file.
use std::process::ExitCode;

const STAGE: &str = "evaluate";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::pin_mmap_threshold();
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::init(STAGE, &settings.log_dir);
        geosr_raster::evaluate_stage::run(node, inbox, settings)
    })
}
