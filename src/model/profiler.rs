//! libtorch's op profiler (Kineto, CPU activities), which tch does not expose: a small C++ shim
//! (`csrc/profile.cpp`, built by `build.rs`) starts it and saves a Chrome trace, the format
//! `torch.profiler` exports, so `scripts/bench/profile_step.py` can put dfl's ops beside
//! PyTorch's. Used by `examples/train_step.rs --profile`.

use std::ffi::CString;
use std::path::Path;

unsafe extern "C" {
    fn dfl_profile_start(record_shapes: i32) -> i32;
    fn dfl_profile_stop(path: *const std::ffi::c_char) -> i32;
    fn dfl_profile_range_enter(name: *const std::ffi::c_char) -> *mut std::ffi::c_void;
    fn dfl_profile_range_exit(range: *mut std::ffi::c_void);
}

/// Runs `f` inside a named range of the trace (as `torch.profiler.record_function`), so the
/// ops it runs group under `name`; costs one small allocation when no profiler runs.
pub fn range<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: the shim copies the NUL-terminated name during the call and catches exceptions.
    let handle = unsafe { dfl_profile_range_enter(name.as_ptr()) };
    let out = f();
    // SAFETY: the handle came from dfl_profile_range_enter and is closed once (null is ignored).
    unsafe { dfl_profile_range_exit(handle) };
    out
}

/// libtorch refused to start the profiler or to save its trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("libtorch's profiler failed to {0}")]
pub struct ProfilerError(&'static str);

/// A running profiler; [`Profiler::save`] stops it and writes the trace.
#[derive(Debug)]
pub struct Profiler {
    running: bool,
}

impl Profiler {
    /// Starts recording every ATen op this thread runs (forward and autograd backward), with
    /// input shapes when `record_shapes`.
    ///
    /// # Errors
    /// `ProfilerError` when libtorch throws (for example, a profiler already runs).
    pub fn start(record_shapes: bool) -> Result<Self, ProfilerError> {
        // SAFETY: plain value; the shim catches every C++ exception.
        if unsafe { dfl_profile_start(i32::from(record_shapes)) } != 0 {
            return Err(ProfilerError("start"));
        }
        Ok(Self { running: true })
    }

    /// Stops recording and writes the Chrome trace (JSON) to `path`.
    ///
    /// # Errors
    /// `ProfilerError` when the path is not valid UTF-8 without NULs or libtorch cannot save.
    pub fn save(mut self, path: &Path) -> Result<(), ProfilerError> {
        self.running = false;
        let path = path.to_str().and_then(|p| CString::new(p).ok());
        // SAFETY: the shim reads a NUL-terminated string that outlives the call, or gets none.
        let status = match &path {
            Some(p) => unsafe { dfl_profile_stop(p.as_ptr()) },
            None => unsafe { dfl_profile_stop(c"/dev/null".as_ptr()) },
        };
        match (path, status) {
            (None, _) => Err(ProfilerError("save (the path is not valid UTF-8)")),
            (Some(_), 0) => Ok(()),
            (Some(_), _) => Err(ProfilerError("save the trace")),
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.running {
            // SAFETY: as in `save`; the trace is discarded.
            let _ = unsafe { dfl_profile_stop(c"/dev/null".as_ptr()) };
        }
    }
}
