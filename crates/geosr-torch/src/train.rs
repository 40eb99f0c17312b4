//! The training step of `unet-train`, shared with the benchmark's single-process loop.
use crate::adam::{lr_at, Adam, StepTaken};
use crate::tensor::TileTensors;
use crate::unet::{interpolate, UNet, UNetConfig};
use geosr::checkpoint::LoadedCheckpoint;
use geosr::error::{Error, Result};
use geosr::metrics::QualitySum;
use geosr::settings::{LrSchedule, Settings, Skip};
use geosr::tile::TileBatch;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The U-Net, its optimiser and the schedule.
pub struct Trainer {
    pub vs: VarStore,
    pub net: UNet,
    pub adam: Adam,
    pub device: Device,
    pub total_steps: u64,
    peak_lr: f64,
    schedule: LrSchedule,
    warmup: u64,
}

/// Validation quality of the SR output and of plain bicubic upsampling, on the same tiles.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    pub sr: QualitySum,
    pub bicubic: QualitySum,
}

impl Trainer {
    pub fn new(cfg: &UNetConfig, s: &Settings, device: Device, total_steps: u64) -> Self {
        // Initialised on the CPU and then moved, so that a seed gives the same starting weights
        // on every device (CUDA's random generator draws other numbers).
        tch::manual_seed(s.seed as i64);
        let mut vs = VarStore::new(Device::Cpu);
        let net = UNet::new(&vs.root(), cfg);
        vs.set_device(device);
        let adam = Adam::new(&vs).with_max_grad_norm(s.max_grad_norm);
        Trainer {
            vs,
            net,
            adam,
            device,
            total_steps,
            peak_lr: s.lr,
            schedule: s.lr_schedule,
            warmup: s.warmup_steps as u64,
        }
    }

    /// Steps done so far.
    pub fn step(&self) -> u64 {
        self.adam.step
    }

    /// Continues from a checkpoint of the same architecture.
    pub fn resume(&mut self, ckpt: &LoadedCheckpoint) -> Result<()> {
        if &ckpt.card.unet_config() != self.net.config() {
            return Err(Error::checkpoint(
                &ckpt.dir,
                format!(
                    "architecture ({}) differs from the one asked for ({})",
                    ckpt.card.unet_config(),
                    self.net.config()
                ),
            ));
        }
        self.vs
            .load(&ckpt.weights)
            .map_err(|e| Error::checkpoint_caused(&ckpt.weights, "loading the weights", e))?;
        self.adam.load(&ckpt.optimizer, ckpt.card.step)?;
        Ok(())
    }

    /// Starts from the weights of an earlier run's checkpoint (`init_from`): same architecture,
    /// bands and factor; the optimiser starts afresh.
    pub fn init_from(&mut self, ckpt: &LoadedCheckpoint, factor: u32) -> Result<()> {
        let mut theirs = ckpt.card.unet_config();
        // The consistency layer has no weights: either way round, the weights fit.
        theirs.consistency = self.net.config().consistency.clone();
        if theirs.bands != self.net.config().bands {
            return Err(Error::checkpoint(
                &ckpt.dir,
                format!(
                    "was trained on {} bands; this run's data has {}: `init_from` needs the same bands",
                    theirs.bands,
                    self.net.config().bands
                ),
            ));
        }
        if ckpt.card.downsample_factor != factor {
            return Err(Error::checkpoint(
                &ckpt.dir,
                format!(
                    "was trained at factor {}; this run asks for {factor}: `init_from` needs the same factor",
                    ckpt.card.downsample_factor
                ),
            ));
        }
        if &theirs != self.net.config() {
            return Err(Error::checkpoint(
                &ckpt.dir,
                format!(
                    "architecture ({theirs}) differs from this run's ({}): set unet_depth, unet_width, upsample and skip as it has them",
                    self.net.config()
                ),
            ));
        }
        self.vs
            .load(&ckpt.weights)
            .map_err(|e| Error::checkpoint_caused(&ckpt.weights, "loading the weights", e))?;
        Ok(())
    }

    /// SR prediction of an LR batch, attached to the autograd graph.
    pub fn predict(&self, lr: &TileBatch) -> Tensor {
        self.net.forward(&lr.tensor(self.device))
    }

    /// Back-propagates `grad` (∂loss/∂pred, summed over the loss stages) through the network
    /// and takes one Adam step. Returns the learning rate used and what the step did.
    pub fn apply(&mut self, pred: &Tensor, grad: &Tensor) -> (f64, StepTaken) {
        self.adam.zero_grad();
        // d/dθ Σ(pred · g) = Jᵀg: the parameter gradients of the loss whose ∂/∂pred is g.
        (pred * grad.to_device(self.device).detach())
            .sum(Kind::Float)
            .backward();
        let lr = lr_at(
            self.peak_lr,
            self.schedule,
            self.warmup,
            self.adam.step,
            self.total_steps,
        );
        (lr, self.adam.step(lr))
    }

    /// Adds one validation batch to `v`: SR and bicubic against HR, in normalised units (a
    /// data range of 1 is the 1st–99th percentile span of each band).
    pub fn validate(&self, lr: &TileBatch, hr: &TileBatch, v: &mut Validation) -> Result<()> {
        if lr.batch_id != hr.batch_id || lr.len() != hr.len() {
            return Err(Error::Contract(format!(
                "validation LR batch {} ({} tiles) paired with HR batch {} ({} tiles)",
                lr.batch_id,
                lr.len(),
                hr.batch_id,
                hr.len()
            )));
        }
        let x = lr.tensor(self.device);
        let (sr, bic) = tch::no_grad(|| {
            let f = self.net.config().factor;
            (
                self.net.forward(&x),
                interpolate(&x, f, Skip::Bicubic).expect("bicubic is a mode"),
            )
        });
        let (c, h, w) = (hr.bands, hr.height, hr.width);
        v.sr.add_batch(&crate::tensor::tensor_values(&sr), &hr.pixels, c, h, w, 1.0);
        v.bicubic.add_batch(
            &crate::tensor::tensor_values(&bic),
            &hr.pixels,
            c,
            h,
            w,
            1.0,
        );
        Ok(())
    }
}

/// Sums the gradients of several loss stages with their weights.
pub fn combine_grads(parts: &[(f64, Tensor)]) -> Tensor {
    let mut it = parts.iter();
    let (w0, g0) = it.next().expect("at least one loss stage");
    it.fold(g0 * *w0, |acc, (w, g)| acc + g * *w)
}
