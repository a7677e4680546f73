//! Face detection: the detector abstraction ([`FaceDetector`]), its settings, its errors, and
//! the post-processing every detector shares (non-maximum suppression, DeepFaceLab's
//! largest-first order).

pub mod yunet;

use std::path::PathBuf;

use opencv::core::{CV_8UC3, Mat, MatTraitConst};
use serde::{Deserialize, Serialize};

pub use yunet::{YuNet, YuNetModel};

/// One detected face in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box as `[x, y, w, h]`: top-left corner, width and height.
    pub rect: [f32; 4],
    /// Detector confidence in `[0, 1]`.
    pub score: f32,
    /// Five points `[x, y]`: the subject's right eye (image-left), left eye, nose tip, right
    /// mouth corner (image-left), left mouth corner.
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// Returns the box area in square pixels (0 for a degenerate box).
    pub fn area(&self) -> f32 {
        self.rect[2].max(0.0) * self.rect[3].max(0.0)
    }
}

/// A face detector that turns one BGR frame into detections.
///
/// One instance is not shared between threads; extraction builds one per worker.
pub trait FaceDetector: Send {
    /// Detects the faces in `bgr`, largest box first.
    ///
    /// # Shapes
    /// `bgr`: `H×W` `CV_8UC3`, BGR. Detections are in its pixel coordinates.
    ///
    /// # Errors
    /// [`DetectError::BadImage`] for an empty or non-8-bit-3-channel Mat, or an OpenCV /
    /// model-output error.
    fn detect(&mut self, bgr: &Mat) -> Result<Vec<Detection>, DetectError>;
}

/// Settings shared by all detectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Detections scoring below this are dropped before NMS.
    pub score_threshold: f32,
    /// Two boxes overlapping more than this IoU are one face (the higher score wins).
    pub nms_iou: f32,
    /// Boxes whose shorter side (frame pixels) is below this are dropped.
    pub min_face_px: f32,
    /// Keep at most this many faces, largest first; 0 keeps all.
    pub max_faces: usize,
}

/// OpenCV zoo's `demo.py` default for YuNet (`--conf_threshold 0.9`) is stricter; 0.6 is what
/// the detector checks in `docs/face-models.md` ("YuNet") used.
const DEFAULT_SCORE_THRESHOLD: f32 = 0.6;
/// NMS IoU from OpenCV zoo's YuNet demo (`--nms_threshold 0.3`).
const DEFAULT_NMS_IOU: f32 = 0.3;
/// Faces smaller than this carry too little detail to align or train on (DFL's S3FD uses 40;
/// 16 keeps small faces such as messi5.jpg's ~37 px one).
const DEFAULT_MIN_FACE_PX: f32 = 16.0;

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_iou: DEFAULT_NMS_IOU,
            min_face_px: DEFAULT_MIN_FACE_PX,
            max_faces: 0,
        }
    }
}

/// Why a detector could not be built or could not run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The model file could not be read.
    #[error("reading detector model {}: {source}; run scripts/setup.sh", path.display())]
    ReadModel {
        /// The model file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The model file was read but OpenCV could not build a network from it.
    #[error(
        "loading detector model {}: {source}; run scripts/setup.sh to recreate it",
        path.display()
    )]
    LoadModel {
        /// The model file.
        path: PathBuf,
        /// OpenCV's complaint.
        #[source]
        source: opencv::Error,
    },
    /// The input frame is not a non-empty 8-bit 3-channel image.
    #[error(
        "expected a non-empty 8-bit 3-channel BGR image, got {cols}x{rows} with OpenCV type \
         {typ}; convert it with imgproc::cvt_color first"
    )]
    BadImage {
        /// Frame height.
        rows: i32,
        /// Frame width.
        cols: i32,
        /// OpenCV type code (`CV_8UC3` = 16).
        typ: i32,
    },
    /// A model output does not have the size the decoder expects.
    #[error(
        "detector output {name} has {got} values, expected {expected}; is the model file the \
         right one? run scripts/setup.sh"
    )]
    OutputShape {
        /// Output name.
        name: String,
        /// Expected number of f32 values.
        expected: usize,
        /// Number of values found.
        got: usize,
    },
    /// An OpenCV call failed while running the detector.
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Checks that `bgr` is a non-empty `CV_8UC3` Mat.
///
/// # Errors
/// [`DetectError::BadImage`] otherwise.
pub fn check_bgr(bgr: &Mat) -> Result<(), DetectError> {
    if bgr.empty() || bgr.typ() != CV_8UC3 || bgr.dims() != 2 {
        return Err(DetectError::BadImage { rows: bgr.rows(), cols: bgr.cols(), typ: bgr.typ() });
    }
    Ok(())
}

