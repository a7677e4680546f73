//! The compute device: the only module that asks libtorch about CUDA, and the one that loads
//! libtorch's CUDA backend.
//!
//! `libtorch_cuda.so` and the CUDA libraries it needs are not linked into the binary: they cost
//! about 270 MB of memory and most of a second to load, which commands that never run a network
//! (extract, sort, the studio's faceset pages) should not pay. [`load_cuda_backend`] loads them
//! on demand. It must run before anything asks libtorch about CUDA (device counts, seeds, pinned
//! memory): libtorch looks up its CUDA backend once, at the first such question, and keeps the
//! answer. So the CLI loads it first thing for every command that may compute on a device, and
//! [`resolve`] loads it too.

mod cuda_runtime;

pub use cuda_runtime::{CopyError, CudaRuntime, PeakMemory, cuda_runtime};

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Serialize;

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// CUDA device 0 when libtorch sees one, otherwise the CPU (with a warning).
    #[default]
    Auto,
    /// The CPU, always.
    Cpu,
    /// CUDA device N; an error when there is none.
    Cuda(usize),
}

/// A `--device` value that is not `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device {0:?}; use auto, cpu, cuda or cuda:N (N = 0, 1, …)")]
pub struct ParseDeviceError(String);

impl FromStr for DeviceRequest {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| ParseDeviceError(s.to_owned())),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Errors of resolving a device request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// CUDA was asked for but libtorch sees no CUDA device.
    #[error(
        "--device {request} asked for CUDA, but libtorch sees no CUDA device (no NVIDIA GPU, \
         or its driver is missing or older than the CUDA {cuda} build of torch needs); \
         check `nvidia-smi`, or run with --device cpu"
    )]
    NoCuda {
        /// The request as given.
        request: DeviceRequest,
        /// The CUDA version torch was built for.
        cuda: &'static str,
    },
    /// The CUDA index is past the last device.
    #[error("--device {request}: only {count} CUDA device(s) are visible (cuda:0 … cuda:{})", .count.saturating_sub(1))]
    NoSuchCuda {
        /// The request as given.
        request: DeviceRequest,
        /// How many CUDA devices libtorch sees.
        count: usize,
    },
}

/// The CUDA version of the torch wheel that `scripts/setup.sh` installs (torch 2.13.0+cu130).
pub const TORCH_CUDA_BUILD: &str = "13.0";

/// A resolved device and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The device for tensors and models.
    pub device: tch::Device,
    /// True when `auto` found no CUDA device and fell back to the CPU.
    pub is_cpu_fallback: bool,
}

impl Resolved {
    /// Returns `cpu` or `cuda:N`.
    pub fn name(&self) -> String {
        match self.device {
            tch::Device::Cuda(n) => format!("cuda:{n}"),
            _ => "cpu".to_owned(),
        }
    }
}

/// Resolves `request` against the CUDA devices libtorch sees, warning once when `auto` falls
/// back to the CPU.
///
/// # Errors
/// `NoCuda` or `NoSuchCuda` when the requested CUDA device does not exist.
pub fn resolve(request: DeviceRequest) -> Result<Resolved, DeviceError> {
    // `--device cpu` never loads the CUDA backend.
    let count = if request == DeviceRequest::Cpu { 0 } else { cuda_device_count() };
    let resolved = resolve_with(request, count)?;
    if resolved.is_cpu_fallback {
        log::warn!(
            "no CUDA device found: training and merging run on the CPU and will be very slow; \
             pass --device cpu to silence this, or check `nvidia-smi` if you have a GPU"
        );
    }
    Ok(resolved)
}

