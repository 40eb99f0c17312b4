//! Adam with a warm-up and cosine learning-rate schedule, whose state can be saved and loaded
//! (libtorch's C++ optimisers expose no state through tch, and `resume` needs it).
use geosr::error::{Error, Result};
use geosr::settings::LrSchedule;
use std::path::Path;
use tch::{nn::VarStore, Tensor};

pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
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
    /// Optimises every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        let (names, params) = vars.into_iter().unzip();
        Adam {
            names,
            params,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
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
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m
                    .g_mul_scalar_(self.beta1)
                    .g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .g_add_(&(g.square() * (1.0 - self.beta2)));
                let update = (&*m / bc1) / ((&*v / bc2).sqrt() + self.eps) * lr;
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// Writes the moment estimates (safetensors; the step count goes in the model card).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        for ((n, m), v) in self.names.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("m.{n}"), m));
            named.push((format!("v.{n}"), v));
        }
        Tensor::write_safetensors(&named, path).map_err(|e| Error::checkpoint(path, e.to_string()))
    }

    /// Loads moment estimates written by [`Adam::save`] for the same network.
    pub fn load(&mut self, path: &Path, step: u64) -> Result<()> {
        let stored =
            Tensor::read_safetensors(path).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        for (i, n) in self.names.iter().enumerate() {
            for (prefix, slot) in [("m.", &mut self.m[i]), ("v.", &mut self.v[i])] {
                let key = format!("{prefix}{n}");
                let t = stored.iter().find(|(k, _)| *k == key).ok_or_else(|| {
                    Error::checkpoint(path, format!("optimizer state has no `{key}`"))
                })?;
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
