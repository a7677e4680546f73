//! `dfl train`: the run around the SAEHD models (issue #5): checkpoint sets so far.

pub mod store;
