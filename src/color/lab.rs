//! OpenCV's float BGR ↔ CIE L\*a\*b\* conversion (`COLOR_BGR2Lab` / `COLOR_Lab2BGR` on
//! `CV_32FC3`), written out so that the colour transfers need no OpenCV.
//!
//! Forward, for B, G, R clamped to [0, 1]:
//! 1. sRGB decoding: `c ≤ 0.04045 ? c/12.92 : ((c + 0.055)/1.055)^2.4`.
//! 2. XYZ with the sRGB/D65 matrix, divided by the D65 white (0.950456, 1, 1.088754).
//! 3. `f(t) = t > 0.008856 ? ∛t : 7.787·t + 16/116`;
//!    `L = Y > 0.008856 ? 116·∛Y − 16 : 903.3·Y`, `a = 500·(f(X) − f(Y))`,
//!    `b = 200·(f(Y) − f(Z))`. L is in [0, 100], a and b roughly in [−127, 127].
//!
//! Backward inverts each step; the linear RGB is clamped to [0, 1] before sRGB encoding
//! (`c ≤ 0.0031308 ? 12.92·c : 1.055·c^(1/2.4) − 0.055`), as OpenCV does. OpenCV evaluates
//! the gamma curves through a spline table; we evaluate them exactly (they agree to ~1e-6).
//! Our XYZ → RGB matrix is the exact inverse of the forward one (OpenCV uses its own
//! 6-digit inverse), so a round trip is exact to float rounding.

use super::linalg::{Mat3, inverse, mul_vec};

/// sRGB (linear) → XYZ, D65, with rows in X, Y, Z order and columns in R, G, B order.
/// OpenCV: `sRGB2XYZ_D65` in `modules/imgproc/src/color_lab.cpp`.
const RGB_TO_XYZ: Mat3 = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
];

/// The D65 white point (X, Y, Z). OpenCV: `D65` in `color_lab.cpp`.
const D65_WHITE: [f64; 3] = [0.950456, 1.0, 1.088754];

/// Below this, sRGB decoding is linear.
const SRGB_DECODE_KNEE: f64 = 0.04045;
/// Below this, sRGB encoding is linear.
const SRGB_ENCODE_KNEE: f64 = 0.0031308;
/// Slope of the linear segment of the sRGB curve.
const SRGB_LINEAR_SLOPE: f64 = 12.92;
/// Exponent of the sRGB curve.
const SRGB_GAMMA: f64 = 2.4;
/// Offset of the sRGB power segment.
const SRGB_OFFSET: f64 = 0.055;

/// `(6/29)³`: where the Lab `f` switches from linear to the cube root.
const LAB_EPSILON: f64 = 0.008856;
/// `(29/3)³ / 116`: slope of the linear part of `f`.
const LAB_SLOPE: f64 = 7.787;
/// `16/116`: offset of the linear part of `f`.
const LAB_OFFSET: f64 = 16.0 / 116.0;
/// `(29/3)³`: `L = 903.3·Y` for dark colours.
const LAB_KAPPA: f64 = 903.3;

/// Returns the normalised XYZ matrix for BGR input: rows divided by the white point and
/// columns reordered from R, G, B to B, G, R.
fn bgr_to_xyz_matrix() -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (row, (src, white)) in m.iter_mut().zip(RGB_TO_XYZ.iter().zip(D65_WHITE)) {
        *row = [src[2] / white, src[1] / white, src[0] / white];
    }
    m
}

fn srgb_decode(c: f64) -> f64 {
    let c = c.clamp(0.0, 1.0);
    if c <= SRGB_DECODE_KNEE {
        c / SRGB_LINEAR_SLOPE
    } else {
        ((c + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)).powf(SRGB_GAMMA)
    }
}

fn srgb_encode(c: f64) -> f64 {
    let c = c.clamp(0.0, 1.0);
    if c <= SRGB_ENCODE_KNEE {
        c * SRGB_LINEAR_SLOPE
    } else {
        (1.0 + SRGB_OFFSET) * c.powf(1.0 / SRGB_GAMMA) - SRGB_OFFSET
    }
}

fn lab_f(t: f64) -> f64 {
    if t > LAB_EPSILON { t.cbrt() } else { LAB_SLOPE * t + LAB_OFFSET }
}

fn lab_f_inverse(f: f64) -> f64 {
    if f <= LAB_SLOPE * LAB_EPSILON + LAB_OFFSET { (f - LAB_OFFSET) / LAB_SLOPE } else { f * f * f }
}

/// Converts one BGR pixel (float, nominally [0, 1]) to Lab with the white-normalised
/// BGR → XYZ matrix `m`.
fn pixel_to_lab(m: &Mat3, bgr: [f64; 3]) -> [f64; 3] {
    linear_to_lab(m, bgr.map(srgb_decode))
}

