//! `dfl extract`: frames to an aligned faceset (issue #3).

use std::path::PathBuf;

use crate::report::Outcome;
use crate::workspace::Side;

use super::GlobalArgs;

/// Arguments of `dfl extract`.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Which faceset to extract.
    pub side: Side,
    /// A video file or image folder to read instead of workspace/data_<side>.mp4 or data_<side>/.
    #[arg(long, short = 'i', value_name = "PATH")]
    pub input: Option<PathBuf>,
}

/// Runs `dfl extract`.
pub fn run(_args: &ExtractArgs, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    Err(super::not_built("extract", 3))
}
