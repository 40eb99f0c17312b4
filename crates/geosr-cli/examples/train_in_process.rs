//! The training of `graphs/train.yml` without dora: chips, degradation, U-Net, VGG-16 perceptual
//! loss and Adam in one process, through the core library. Settings come from the environment
//! like the nodes' (`GEOSR_SETTINGS`, `GEOSR_*`).
//!
//! ```sh
//! source scripts/env.sh
//! GEOSR_STEPS=200 cargo run --release -p geosr-cli --example train_in_process
//! ```
use geosr::settings::{Settings, DEFAULT_STEPS};
use geosr_torch::loss::PerceptualLoss;
use geosr_torch::SettingsTorch;

fn main() -> eyre::Result<()> {
    geosr::stage::keep_freed_memory(); // as the training stages do
    let settings = Settings::from_env()?;
    settings.apply_threads();
    let loss = PerceptualLoss::new(&settings, settings.torch_device()?)?;
    let steps = settings.steps.unwrap_or(DEFAULT_STEPS) as u64;
    let report =
        geosr_cli::in_process::train_in_process(&settings, &loss, steps, true, |step, loss| {
            if step % 25 == 0 {
                println!("step {step:>5}  loss {loss:.5}");
            }
        })?;
    println!("{:.2} steps/s", report.steps_per_s);
    if let Some(v) = report.validation {
        println!(
            "validation PSNR: SR {:.2} dB, bicubic {:.2} dB ({:+.2} dB) on {} tiles",
            v.sr.psnr(),
            v.bicubic.psnr(),
            v.sr.psnr() - v.bicubic.psnr(),
            v.sr.tiles
        );
    }
    Ok(())
}
