//! `dfl sort`: score, order and clean a faceset (issue #7).

use crate::report::Outcome;
use crate::workspace::Side;

use super::GlobalArgs;

/// Arguments of `dfl sort`.
#[derive(Debug, clap::Args)]
pub struct SortArgs {
    /// Which faceset to sort.
    pub side: Side,
}

/// Runs `dfl sort`.
pub fn run(_args: &SortArgs, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    Err(super::not_built("sort", 7))
}
