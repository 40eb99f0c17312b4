//! `pixel-loss`: the per-pixel loss stage (L1 or MSE on normalised pixels). Same protocol as
//! `vgg-loss`, so a graph swaps one for the other. See README.md beside this file.
use geosr_torch::loss::PixelLoss;
use geosr_torch::SettingsTorch;
use std::process::ExitCode;

const STAGE: &str = "pixel-loss";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::keep_freed_memory();
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        settings.check_run_dir()?;
        geosr::stage::init(STAGE, &settings.run_dir);
        settings.apply_threads();
        let device = settings.torch_device()?;
        if settings.pixel_loss == geosr::settings::PixelLoss::None {
            eyre::bail!("pixel_loss is `none`; a pixel-loss stage needs `l1` or `mse`");
        }
        let loss = PixelLoss::from_settings(&settings);
        geosr_torch::loss_stage::run_loss_stage(
            (node, inbox),
            STAGE,
            &loss,
            &settings.run_dir,
            device,
        )
    })
}
