//! lct: linear colour transfer, PCA mode (`docs/dfl-parity.md`, "Colour transfer").
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
    use crate::color::test_images::assert_matches_reference_stats;

    #[test]
    fn mean_and_covariance_match_the_reference() {
        // Σ_out = Σ_ref + O(ε): the regularisation is the only difference.
        assert_matches_reference_stats(transfer, 5, 2.0 * COVARIANCE_EPS);
    }
}
