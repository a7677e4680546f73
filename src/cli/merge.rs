//! `dfl merge`: swapped faces onto the dst frames, then result.mp4 (issue #6).

use crate::report::Outcome;

use super::GlobalArgs;

/// Arguments of `dfl merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The trained model to merge with (its folder under workspace/model/).
    #[arg(long, short = 'm', value_name = "NAME")]
    pub model: Option<String>,
}

/// Runs `dfl merge`.
pub fn run(_args: &MergeArgs, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    Err(super::not_built("merge", 6))
}
