//! idt: iterative distribution transfer (Pitié et al.; `docs/dfl-parity.md`, "Colour transfer").
//!
//! DFL: `color_transfer_idt` in `core/imagelib/color_transfer.py`. Twenty times: draw a
//! rotation R uniformly from SO(3), project both images onto its axes, match each projected
//! axis of `src` to the reference's by their 256-bin histograms over the shared [min, max],
//! and move `src` by `relaxation·R⁻¹·(matched − projected)` with relaxation 1/20. The caller
//! clips to [0, 1].
//!
//! One deliberate difference: DFL samples a transfer function at the upper bin edges and
//! interpolates it with `np.interp(…, left=0)`, which sends pixels of the lowest bin to 0 and
//! shifts pixels next to empty bins. We evaluate the two piecewise-linear CDFs exactly per
//! pixel (`F_ref⁻¹(F_x(v))`, taking the lowest preimage on flat stretches, and for `F = 0`
//! the start of the first non-empty bin), so an image matched to itself stays itself. The
//! histograms, range, iterations and relaxation are DFL's.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::linalg::{Mat3, mul_vec, transpose};

/// Rotations drawn. DFL: `n_rot=20`.
const ITERATIONS: usize = 20;
/// Histogram bins per axis. DFL: `bins=256`.
const BINS: usize = 256;
/// Step size toward the matched values. DFL: `relaxation = 1 / n_rot`.
const RELAXATION: f64 = 1.0 / ITERATIONS as f64;

/// Recolours `src` toward `reference` (interleaved BGR pixels), drawing rotations from `rng`.
pub(crate) fn transfer(src: &[f32], reference: &[f32], rng: &mut impl Rng) -> Vec<f32> {
    let mut cur: Vec<[f64; 3]> = pixels(src);
    let target = pixels(reference);
    for _ in 0..ITERATIONS {
        let rot = random_rotation(rng);
        let back = transpose(&rot); // R⁻¹ of a rotation
        // The three axes are independent; collecting keeps their order.
        let moves: Vec<Vec<f64>> =
            rot.par_iter().map(|axis| axis_moves(&cur, &target, axis)).collect();
        for (i, px) in cur.iter_mut().enumerate() {
            let step = mul_vec(&back, [moves[0][i], moves[1][i], moves[2][i]]);
            for c in 0..3 {
                px[c] += RELAXATION * step[c];
            }
        }
    }
    cur.iter().flat_map(|px| px.map(|v| v as f32)).collect()
}

fn pixels(data: &[f32]) -> Vec<[f64; 3]> {
    data.chunks_exact(3).map(|px| [0, 1, 2].map(|c| f64::from(px[c]))).collect()
}

/// Returns a rotation drawn uniformly (Haar measure) from SO(3), from a normalised Gaussian
/// quaternion. DFL: `scipy.stats.special_ortho_group.rvs(3)` (same distribution).
fn random_rotation(rng: &mut impl Rng) -> Mat3 {
    let (w, x, y, z) = loop {
        let q: [f64; 4] = [0; 4].map(|_| rng.sample(StandardNormal));
        let norm = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 1e-9 {
            break (q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm);
        }
    };
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// Returns, per pixel of `cur`, its matched coordinate along `axis` minus its own.
fn axis_moves(cur: &[[f64; 3]], target: &[[f64; 3]], axis: &[f64; 3]) -> Vec<f64> {
    let project = |px: &[[f64; 3]]| -> Vec<f64> {
        px.iter().map(|p| p[0] * axis[0] + p[1] * axis[1] + p[2] * axis[2]).collect()
    };
    let proj_cur = project(cur);
    let matched = match_axis(&proj_cur, &project(target));
    matched.iter().zip(&proj_cur).map(|(m, p)| m - p).collect()
}

/// Returns `xs` mapped through `F_ys⁻¹ ∘ F_xs`, with both CDFs from 256-bin histograms over
/// the shared range, linear within each bin.
fn match_axis(xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let lo = xs.iter().chain(ys).copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().chain(ys).copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        return xs.to_vec(); // both are one and the same value
    }
    let width = (hi - lo) / BINS as f64;
    let (cdf_x, cdf_y) = (cdf(xs, lo, width), cdf(ys, lo, width));
    xs.iter()
        .map(|&v| {
            let t = ((v - lo) / width).clamp(0.0, BINS as f64);
            let k = (t as usize).min(BINS - 1);
            let q = cdf_x[k] + (t - k as f64) * (cdf_x[k + 1] - cdf_x[k]);
            inverse_cdf(&cdf_y, q, lo, width)
        })
        .collect()
}

