//! Scores computed from a face's pixels, cached by the file's content so a second sort (by
//! the same or another method, after renames), a training run or `dfl eval` does not decode
//! and measure again; and the faceset's identity embeddings, computed through that cache.
//!
//! The cache is `sort.scores.jsonl` in the side folder: one JSON line per face and run that
//! measured something, `{"v":1,"key":"…","blur":0.61,…}`; later lines add to earlier ones. A
//! torn last line (a kill mid-write) is ignored and that face measured again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Faceset;
use crate::atomic::write_atomic;
use crate::face::identity::{Embedding, IdentityError, RecognizerPool, SFaceModel};
use crate::face::metadata::{FaceFileError, read_face_image};
use crate::progress::Progress;
use crate::stage_log::StageLog;

/// Bumped when a measure's definition changes: older lines are then ignored.
const SCORES_VERSION: u32 = 1;
/// Faces measured per cache write: a kill loses at most this much work.
pub const CHUNK: usize = 256;

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
    /// [`Measure::Embedding`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Embedding>,
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
    /// Reads the cache file `path` (empty when there is none or it is unreadable).
    pub fn open(path: &Path) -> ScoreCache {
        let path = path.to_owned();
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

    /// Returns the cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds newly measured values, appending them to the file; a write failure is logged (the
    /// values stay in memory, and the faces are measured again next time).
    pub fn record_or_warn(&mut self, new: Vec<(String, FaceScores)>) {
        if let Err(e) = self.record(new) {
            log::warn!("{}: {e}; scores are not cached", self.path.display());
        }
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

/// Errors of embedding a faceset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// A face file cannot be read or decoded.
    #[error(transparent)]
    Face(#[from] FaceFileError),
    /// SFace failed on a face.
    #[error("{}: {source}; move this face out of the faceset, or re-extract it", .path.display())]
    Identity {
        /// The face file.
        path: PathBuf,
        /// SFace's error.
        #[source]
        source: IdentityError,
    },
}

/// Returns the SFace embedding of every face of `set`, from `cache` where it has one, computed
/// (on all cores, recorded every [`CHUNK`] faces) where it has not.
///
/// # Errors
/// The first face that does not decode, or SFace's error.
pub fn embeddings(
    set: &Faceset,
    cache: &mut ScoreCache,
    sface: &SFaceModel,
    progress: &dyn Progress,
) -> Result<Vec<Embedding>, EmbedError> {
    let mut out: Vec<Option<Embedding>> =
        set.faces.iter().map(|f| cache.get(&f.key).and_then(|s| s.embedding.clone())).collect();
    let todo: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
    progress.set_len(todo.len() as u64);
    let pool = RecognizerPool::new(sface.clone());
    for chunk in todo.chunks(CHUNK) {
        let fresh: Vec<Result<Embedding, EmbedError>> = chunk
            .par_iter()
            .map(|&i| {
                let embedding = embed_face(set, i, &pool);
                progress.inc(1);
                embedding
            })
            .collect();
        let fresh: Vec<Embedding> = fresh.into_iter().collect::<Result<_, _>>()?;
        let new = chunk.iter().zip(&fresh).map(|(&i, e)| {
            let scores = FaceScores { embedding: Some(e.clone()), ..FaceScores::default() };
            (set.faces[i].key.clone(), scores)
        });
        cache.record_or_warn(new.collect());
        for (&i, e) in chunk.iter().zip(fresh) {
            out[i] = Some(e);
        }
    }
    Ok(out
        .into_iter()
        .map(|e| e.expect("invariant: every face without a cached embedding was embedded"))
        .collect())
}

/// Decodes face `i` of `set` and embeds it, aligned by its landmarks.
fn embed_face(set: &Faceset, i: usize, pool: &RecognizerPool) -> Result<Embedding, EmbedError> {
    let path = set.path(i);
    let image = read_face_image(&path)?;
    let five = set.faces[i].meta.landmarks.five_points();
    let identity = |source| EmbedError::Identity { path: path.clone(), source };
    let mut sface = pool.take().map_err(identity)?;
    let embedding = sface.embed(&image, &five);
    pool.put(sface);
    embedding.map_err(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "sort.scores.jsonl";

    #[test]
    fn values_survive_a_reopen_and_merge_across_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(&tmp.path().join(FILE));
        let blur = FaceScores { blur: Some(0.5), ..FaceScores::default() };
        cache.record(vec![("k1".into(), blur)]).unwrap();
        let hue = FaceScores { hue: Some(12.0), ..FaceScores::default() };
        ScoreCache::open(&tmp.path().join(FILE)).record(vec![("k1".into(), hue)]).unwrap();

        // A torn line from a kill mid-append is skipped.
        let path = tmp.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"v\":1,\"key\":\"k2\",\"bl");
        std::fs::write(&path, bytes).unwrap();

        let cache = ScoreCache::open(&tmp.path().join(FILE));
        let got = cache.get("k1").unwrap();
        assert_eq!((got.blur, got.hue, got.black), (Some(0.5), Some(12.0), None));
        assert!(cache.get("k2").is_none());
    }

    #[test]
    fn compaction_keeps_every_value() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(&tmp.path().join(FILE));
        for i in 0..100 {
            let s = FaceScores { black: Some(f64::from(i)), ..FaceScores::default() };
            cache.record(vec![("k".into(), s)]).unwrap();
        }
        cache.compact().unwrap();
        let text = std::fs::read_to_string(tmp.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(ScoreCache::open(&tmp.path().join(FILE)).get("k").unwrap().black, Some(99.0));
    }
}
