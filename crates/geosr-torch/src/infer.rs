//! Inference engines for a trained U-Net: libtorch (the default, fastest measured) and ONNX
//! Runtime on the ONNX export; tested for parity.
//!
//! Both take and return NCHW `f32` in normalised units; the model card says how to normalise.
use crate::unet::UNet;
use geosr::checkpoint::LoadedCheckpoint;
use geosr::error::{Error, Result};
use std::path::Path;

/// Something that turns LR batches into SR batches.
pub trait Engine {
    /// `lr` is N×C×h×w; returns N×C×(f·h)×(f·w).
    fn run(&mut self, lr: &[f32], shape: [usize; 4]) -> Result<Vec<f32>>;
    fn name(&self) -> &'static str;
}

fn engine_err(e: impl std::fmt::Display) -> Error {
    Error::Engine(e.to_string().into())
}

/// ONNX Runtime, loaded from `ORT_DYLIB_PATH` (set by `scripts/env.sh`).
pub struct OrtEngine {
    session: ort::session::Session,
}

/// ONNX Runtime allows one environment per process: made on first use, shared after.
fn ort_environment() -> Result<&'static ort::environment::Environment> {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let lib = std::env::var_os("ORT_DYLIB_PATH").ok_or_else(|| {
        Error::Engine("ORT_DYLIB_PATH is not set; `source scripts/env.sh`".into())
    })?;
    let env = ort::init_from(&lib)
        .map_err(|e| {
            Error::Engine(
                format!(
                    "cannot load ONNX Runtime from {}: {e}",
                    Path::new(&lib).display()
                )
                .into(),
            )
        })?
        .build()
        .map_err(engine_err)?;
    Ok(ENV.get_or_init(|| env))
}

impl OrtEngine {
    /// Loads `onnx`; with `cuda`, on ONNX Runtime's CUDA execution provider (it needs the
    /// `onnxruntime-gpu` build, which `GEOSR_TORCH=cuda scripts/setup` installs; without it
    /// loading fails with a message saying so).
    pub fn load(onnx: &Path, threads: Option<usize>, cuda: bool) -> Result<Self> {
        if !onnx.is_file() {
            return Err(Error::weights(
                onnx,
                "not found; a training run exports model.onnx when it finishes",
            ));
        }
        let env = ort_environment()?;
        let mut builder = ort::session::Session::builder(env).map_err(engine_err)?;
        if let Some(n) = threads {
            builder = builder.with_intra_threads(n).map_err(engine_err)?;
        }
        if cuda {
            // Failing here rather than running on the CPU unasked: a GPU host that silently
            // runs at CPU speed is worse than a clear error.
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| {
                    Error::setting(
                        "engine",
                        format!(
                            "ort on cuda: ONNX Runtime's CUDA provider is not available ({e}); \
                             install onnxruntime-gpu (GEOSR_TORCH=cuda scripts/setup), or use \
                             engine: tch, or device: cpu"
                        ),
                    )
                })?;
        }
        let session = builder
            .commit_from_file(onnx)
            .map_err(|e| Error::weights(onnx, format!("ONNX Runtime cannot load it: {e}")))?;
        Ok(OrtEngine { session })
    }
}

impl Engine for OrtEngine {
    fn run(&mut self, lr: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let input = ort::value::Tensor::from_array((shape.map(|v| v as i64), lr.to_vec()))
            .map_err(engine_err)?;
        let outputs = self
            .session
            .run(ort::inputs!["lr" => input])
            .map_err(engine_err)?;
        let (_, data) = outputs["sr"]
            .try_extract_tensor::<f32>()
            .map_err(engine_err)?;
        Ok(data.to_vec())
    }
    fn name(&self) -> &'static str {
        "ort"
    }
}

/// libtorch, from the checkpoint's safetensors.
pub struct TchEngine {
    _vs: tch::nn::VarStore,
    net: UNet,
    device: tch::Device,
}

impl TchEngine {
    pub fn load(ckpt: &LoadedCheckpoint, device: tch::Device) -> Result<Self> {
        let mut vs = tch::nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), &ckpt.card.unet_config());
        vs.load(&ckpt.weights)
            .map_err(|e| Error::weights_caused(&ckpt.weights, "libtorch", e))?;
        vs.freeze();
        Ok(TchEngine {
            _vs: vs,
            net,
            device,
        })
    }
}

impl Engine for TchEngine {
    fn run(&mut self, lr: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let x = tch::Tensor::from_slice(lr)
            .view(shape.map(|v| v as i64))
            .to_device(self.device);
        let y = tch::no_grad(|| self.net.infer(&x));
        Ok(crate::tensor::tensor_values(&y))
    }
    fn name(&self) -> &'static str {
        "tch"
    }
}
