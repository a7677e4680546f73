//! Measures against the truth: the IoU of two binary masks, the mean IoU of the faces' masks
//! against their true masks, and how much of the occluders a merge left untouched.

use std::path::{Path, PathBuf};

use opencv::core::{self, CV_8UC1, CV_8UC3, Mat};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use serde::Serialize;

use super::labels::truth_file_name;
use crate::face::masks::hull_mask;
use crate::faceset::{Faceset, FacesetError};
use crate::progress::Progress;

/// Why two images cannot be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// The images differ in size.
    #[error("images of {a:?} and {b:?} pixels cannot be compared")]
    Size {
        /// Columns and rows of the first.
        a: (i32, i32),
        /// Columns and rows of the second.
        b: (i32, i32),
    },
    /// An image has another type than the measure needs.
    #[error("{what} must be {want}")]
    Type {
        /// Which image.
        what: &'static str,
        /// The type it must have.
        want: &'static str,
    },
    /// OpenCV failed.
    #[error(transparent)]
    Cv(#[from] opencv::Error),
}

fn same_size(a: &Mat, b: &Mat) -> Result<(), MaskError> {
    let (sa, sb) = ((a.cols(), a.rows()), (b.cols(), b.rows()));
    if sa == sb { Ok(()) } else { Err(MaskError::Size { a: sa, b: sb }) }
}

/// Returns the intersection over union of two binary masks (single channel; nonzero = set):
/// 1 when both are empty.
///
/// # Errors
/// `Size` when they differ in size, `Type` when one has several channels.
pub fn iou(a: &Mat, b: &Mat) -> Result<f64, MaskError> {
    same_size(a, b)?;
    if a.channels() != 1 || b.channels() != 1 {
        return Err(MaskError::Type { what: "a mask", want: "single-channel" });
    }
    Ok(crate::face::masks::iou(a, b)?)
}

/// Returns the share of the occluder pixels (`truth_mask` nonzero) whose value in
/// `merged_frame` is within `tolerance` of `original_occluded_frame` in every channel: 1 means
/// the merge painted over no occluder pixel. 1 when the mask is empty.
///
/// # Errors
/// `Size` when the three differ in size, `Type` when the frames are not BGR u8 or the mask
/// not u8 single-channel.
pub fn occluder_kept_share(
    original_occluded_frame: &Mat,
    merged_frame: &Mat,
    truth_mask: &Mat,
    tolerance: u8,
) -> Result<f64, MaskError> {
    let (kept, total) = kept_counts(original_occluded_frame, merged_frame, truth_mask, tolerance)?;
    Ok(if total == 0 { 1.0 } else { kept as f64 / total as f64 })
}

/// (occluder pixels kept, occluder pixels) of one frame.
fn kept_counts(
    original: &Mat,
    merged: &Mat,
    truth: &Mat,
    tolerance: u8,
) -> Result<(usize, usize), MaskError> {
    same_size(original, merged)?;
    same_size(original, truth)?;
    if original.typ() != CV_8UC3 || merged.typ() != CV_8UC3 {
        return Err(MaskError::Type { what: "a frame", want: "BGR u8" });
    }
    if truth.typ() != CV_8UC1 {
        return Err(MaskError::Type { what: "the truth mask", want: "u8 single-channel" });
    }
    let (original, merged, truth) =
        (original.try_clone()?, merged.try_clone()?, truth.try_clone()?);
    let (o, m, t) = (original.data_bytes()?, merged.data_bytes()?, truth.data_bytes()?);
    let (mut kept, mut total) = (0, 0);
    for ((po, pm), &covered) in o.chunks_exact(3).zip(m.chunks_exact(3)).zip(t) {
        if covered == 0 {
            continue;
        }
        total += 1;
        kept += usize::from(po.iter().zip(pm).all(|(a, b)| a.abs_diff(*b) <= tolerance));
    }
    Ok((kept, total))
}

