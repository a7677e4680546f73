//! Dense 3×3 linear algebra for the colour transfers: products, inverses and a Jacobi
//! eigen-solver for symmetric matrices (what `numpy.linalg.eigh`/`eig` do for DFL).

/// A row-major 3×3 matrix.
pub(crate) type Mat3 = [[f64; 3]; 3];

/// The 3×3 identity.
pub(crate) const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Jacobi sweeps before giving up; a 3×3 symmetric matrix converges in about five.
const MAX_JACOBI_SWEEPS: usize = 64;

/// Off-diagonal mass (relative to the squared Frobenius norm) treated as zero.
const JACOBI_TOLERANCE: f64 = 1e-30;

/// Returns `a·b`.
pub(crate) fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Returns the product of the matrices, left to right.
pub(crate) fn mul_all(ms: &[Mat3]) -> Mat3 {
    ms.iter().fold(IDENTITY, |acc, m| mul(&acc, m))
}

/// Returns `aᵀ`.
pub(crate) fn transpose(a: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[j][i];
        }
    }
    out
}

/// Returns `a·v`.
pub(crate) fn mul_vec(a: &Mat3, v: [f64; 3]) -> [f64; 3] {
    a.map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2])
}

/// Returns `diag(d)`.
pub(crate) fn diag(d: [f64; 3]) -> Mat3 {
    [[d[0], 0.0, 0.0], [0.0, d[1], 0.0], [0.0, 0.0, d[2]]]
}

/// Returns `(a + aᵀ) / 2`, removing rounding asymmetry before an eigen-decomposition.
pub(crate) fn symmetrize(a: &Mat3) -> Mat3 {
    let t = transpose(a);
    let mut out = *a;
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = 0.5 * (*v + t[i][j]);
        }
    }
    out
}

/// Returns `a⁻¹` by the adjugate, or `None` when `a` is singular.
pub(crate) fn inverse(a: &Mat3) -> Option<Mat3> {
    let cof = |i: usize, j: usize| {
        let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
        let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
        a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]
    };
    let det = a[0][0] * cof(0, 0) + a[0][1] * cof(0, 1) + a[0][2] * cof(0, 2);
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = cof(j, i) / det;
        }
    }
    Some(out)
}

/// Decomposes a symmetric matrix as `a = V·diag(λ)·Vᵀ` by cyclic Jacobi rotations.
///
/// Returns `(λ, V)`; column `k` of the orthogonal `V` is the eigenvector of `λ[k]`. The
/// eigenvalues are not sorted (no caller depends on the order).
pub(crate) fn symmetric_eigen(a: &Mat3) -> ([f64; 3], Mat3) {
    let mut a = symmetrize(a);
    let mut v = IDENTITY;
    let norm2: f64 = a.iter().flatten().map(|x| x * x).sum();
    for _ in 0..MAX_JACOBI_SWEEPS {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        if off <= JACOBI_TOLERANCE * norm2 || off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] != 0.0 {
                let rot = jacobi_rotation(&a, p, q);
                a = mul_all(&[transpose(&rot), a, rot]);
                v = mul(&v, &rot);
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// Returns the rotation `P` for which `(Pᵀ·a·P)[p][q] = 0` (Numerical Recipes §11.1).
fn jacobi_rotation(a: &Mat3, p: usize, q: usize) -> Mat3 {
    let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    let mut rot = IDENTITY;
    rot[p][p] = c;
    rot[q][q] = c;
    rot[p][q] = s;
    rot[q][p] = -s;
    rot
}

/// Returns `V·diag(f(λ))·Vᵀ` for a symmetric `a = V·diag(λ)·Vᵀ`: a matrix function such as
/// the square root or the inverse square root.
pub(crate) fn spectral_map(a: &Mat3, f: impl Fn(f64) -> f64) -> Mat3 {
    let (lambda, v) = symmetric_eigen(a);
    mul_all(&[v, diag(lambda.map(f)), transpose(&v)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(a: &Mat3, b: &Mat3, tol: f64) {
        for i in 0..3 {
            for j in 0..3 {
                assert!((a[i][j] - b[i][j]).abs() <= tol, "{a:?} vs {b:?}");
            }
        }
    }

    const SYM: Mat3 = [[4.0, 1.0, -2.0], [1.0, 2.0, 0.5], [-2.0, 0.5, 3.0]];

    #[test]
    fn eigen_reconstructs_and_is_orthogonal() {
        let (lambda, v) = symmetric_eigen(&SYM);
        assert_close(&mul_all(&[v, diag(lambda), transpose(&v)]), &SYM, 1e-12);
        assert_close(&mul(&transpose(&v), &v), &IDENTITY, 1e-12);
        // The trace is the sum of the eigenvalues.
        assert!((lambda.iter().sum::<f64>() - 9.0).abs() < 1e-12);
    }

    #[test]
    fn eigen_of_diagonal_and_degenerate_matrices() {
        let (lambda, v) = symmetric_eigen(&diag([3.0, 1.0, 2.0]));
        assert_eq!(lambda, [3.0, 1.0, 2.0]);
        assert_eq!(v, IDENTITY);
        let ones = [[1.0; 3]; 3]; // rank 1: eigenvalues 3, 0, 0
        let (mut lambda, v) = symmetric_eigen(&ones);
        lambda.sort_by(f64::total_cmp);
        assert_close(&[lambda, [0.0; 3], [0.0; 3]], &[[0.0, 0.0, 3.0], [0.0; 3], [0.0; 3]], 1e-12);
        assert_close(&mul(&transpose(&v), &v), &IDENTITY, 1e-12);
        assert_eq!(symmetric_eigen(&[[0.0; 3]; 3]).0, [0.0; 3]);
    }

    #[test]
    fn square_root_squares_back() {
        let root = spectral_map(&SYM, f64::sqrt);
        assert_close(&mul(&root, &root), &SYM, 1e-12);
    }

    #[test]
    fn inverse_inverts_and_rejects_singular() {
        let inv = inverse(&SYM).expect("SYM is invertible");
        assert_close(&mul(&SYM, &inv), &IDENTITY, 1e-12);
        assert!(inverse(&[[1.0; 3]; 3]).is_none());
    }
}
