//! `vgg-loss`: the perceptual loss stage (frozen ImageNet VGG-16 features plus an optional
//! per-pixel term). Receives predictions and HR batches, returns loss and gradient.
//! See README.md beside this file.
use geosr::settings::Settings;
use geosr_torch::loss::PerceptualLoss;
use geosr_torch::SettingsTorch;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
    settings
        .check_run_dir()
        .map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
    geosr::stage::init("vgg-loss", &settings.run_dir);
    settings.apply_threads();
    let device = settings.torch_device()?;
    let loss = PerceptualLoss::new(&settings, device).map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
    geosr_torch::loss_stage::run_loss_stage("vgg-loss", &loss, &settings.run_dir, device)
}
