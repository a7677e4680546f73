//! lct: linear colour transfer, PCA mode (anchors doc §3.9).
//!
//! DFL: `linear_color_transfer(mode='pca')` in `core/imagelib/color_transfer.py`. With the
//! per-image mean μ and covariance Σ + ε·I (BGR, divided by N), and the symmetric square
//! roots `Q = V·diag(√λ)·Vᵀ`: `out = Q_ref·Q_x⁻¹·(x − μ_x) + μ_ref`. The caller clips.

use super::linalg::{Mat3, mul, spectral_map};
use super::stats::{affine, covariance, mean};

/// Added to the covariance diagonal. DFL: `eps=1e-5` in `linear_color_transfer`.
pub(crate) const COVARIANCE_EPS: f64 = 1e-5;

/// Recolours `src` toward `reference` (interleaved BGR pixels).
pub(crate) fn transfer(src: &[f32], reference: &[f32]) -> Vec<f32> {
    let mu_s = mean(src);
    let mu_r = mean(reference);
    let cov_s = regularised(covariance(src, mu_s));
    let cov_r = regularised(covariance(reference, mu_r));
    // Q_x⁻¹ = V·diag(1/√λ)·Vᵀ; the ε·I keeps λ ≥ ε, the max guards rounding.
    let q_s_inv = spectral_map(&cov_s, |l| 1.0 / l.max(COVARIANCE_EPS).sqrt());
    let q_r = spectral_map(&cov_r, |l| l.max(0.0).sqrt());
    affine(src, &mul(&q_r, &q_s_inv), mu_s, mu_r)
}

fn regularised(mut cov: Mat3) -> Mat3 {
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] += COVARIANCE_EPS;
    }
    cov
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::test_images::correlated;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn mean_and_covariance_match_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let src =
            correlated(3000, 0.5, [[0.2, 0.05, 0.0], [0.0, 0.1, 0.0], [0.05, 0.0, 0.15]], &mut rng);
        let reference = correlated(
            2000,
            0.4,
            [[0.05, 0.0, 0.02], [0.03, 0.08, 0.0], [0.0, 0.02, 0.06]],
            &mut rng,
        );
        let out = transfer(&src, &reference);
        let (mu_o, mu_r) = (mean(&out), mean(&reference));
        let (cov_o, cov_r) = (covariance(&out, mu_o), covariance(&reference, mu_r));
        for i in 0..3 {
            assert!((mu_o[i] - mu_r[i]).abs() < 1e-6);
            for j in 0..3 {
                // Σ_out = Σ_ref + O(ε): the regularisation is the only difference.
                assert!((cov_o[i][j] - cov_r[i][j]).abs() < 2.0 * COVARIANCE_EPS, "{cov_o:?}");
            }
        }
    }
}
