//! Scores computed from a face's pixels, cached by the file's content so a second sort (by
//! the same or another method, after renames) does not decode and measure again.
//!
//! The cache is `sort.scores.jsonl` in the side folder: one JSON line per face and run that
//! measured something, `{"v":1,"key":"…","blur":0.61,…}`; later lines add to earlier ones. A
//! torn last line (a kill mid-write) is ignored and that face measured again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::stage_log::StageLog;

/// The cache file in the side folder.
pub const SCORES_FILE: &str = "sort.scores.jsonl";
/// Bumped when a measure's definition changes: older lines are then ignored.
const SCORES_VERSION: u32 = 1;

/// What is measured from a face's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// CPBD sharpness inside the hull, 0–1.
    Blur,
    /// Variance of the 11-tap Laplacian inside the hull.
    MotionBlur,
    /// Mean HSV value inside the hull, 0–255.
    Brightness,
    /// Circular mean HSV hue inside the hull, degrees in (−180, 180].
    Hue,
    /// Fraction of colour samples that are exactly 0.
    Black,
    /// The SFace identity embedding.
    Embedding,
}

/// The cached values of one face; `None` where not measured yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaceScores {
    /// [`Measure::Blur`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blur: Option<f64>,
    /// [`Measure::MotionBlur`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion_blur: Option<f64>,
    /// [`Measure::Brightness`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness: Option<f64>,
    /// [`Measure::Hue`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hue: Option<f64>,
    /// [`Measure::Black`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub black: Option<f64>,
    /// [`Measure::Embedding`]: 128 values, unit length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl FaceScores {
    /// Returns a scalar measure (`None` for the embedding or when not measured).
    pub fn get(&self, m: Measure) -> Option<f64> {
        match m {
            Measure::Blur => self.blur,
            Measure::MotionBlur => self.motion_blur,
            Measure::Brightness => self.brightness,
            Measure::Hue => self.hue,
            Measure::Black => self.black,
            Measure::Embedding => None,
        }
    }

    /// Whether `m` has a value.
    pub fn has(&self, m: Measure) -> bool {
        match m {
            Measure::Embedding => self.embedding.is_some(),
            _ => self.get(m).is_some(),
        }
    }

    /// Takes every value `other` has.
    pub fn merge(&mut self, other: FaceScores) {
        self.blur = other.blur.or(self.blur);
        self.motion_blur = other.motion_blur.or(self.motion_blur);
        self.brightness = other.brightness.or(self.brightness);
        self.hue = other.hue.or(self.hue);
        self.black = other.black.or(self.black);
        self.embedding = other.embedding.or(self.embedding.take());
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    v: u32,
    key: String,
    #[serde(flatten)]
    scores: FaceScores,
}

/// The score cache of one side folder.
#[derive(Debug)]
pub struct ScoreCache {
    path: PathBuf,
    scores: HashMap<String, FaceScores>,
    lines: usize,
}

impl ScoreCache {
    /// Reads the cache in `side_dir` (empty when there is none or it is unreadable).
    pub fn open(side_dir: &Path) -> ScoreCache {
        let path = side_dir.join(SCORES_FILE);
        let mut cache = ScoreCache { path, scores: HashMap::new(), lines: 0 };
        match StageLog::read::<Line>(&cache.path) {
            Ok(entries) => {
                cache.lines = entries.entries.len() + entries.bad_lines;
                for line in entries.entries.into_iter().filter(|l| l.v == SCORES_VERSION) {
                    cache.scores.entry(line.key).or_default().merge(line.scores);
                }
            }
            Err(e) => log::warn!("{e}; measuring every face again"),
        }
        cache
    }

    /// Returns the cached values of the file with content `key`.
    pub fn get(&self, key: &str) -> Option<&FaceScores> {
        self.scores.get(key)
    }

    /// Adds newly measured values and appends them to the file.
    ///
    /// # Errors
    /// The OS error when the file cannot be written (the values stay in memory).
    pub fn record(&mut self, new: Vec<(String, FaceScores)>) -> std::io::Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let mut log = StageLog::open(&self.path).map_err(std::io::Error::other)?;
        for (key, scores) in new {
            let line = Line { v: SCORES_VERSION, key: key.clone(), scores: scores.clone() };
            log.append(&line).map_err(std::io::Error::other)?;
            self.lines += 1;
            self.scores.entry(key).or_default().merge(scores);
        }
        Ok(())
    }

    /// Rewrites the file with one line per face when appends have made it twice as long.
    ///
    /// # Errors
    /// The OS error; the old file is then unchanged.
    pub fn compact(&mut self) -> std::io::Result<()> {
        if self.lines <= 2 * self.scores.len() + 64 {
            return Ok(());
        }
        let mut keys: Vec<&String> = self.scores.keys().collect();
        keys.sort();
        let mut bytes = Vec::new();
        for key in keys {
            let line =
                Line { v: SCORES_VERSION, key: key.clone(), scores: self.scores[key].clone() };
            bytes.extend(serde_json::to_vec(&line).map_err(std::io::Error::other)?);
            bytes.push(b'\n');
        }
        write_atomic(&self.path, &bytes)?;
        self.lines = self.scores.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_a_reopen_and_merge_across_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(tmp.path());
        let blur = FaceScores { blur: Some(0.5), ..FaceScores::default() };
        cache.record(vec![("k1".into(), blur)]).unwrap();
        let hue = FaceScores { hue: Some(12.0), ..FaceScores::default() };
        ScoreCache::open(tmp.path()).record(vec![("k1".into(), hue)]).unwrap();

        // A torn line from a kill mid-append is skipped.
        let path = tmp.path().join(SCORES_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"v\":1,\"key\":\"k2\",\"bl");
        std::fs::write(&path, bytes).unwrap();

        let cache = ScoreCache::open(tmp.path());
        let got = cache.get("k1").unwrap();
        assert_eq!((got.blur, got.hue, got.black), (Some(0.5), Some(12.0), None));
        assert!(cache.get("k2").is_none());
    }

    #[test]
    fn compaction_keeps_every_value() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(tmp.path());
        for i in 0..100 {
            let s = FaceScores { black: Some(f64::from(i)), ..FaceScores::default() };
            cache.record(vec![("k".into(), s)]).unwrap();
        }
        cache.compact().unwrap();
        let text = std::fs::read_to_string(tmp.path().join(SCORES_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(ScoreCache::open(tmp.path()).get("k").unwrap().black, Some(99.0));
    }
}
