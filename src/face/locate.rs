//! 68 landmarks for a detected face: map the detector's box to the box dlib's predictor was
//! trained on, run the cascade, then run it again from the box the first landmarks imply.

use opencv::core::Mat;
use opencv::prelude::*;

use super::landmarks::{LANDMARK_COUNT, Landmarks68};
use crate::detect::{DetectError, Detection, FaceDetector};
use crate::face::shape_predictor::{DlibRect, GrayImage, ShapePredictor, intensity_from_bgr};
use crate::img;

/// The predictor's box side as a multiple of the eye-centre → mouth-centre distance. Fitted on
/// 469 faces (carphone, Megamind, stills) against dlib's HOG boxes (`docs/face-models.md`,
/// "dlib's shape predictor").
const BOX_SIDE_PER_EYE_MOUTH: f32 = 2.296;
/// The box centre's offset from the eye/mouth midpoint, in eye→mouth distances (same fit).
const BOX_CENTRE_SHIFT: [f32; 2] = [-0.038, -0.031];

/// Returns the square dlib box for a detection, from its eye and mouth keypoints.
pub fn box_from_detection(det: &Detection) -> DlibRect {
    let [r_eye, l_eye, _nose, r_mouth, l_mouth] = det.landmarks;
    let mid = |a: [f32; 2], b: [f32; 2]| [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    let (eyes, mouth) = (mid(r_eye, l_eye), mid(r_mouth, l_mouth));
    let dist = (mouth[0] - eyes[0]).hypot(mouth[1] - eyes[1]);
    let centre = mid(eyes, mouth);
    let centre = [centre[0] + BOX_CENTRE_SHIFT[0] * dist, centre[1] + BOX_CENTRE_SHIFT[1] * dist];
    square_box(centre, BOX_SIDE_PER_EYE_MOUTH * dist)
}

/// Returns the square box that best explains `landmarks` as the predictor's mean shape
/// (`initial`, in box-normalised coordinates): least squares over `x = left + u·side`,
/// `y = top + v·side`.
pub fn box_from_landmarks(initial: &[[f32; 2]], landmarks: &[[f32; 2]]) -> DlibRect {
    let n = initial.len().min(landmarks.len()).max(1) as f64;
    let mean = |pts: &[[f32; 2]]| {
        let (sx, sy) =
            pts.iter().fold((0.0, 0.0), |(x, y), p| (x + f64::from(p[0]), y + f64::from(p[1])));
        [sx / n, sy / n]
    };
    let (mu, mx) = (mean(initial), mean(landmarks));
    let (mut num, mut den) = (0.0, 0.0);
    for (u, x) in initial.iter().zip(landmarks) {
        let (du, dv) = (f64::from(u[0]) - mu[0], f64::from(u[1]) - mu[1]);
        num += du * (f64::from(x[0]) - mx[0]) + dv * (f64::from(x[1]) - mx[1]);
        den += du * du + dv * dv;
    }
    let side = if den > 0.0 { num / den } else { 0.0 };
    let centre = [mx[0] + (0.5 - mu[0]) * side, mx[1] + (0.5 - mu[1]) * side];
    square_box([centre[0] as f32, centre[1] as f32], side as f32)
}

/// Returns the dlib rectangle (inclusive corners) of the square with `centre` and `side`.
fn square_box(centre: [f32; 2], side: f32) -> DlibRect {
    let side = side.max(1.0);
    let left = (centre[0] - side / 2.0).round() as i64;
    let top = (centre[1] - side / 2.0).round() as i64;
    let span = side.round() as i64;
    DlibRect { left, top, right: left + span, bottom: top + span }
}

/// A landmark predictor that does not predict the 68 iBUG points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the landmark predictor has {parts} points; dfl needs dlib's 68-point model (shape_predictor_68_face_landmarks.dat); run scripts/setup.sh"
)]
pub struct Not68Points {
    /// The predictor's point count.
    pub parts: usize,
}

/// dlib's predictor with its mean shape read out once (the refining pass needs it per face).
pub struct Landmarker<'a> {
    predictor: &'a ShapePredictor,
    initial: Vec<[f32; 2]>,
}

