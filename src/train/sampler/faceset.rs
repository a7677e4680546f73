//! A faceset as training reads it: every aligned face file's path, landmarks, face type, size
//! and yaw, read once from the embedded metadata (anchors doc §3.8 "Loading").
//!
//! DFL: `samplelib/SampleLoader.py`. Pixels are decoded later, on demand ([`super::cache`]).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::face::align::{FaceType, averaged_yaw, to_unit_square, transform_points};
use crate::face::metadata::{FaceFileError, FaceMetadata, read_metadata};
use crate::progress::Progress;
use crate::workspace::is_image_file;

/// The suffix of files still being written (see `atomic::write_atomic`); never read.
const TMP_EXTENSION: &str = "tmp";

/// What training needs to know about one face file.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The face file.
    pub path: PathBuf,
    /// 68 iBUG landmarks in the aligned image's pixels.
    pub landmarks: Vec<[f32; 2]>,
    /// How much of the head the aligned image shows.
    pub face_type: FaceType,
    /// The aligned image's side in pixels.
    pub size_px: u32,
    /// DFL's `estimate_averaged_yaw` on the landmarks mapped to the alignment's unit square:
    /// dimensionless, 0 when frontal, positive when the image-right half of the face is wider.
    ///
    /// DFL sorts by `estimate_pitch_yaw_roll` (solvePnP, radians); we have no solvePnP
    /// (OpenCV's calib3d is not linked), so this is the landmark-only estimate DFL itself
    /// prefers for 3DFAN landmarks. Typical values lie within ±0.6, inside the yaw bins' ±1.2.
    pub yaw: f32,
}

/// A face file that could not be used, and why.
#[derive(Debug)]
pub struct SkippedFace {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub error: FaceFileError,
}

/// Errors that stop loading a faceset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FacesetError {
    /// The folder cannot be listed.
    #[error("cannot list {}: {source}; check that the faceset folder exists", .dir.display())]
    List {
        /// The faceset folder.
        dir: PathBuf,
        /// walkdir's error.
        #[source]
        source: walkdir::Error,
    },
    /// No usable face file was found.
    #[error(
        "no usable faces in {} ({skipped} file(s) skipped); run \"dfl extract\" to fill it",
        .dir.display()
    )]
    Empty {
        /// The faceset folder.
        dir: PathBuf,
        /// Image files without valid metadata.
        skipped: usize,
    },
}

/// The faces of one folder, in file-name order.
#[derive(Debug, Clone)]
pub struct Faceset {
    dir: PathBuf,
    faces: Vec<FaceRecord>,
    /// With a colour-transfer mode, samples are recoloured toward these faces.
    recolor_toward: Option<super::recolor::ColorReference>,
}

