//! libtorch helpers for the core types: tile batches as NCHW tensors, the torch device and
//! thread count from the settings, and libtorch errors as `geosr::Error`.
use geosr::error::{Error, Result};
use geosr::settings::{DeviceChoice, Settings};
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
        match self.device {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda => {
                cuda_device().map_err(|problem| Error::setting("device", problem))
            }
            DeviceChoice::Auto => Ok(cuda_device().unwrap_or(tch::Device::Cpu)),
        }
    }

    fn apply_threads(&self) {
        if let Some(n) = self.threads {
            tch::set_num_threads(n.max(1));
        }
    }
}

/// Makes libtorch's idle OpenMP threads sleep rather than spin, unless the user chose.
///
/// libgomp, libtorch's OpenMP, lets idle threads spin for a while after each parallel region,
/// and reads its wait policy only once, when it is loaded, before `main`. In a stage that shares
/// its cores with other processes (the writer's compression threads in inference) the spinning
/// takes the CPU they need. So when `OMP_WAIT_POLICY` is unset, this re-executes the running
/// binary with `OMP_WAIT_POLICY=passive` (same arguments, same process id); call it first
/// thing in `main`. If re-executing fails, the stage carries on as it is.
pub fn passive_openmp_wait() {
    use std::os::unix::process::CommandExt;
    const KEY: &str = "OMP_WAIT_POLICY";
    if std::env::var_os(KEY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only when it failed; then the threads spin, which is slower, not wrong.
    let _ = command.args(args).env(KEY, "passive").exec();
}

/// The first CUDA device, or why there is none.
///
/// libtorch's CUDA half (`libtorch_cuda.so`) registers itself when it is loaded, and the
/// linker leaves it out of binaries that call none of its symbols, so it is loaded here, from
/// the folder the running `libtorch_cpu.so` came from (the same build). It must be loaded before
/// libtorch is first asked about CUDA: libtorch remembers the first answer.
pub fn cuda_device() -> std::result::Result<tch::Device, String> {
    let loaded = load_torch_cuda();
    if tch::Cuda::is_available() {
        return Ok(tch::Device::Cuda(0));
    }
    loaded?;
    Err(
        "cuda was asked for, libtorch's CUDA library loaded, but it sees no CUDA device \
         (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides the GPUs)"
            .into(),
    )
}

fn load_torch_cuda() -> std::result::Result<(), String> {
    static LOADED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let beside_cpu = loaded_library_dir("libtorch_cpu.so")
                .map(|d| d.join("libtorch_cuda.so"))
                .filter(|p| p.is_file());
            let name = beside_cpu
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "libtorch_cuda.so".into());
            let c_name = std::ffi::CString::new(name.clone()).map_err(|e| e.to_string())?;
            // SAFETY: dlopen with a valid C string; the handle is kept for the process's life
            // (libtorch's CUDA hooks must stay registered), so it is never closed.
            let handle =
                unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let why = unsafe {
                    let e = libc::dlerror();
                    if e.is_null() {
                        "unknown reason".to_string()
                    } else {
                        std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                    }
                };
                return Err(format!(
                    "cuda was asked for but libtorch's CUDA library could not be loaded ({why}); \
                     this libtorch is the CPU build, or LD_LIBRARY_PATH does not reach a CUDA \
                     torch's lib folder and the CUDA libraries it needs"
                ));
            }
            Ok(())
        })
        .clone()
}

/// The folder of a shared library this process has loaded, from `/proc/self/maps`.
fn loaded_library_dir(file_name: &str) -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(std::path::Path::new)
        .find(|p| p.file_name().is_some_and(|n| n == file_name))
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
}

/// libtorch results as core results.
pub trait TorchResult<T> {
    fn torch(self) -> Result<T>;
}

impl<T> TorchResult<T> for std::result::Result<T, tch::TchError> {
    fn torch(self) -> Result<T> {
        self.map_err(|e| Error::Torch(Box::new(e)))
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
