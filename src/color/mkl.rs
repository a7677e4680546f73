//! mkl: Monge–Kantorovich linear colour transfer (`docs/dfl-parity.md`, "Colour transfer").
//!
//! DFL: `color_transfer_mkl` in `core/imagelib/color_transfer.py`. With Σ_x = U_a·D_a²·U_aᵀ
//! and `C = D_a·U_aᵀ·Σ_ref·U_a·D_a = U_c·D_c²·U_cᵀ`, the map is
//! `T = U_a·D_a⁻¹·U_c·D_c·U_cᵀ·D_a⁻¹·U_aᵀ` and `out = (x − μ_x)·T + μ_ref`; eigenvalues are
//! clipped at machine ε. The caller clips to [0, 1].

use super::linalg::{Mat3, diag, mul_all, spectral_map, symmetric_eigen, symmetrize, transpose};
use super::stats::{affine, covariance, mean};

/// Floor of the eigenvalues. DFL: `np.finfo(float).eps` in `color_transfer_mkl`.
const EIGEN_FLOOR: f64 = f64::EPSILON;

/// Recolours `src` toward `reference` (interleaved BGR pixels).
///
/// DFL uses `np.cov` (divided by N − 1) for both images; T is unchanged when both covariances
/// are scaled alike, so we divide by N, which also keeps a 1×1 image finite.
pub(crate) fn transfer(src: &[f32], reference: &[f32]) -> Vec<f32> {
    let mu_a = mean(src);
    let mu_b = mean(reference);
    let t = mkl_matrix(&covariance(src, mu_a), &covariance(reference, mu_b));
    // Row vectors times T: out = Tᵀ·(x − μ_a) + μ_b.
    affine(src, &transpose(&t), mu_a, mu_b)
}

/// Returns the symmetric MKL map T taking covariance `a` to covariance `b`.
fn mkl_matrix(a: &Mat3, b: &Mat3) -> Mat3 {
    let (da2, ua) = symmetric_eigen(a);
    let da = diag(da2.map(|l| l.max(EIGEN_FLOOR).sqrt()));
    let da_inv = diag(da2.map(|l| 1.0 / l.max(EIGEN_FLOOR).sqrt()));
    let c = symmetrize(&mul_all(&[da, transpose(&ua), *b, ua, da]));
    // U_c·D_c·U_cᵀ is the square root of C with its eigenvalues floored.
    let c_root = spectral_map(&c, |l| l.max(EIGEN_FLOOR).sqrt());
    mul_all(&[ua, da_inv, c_root, da_inv, transpose(&ua)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::test_images::assert_matches_reference_stats;

    #[test]
    fn mean_and_covariance_match_the_reference() {
        assert_matches_reference_stats(transfer, 6, 1e-6);
    }

    #[test]
    fn the_map_is_symmetric_and_identity_for_equal_covariances() {
        let a = [[0.04, 0.01, 0.0], [0.01, 0.02, 0.005], [0.0, 0.005, 0.03]];
        let t = mkl_matrix(&a, &a);
        for i in 0..3 {
            for j in 0..3 {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((t[i][j] - expected).abs() < 1e-9, "{t:?}");
                assert!((t[i][j] - t[j][i]).abs() < 1e-12);
            }
        }
    }
}
