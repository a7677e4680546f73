//! The faces training samples are made of: every usable face of a faceset with what the
//! sampler needs (path, landmarks, face type, size, yaw), taken from the shared faceset reader
//! (`crate::faceset`). Pixels are decoded later, on demand ([`super::cache`]).
//!
//! DFL: `samplelib/SampleLoader.py`.

use std::path::{Path, PathBuf};

use crate::face::align::{FaceType, averaged_yaw, to_unit_square};
use crate::face::landmarks::Landmarks68;
use crate::faceset::{Face, Faceset, FacesetError, SkippedFace};
use crate::progress::Progress;

/// What training needs to know about one face file.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The face file.
    pub path: PathBuf,
    /// 68 iBUG landmarks in the aligned image's pixels.
    pub landmarks: Landmarks68,
    /// How much of the head the aligned image shows.
    pub face_type: FaceType,
    /// The aligned image's side in pixels.
    pub size_px: u32,
    /// DFL's `estimate_averaged_yaw` on the landmarks mapped to the alignment's unit square:
    /// dimensionless, 0 when frontal, positive when the image-right half of the face is wider.
    ///
    /// DFL bins by its solvePnP pitch/yaw/roll estimate; this is the landmark-only estimate
    /// DFL itself prefers for 3DFAN landmarks. Typical values lie within ±0.6, inside the yaw
    /// bins' ±1.2.
    pub yaw: f32,
    /// The mask `dfl xseg apply` wrote into the face, if any.
    pub xseg_mask: Option<std::sync::Arc<crate::face::seg::XSegMask>>,
}

impl FaceRecord {
    /// Takes what training needs from a face of the shared reader.
    fn new(dir: &Path, face: &Face) -> Self {
        let meta = &face.meta;
        FaceRecord {
            path: dir.join(&face.name),
            landmarks: meta.landmarks,
            face_type: meta.face_type,
            size_px: meta.size_px,
            yaw: unit_square_yaw(&meta.landmarks) as f32,
            xseg_mask: meta.xseg_mask.clone().map(std::sync::Arc::new),
        }
    }
}

/// Errors that stop loading a faceset for training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleSetError {
    /// The folder cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
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
pub struct SampleSet {
    dir: PathBuf,
    faces: Vec<FaceRecord>,
    /// With a colour-transfer mode, samples are recoloured toward these faces.
    recolor_toward: Option<super::recolor::ColorReference>,
}

impl SampleSet {
    /// Keeps every face of `set` (its skipped files are the caller's to report).
    ///
    /// # Errors
    /// `Empty` when `set` has no usable face.
    pub fn new(set: &Faceset) -> Result<SampleSet, SampleSetError> {
        let (dir, skipped) = (set.dir.clone(), set.skipped.len());
        if set.faces.is_empty() {
            return Err(SampleSetError::Empty { dir, skipped });
        }
        let faces: Vec<FaceRecord> = set.faces.iter().map(|f| FaceRecord::new(&dir, f)).collect();
        log::info!("{} faces in {} ({skipped} skipped)", faces.len(), dir.display());
        Ok(SampleSet { dir, faces, recolor_toward: None })
    }

    /// Reads the faces of `dir` (see [`Faceset::read`]) and returns them with the files that
    /// are not usable faces.
    ///
    /// # Errors
    /// As [`Faceset::read`] and [`SampleSet::new`].
    pub fn load(
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<(SampleSet, Vec<SkippedFace>), SampleSetError> {
        let set = Faceset::read(dir, progress)?;
        Ok((SampleSet::new(&set)?, set.skipped))
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
    pub fn split_holdout(&mut self, every: usize, max: usize) -> Option<SampleSet> {
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
        Some(SampleSet { dir: self.dir.clone(), faces: held, recolor_toward: None })
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

/// Maps the 68 landmarks into the alignment's unit square (DFL's 33-point Umeyama fit to the
/// mean face) and returns their averaged yaw. Face files with landmarks that cannot be aligned
/// are refused when their metadata is read, so the fit exists; 0 (frontal) stands in otherwise.
pub fn unit_square_yaw(landmarks: &Landmarks68) -> f64 {
    to_unit_square(landmarks).map_or(0.0, |to_unit| averaged_yaw(&landmarks.transformed(&to_unit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::metadata::FaceFileError;
    use crate::progress::NoProgress;
    use crate::train::sampler::testutil::write_faceset;
    use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
    use opencv::imgcodecs;

    #[test]
    fn every_tenth_face_is_held_out_and_removed_from_training() {
        let tmp = tempfile::tempdir().unwrap();
        write_faceset(tmp.path(), 25, 32, |_| 0.0);
        let (mut set, _) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
        let names = |s: &SampleSet| -> Vec<String> {
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
        let (mut small, _) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
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

        let (set, skipped) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
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
        let (set, _) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
        let yaws: Vec<f32> = set.faces().iter().map(|f| f.yaw).collect();
        for (got, want) in yaws.iter().zip([-0.3, 0.0, 0.3]) {
            assert!((got - want).abs() < 0.02, "{yaws:?}");
        }
    }

    #[test]
    fn an_empty_folder_says_to_run_extract() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("junk.jpg"), b"not an image").unwrap();
        let err = SampleSet::load(tmp.path(), &NoProgress).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains("dfl extract") && err.contains("1 file(s) skipped"), "{err}");
        let missing = SampleSet::load(&tmp.path().join("nope"), &NoProgress).unwrap_err();
        assert!(matches!(missing, SampleSetError::Faceset(FacesetError::Missing(_))), "{missing}");
    }
}
