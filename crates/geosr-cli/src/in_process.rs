//! Training without dora: the same chips, degradation, network, loss and optimiser as
//! `graphs/train.yml`, in one process. The baseline of `geosr bench` and of
//! `examples/train_in_process.rs`; it reads rasters, so it lives here and not in `geosr-torch`.
use geosr::card::UNetConfig;
use geosr::error::Result;
use geosr::settings::Settings;
use geosr_raster::degrade::Degrade;
use geosr_torch::train::{Trainer, Validation};
use geosr_torch::{SettingsTorch, TileTensors};

/// What [`train_in_process`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InProcessReport {
    pub steps: u64,
    /// Steps after the first 10 per second (the dataflow's `timing.json` measures the same).
    pub steps_per_s: f64,
    pub last_loss: f64,
    pub validation: Option<Validation>,
}

/// Training without dora: the same chips, degradation, network, loss and optimiser as the
/// dataflow, in one process. The benchmark's baseline and `examples/train_in_process.rs`.
pub fn train_in_process(
    settings: &Settings,
    loss: &dyn geosr_torch::loss::LossFn,
    steps: u64,
    validate_at_end: bool,
    mut on_step: impl FnMut(u64, f64),
) -> Result<InProcessReport> {
    let device = settings.torch_device()?;
    let mut plan = geosr_raster::chips::ChipPlan::new(settings)?;
    let deg = geosr::card::Degradation::from_settings(settings);
    let cfg = UNetConfig::from_settings(settings, plan.bands());
    let mut trainer = Trainer::new(&cfg, settings, device, steps);
    let mut timing = geosr::stage::StepTiming::default();
    let mut last_loss = f64::NAN;
    for _ in 0..steps {
        let (hr, paired) = plan.next_train()?;
        let lr = match paired {
            Some(lr) => lr,
            None => deg.apply_batch(&hr)?,
        };
        let pred = trainer.predict(&lr);
        let (value, _, grad) =
            geosr_torch::loss::loss_and_grad(loss, &pred.detach(), &hr.tensor(device), &hr.colour)?;
        trainer.apply(&pred, &grad);
        last_loss = value;
        timing.step_done();
        on_step(trainer.step(), value);
    }
    let validation = if validate_at_end && !plan.val.is_empty() {
        let mut v = Validation::default();
        for i in 0..plan.val_batches() {
            let (hr, paired) = plan.val_batch(i)?;
            let lr = match paired {
                Some(lr) => lr,
                None => deg.apply_batch(&hr)?,
            };
            trainer.validate(&lr, &hr, &mut v)?;
        }
        Some(v)
    } else {
        None
    };
    Ok(InProcessReport {
        steps,
        steps_per_s: timing.steps_per_s(),
        last_loss,
        validation,
    })
}
