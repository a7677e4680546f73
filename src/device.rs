//! The compute device: the only module that asks libtorch about CUDA.

use std::fmt;
use std::str::FromStr;

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
    let resolved = resolve_with(request, cuda_device_count())?;
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

/// Returns how many CUDA devices libtorch sees.
pub fn cuda_device_count() -> usize {
    if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

/// What libtorch offers on this machine, for `dfl status`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
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
        cuda_devices,
        cudnn: cuda_devices > 0 && tch::Cuda::cudnn_is_available(),
        selected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
