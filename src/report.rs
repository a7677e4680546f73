//! What a stage run achieved, and the exit status it maps to.

use serde::Serialize;

/// The process exit status of a `dfl` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything was done (exit 0).
    Done,
    /// The stage finished, but some items were skipped (exit 1).
    DoneWithSkips,
    /// Nothing could be done (exit 2).
    Fatal,
}

impl Outcome {
    /// Returns the process exit code: 0, 1 or 2.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::DoneWithSkips => 1,
            Outcome::Fatal => 2,
        }
    }
}

/// Counts of a finished stage run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// Items processed in this run.
    pub done: usize,
    /// Items found finished by an earlier run and not redone.
    pub already_done: usize,
    /// Bad items that were logged and skipped.
    pub skipped: usize,
}

impl StageReport {
    /// Returns `DoneWithSkips` when any item was skipped, else `Done`.
    pub fn outcome(&self) -> Outcome {
        if self.skipped > 0 { Outcome::DoneWithSkips } else { Outcome::Done }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_items_make_exit_code_one() {
        assert_eq!(StageReport { done: 5, ..Default::default() }.outcome().code(), 0);
        assert_eq!(StageReport { done: 5, skipped: 1, already_done: 0 }.outcome().code(), 1);
        assert_eq!(Outcome::Fatal.code(), 2);
    }
}