/// Resolves `request` given that `cuda_count` CUDA devices exist (the pure part of [`resolve`]).
///
/// # Errors
/// As [`resolve`].
pub fn resolve_with(request: DeviceRequest, cuda_count: usize) -> Result<Resolved, DeviceError> {
    let cuda = |n| Resolved { device: tch::Device::Cuda(n), is_cpu_fallback: false };
    match request {
        DeviceRequest::Cpu => Ok(Resolved { device: tch::Device::Cpu, is_cpu_fallback: false }),
        DeviceRequest::Auto if cuda_count > 0 => Ok(cuda(0)),
        DeviceRequest::Auto => Ok(Resolved { device: tch::Device::Cpu, is_cpu_fallback: true }),
        DeviceRequest::Cuda(_) if cuda_count == 0 => {
            Err(DeviceError::NoCuda { request, cuda: TORCH_CUDA_BUILD })
        }
        DeviceRequest::Cuda(n) if n >= cuda_count => {
            Err(DeviceError::NoSuchCuda { request, count: cuda_count })
        }
        DeviceRequest::Cuda(n) => Ok(cuda(n)),
    }
}

unsafe extern "C" {
    fn dfl_cuda_runtime_version() -> std::ffi::c_longlong;
}

/// libtorch's CUDA backend in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CudaBackend {
    /// Loaded and registered: CUDA devices can be used when the machine has them.
    Loaded {
        /// The CUDA runtime version libtorch was built with (13000 for 13.0).
        runtime_version: i64,
    },
    /// Not available: the torch install has no CUDA backend, or it cannot be loaded here.
    Unavailable {
        /// Why, in one line.
        reason: String,
    },
}

/// Loads libtorch's CUDA backend once per process (later calls return the first answer).
///
/// Must be called before anything asks libtorch about CUDA; see the module documentation.
pub fn load_cuda_backend() -> &'static CudaBackend {
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let backend = open_cuda_backend();
        if let CudaBackend::Unavailable { reason } = &backend {
            log::debug!("libtorch's CUDA backend is not available: {reason}");
        }
        backend
    })
}

fn open_cuda_backend() -> CudaBackend {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let path = std::path::Path::new(env!("DFL_LIBTORCH_LIB")).join("libtorch_cuda.so");
    let file: std::ffi::OsString =
        if path.exists() { path.into_os_string() } else { "libtorch_cuda.so".into() };
    // SAFETY: libtorch_cuda's initialisers register its CUDA kernels and hooks with the
    // libtorch already loaded, as they would had it been linked; the library stays loaded for
    // the life of the process (`into_raw`), so nothing it registered dangles.
    match unsafe { Library::open(Some(&file), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(library) => {
            let _ = library.into_raw();
        }
        Err(err) => return CudaBackend::Unavailable { reason: err.to_string() },
    }
    // SAFETY: a plain C function of the shim, which catches every C++ exception.
    let version = unsafe { dfl_cuda_runtime_version() };
    if version > 0 {
        CudaBackend::Loaded { runtime_version: version }
    } else {
        let reason = "libtorch_cuda.so loaded, but libtorch had already settled on no CUDA \
                      (a question about CUDA came first): the command runs on the CPU";
        log::warn!("{reason}");
        CudaBackend::Unavailable { reason: reason.to_owned() }
    }
}

/// Returns how many CUDA devices libtorch sees (loading the CUDA backend first).
pub fn cuda_device_count() -> usize {
    if !matches!(load_cuda_backend(), CudaBackend::Loaded { .. }) {
        return 0;
    }
    if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

unsafe extern "C" {
    fn dfl_set_tf32(on: std::ffi::c_int) -> std::ffi::c_int;
    fn dfl_math_modes() -> std::ffi::c_int;
}

/// Process-wide math modes of CUDA kernels (`dfl train --tf32`, `--cudnn-benchmark`).
///
/// They are flags of libtorch's global context: setting them needs no GPU and changes nothing
/// on the CPU, where they are kept only so that a run reports what it would use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MathModes {
    /// fp32 matmuls and convolutions use TF32 tensor cores on Ampere and later GPUs (inputs
    /// rounded to 10 mantissa bits inside the product; accumulation and everything else stay
    /// fp32). No effect under bf16 autocast, whose products are bf16 already.
    pub tf32: bool,
    /// cuDNN times the candidate algorithms of each new convolution shape and keeps the
    /// fastest: a slower first step, sometimes faster later ones, and up to about twice the
    /// peak memory while it tries workspace-hungry algorithms.
    pub cudnn_benchmark: bool,
}

/// libtorch refused to set or read its math modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("libtorch refused to set its CUDA math modes (TF32, cuDNN benchmark)")]
pub struct MathModeError;

/// Sets the process-wide math modes.
///
/// # Errors
/// `MathModeError` when libtorch throws.
pub fn set_math_modes(modes: MathModes) -> Result<(), MathModeError> {
    // SAFETY: a plain C function of the shim, which catches every C++ exception.
    if unsafe { dfl_set_tf32(modes.tf32.into()) } != 0 {
        return Err(MathModeError);
    }
    tch::Cuda::cudnn_set_benchmark(modes.cudnn_benchmark);
    match math_modes()? {
        now if now == modes => Ok(()),
        _ => Err(MathModeError),
    }
}

/// Reads the process-wide math modes back from libtorch (TF32 counts as on when both cuBLAS
/// and cuDNN allow it).
///
/// # Errors
/// `MathModeError` when libtorch throws.
pub fn math_modes() -> Result<MathModes, MathModeError> {
    // SAFETY: a plain C function of the shim, which catches every C++ exception.
    let bits = unsafe { dfl_math_modes() };
    if bits < 0 {
        return Err(MathModeError);
    }
    Ok(MathModes { tf32: bits & 3 == 3, cudnn_benchmark: bits & 4 != 0 })
}

/// What libtorch offers on this machine, for `dfl status`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// libtorch's CUDA backend in this process.
    pub cuda_backend: CudaBackend,
    /// How many CUDA devices libtorch sees.
    pub cuda_devices: usize,
    /// Whether cuDNN is usable.
    pub cudnn: bool,
    /// The device `--device` resolves to.
    pub selected: String,
}