/// Converts one linear-light BGR pixel to Lab (OpenCV's `COLOR_LBGR2Lab`).
fn linear_to_lab(m: &Mat3, linear: [f64; 3]) -> [f64; 3] {
    let [x, y, z] = mul_vec(m, linear.map(|c| c.clamp(0.0, 1.0)));
    let (fx, fy, fz) = (lab_f(x), lab_f(y), lab_f(z));
    let l = if y > LAB_EPSILON { 116.0 * fy - 16.0 } else { LAB_KAPPA * y };
    [l, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Converts one Lab pixel to BGR with `inv`, the inverse of the BGR → XYZ matrix.
fn pixel_to_bgr(inv: &Mat3, [l, a, b]: [f64; 3]) -> [f64; 3] {
    let (y, fy) = if l <= LAB_KAPPA * LAB_EPSILON {
        let y = l / LAB_KAPPA;
        (y, LAB_SLOPE * y + LAB_OFFSET)
    } else {
        let fy = (l + 16.0) / 116.0;
        (fy * fy * fy, fy)
    };
    let xyz = [lab_f_inverse(a / 500.0 + fy), y, lab_f_inverse(fy - b / 200.0)];
    mul_vec(inv, xyz).map(srgb_encode)
}

/// Converts interleaved BGR pixels to interleaved L, a, b.
pub(crate) fn bgr_to_lab(data: &[f32]) -> Vec<f32> {
    let m = bgr_to_xyz_matrix();
    map_pixels(data, |px| pixel_to_lab(&m, px))
}

/// Converts interleaved L, a, b pixels to BGR in [0, 1].
pub(crate) fn lab_to_bgr(data: &[f32]) -> Vec<f32> {
    let inv = inverse(&bgr_to_xyz_matrix()).expect("the sRGB → XYZ matrix is invertible");
    map_pixels(data, |px| pixel_to_bgr(&inv, px))
}

fn map_pixels(data: &[f32], f: impl Fn([f64; 3]) -> [f64; 3]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len());
    for px in data.chunks_exact(3) {
        let y = f([0, 1, 2].map(|c| f64::from(px[c])));
        out.extend(y.map(|v| v as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Mat;
    use opencv::imgproc;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_bgr(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * 3).map(|_| rng.random::<f32>()).collect()
    }

    #[test]
    fn round_trip_is_exact_to_1e_5() {
        let mut data = random_bgr(4096, 1);
        data.extend([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.01, 0.02, 0.005, 1.0, 0.0, 0.0]);
        let back = lab_to_bgr(&bgr_to_lab(&data));
        let worst = data.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "worst round-trip error {worst}");
    }

    #[test]
    fn white_and_black_are_the_lab_extremes() {
        let lab = bgr_to_lab(&[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        assert!((lab[0] - 100.0).abs() < 1e-3 && lab[1].abs() < 1e-3 && lab[2].abs() < 1e-3);
        assert_eq!(lab[3..], [0.0, 0.0, 0.0]);
    }

    fn opencv_convert(data: &[f32], code: i32) -> Vec<f32> {
        let src = crate::img::mat_from_bgr_f32(data, 1, data.len() / 3).expect("a test Mat");
        let mut dst = Mat::default();
        imgproc::cvt_color_def(&src, &mut dst, code).expect("cvtColor on a CV_32FC3 Mat");
        crate::img::bgr_f32_from_mat(&dst).expect("CV_32FC3 out")
    }

    fn test_pixels() -> Vec<f32> {
        let mut data = random_bgr(64, 2);
        data.extend([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.003, 0.01, 0.03, 0.2, 0.9, 0.4]);
        data
    }

    fn assert_close(ours: &[f32], theirs: &[f32], tol: f32, what: &str) {
        let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < tol, "{what}: worst difference from OpenCV {worst}");
    }

    #[test]
    fn matches_opencv_linear_bgr_to_lab_exactly() {
        // COLOR_LBGR2Lab skips the gamma and OpenCV's lookup table: the same formula as ours.
        let linear: Vec<f32> =
            test_pixels().iter().map(|&c| srgb_decode(f64::from(c)) as f32).collect();
        let m = bgr_to_xyz_matrix();
        let ours = map_pixels(&linear, |px| linear_to_lab(&m, px));
        assert_close(&ours, &opencv_convert(&linear, imgproc::COLOR_LBGR2Lab), 2e-4, "LBGR2Lab");
    }

    #[test]
    fn matches_opencv_cvt_color_both_ways() {
        let data = test_pixels();
        let ours = bgr_to_lab(&data);
        // For sRGB input OpenCV 4 interpolates a 33³ fixed-point table (LAB_LUT_DIM), off the
        // exact formula by up to ~0.4 in a and b; DFL's Lab has that error too.
        assert_close(&ours, &opencv_convert(&data, imgproc::COLOR_BGR2Lab), 0.5, "BGR2Lab");
        let back = opencv_convert(&ours, imgproc::COLOR_Lab2BGR);
        assert_close(&lab_to_bgr(&ours), &back, 1e-4, "Lab2BGR");
    }
}
