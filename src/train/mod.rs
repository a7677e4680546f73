//! `dfl train`: the run around the SAEHD models (issue #5): the sampler that feeds them, the
//! trainer step with its divergence guard, checkpoint sets, previews.

pub mod config;
pub mod holdout;
pub mod preview;
pub mod run;
pub mod sampler;
pub mod state;
pub mod store;
pub mod trainer;