/// Returns the CDF at the 257 bin edges `lo + k·width` (0 at the first edge, 1 at the last).
fn cdf(values: &[f64], lo: f64, width: f64) -> Vec<f64> {
    let mut counts = vec![0usize; BINS];
    for &v in values {
        counts[(((v - lo) / width).max(0.0) as usize).min(BINS - 1)] += 1;
    }
    let total = values.len().max(1) as f64;
    let mut out = Vec::with_capacity(BINS + 1);
    out.push(0.0);
    let mut acc = 0usize;
    for c in counts {
        acc += c;
        out.push(acc as f64 / total);
    }
    out
}

/// Returns the smallest `v` with `F(v) = q` for the piecewise-linear CDF `F` on the edges
/// (for `q = 0`, where `F` starts to rise).
fn inverse_cdf(cdf: &[f64], q: f64, lo: f64, width: f64) -> f64 {
    if q <= 0.0 {
        // F = 0 up to the first non-empty bin: take its start, not the range's.
        let first = cdf.partition_point(|&c| c <= 0.0).clamp(1, BINS);
        return lo + width * (first - 1) as f64;
    }
    let k = cdf.partition_point(|&c| c < q);
    let k = k.min(BINS); // q above 1 by rounding: the top edge
    let (c0, c1) = (cdf[k - 1], cdf[k]);
    let frac = if c1 > c0 { ((q - c0) / (c1 - c0)).clamp(0.0, 1.0) } else { 1.0 };
    lo + width * ((k - 1) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::linalg::{IDENTITY, mul};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rotations_are_orthonormal_with_determinant_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let r = random_rotation(&mut rng);
            let rtr = mul(&transpose(&r), &r);
            for i in 0..3 {
                for j in 0..3 {
                    assert!((rtr[i][j] - IDENTITY[i][j]).abs() < 1e-12);
                }
            }
            let cross = [
                r[1][1] * r[2][2] - r[1][2] * r[2][1],
                r[1][2] * r[2][0] - r[1][0] * r[2][2],
                r[1][0] * r[2][1] - r[1][1] * r[2][0],
            ];
            let det: f64 = (0..3).map(|c| r[0][c] * cross[c]).sum();
            assert!((det - 1.0).abs() < 1e-12, "a rotation, not a reflection");
        }
    }

    #[test]
    fn axis_matching_maps_onto_the_reference_quantiles() {
        // xs uniform on [0, 1), ys uniform on [2, 4): the CDF match is the line 2 + 2·x.
        let xs: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let ys: Vec<f64> = (0..1000).map(|i| 2.0 + 2.0 * i as f64 / 1000.0).collect();
        let matched = match_axis(&xs, &ys);
        for (x, m) in xs.iter().zip(&matched) {
            assert!((m - (2.0 + 2.0 * x)).abs() < 0.02, "{x} -> {m}");
        }
        let same = match_axis(&xs, &xs);
        assert!(xs.iter().zip(&same).all(|(x, m)| (x - m).abs() < 1e-12), "self-match is identity");
    }

    #[test]
    fn constant_axes_are_left_alone() {
        assert_eq!(match_axis(&[0.5; 4], &[0.5; 9]), vec![0.5; 4]);
    }
}