/// What [`score_faces`] measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreReport {
    /// Faces with a true mask.
    pub faces: usize,
    /// Of those, faces an occluder covers part of.
    pub occluded_faces: usize,
    /// Mean IoU of the landmark hull mask against the truth, over all faces.
    pub hull_iou: f64,
    /// The same over the occluded faces only (`None` without any).
    pub hull_iou_occluded: Option<f64>,
    /// Faces with an applied XSeg mask (`xseg_mask` in their metadata).
    pub xseg_faces: usize,
    /// Mean IoU of the applied XSeg mask against the truth over those faces (`None` without).
    pub xseg_iou: Option<f64>,
    /// The same over those of them that are occluded (`None` without any).
    pub xseg_iou_occluded: Option<f64>,
    /// Faces without labels: never trained on, the held-out measure of an XSeg model trained
    /// on the labelled faces.
    pub unlabelled_faces: usize,
    /// The hull's and the applied XSeg mask's mean IoU on those faces.
    pub unlabelled_iou: Option<(f64, f64)>,
    /// Of those, the faces an occluder covers part of.
    pub unlabelled_occluded_faces: usize,
    /// The hull's mean IoU on those faces (`None` without any).
    pub hull_iou_unlabelled_occluded: Option<f64>,
    /// The applied XSeg mask's mean IoU on those faces (`None` without any with a mask).
    pub xseg_iou_unlabelled_occluded: Option<f64>,
    /// Face files without a true mask, or unreadable.
    pub skipped: usize,
}

/// Why scoring failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreError {
    /// The faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// No face has a true mask.
    #[error(
        "no face in {} has a true mask in {}; run dfl faceset occlude-labels on this faceset first",
        .faces.display(), .truth.display()
    )]
    NoFaces {
        /// The faceset.
        faces: PathBuf,
        /// The true masks.
        truth: PathBuf,
    },
    /// No merged frame has a truth mask with pixels.
    #[error(
        "no frame in {} has both a merged frame and a truth mask with occluder pixels in {}; pass the merged folder of this clip",
        .merged.display(), .masks.display()
    )]
    NoMergedFrames {
        /// The merged frames.
        merged: PathBuf,
        /// The truth masks.
        masks: PathBuf,
    },
}

