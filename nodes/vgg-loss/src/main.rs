//! `vgg-loss`: the perceptual loss stage (frozen ImageNet VGG-16 features plus an optional
//! per-pixel term). Receives predictions and HR batches, returns loss and gradient; wired with
//! `sr_<method>` inputs instead of `pred`, it scores predictions for evaluation (no gradients).
//! See README.md beside this file.
use dora_node_api::DoraNode;
use geosr::settings::Settings;
use geosr_torch::loss::PerceptualLoss;
use geosr_torch::loss_stage::{run_loss_stage, run_scoring_stage, scored_methods};
use geosr_torch::SettingsTorch;

fn main() -> eyre::Result<()> {
    geosr::stage::keep_freed_memory();
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
    let node = DoraNode::init_from_env()?;
    let scoring = !scored_methods(&node.0).is_empty();
    // Training writes into the run directory (never a finished one); evaluation only logs.
    let log_dir = if scoring {
        settings.log_dir.clone()
    } else {
        settings
            .check_run_dir()
            .map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
        settings.run_dir.clone()
    };
    geosr::stage::init("vgg-loss", &log_dir);
    settings.apply_threads();
    let device = settings.torch_device()?;
    let loss = PerceptualLoss::new(&settings, device).map_err(|e| eyre::eyre!("vgg-loss: {e}"))?;
    if scoring {
        run_scoring_stage(node, &loss, &log_dir, device)
    } else {
        run_loss_stage(node, "vgg-loss", &loss, &log_dir, device)
    }
}
