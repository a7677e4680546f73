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
