//! Per-image colour statistics (mean, standard deviation, covariance) over interleaved
//! 3-channel pixels, and the affine recolouring `M·(x − μ_x) + μ_ref` that lct and mkl share.

use super::linalg::{Mat3, mul_vec};

/// Returns the per-channel mean of interleaved 3-channel pixels (0 for no pixels).
pub(crate) fn mean(data: &[f32]) -> [f64; 3] {
    let n = (data.len() / 3).max(1) as f64;
    let mut sum = [0.0f64; 3];
    for px in data.chunks_exact(3) {
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += f64::from(v);
        }
    }
    sum.map(|s| s / n)
}

/// Returns the per-channel population standard deviation (numpy's `std`, ddof 0).
pub(crate) fn std_dev(data: &[f32], mean: [f64; 3]) -> [f64; 3] {
    let cov = covariance(data, mean);
    [cov[0][0].sqrt(), cov[1][1].sqrt(), cov[2][2].sqrt()]
}

/// Returns the 3×3 population covariance (divided by N) about `mean`.
pub(crate) fn covariance(data: &[f32], mean: [f64; 3]) -> Mat3 {
    let n = (data.len() / 3).max(1) as f64;
    let mut cov = [[0.0f64; 3]; 3];
    for px in data.chunks_exact(3) {
        let d = [0, 1, 2].map(|c| f64::from(px[c]) - mean[c]);
        for (i, row) in cov.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v += d[i] * d[j];
            }
        }
    }
    cov.map(|row| row.map(|v| v / n))
}

/// Returns `m·(x − from) + to` for every pixel `x` (no clipping).
pub(crate) fn affine(data: &[f32], m: &Mat3, from: [f64; 3], to: [f64; 3]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len());
    for px in data.chunks_exact(3) {
        let d = [0, 1, 2].map(|c| f64::from(px[c]) - from[c]);
        let y = mul_vec(m, d);
        out.extend((0..3).map(|c| (y[c] + to[c]) as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::linalg::IDENTITY;

    const PIXELS: [f32; 9] = [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.5, 0.5, 0.5];

    #[test]
    fn mean_std_and_covariance_of_three_pixels() {
        let mu = mean(&PIXELS);
        assert_eq!(mu, [0.5, 0.5, 0.5]);
        let sd = std_dev(&PIXELS, mu);
        assert!((sd[0] - (1.0f64 / 6.0).sqrt()).abs() < 1e-12 && sd[1] == 0.0);
        let cov = covariance(&PIXELS, mu);
        assert!((cov[0][2] + 1.0 / 6.0).abs() < 1e-12, "B and R are anti-correlated");
    }

    #[test]
    fn empty_input_has_zero_statistics() {
        assert_eq!(mean(&[]), [0.0; 3]);
        assert_eq!(covariance(&[], [0.0; 3]), [[0.0; 3]; 3]);
    }

    #[test]
    fn affine_with_identity_shifts_the_mean() {
        let out = affine(&PIXELS, &IDENTITY, [0.5; 3], [0.25; 3]);
        assert_eq!(out[..3], [-0.25, 0.25, 0.75]);
    }
}
