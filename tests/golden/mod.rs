//! Reading the PyTorch reference files under `tests/data/golden/` (written by
//! `scripts/golden/*_reference.py`) and comparing tensors with them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use dfl::model::checkpoint::read_tensors;
use tch::Tensor;

/// The tensors of `tests/data/golden/<set>/<case>.safetensors`, by name.
pub fn read(set: &str, case: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/golden/{set}/{case}.safetensors"));
    read_tensors(&path).unwrap().into_iter().collect()
}

/// The tensors whose names start with `prefix`, with the prefix removed, sorted by name.
pub fn with_prefix(all: &HashMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = all
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_owned(), v.shallow_clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts the same shape and a largest absolute difference of at most `tolerance`.
pub fn check(what: &str, got: &Tensor, want: &Tensor, tolerance: f64) {
    assert_eq!(got.size(), want.size(), "{what}");
    let diff = (got - want).abs().max().double_value(&[]);
    assert!(diff <= tolerance, "{what}: max |Δ| {diff:e} > {tolerance:e}");
}