/// Returns the intersection over union of two `[x, y, w, h]` boxes (0 when both are empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = ix.max(0.0) * iy.max(0.0);
    let union = a[2].max(0.0) * a[3].max(0.0) + b[2].max(0.0) * b[3].max(0.0) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Greedy non-maximum suppression: keeps the best-scoring box, drops every box overlapping a
/// kept one by more than `iou_threshold`, and repeats. Returns the kept boxes by score,
/// highest first (as OpenCV's `NMSBoxes`).
pub fn nms(mut candidates: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(candidates.len().min(16));
    for cand in candidates {
        if kept.iter().all(|k| iou(&k.rect, &cand.rect) <= iou_threshold) {
            kept.push(cand);
        }
    }
    kept
}

/// Applies the final, detector-independent steps: drops boxes smaller than
/// `cfg.min_face_px`, sorts by box area, largest first (DeepFaceLab's order), and keeps at
/// most `cfg.max_faces` (0 = all).
// DFL: facelib/S3FDExtractor.py sorts rects by area, largest first (kept). It also drops faces
// under 40 px a side; here that floor is `min_face_px`.
pub fn rank_largest_first(mut dets: Vec<Detection>, cfg: &DetectorConfig) -> Vec<Detection> {
    dets.retain(|d| d.rect[2].min(d.rect[3]) >= cfg.min_face_px);
    dets.sort_by(|a, b| b.area().total_cmp(&a.area()));
    if cfg.max_faces > 0 {
        dets.truncate(cfg.max_faces);
    }
    dets
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC1, CV_32FC3, Scalar};

    fn det(rect: [f32; 4], score: f32) -> Detection {
        Detection { rect, score, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 5.0, 5.0]), 0.0);
        // Half overlap: inter 50, union 150.
        assert!((iou(&a, &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_each_cluster() {
        let boxes = vec![
            det([0.0, 0.0, 10.0, 10.0], 0.7),
            det([1.0, 0.0, 10.0, 10.0], 0.9), // IoU 0.82 with the first: suppresses it
            det([50.0, 50.0, 20.0, 20.0], 0.8),
            det([5.0, 0.0, 10.0, 10.0], 0.65), // IoU 0.43 with the 0.9 box: dropped at 0.3
        ];
        let kept = nms(boxes.clone(), 0.3);
        assert_eq!(kept, vec![boxes[1], boxes[2]]);
        // A looser threshold keeps the 0.43-overlap box.
        let kept = nms(boxes.clone(), 0.5);
        assert_eq!(kept, vec![boxes[1], boxes[2], boxes[3]]);
        assert!(nms(Vec::new(), 0.3).is_empty());
    }

    #[test]
    fn ranking_is_by_area_then_cut() {
        let small = det([0.0, 0.0, 20.0, 20.0], 0.99);
        let big = det([100.0, 0.0, 50.0, 60.0], 0.7);
        let tiny = det([0.0, 100.0, 10.0, 40.0], 0.9);
        let cfg = DetectorConfig::default();
        assert_eq!(rank_largest_first(vec![small, big, tiny], &cfg), vec![big, small]);
        let one = DetectorConfig { max_faces: 1, ..cfg };
        assert_eq!(rank_largest_first(vec![small, big], &one), vec![big]);
    }

    #[test]
    fn check_bgr_rejects_wrong_mats() {
        let ok = Mat::new_rows_cols_with_default(4, 4, CV_8UC3, Scalar::all(0.0)).unwrap();
        assert!(check_bgr(&ok).is_ok());
        for typ in [CV_8UC1, CV_32FC3] {
            let bad = Mat::new_rows_cols_with_default(4, 4, typ, Scalar::all(0.0)).unwrap();
            assert!(matches!(check_bgr(&bad), Err(DetectError::BadImage { .. })));
        }
        assert!(matches!(check_bgr(&Mat::default()), Err(DetectError::BadImage { .. })));
    }
}
