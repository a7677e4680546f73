//! How library code reports progress without drawing anything : the CLI passes
//! an indicatif bar, tests pass [`NoProgress`].

/// A sink for progress of a stage that processes a known or growing number of items.
pub trait Progress: Sync {
    /// Sets the total number of items (when it becomes known).
    fn set_len(&self, len: u64);
    /// Adds `n` finished items.
    fn inc(&self, n: u64);
    /// Shows a short running tally beside the count (e.g. "412 faces").
    fn note(&self, _tally: &str) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_len(&self, _len: u64) {}
    fn inc(&self, _n: u64) {}
}
