//! `dfl train`: train a DF or LIAE model on the two facesets (issues #4 and #5).

use crate::report::Outcome;

use super::GlobalArgs;

/// Arguments of `dfl train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The model's name: its folder under workspace/model/.
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: Option<String>,
}

/// Runs `dfl train`.
pub fn run(_args: &TrainArgs, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    Err(super::not_built("train", 5))
}
