//! Adam with a warm-up and cosine learning-rate schedule, whose state can be saved and loaded
//! (libtorch's C++ optimisers expose no state through tch, and `resume` needs it).
use geosr::error::{Error, Result};
use geosr::settings::LrSchedule;
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

/// Adam over every trainable parameter at once: the parameters live in one flat buffer (each
/// variable a view of its slice), so that an update is a handful of whole-buffer operations
/// rather than a dozen small ones per parameter, which on a GPU cost more in launches than in
/// arithmetic. The arithmetic per element is unchanged.
pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Each parameter's offset and length in the flat buffers.
    slices: Vec<(i64, i64)>,
    flat: Tensor,
    m: Tensor,
    v: Tensor,
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    max_grad_norm: Option<f64>,
}

/// What one [`Adam::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTaken {
    /// Global L2 norm of the gradients, before any clipping.
    pub grad_norm: f64,
    /// Whether the gradients were scaled down to the limit.
    pub clipped: bool,
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant or cosine decay
/// to 5% of the peak.
pub fn lr_at(peak: f64, schedule: LrSchedule, warmup: u64, step: u64, total: u64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    match schedule {
        LrSchedule::Cosine => {
            let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
            let floor = 0.05 * peak;
            floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
        }
        LrSchedule::Constant => peak,
    }
}

impl Adam {
    /// Optimises every trainable variable of `vs`, in name order. From here on the variables'
    /// storage belongs to the optimiser: moving `vs` to another device detaches them from it.
    pub fn new(vs: &VarStore) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut slices = Vec::with_capacity(vars.len());
        let mut total = 0i64;
        for (_, t) in &vars {
            let n = t.numel() as i64;
            slices.push((total, n));
            total += n;
        }
        let flat = Tensor::zeros([total], (Kind::Float, vs.device()));
        tch::no_grad(|| {
            for ((_, t), &(off, n)) in vars.iter().zip(&slices) {
                let mut slot = flat.narrow(0, off, n).view(t.size().as_slice());
                slot.copy_(t);
                let mut var = t.shallow_clone();
                var.set_data(&slot);
            }
        });
        let (names, params) = vars.into_iter().unzip();
        Adam {
            names,
            params,
            slices,
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            flat,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: None,
        }
    }

    /// Scales gradients whose global L2 norm exceeds `limit` down to it before each step;
    /// `None` takes every gradient as it is.
    pub fn with_max_grad_norm(mut self, limit: Option<f64>) -> Self {
        self.max_grad_norm = limit;
        self
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) -> StepTaken {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .zip(&self.slices)
                .map(|(p, &(_, n))| {
                    let g = p.grad();
                    if g.defined() {
                        g.reshape([-1])
                    } else {
                        Tensor::zeros([n], (Kind::Float, p.device()))
                    }
                })
                .collect();
            let mut g = Tensor::cat(&grads, 0);
            let grad_norm = g.norm().double_value(&[]);
            let clipped_to = self.max_grad_norm.filter(|&limit| grad_norm > limit);
            if let Some(limit) = clipped_to {
                g *= limit / grad_norm;
            }
            let _ = self
                .m
                .g_mul_scalar_(self.beta1)
                .g_add_(&(&g * (1.0 - self.beta1)));
            let _ = self
                .v
                .g_mul_scalar_(self.beta2)
                .g_add_(&(g.square() * (1.0 - self.beta2)));
            let update = (&self.m / bc1) / ((&self.v / bc2).sqrt() + self.eps) * lr;
            let _ = self.flat.g_sub_(&update);
            StepTaken {
                grad_norm,
                clipped: clipped_to.is_some(),
            }
        })
    }

    /// Parameter `i`'s slice of a flat buffer, in the parameter's shape.
    fn slice(&self, flat: &Tensor, i: usize) -> Tensor {
        let (off, n) = self.slices[i];
        flat.narrow(0, off, n)
            .view(self.params[i].size().as_slice())
    }

    /// Writes the moment estimates (safetensors; the step count goes in the model card).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            named.push((format!("m.{n}"), self.slice(&self.m, i)));
            named.push((format!("v.{n}"), self.slice(&self.v, i)));
        }
        Tensor::write_safetensors(&named, path)
            .map_err(|e| Error::checkpoint_caused(path, "writing the optimizer state", e))
    }

    /// Loads moment estimates written by [`Adam::save`] for the same network.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let stored = Tensor::read_safetensors(path)
            .map_err(|e| Error::checkpoint_caused(path, "reading the optimizer state", e))?;
        for (i, n) in self.names.iter().enumerate() {
            for (prefix, flat) in [("m.", &self.m), ("v.", &self.v)] {
                let key = format!("{prefix}{n}");
                let t = stored.iter().find(|(k, _)| *k == key).ok_or_else(|| {
                    Error::checkpoint(path, format!("optimizer state has no `{key}`"))
                })?;
                let mut slot = self.slice(flat, i);
                if t.1.size() != slot.size() {
                    return Err(Error::checkpoint(
                        path,
                        format!("optimizer state `{key}` has another shape"),
                    ));
                }
                tch::no_grad(|| slot.copy_(&t.1));
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Two parameters whose gradients have global norm 5 (3 and 4): with a limit of 1 the step
    /// sees them scaled to norm 1, which shows in the first moment (Adam's first update itself is
    /// the gradient's sign, whatever its scale); without a limit, or under it, they pass as they
    /// are.
    #[test]
    fn clips_the_global_gradient_norm_to_the_limit() {
        for (limit, want_m) in [
            (Some(1.0), [0.06, 0.08]),
            (None, [0.3, 0.4]),
            (Some(6.0), [0.3, 0.4]),
        ] {
            let vs = VarStore::new(Device::Cpu);
            let a = vs.root().var("a", &[1], tch::nn::Init::Const(0.0));
            let b = vs.root().var("b", &[1], tch::nn::Init::Const(0.0));
            let mut adam = Adam::new(&vs).with_max_grad_norm(limit);
            adam.zero_grad();
            (&a * 3.0 + &b * 4.0).sum(Kind::Float).backward();
            let taken = adam.step(1e-3);
            assert!((taken.grad_norm - 5.0).abs() < 1e-6, "{taken:?}");
            assert_eq!(taken.clipped, limit == Some(1.0));
            let m = Vec::<f32>::try_from(&adam.m).unwrap();
            for (got, want) in m.iter().zip(want_m) {
                assert!((*got as f64 - want).abs() < 1e-6, "{limit:?}: m {m:?}");
            }
        }
    }
}