/// Scores the faces of `faces_dir` against their true masks in `truth_faces` (written by
/// [`super::truth_and_labels`]): the mean IoU of the landmark hull mask, and of the applied
/// XSeg mask where a face has one (resized to the face's side, nearest neighbour).
///
/// # Errors
/// `Faceset` when the faceset cannot be read, `NoFaces` when no face has a true mask.
pub fn score_faces(
    truth_faces: &Path,
    faces_dir: &Path,
    progress: &dyn Progress,
) -> Result<ScoreReport, ScoreError> {
    let faceset = Faceset::read(faces_dir, progress)?;
    let mut report = ScoreReport { skipped: faceset.skipped.len(), ..ScoreReport::default() };
    let (mut sum, mut sum_occluded) = (0.0, 0.0);
    let (mut xseg_sum, mut xseg_sum_occluded, mut xseg_occluded) = (0.0, 0.0, 0);
    // Occluded faces without labels: (hull sum, xseg sum, faces with xseg).
    let (mut held_hull, mut held_xseg, mut held_xseg_n) = (0.0, 0.0, 0u32);
    let (mut free_hull, mut free_xseg, mut free_xseg_n) = (0.0, 0.0, 0u32);
    for face in &faceset.faces {
        let path = truth_faces.join(truth_file_name(&face.name));
        if !path.is_file() {
            report.skipped += 1;
            continue;
        }
        let measured = (|| -> Result<(f64, bool, Option<f64>), String> {
            let truth =
                imgcodecs::imread(&path, imgcodecs::IMREAD_GRAYSCALE).map_err(|e| e.to_string())?;
            if truth.empty() {
                return Err("not a readable image".into());
            }
            let side = i32::try_from(face.meta.size_px).map_err(|e| e.to_string())?;
            let hull = hull_mask(side, &face.meta.landmarks).map_err(|e| e.to_string())?;
            let mut hull_u8 = Mat::default();
            hull.convert_to(&mut hull_u8, CV_8UC1, 255.0, 0.0).map_err(|e| e.to_string())?;
            let score = iou(&hull_u8, &truth).map_err(|e| e.to_string())?;
            let hull_px = core::count_non_zero(&hull_u8).map_err(|e| e.to_string())?;
            let truth_px = core::count_non_zero(&truth).map_err(|e| e.to_string())?;
            let xseg = match &face.meta.xseg_mask {
                Some(applied) => {
                    let mask = applied.decode().map_err(|e| e.to_string())?;
                    let mut sized = Mat::default();
                    imgproc::resize(
                        &mask,
                        &mut sized,
                        core::Size::new(side, side),
                        0.0,
                        0.0,
                        imgproc::INTER_NEAREST,
                    )
                    .map_err(|e| e.to_string())?;
                    Some(iou(&sized, &truth).map_err(|e| e.to_string())?)
                }
                None => None,
            };
            Ok((score, truth_px < hull_px, xseg))
        })();
        match measured {
            Ok((score, occluded, xseg)) => {
                report.faces += 1;
                sum += score;
                if occluded {
                    report.occluded_faces += 1;
                    sum_occluded += score;
                }
                let unlabelled = face.meta.seg_ie_polys.is_empty();
                if unlabelled {
                    report.unlabelled_faces += 1;
                    free_hull += score;
                    if let Some(x) = xseg {
                        free_xseg += x;
                        free_xseg_n += 1;
                    }
                }
                if occluded && unlabelled {
                    report.unlabelled_occluded_faces += 1;
                    held_hull += score;
                    if let Some(x) = xseg {
                        held_xseg += x;
                        held_xseg_n += 1;
                    }
                }
                if let Some(x) = xseg {
                    report.xseg_faces += 1;
                    xseg_sum += x;
                    if occluded {
                        xseg_occluded += 1;
                        xseg_sum_occluded += x;
                    }
                }
            }
            Err(why) => {
                log::warn!("skipping {}: {why}", path.display());
                report.skipped += 1;
            }
        }
    }
    if report.faces == 0 {
        return Err(ScoreError::NoFaces {
            faces: faces_dir.to_owned(),
            truth: truth_faces.to_owned(),
        });
    }
    report.hull_iou = sum / report.faces as f64;
    report.hull_iou_occluded =
        (report.occluded_faces > 0).then(|| sum_occluded / report.occluded_faces as f64);
    report.xseg_iou = (report.xseg_faces > 0).then(|| xseg_sum / report.xseg_faces as f64);
    report.xseg_iou_occluded =
        (xseg_occluded > 0).then(|| xseg_sum_occluded / f64::from(xseg_occluded));
    report.unlabelled_iou = (free_xseg_n > 0)
        .then(|| (free_hull / report.unlabelled_faces as f64, free_xseg / f64::from(free_xseg_n)));
    let held = report.unlabelled_occluded_faces;
    report.hull_iou_unlabelled_occluded = (held > 0).then(|| held_hull / held as f64);
    report.xseg_iou_unlabelled_occluded =
        (held_xseg_n > 0).then(|| held_xseg / f64::from(held_xseg_n));
    Ok(report)
}

/// What [`merged_kept_share`] measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeptReport {
    /// Frames with occluder pixels and a merged frame.
    pub frames: usize,
    /// Occluder pixels kept over all those frames' occluder pixels.
    pub kept_share: f64,
    /// The same over the occluder pixels that lie on a dst face (inside the landmark hull of
    /// a face of the frame): where a swap would paint. `None` without faces.
    pub face_kept_share: Option<f64>,
    /// Frames skipped (unreadable, or of another size).
    pub skipped: usize,
}

