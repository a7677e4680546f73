//! libtorch's CUDA runtime pieces that tch does not bind: the caching allocator's peak memory
//! (for `dfl bench`) and host-to-device copies on a side stream (for training batches).
//!
//! They live in `libdfl_cuda.so`, which the build compiles from `csrc/cuda_runtime.cpp` and
//! links to libtorch_cuda; [`cuda_runtime`] opens it once libtorch's CUDA backend is loaded.
//! Without the backend (a CPU-only torch) or without a GPU, every call says so.

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::OnceLock;

use tch::Tensor;

use super::{CudaBackend, load_cuda_backend};

/// Where the build put `libdfl_cuda.so` (empty when it could not build it).
const LIBRARY: &str = env!("DFL_CUDA_RUNTIME");

type PeakBytes = unsafe extern "C" fn(c_int, *mut c_longlong, *mut c_longlong) -> c_int;
type ResetPeak = unsafe extern "C" fn(c_int) -> c_int;
type DeviceCount = unsafe extern "C" fn() -> c_int;
type CopyOnSideStream = unsafe extern "C" fn(*const c_void, c_int) -> *mut c_void;
type GroupUseNccl = unsafe extern "C" fn(*mut c_void, c_int, *mut c_char, usize) -> c_int;

/// The functions of `libdfl_cuda.so`, which stays loaded for the life of the process.
#[derive(Debug)]
pub struct CudaRuntime {
    device_count: DeviceCount,
    peak_bytes: PeakBytes,
    reset_peak: ResetPeak,
    copy_on_side_stream: CopyOnSideStream,
    group_use_nccl: GroupUseNccl,
}

/// Peak device memory since the last reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakMemory {
    /// Bytes held by tensors.
    pub allocated: u64,
    /// Bytes the caching allocator reserved from the driver: what the card must have free.
    pub reserved: u64,
}

/// A CUDA copy that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "copying a {shape:?} batch to cuda:{device} on a side stream failed (no such device, or libtorch refused); check `nvidia-smi`, or run with --device cpu"
)]
pub struct CopyError {
    /// The host tensor's shape.
    pub shape: Vec<i64>,
    /// The device index.
    pub device: usize,
}

/// Opens `libdfl_cuda.so` once per process (loading libtorch's CUDA backend first); later
/// calls return the first answer.
///
/// # Errors
/// Why it is unavailable, in one line: no CUDA backend, or the library was not built or does
/// not load.
pub fn cuda_runtime() -> Result<&'static CudaRuntime, &'static str> {
    static RUNTIME: OnceLock<Result<CudaRuntime, String>> = OnceLock::new();
    RUNTIME.get_or_init(open).as_ref().map_err(String::as_str)
}

fn open() -> Result<CudaRuntime, String> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    if let CudaBackend::Unavailable { reason } = load_cuda_backend() {
        return Err(format!("libtorch's CUDA backend is not available: {reason}"));
    }
    if LIBRARY.is_empty() {
        return Err("this build has no libdfl_cuda.so (its torch had no CUDA headers)".to_owned());
    }
    // SAFETY: the library only defines extern "C" functions over libtorch, which is loaded with
    // its CUDA backend; its initialisers register nothing.
    let library = unsafe { Library::open(Some(LIBRARY), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("{LIBRARY}: {e}; rebuild dfl (cargo build)"))?;
    // SAFETY: each symbol is one of csrc/cuda_runtime.cpp's functions, declared there with
    // exactly these C signatures.
    let runtime = unsafe {
        CudaRuntime {
            device_count: *library.get(b"dfl_cuda_device_count\0").map_err(|e| e.to_string())?,
            peak_bytes: *library.get(b"dfl_cuda_peak_bytes\0").map_err(|e| e.to_string())?,
            reset_peak: *library.get(b"dfl_cuda_reset_peak\0").map_err(|e| e.to_string())?,
            copy_on_side_stream: *library
                .get(b"dfl_cuda_copy_on_side_stream\0")
                .map_err(|e| e.to_string())?,
            group_use_nccl: *library
                .get(b"dfl_cuda_group_use_nccl\0")
                .map_err(|e| e.to_string())?,
        }
    };
    // The function pointers above stay valid because the library is never closed.
    std::mem::forget(library);
    Ok(runtime)
}

