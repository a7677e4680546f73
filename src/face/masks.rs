//! Landmark masks: DFL's hull mask with expanded eyebrows (the full-face mask when a face has no
//! XSeg mask; training, merge's `dst` mask mode and sort's measures use it) and the
//! eyes-and-mouth mask training weights (`docs/dfl-parity.md`, "Training samples").
//!
//! DFL: `facelib/LandmarksProcessor.py` (`expand_eyebrows`, `get_image_hull_mask`,
//! `get_image_eye_mask`, `get_image_mouth_mask`), `samplelib/SampleProcessor.py` (EYES_MOUTH).

use opencv::core::{self, CV_32FC1, Mat, Point, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::landmarks::Landmarks68;

/// How far eyebrows are pushed away from the eyes (DFL's default `eyebrows_expand_mod`).
const EYEBROWS_EXPAND_MOD: f64 = 1.0;

/// The 8 parts whose convex hulls make up the hull mask, as landmark index ranges.
/// DFL: `get_image_hull_mask` (r_jaw, l_jaw, r_cheek, l_cheek, nose_ridge, r_eye, l_eye, nose).
const HULL_PARTS: [&[std::ops::Range<usize>]; 8] = [
    &[0..9, 17..18],
    &[8..17, 26..27],
    &[17..20, 8..9],
    &[24..27, 8..9],
    &[19..25, 8..9],
    &[17..22, 27..28, 31..36, 8..9],
    &[22..27, 27..28, 31..36, 8..9],
    &[27..31, 31..36],
];

/// The eye hulls (36–41, 42–47) and the inner-lip hull (60–67).
const EYES_MOUTH_PARTS: [std::ops::Range<usize>; 3] = [36..42, 42..48, 60..68];

/// The dilation kernel is the mask's height divided by this (DFL: `h // 32`).
const EM_DILATE_DIVISOR: i32 = 32;
/// The Gaussian blur kernel is the mask's height divided by this, made odd (DFL: `h // 16`).
const EM_BLUR_DIVISOR: i32 = 16;

/// Returns DFL's hull mask: the union of 8 convex hulls over the landmarks with the eyebrows
/// expanded, filled with 1, no blur.
///
/// # Shapes
/// `landmarks`: 68 points in pixels of a `side_px`² image. Output: `[side_px, side_px]` f32
/// (`CV_32FC1`) in {0, 1}.
///
/// # Errors
/// OpenCV's error.
pub fn hull_mask(side_px: i32, landmarks: &Landmarks68) -> opencv::Result<Mat> {
    let pts = expand_eyebrows(&int_points(landmarks));
    let mut mask = Mat::zeros(side_px, side_px, CV_32FC1)?.to_mat()?;
    for part in HULL_PARTS {
        let points: Vector<Point> = part.iter().flat_map(|r| r.clone().map(|i| pts[i])).collect();
        fill_hull(&mut mask, &points)?;
    }
    Ok(mask)
}

/// Returns the eyes-and-mouth mask before warping: clip(eyes + mouth, 0, 1) × the binarised
/// `full_face` mask. Eyes and mouth are their hulls dilated by an elliptical kernel of side
/// `H//32` and blurred with a Gaussian of side `H//16` (made odd).
///
/// After warping, divide it by its maximum ([`normalise_max`]).
///
/// # Shapes
/// `landmarks`: 68 points in pixels; `full_face`: `[H, H]` f32. Output: `[H, H]` f32 in [0, 1].
///
/// # Errors
/// OpenCV's error.
pub fn eyes_mouth_mask(full_face: &Mat, landmarks: &Landmarks68) -> opencv::Result<Mat> {
    let side = full_face.rows();
    let pts = int_points(landmarks);
    let mut parts = Mat::zeros(side, side, CV_32FC1)?.to_mat()?;
    for range in EYES_MOUTH_PARTS {
        let points: Vector<Point> = range.map(|i| pts[i]).collect();
        fill_hull(&mut parts, &points)?;
    }
    let dilate_px = (side / EM_DILATE_DIVISOR).max(1);
    let kernel = imgproc::get_structuring_element(
        imgproc::MORPH_ELLIPSE,
        Size::new(dilate_px, dilate_px),
        Point::new(-1, -1),
    )?;
    let mut dilated = Mat::default();
    imgproc::dilate_def(&parts, &mut dilated, &kernel)?;
    let blur = side / EM_BLUR_DIVISOR;
    let blur_px = blur + (1 - blur % 2);
    let mut blurred = Mat::default();
    imgproc::gaussian_blur_def(&dilated, &mut blurred, Size::new(blur_px, blur_px), 0.0)?;
    // Drawing eyes and mouth into one image before dilating and blurring gives DFL's
    // clip(eyes + mouth) wherever the dilated hulls do not overlap, and never exceeds 1.
    let mut binary = Mat::default();
    imgproc::threshold(full_face, &mut binary, 0.0, 1.0, imgproc::THRESH_BINARY)?;
    let mut out = Mat::default();
    core::multiply_def(&blurred, &binary, &mut out)?;
    Ok(out)
}

/// Divides `mask` by its maximum when that is positive (DFL, after warping EYES_MOUTH).
///
/// # Errors
/// OpenCV's error.
pub fn normalise_max(mask: &Mat) -> opencv::Result<Mat> {
    let mut max = 0.0;
    core::min_max_loc(mask, None, Some(&mut max), None, None, &core::no_array())?;
    if max <= 0.0 {
        return mask.try_clone();
    }
    let mut out = Mat::default();
    mask.convert_to(&mut out, CV_32FC1, 1.0 / max, 0.0)?;
    Ok(out)
}

/// Fills the convex hull of `points` with 1.
fn fill_hull(mask: &mut Mat, points: &Vector<Point>) -> opencv::Result<()> {
    let mut hull = Vector::<Point>::new();
    imgproc::convex_hull(points, &mut hull, false, true)?;
    imgproc::fill_convex_poly(mask, &hull, Scalar::all(1.0), imgproc::LINE_8, 0)
}

/// Truncates landmarks to integer pixels, as DFL's `astype(np.int)`.
fn int_points(landmarks: &[[f32; 2]]) -> Vec<Point> {
    landmarks.iter().map(|p| Point::new(p[0] as i32, p[1] as i32)).collect()
}

/// Moves each eyebrow point away from its partner on the top of the eye, by half their
/// distance (integer arithmetic as DFL's `expand_eyebrows`).
fn expand_eyebrows(pts: &[Point]) -> Vec<Point> {
    let mid = |a: Point, b: Point| Point::new((a.x + b.x).div_euclid(2), (a.y + b.y).div_euclid(2));
    let ml = mid(pts[36], pts[0]);
    let mr = mid(pts[16], pts[45]);
    let ql = mid(pts[36], ml);
    let qr = mid(pts[45], mr);
    let eye_top_l = [ql, pts[36], pts[37], pts[38], pts[39]];
    let eye_top_r = [pts[42], pts[43], pts[44], pts[45], qr];
    let push = |brow: Point, eye: Point| {
        let f =
            |b: i32, e: i32| (f64::from(b) + EYEBROWS_EXPAND_MOD * 0.5 * f64::from(b - e)) as i32;
        Point::new(f(brow.x, eye.x), f(brow.y, eye.y))
    };
    let mut out = pts.to_vec();
    for k in 0..5 {
        out[17 + k] = push(pts[17 + k], eye_top_l[k]);
        out[22 + k] = push(pts[22 + k], eye_top_r[k]);
    }
    out
}

/// Intersection over union of two single-channel masks of one size, a pixel being in a mask
/// when it is not 0 (so u8 0/255 and f32 {0, 1} masks both work); 1 when both are empty.
///
/// # Errors
/// OpenCV's error (masks of different sizes among them).
pub fn iou(a: &Mat, b: &Mat) -> opencv::Result<f64> {
    let set = |m: &Mat| -> opencv::Result<Mat> {
        let mut out = Mat::default();
        core::compare(m, &Scalar::all(0.0), &mut out, core::CMP_NE)?;
        Ok(out)
    };
    let (a, b) = (set(a)?, set(b)?);
    let (mut and, mut or) = (Mat::default(), Mat::default());
    core::bitwise_and_def(&a, &b, &mut and)?;
    core::bitwise_or_def(&a, &b, &mut or)?;
    let union = core::count_non_zero(&or)?;
    if union == 0 {
        return Ok(1.0);
    }
    Ok(f64::from(core::count_non_zero(&and)?) / f64::from(union))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::testutil::synthetic_landmarks;

    fn at(mask: &Mat, x: i32, y: i32) -> f32 {
        *mask.at_2d::<f32>(y, x).unwrap()
    }

    #[test]
    fn the_hull_covers_the_face_and_not_the_corners() {
        let lm = synthetic_landmarks(64, 0.0);
        let mask = hull_mask(64, &lm).unwrap();
        assert_eq!((mask.rows(), mask.cols(), mask.typ()), (64, 64, CV_32FC1));
        assert_eq!(at(&mask, 32, 34), 1.0, "nose");
        for (x, y) in [(0, 0), (63, 0), (0, 63), (63, 63)] {
            assert_eq!(at(&mask, x, y), 0.0, "corner {x},{y}");
        }
    }

    #[test]
    fn eyebrows_move_up_away_from_the_eyes() {
        let lm = synthetic_landmarks(64, 0.0);
        let pts = int_points(&lm);
        let moved = expand_eyebrows(&pts);
        for i in 17..27 {
            assert!(moved[i].y < pts[i].y, "eyebrow point {i}: {:?} → {:?}", pts[i], moved[i]);
        }
        assert_eq!(moved[..17], pts[..17]);
        assert_eq!(moved[27..], pts[27..]);
    }

    #[test]
    fn eyes_mouth_peaks_on_the_eyes_and_mouth_only() {
        let lm = synthetic_landmarks(128, 0.0);
        let full = hull_mask(128, &lm).unwrap();
        let em = normalise_max(&eyes_mouth_mask(&full, &lm).unwrap()).unwrap();
        let mean = |r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            let (x, y) = lm[r].iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
            ((x / n) as i32, (y / n) as i32)
        };
        for (name, r) in [("eye", 36..42), ("eye", 42..48), ("mouth", 60..68)] {
            let (x, y) = mean(r);
            assert!(at(&em, x, y) > 0.5, "{name} at {x},{y}: {}", at(&em, x, y));
        }
        let (nx, ny) = (lm[30][0] as i32, lm[30][1] as i32);
        assert_eq!(at(&em, nx, ny), 0.0, "nose tip");
        assert_eq!(at(&em, 0, 0), 0.0, "corner");
    }

    #[test]
    fn iou_is_exact_on_squares() {
        let zeros = |side| Mat::new_rows_cols_with_default(side, side, CV_32FC1, Scalar::all(0.0));
        let mut a = zeros(10).unwrap();
        let mut b = zeros(10).unwrap();
        let _ = imgproc::rectangle(&mut a, core::Rect::new(0, 0, 4, 5), Scalar::all(1.0), -1, 8, 0);
        let _ = imgproc::rectangle(&mut b, core::Rect::new(2, 0, 4, 5), Scalar::all(1.0), -1, 8, 0);
        // 2×5 shared of 6×5 covered.
        assert!((iou(&a, &b).unwrap() - 10.0 / 30.0).abs() < 1e-12);
        assert_eq!(iou(&zeros(4).unwrap(), &zeros(4).unwrap()).unwrap(), 1.0);
    }
}
