//! The sampler's test faceset: synthetic faces (see `face::testutil`), loaded.

use std::path::Path;

pub use crate::face::testutil::write_faceset;

/// Five synthetic 64 px whole-face files in `dir`, loaded, with an empty cache and a 32 px
/// full-face config.
pub fn small_faceset(dir: &Path) -> (super::SampleSet, super::FaceCache, super::SampleConfig) {
    write_faceset(dir, 5, 64, |i| 0.1 * i as f64);
    let (set, _) = super::SampleSet::load(dir, &crate::progress::NoProgress).unwrap();
    let cfg = super::SampleConfig { resolution_px: 32, ..super::SampleConfig::default() };
    (set, super::FaceCache::default(), cfg)
}