/// Measures, over every frame of `occluded_frames` with a truth mask in `masks` that has
/// occluder pixels and a merged frame `merged/<frame>.png`, the share of occluder pixels the
/// merge kept within `tolerance`.
///
/// # Errors
/// `NoMergedFrames` when no frame can be measured.
pub fn merged_kept_share(
    occluded_frames: &Path,
    masks: &Path,
    merged: &Path,
    faces: Option<&Faceset>,
    tolerance: u8,
) -> Result<KeptReport, ScoreError> {
    let no_frames =
        || ScoreError::NoMergedFrames { merged: merged.to_owned(), masks: masks.to_owned() };
    let mut names: Vec<PathBuf> = std::fs::read_dir(masks)
        .map_err(|_| no_frames())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    names.sort();
    let mut report = KeptReport::default();
    let (mut kept, mut total) = (0, 0);
    let (mut face_kept, mut face_total) = (0, 0);
    for mask_path in names {
        let Some(file) = mask_path.file_name() else { continue };
        let merged_path = merged.join(file);
        if !merged_path.is_file() {
            continue;
        }
        let read = |p: &Path, flags| match imgcodecs::imread(p, flags) {
            Ok(m) if !m.empty() => Ok(m),
            _ => Err(format!("{} is not a readable image", p.display())),
        };
        type Counts = ((usize, usize), (usize, usize));
        let counts = (|| -> Result<Counts, String> {
            let truth = read(&mask_path, imgcodecs::IMREAD_GRAYSCALE)?;
            if core::count_non_zero(&truth).map_err(|e| e.to_string())? == 0 {
                return Ok(((0, 0), (0, 0)));
            }
            let original = read(&occluded_frames.join(file), imgcodecs::IMREAD_COLOR)?;
            let result = read(&merged_path, imgcodecs::IMREAD_COLOR)?;
            let all =
                kept_counts(&original, &result, &truth, tolerance).map_err(|e| e.to_string())?;
            let stem = mask_path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let on_face = match faces {
                Some(set) => {
                    let region = face_region(set, stem, truth.cols(), truth.rows())
                        .map_err(|e| e.to_string())?;
                    let mut covered = Mat::default();
                    core::bitwise_and(&truth, &region, &mut covered, &core::no_array())
                        .map_err(|e| e.to_string())?;
                    kept_counts(&original, &result, &covered, tolerance)
                        .map_err(|e| e.to_string())?
                }
                None => (0, 0),
            };
            Ok((all, on_face))
        })();
        match counts {
            Ok(((_, 0), _)) => {}
            Ok(((k, t), (fk, ft))) => {
                report.frames += 1;
                kept += k;
                total += t;
                face_kept += fk;
                face_total += ft;
            }
            Err(why) => {
                log::warn!("skipping {}: {why}", merged_path.display());
                report.skipped += 1;
            }
        }
    }
    if total == 0 {
        return Err(no_frames());
    }
    report.kept_share = kept as f64 / total as f64;
    report.face_kept_share = (face_total > 0).then(|| face_kept as f64 / face_total as f64);
    Ok(report)
}

