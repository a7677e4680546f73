//! `dfl train`: the run around the SAEHD models (issue #5): checkpoint sets so far.

pub mod config;
pub mod preview;
pub mod state;
pub mod store;
pub mod trainer;
