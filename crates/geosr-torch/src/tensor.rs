//! libtorch helpers for the core types: tile batches as NCHW tensors, the torch device and
//! thread count from the settings, and libtorch errors as `geosr::Error`.
use geosr::error::{Error, Result};
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use tch::Tensor;

/// Tile batches to and from NCHW tensors.
pub trait TileTensors {
    /// The batch's pixels as an NCHW tensor on `device`.
    fn tensor(&self, device: tch::Device) -> Tensor;
    /// A batch with this batch's identity and tile geometry but the pixels (and shape) of
    /// `t` — for example an SR prediction or a gradient.
    fn with_pixels(&self, t: &Tensor) -> Result<TileBatch>;
}

impl TileTensors for TileBatch {
    fn tensor(&self, device: tch::Device) -> Tensor {
        Tensor::from_slice(&self.pixels)
            .view(self.shape())
            .to_device(device)
    }

    fn with_pixels(&self, t: &Tensor) -> Result<TileBatch> {
        let size = t.size();
        if size.len() != 4 || size[0] as usize != self.len() {
            return Err(Error::Contract(format!(
                "tensor of shape {} for a batch of {} tiles",
                shape_text(&size),
                self.len()
            )));
        }
        self.derived(
            size[1] as usize,
            size[2] as usize,
            size[3] as usize,
            tensor_values(t),
        )
    }
}

/// Copies a tensor's values into a `Vec` in row-major (for NCHW: the contract's) order.
pub fn tensor_values(t: &Tensor) -> Vec<f32> {
    let t = t
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Float)
        .contiguous();
    let n = t.numel();
    let mut out = vec![0f32; n];
    t.copy_data(&mut out, n);
    out
}

/// The torch side of [`Settings`].
pub trait SettingsTorch {
    /// The torch device these settings ask for.
    fn torch_device(&self) -> Result<tch::Device>;
    /// Applies the `threads` setting to libtorch.
    fn apply_threads(&self);
}

impl SettingsTorch for Settings {
    fn torch_device(&self) -> Result<tch::Device> {
        match self.device.as_str() {
            "cpu" => Ok(tch::Device::Cpu),
            "cuda" if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            "cuda" => Err(Error::setting(
                "device",
                "cuda was asked for but libtorch sees no CUDA device",
            )),
            _ => Ok(tch::Device::cuda_if_available()),
        }
    }

    fn apply_threads(&self) {
        if let Some(n) = self.threads {
            tch::set_num_threads(n.max(1));
        }
    }
}

/// libtorch results as core results.
pub trait TorchResult<T> {
    fn torch(self) -> Result<T>;
}

impl<T> TorchResult<T> for std::result::Result<T, tch::TchError> {
    fn torch(self) -> Result<T> {
        self.map_err(|e| Error::Torch(e.to_string()))
    }
}

/// A tensor shape as users read it: `4×3×64×64`.
pub fn shape_text(size: &[i64]) -> String {
    size.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// A device as the model card and messages name it: `cpu`, `cuda:0`.
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