/// The union of the landmark hulls of frame `stem`'s faces, in frame pixels (CV_8UC1, 255 on a
/// face).
fn face_region(faces: &Faceset, stem: &str, w: i32, h: i32) -> opencv::Result<Mat> {
    let side = w.max(h);
    let mut union = Mat::zeros(h, w, CV_8UC1)?.to_mat()?;
    for face in faces.faces.iter().filter(|f| f.meta.source_filename == stem) {
        let hull = hull_mask(side, &face.meta.source_landmarks)?;
        let hull = Mat::roi(&hull, core::Rect::new(0, 0, w, h))?.try_clone()?;
        let mut bytes = Mat::default();
        hull.convert_to(&mut bytes, CV_8UC1, 255.0, 0.0)?;
        let mut out = Mat::default();
        core::bitwise_or(&union, &bytes, &mut out, &core::no_array())?;
        union = out;
    }
    Ok(union)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Rect, Scalar, Vec3b};

    fn mask(w: i32, h: i32, rects: &[Rect]) -> Mat {
        let mut m = Mat::zeros(h, w, CV_8UC1).unwrap().to_mat().unwrap();
        for r in rects {
            imgproc::rectangle(&mut m, *r, Scalar::all(255.0), -1, imgproc::LINE_8, 0).unwrap();
        }
        m
    }

    #[test]
    fn iou_of_overlapping_rectangles_is_exact() {
        let a = mask(20, 10, &[Rect::new(0, 0, 10, 10)]);
        let b = mask(20, 10, &[Rect::new(5, 0, 10, 10)]);
        // Intersection 5×10, union 15×10.
        assert!((iou(&a, &b).unwrap() - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(iou(&a, &a).unwrap(), 1.0);
        let empty = mask(20, 10, &[]);
        assert_eq!(iou(&empty, &empty).unwrap(), 1.0);
        assert_eq!(iou(&a, &empty).unwrap(), 0.0);
        assert!(matches!(iou(&a, &mask(10, 10, &[])), Err(MaskError::Size { .. })));
    }

    #[test]
    fn faces_are_scored_by_hull_and_by_applied_xseg_mask() {
        use crate::face::metadata::{ImageFormat, read_metadata, write_face};
        use crate::face::seg::XSegMask;
        let tmp = tempfile::tempdir().unwrap();
        let (faces, truth_dir) = (tmp.path().join("faces"), tmp.path().join("truth"));
        std::fs::create_dir_all(&faces).unwrap();
        std::fs::create_dir_all(&truth_dir).unwrap();
        let file = crate::face::testutil::write_faceset(&faces, 1, 64, |_| 0.0).remove(0);
        let mut meta = read_metadata(&file).unwrap();
        // Truth: the hull's left half. Applied XSeg mask: the hull's left quarter columns.
        let hull = hull_mask(64, &meta.landmarks).unwrap();
        let mut hull_u8 = Mat::default();
        hull.convert_to(&mut hull_u8, CV_8UC1, 255.0, 0.0).unwrap();
        let keep = |cols: i32| {
            let mut m = hull_u8.try_clone().unwrap();
            let right = Rect::new(cols, 0, 64 - cols, 64);
            imgproc::rectangle(&mut m, right, Scalar::all(0.0), -1, imgproc::LINE_8, 0).unwrap();
            m
        };
        let (truth, applied) = (keep(32), keep(24));
        let want_xseg = iou(&applied, &truth).unwrap();
        let want_hull = iou(&hull_u8, &truth).unwrap();
        assert!((want_xseg - want_hull).abs() > 0.05, "{want_xseg} {want_hull}");
        meta.xseg_mask = Some(XSegMask::encode("test", 1, &applied).unwrap());
        let pixels = crate::img::read_image(&file).unwrap();
        write_face(&file, &pixels, &meta, ImageFormat::Png, 95).unwrap();
        let truth_path = truth_dir.join("face_000.png");
        imgcodecs::imwrite(truth_path.to_str().unwrap(), &truth, &core::Vector::new()).unwrap();
        let report = score_faces(&truth_dir, &faces, &crate::progress::NoProgress).unwrap();
        assert_eq!((report.faces, report.occluded_faces, report.xseg_faces), (1, 1, 1));
        assert!((report.hull_iou - want_hull).abs() < 1e-12);
        assert!((report.xseg_iou.unwrap() - want_xseg).abs() < 1e-12);
        assert!((report.xseg_iou_occluded.unwrap() - want_xseg).abs() < 1e-12);
    }

    #[test]
    fn the_kept_share_counts_occluder_pixels_left_within_tolerance() {
        let (w, h) = (10, 10);
        let original = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(100.0)).unwrap();
        let truth = mask(w, h, &[Rect::new(0, 0, 5, 4)]); // 20 occluder pixels
        let mut merged = original.try_clone().unwrap();
        // Painted over: 5 occluder pixels far off, 3 within the tolerance of 4, and pixels
        // outside the occluder that do not count.
        for x in 0..5 {
            *merged.at_2d_mut::<Vec3b>(0, x).unwrap() = Vec3b::from([100, 160, 100]);
        }
        for x in 0..3 {
            *merged.at_2d_mut::<Vec3b>(1, x).unwrap() = Vec3b::from([104, 96, 100]);
        }
        for y in 5..10 {
            *merged.at_2d_mut::<Vec3b>(y, 9).unwrap() = Vec3b::from([0, 0, 0]);
        }
        assert_eq!(occluder_kept_share(&original, &merged, &truth, 4).unwrap(), 15.0 / 20.0);
        assert_eq!(occluder_kept_share(&original, &merged, &truth, 3).unwrap(), 12.0 / 20.0);
        assert_eq!(occluder_kept_share(&original, &original, &truth, 0).unwrap(), 1.0);
        let none = mask(w, h, &[]);
        assert_eq!(occluder_kept_share(&original, &merged, &none, 0).unwrap(), 1.0);
        assert!(occluder_kept_share(&original, &merged, &original, 0).is_err());
    }
}
