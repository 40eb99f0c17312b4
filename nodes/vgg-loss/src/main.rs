//! `vgg-loss`: the perceptual loss stage (frozen ImageNet VGG-16 features plus an optional
//! per-pixel term). Receives predictions and HR batches, returns loss and gradient.
//! See README.md beside this file.
use eyre::WrapErr;
use geosr::loss::PerceptualLoss;
use geosr::settings::Settings;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().wrap_err("vgg-loss: reading settings")?;
    geosr::telemetry::init("vgg-loss", Some(&settings.run_dir));
    settings.apply_threads();
    let device = settings.torch_device()?;
    let loss = PerceptualLoss::new(&settings, device).wrap_err("vgg-loss")?;
    geosr::stage::run_loss_stage("vgg-loss", &loss, &settings.run_dir, device)
}
