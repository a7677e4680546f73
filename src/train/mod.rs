//! `dfl train`: the run around the SAEHD models (issue #5): the sampler that feeds them, the
//! trainer step with its divergence guard, checkpoint sets, previews.

pub mod bench;
mod discriminators;
mod holdout;
pub mod memory;
mod preview;
mod run;
pub mod sampler;
mod trainer;

pub use run::{RunError, RunOptions, RunReport, run};

/// Runs `f`, turning libtorch's out-of-memory panic (it reports running out of device memory
/// only by failing) into `None`; any other panic goes on unwinding.
pub(crate) fn catch_out_of_memory<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            if !text.to_lowercase().contains("out of memory") {
                std::panic::resume_unwind(panic);
            }
            None
        }
    }
}