/// Describes the devices libtorch sees and the one `request` selects.
///
/// # Errors
/// As [`resolve`].
pub fn info(request: DeviceRequest) -> Result<DeviceInfo, DeviceError> {
    let cuda_devices = cuda_device_count();
    let selected = resolve_with(request, cuda_devices)?.name();
    Ok(DeviceInfo {
        cuda_backend: load_cuda_backend().clone(),
        cuda_devices,
        cudnn: cuda_devices > 0 && tch::Cuda::cudnn_is_available(),
        selected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math_modes_are_set_and_read_back() {
        let before = math_modes().unwrap();
        for modes in [
            MathModes { tf32: false, cudnn_benchmark: true },
            MathModes { tf32: true, cudnn_benchmark: false },
        ] {
            set_math_modes(modes).unwrap();
            assert_eq!(math_modes().unwrap(), modes);
        }
        set_math_modes(before).unwrap();
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceRequest::Cuda(1)));
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "cuda1"] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(DeviceRequest::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn auto_uses_cuda_when_present_and_falls_back_visibly() {
        let with_gpu = resolve_with(DeviceRequest::Auto, 2).unwrap();
        assert_eq!(with_gpu.device, tch::Device::Cuda(0));
        let without = resolve_with(DeviceRequest::Auto, 0).unwrap();
        assert_eq!(without.device, tch::Device::Cpu);
        assert!(without.is_cpu_fallback);
        assert!(!resolve_with(DeviceRequest::Cpu, 2).unwrap().is_cpu_fallback);
    }

    #[test]
    fn cuda_without_a_gpu_is_an_error_naming_the_cause() {
        let err = resolve_with(DeviceRequest::Cuda(0), 0).unwrap_err();
        assert!(err.to_string().contains("no CUDA device"), "{err}");
        assert!(err.to_string().contains("--device cpu"), "{err}");
        let err = resolve_with(DeviceRequest::Cuda(3), 2).unwrap_err();
        assert_eq!(err, DeviceError::NoSuchCuda { request: DeviceRequest::Cuda(3), count: 2 });
        assert_eq!(resolve_with(DeviceRequest::Cuda(1), 2).unwrap().device, tch::Device::Cuda(1));
    }
}
