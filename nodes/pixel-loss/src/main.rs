//! `pixel-loss`: the per-pixel loss stage (L1 or MSE on normalised pixels). Same protocol as
//! `vgg-loss`, so a graph swaps one for the other. See README.md beside this file.
use geosr::settings::Settings;
use geosr_torch::loss::PixelLoss;
use geosr_torch::SettingsTorch;

fn main() -> eyre::Result<()> {
    geosr::stage::keep_freed_memory();
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("pixel-loss: {e}"))?;
    settings
        .check_run_dir()
        .map_err(|e| eyre::eyre!("pixel-loss: {e}"))?;
    geosr::stage::init("pixel-loss", &settings.run_dir);
    settings.apply_threads();
    let device = settings.torch_device()?;
    if settings.pixel_loss == "none" {
        eyre::bail!("pixel-loss: pixel_loss is `none`; a pixel-loss stage needs `l1` or `mse`");
    }
    let loss = PixelLoss::from_settings(&settings);
    geosr_torch::loss_stage::run_loss_stage(
        dora_node_api::DoraNode::init_from_env()?,
        "pixel-loss",
        &loss,
        &settings.run_dir,
        device,
    )
}
