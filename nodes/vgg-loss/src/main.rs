//! `vgg-loss`: the perceptual loss stage (frozen ImageNet VGG-16 features plus an optional
//! per-pixel term). Receives predictions and HR batches, returns loss and gradient; wired with
//! `sr_<method>` inputs instead of `pred`, it scores predictions for evaluation (no gradients).
//! See README.md beside this file.
use geosr::settings::Settings;
use geosr_torch::loss::PerceptualLoss;
use geosr_torch::loss_stage::{run_loss_stage, run_scoring_stage, scored_methods};
use geosr_torch::SettingsTorch;
use std::process::ExitCode;

const STAGE: &str = "vgg-loss";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::keep_freed_memory();
        let (node, inbox, mut settings) = geosr::node::start(STAGE)?;
        let scoring = !scored_methods(&inbox).is_empty();
        // Training writes into the run directory (never a finished one); evaluation only logs.
        let log_dir = if scoring {
            settings.log_dir.clone()
        } else {
            settings.check_run_dir()?;
            settings.run_dir.clone()
        };
        geosr::stage::init(STAGE, &log_dir);
        if scoring {
            // Score at the layers the model was trained with, when it was trained with this loss.
            if let Some(layers) = trained_layers(&settings)? {
                settings.vgg_layers = layers;
            }
            tracing::info!(vgg_layers = %settings.vgg_layers, "scoring layers");
        }
        settings.apply_threads();
        let device = settings.torch_device()?;
        let loss = PerceptualLoss::new(&settings, device)?;
        if scoring {
            run_scoring_stage((node, inbox), &loss, &log_dir, device)
        } else {
            run_loss_stage((node, inbox), STAGE, &loss, &log_dir, device)
        }
    })
}

/// The `vgg_layers` recorded in the model card of `model` for its vgg-loss stage, if any.
fn trained_layers(settings: &Settings) -> eyre::Result<Option<String>> {
    let Some(dir) = &settings.model else {
        return Ok(None);
    };
    let card = geosr::checkpoint::load_checkpoint(dir)?.card;
    Ok(card.vgg_layers().map(str::to_owned))
}
