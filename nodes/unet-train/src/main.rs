//! `unet-train`: trains the U-Net. Asks ingest for batches (request/credit flow), sends each SR
//! prediction to the loss stages, sums the gradients they return, steps Adam, validates, and
//! writes checkpoints, the model card and metrics.csv (`geosr_torch::train_stage`). See
//! README.md beside this file.
use geosr_torch::SettingsTorch;
use std::process::ExitCode;

const STAGE: &str = "unet-train";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::keep_freed_memory();
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        settings.check_run_dir()?;
        geosr::stage::init(STAGE, &settings.run_dir);
        settings.apply_threads();
        geosr_torch::train_stage::run(node, inbox, settings)
    })
}