impl<'a> Landmarker<'a> {
    /// Wraps `predictor`.
    ///
    /// # Errors
    /// `Not68Points` unless the predictor predicts 68 points.
    pub fn new(predictor: &'a ShapePredictor) -> Result<Self, Not68Points> {
        if predictor.num_parts() != LANDMARK_COUNT {
            return Err(Not68Points { parts: predictor.num_parts() });
        }
        Ok(Self { predictor, initial: predictor.initial_shape() })
    }

    /// Returns the 68 landmarks of the face `det` in `gray`: one pass from the detector's box,
    /// and with `refine` a second pass from the box those landmarks imply.
    pub fn locate(&self, gray: &GrayImage<'_>, det: &Detection, refine: bool) -> Landmarks68 {
        let first = self.predictor.predict(gray, box_from_detection(det));
        if !refine {
            return self.landmarks(first);
        }
        self.landmarks(self.predictor.predict(gray, box_from_landmarks(&self.initial, &first)))
    }

    /// Returns the 68 landmarks of a face near known landmarks `near` (the face in the previous
    /// frame, or the face a swap replaced): two passes, starting from the box `near` implies.
    pub fn locate_near(&self, gray: &GrayImage<'_>, near: &Landmarks68) -> Landmarks68 {
        let first = self.predictor.predict(gray, box_from_landmarks(&self.initial, near));
        self.landmarks(self.predictor.predict(gray, box_from_landmarks(&self.initial, &first)))
    }

    fn landmarks(&self, points: Vec<[f32; 2]>) -> Landmarks68 {
        let points: [[f32; 2]; LANDMARK_COUNT] = points
            .try_into()
            .expect("invariant: the predictor has 68 points (checked by Landmarker::new)");
        Landmarks68::new(points)
    }
}

/// The predictor's input for a BGR image: its intensities, row-major.
///
/// # Errors
/// OpenCV's error when `bgr` is not 8-bit 3-channel.
pub fn intensities(bgr: &Mat) -> opencv::Result<Vec<u8>> {
    let bytes = img::bgr_bytes(bgr)?;
    Ok(intensity_from_bgr(&bytes, bgr.cols() as usize, bgr.rows() as usize))
}

/// A detection with its 68 landmarks (pixels of the image).
pub type LandmarkedFace = (Detection, Landmarks68);

/// Finds the faces of a BGR image: each detection (largest first) with its 68 landmarks.
///
/// # Errors
/// The detector's error.
pub fn find_faces(
    bgr: &Mat,
    detector: &mut dyn FaceDetector,
    landmarker: &Landmarker<'_>,
    refine: bool,
) -> Result<Vec<LandmarkedFace>, DetectError> {
    let detections = detector.detect(bgr)?;
    if detections.is_empty() {
        return Ok(Vec::new());
    }
    let data = intensities(bgr).map_err(DetectError::from)?;
    let gray = GrayImage { data: &data, width: bgr.cols() as usize, height: bgr.rows() as usize };
    Ok(detections
        .into_iter()
        .map(|d| {
            let landmarks = landmarker.locate(&gray, &d, refine);
            (d, landmarks)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_landmark_box_inverts_the_normalisation() {
        let initial: Vec<[f32; 2]> =
            (0..68).map(|i| [(i % 9) as f32 / 8.0, (i / 9) as f32 / 8.0]).collect();
        let (left, top, side) = (40.0f32, 25.0f32, 120.0f32);
        let pts: Vec<[f32; 2]> =
            initial.iter().map(|u| [left + u[0] * side, top + u[1] * side]).collect();
        let b = box_from_landmarks(&initial, &pts);
        assert_eq!((b.left, b.top, b.right, b.bottom), (40, 25, 160, 145));
    }

    #[test]
    fn the_detection_box_is_square_around_eyes_and_mouth() {
        let det = Detection {
            rect: [0.0, 0.0, 100.0, 100.0],
            score: 0.9,
            landmarks: [[40.0, 40.0], [60.0, 40.0], [50.0, 50.0], [42.0, 60.0], [58.0, 60.0]],
        };
        let b = box_from_detection(&det);
        assert_eq!(b.right - b.left, b.bottom - b.top);
        assert_eq!(b.right - b.left, 46); // 2.296 × 20 px
        let cx = (b.left + b.right) as f32 / 2.0;
        assert!((cx - (50.0 - 0.038 * 20.0)).abs() <= 1.0, "{b:?}");
    }
}