impl Faceset {
    /// Reads the metadata of every face image directly in `dir` (sorted by name, `*.tmp`
    /// ignored) on all rayon threads. Files without valid metadata are logged, skipped and
    /// returned.
    ///
    /// # Errors
    /// `List` when `dir` cannot be listed, `Empty` when no face is usable.
    pub fn load(
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<(Faceset, Vec<SkippedFace>), FacesetError> {
        let paths = list_images(dir)?;
        progress.set_len(paths.len() as u64);
        let results: Vec<Result<FaceRecord, FaceFileError>> = paths
            .par_iter()
            .map(|path| {
                let record = read_metadata(path).and_then(|meta| record(path, meta));
                progress.inc(1);
                record
            })
            .collect();
        let (mut faces, mut skipped) = (Vec::new(), Vec::new());
        for (path, result) in paths.into_iter().zip(results) {
            match result {
                Ok(face) => faces.push(face),
                Err(error) => {
                    log::warn!("skipping {error}");
                    skipped.push(SkippedFace { path, error });
                }
            }
        }
        if faces.is_empty() {
            return Err(FacesetError::Empty { dir: dir.to_owned(), skipped: skipped.len() });
        }
        log::info!("{} faces in {} ({} skipped)", faces.len(), dir.display(), skipped.len());
        Ok((Faceset { dir: dir.to_owned(), faces, recolor_toward: None }, skipped))
    }

    /// Builds a faceset from records already read (tests, or a caller with its own index).
    pub fn from_records(dir: impl Into<PathBuf>, faces: Vec<FaceRecord>) -> Self {
        Self { dir: dir.into(), faces, recolor_toward: None }
    }

    /// Makes samples of this faceset recolour toward `reference`'s faces when the sample
    /// config has a colour-transfer mode (DFL pairs each src sample with a random dst face).
    pub fn recolor_toward(mut self, reference: super::recolor::ColorReference) -> Self {
        self.recolor_toward = Some(reference);
        self
    }

    /// Moves every `every`-th face (in file order, starting at `every / 2`), at most `max`, out
    /// of this faceset into the returned one: faces training never sees, for evaluation.
    /// Returns `None` (and keeps every face) when fewer than `2 · every` faces are loaded.
    pub fn split_holdout(&mut self, every: usize, max: usize) -> Option<Faceset> {
        let every = every.max(2);
        if self.faces.len() < 2 * every || max == 0 {
            return None;
        }
        let picked: Vec<usize> = (every / 2..self.faces.len()).step_by(every).take(max).collect();
        let mut held = Vec::with_capacity(picked.len());
        for &i in picked.iter().rev() {
            held.push(self.faces.remove(i));
        }
        held.reverse();
        Some(Faceset { dir: self.dir.clone(), faces: held, recolor_toward: None })
    }

    /// Returns the faces samples are recoloured toward, if any.
    pub fn color_reference(&self) -> Option<&super::recolor::ColorReference> {
        self.recolor_toward.as_ref()
    }

    /// Returns the folder the faces came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the faces in file-name order.
    pub fn faces(&self) -> &[FaceRecord] {
        &self.faces
    }

    /// Returns the number of faces.
    pub fn len(&self) -> usize {
        self.faces.len()
    }

    /// Returns whether there are no faces (never true for a loaded faceset).
    pub fn is_empty(&self) -> bool {
        self.faces.is_empty()
    }
}

/// Lists the image files directly in `dir`, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, FacesetError> {
    let mut paths = Vec::new();
    let walk = walkdir::WalkDir::new(dir).min_depth(1).max_depth(1).sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|source| FacesetError::List { dir: dir.to_owned(), source })?;
        let path = entry.path();
        let is_tmp = path.extension().is_some_and(|e| e.eq_ignore_ascii_case(TMP_EXTENSION));
        if entry.file_type().is_file() && !is_tmp && is_image_file(path) {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

/// Checks `meta` and keeps what training needs.
fn record(path: &Path, meta: FaceMetadata) -> Result<FaceRecord, FaceFileError> {
    let bad =
        |reason: &str| FaceFileError::BadMetadata { path: path.to_owned(), reason: reason.into() };
    if meta.size_px == 0 {
        return Err(bad("size_px is 0"));
    }
    if meta.landmarks.iter().flatten().any(|v| !v.is_finite()) {
        return Err(bad("landmarks are not finite"));
    }
    let yaw = unit_square_yaw(&meta.landmarks).ok_or_else(|| bad("degenerate landmarks"))?;
    Ok(FaceRecord {
        path: path.to_owned(),
        landmarks: meta.landmarks,
        face_type: meta.face_type,
        size_px: meta.size_px,
        yaw: yaw as f32,
    })
}

/// Maps the 68 landmarks into the alignment's unit square (DFL's 33-point Umeyama fit to the
/// mean face) and returns their averaged yaw; `None` when the points are degenerate.
pub fn unit_square_yaw(landmarks: &[[f32; 2]]) -> Option<f64> {
    let to_unit = to_unit_square(landmarks)?;
    Some(averaged_yaw(&transform_points(&to_unit, landmarks)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::train::sampler::testutil::write_faceset;
    use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
    use opencv::imgcodecs;

    #[test]
    fn every_tenth_face_is_held_out_and_removed_from_training() {
        let tmp = tempfile::tempdir().unwrap();
        write_faceset(tmp.path(), 25, 32, |_| 0.0);
        let (mut set, _) = Faceset::load(tmp.path(), &NoProgress).unwrap();
        let names = |s: &Faceset| -> Vec<String> {
            s.faces()
                .iter()
                .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let all = names(&set);
        let held = set.split_holdout(10, 16).unwrap();
        assert_eq!(names(&held), [all[5].clone(), all[15].clone()]);
        assert_eq!(set.len(), 23);
        assert!(names(&held).iter().all(|n| !names(&set).contains(n)));
        let (mut small, _) = Faceset::load(tmp.path(), &NoProgress).unwrap();
        assert!(
            small.split_holdout(13, 16).is_none(),
            "25 faces are too few to hold out every 13th"
        );
        assert_eq!(small.len(), 25);
    }

    #[test]
    fn good_faces_load_in_name_order_and_bad_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let good = write_faceset(tmp.path(), 3, 32, |i| 0.1 * i as f64);
        std::fs::write(tmp.path().join("junk.jpg"), b"not an image").unwrap();
        let plain = tmp.path().join("plain.png");
        let img = Mat::new_rows_cols_with_default(8, 8, CV_8UC3, Scalar::all(0.0)).unwrap();
        imgcodecs::imwrite(plain.to_str().unwrap(), &img, &Vector::new()).unwrap();
        std::fs::write(tmp.path().join("half_written.jpg.tmp"), b"x").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();

        let (set, skipped) = Faceset::load(tmp.path(), &NoProgress).unwrap();
        let paths: Vec<_> = set.faces().iter().map(|f| f.path.clone()).collect();
        assert_eq!(paths, good);
        let mut names: Vec<_> =
            skipped.iter().map(|s| s.path.file_name().unwrap().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["junk.jpg", "plain.png"]);
        assert!(matches!(skipped[1].error, FaceFileError::NoMetadata(_)), "{:?}", skipped[1]);
        let f = &set.faces()[2];
        assert_eq!((f.face_type, f.size_px, f.landmarks.len()), (FaceType::WholeFace, 32, 68));
    }

    #[test]
    fn yaw_follows_the_jaw() {
        let tmp = tempfile::tempdir().unwrap();
        write_faceset(tmp.path(), 3, 64, |i| [-0.3, 0.0, 0.3][i]);
        let (set, _) = Faceset::load(tmp.path(), &NoProgress).unwrap();
        let yaws: Vec<f32> = set.faces().iter().map(|f| f.yaw).collect();
        for (got, want) in yaws.iter().zip([-0.3, 0.0, 0.3]) {
            assert!((got - want).abs() < 0.02, "{yaws:?}");
        }
    }

    #[test]
    fn an_empty_folder_says_to_run_extract() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("junk.jpg"), b"not an image").unwrap();
        let err = Faceset::load(tmp.path(), &NoProgress).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains("dfl extract") && err.contains("1 file(s) skipped"), "{err}");
        let missing = Faceset::load(&tmp.path().join("nope"), &NoProgress).unwrap_err();
        assert!(matches!(missing, FacesetError::List { .. }), "{missing}");
    }
}