impl CudaRuntime {
    /// Gives a process group from the shim's rendezvous an NCCL backend on CUDA `device`.
    ///
    /// # Errors
    /// libtorch's reason, in one line (no such device, NCCL refused).
    ///
    /// # Safety
    /// `group` must be a live group from `dfl_group_rendezvous` (`distributed::Group`).
    pub unsafe fn group_use_nccl(&self, group: *mut c_void, device: usize) -> Result<(), String> {
        let index = c_int::try_from(device).map_err(|_| format!("no CUDA device {device}"))?;
        let mut err = [0u8; 1024];
        // SAFETY: the caller guarantees `group`; the function checks the device index, catches
        // every C++ exception and writes at most `err.len()` bytes.
        let failed =
            unsafe { (self.group_use_nccl)(group, index, err.as_mut_ptr().cast(), err.len()) } != 0;
        if !failed {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(String::from_utf8_lossy(&err[..end]).split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// How many CUDA devices the CUDA runtime sees.
    pub fn device_count(&self) -> usize {
        // SAFETY: a plain C function of the library, which cannot throw.
        usize::try_from(unsafe { (self.device_count)() }).unwrap_or(0)
    }

    /// The peak memory on CUDA `device` since the last [`CudaRuntime::reset_peak`] (or since
    /// the process started); `None` when there is no such device.
    pub fn peak_memory(&self, device: usize) -> Option<PeakMemory> {
        let index = c_int::try_from(device).ok()?;
        let (mut allocated, mut reserved) = (0, 0);
        // SAFETY: the function checks the index and catches every C++ exception; the pointers
        // are to live locals.
        let failed = unsafe { (self.peak_bytes)(index, &mut allocated, &mut reserved) } != 0;
        if failed {
            return None;
        }
        Some(PeakMemory {
            allocated: u64::try_from(allocated).ok()?,
            reserved: u64::try_from(reserved).ok()?,
        })
    }

    /// Starts a new peak on CUDA `device`; false when there is no such device.
    pub fn reset_peak(&self, device: usize) -> bool {
        let Ok(index) = c_int::try_from(device) else { return false };
        // SAFETY: the function checks the index and catches every C++ exception.
        unsafe { (self.reset_peak)(index) == 0 }
    }

    /// Returns `host` copied to CUDA `device` as float32, queued on a side stream so that it
    /// overlaps the kernels already queued (the step before); the device's current stream waits
    /// for the copy before its next kernel. From pinned memory it does not block the CPU.
    ///
    /// # Errors
    /// `CopyError` when there is no such device or libtorch refuses.
    pub fn copy_on_side_stream(&self, host: &Tensor, device: usize) -> Result<Tensor, CopyError> {
        let error = || CopyError { shape: host.size(), device };
        let index = c_int::try_from(device).map_err(|_| error())?;
        // SAFETY: tch's tensor handle is an `at::Tensor*`, which the function only reads; it
        // returns a fresh heap `at::Tensor*` (or null) that `Tensor::from_ptr` takes over.
        unsafe {
            let out = (self.copy_on_side_stream)(host.as_ptr().cast(), index);
            if out.is_null() { Err(error()) } else { Ok(Tensor::from_ptr(out.cast())) }
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn the_library_loads_with_this_libtorch_and_refuses_devices_that_do_not_exist() {
        let runtime = match (load_cuda_backend(), cuda_runtime()) {
            (CudaBackend::Loaded { .. }, Ok(runtime)) => runtime,
            (CudaBackend::Loaded { .. }, Err(why)) => {
                panic!("libtorch's CUDA backend loaded, but libdfl_cuda.so did not: {why}")
            }
            (CudaBackend::Unavailable { .. }, result) => {
                // A CPU-only torch: the runtime says why it is missing.
                assert!(result.unwrap_err().contains("not available"));
                return;
            }
        };
        let count = runtime.device_count();
        assert_eq!(count, super::super::cuda_device_count(), "the same devices tch sees");
        let host = Tensor::ones([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(runtime.peak_memory(count), None);
        assert!(!runtime.reset_peak(count));
        let err = runtime.copy_on_side_stream(&host, count).unwrap_err();
        assert!(err.to_string().contains(&format!("cuda:{count}")), "{err}");
        if count > 0 {
            // On a GPU machine: the copy arrives, and the peak counts it.
            assert!(runtime.reset_peak(0));
            let on_device = runtime.copy_on_side_stream(&host, 0).unwrap();
            assert_eq!(on_device.device(), Device::Cuda(0));
            assert_eq!(f64::try_from(on_device.sum(Kind::Float)).unwrap(), 96.0);
            assert!(runtime.peak_memory(0).unwrap().allocated >= 96 * 4);
        }
    }
}
