//! sot: sliced optimal transport colour transfer (`docs/dfl-parity.md`, "Colour transfer").
//!
//! DFL: `color_transfer_sot` in `core/imagelib/color_transfer.py` (after Coeurjolly's
//! OTColorTransfer). Ten steps; in each, for a batch of random unit directions, project the
//! current image and the reference, sort both, and move each pixel along the direction by
//! (sorted reference − sorted current) at its rank; the moves are averaged over the batch.
//! Then the total change is bilateral-filtered (σ_space 16, σ_color 5) and added to the
//! original. The caller clips.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::Image;
use super::bilateral;

/// Solver steps. DFL: `steps=10`.
const STEPS: usize = 10;
/// Directions per step at training time. DFL: `batch_size=5`.
pub(crate) const TRAIN_DIRECTIONS: usize = 5;
/// Directions per step at merge time (sot-m). DFL: `batch_size=30` in `merger/MergeMasked.py`.
pub(crate) const MERGE_DIRECTIONS: usize = 30;
/// Spatial σ of the regularising bilateral filter. DFL: `reg_sigmaXY=16.0`.
const SIGMA_SPACE: f64 = 16.0;
/// Colour σ of the regularising bilateral filter. DFL: `reg_sigmaV=5.0`.
const SIGMA_COLOR: f64 = 5.0;

/// Recolours `src` toward `reference` (interleaved BGR pixels, any value range) with
/// `directions` random directions per step drawn from `rng`.
///
/// DFL requires equal pixel counts; with different counts we pair each rank of `src` with
/// the reference value at the same quantile (the same thing when the counts agree).
pub(crate) fn transfer(
    src: &Image,
    reference: &[f32],
    directions: usize,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let mut cur = src.data.clone();
    let directions = directions.max(1);
    for _ in 0..STEPS {
        let dirs: Vec<[f32; 3]> = (0..directions).map(|_| random_direction(rng)).collect();
        // Each direction's moves are independent; summing them in direction order keeps the
        // result independent of the thread count.
        let moves: Vec<Vec<f32>> =
            dirs.par_iter().map(|d| slice_moves(&cur, reference, d)).collect();
        let mut advect = vec![0.0f32; cur.len()];
        for (dir, mv) in dirs.iter().zip(&moves) {
            for (a, &m) in advect.chunks_exact_mut(3).zip(mv) {
                for c in 0..3 {
                    a[c] += m * dir[c];
                }
            }
        }
        for (v, a) in cur.iter_mut().zip(&advect) {
            *v += a / directions as f32;
        }
    }
    regularise(src, &cur)
}

/// Returns `src + bilateral(moved − src)`.
fn regularise(src: &Image, moved: &[f32]) -> Vec<f32> {
    let change: Vec<f32> = moved.iter().zip(&src.data).map(|(m, s)| m - s).collect();
    let smooth = bilateral::filter(&change, src.width, src.height, SIGMA_SPACE, SIGMA_COLOR);
    src.data.iter().zip(&smooth).map(|(s, d)| s + d).collect()
}

/// Returns a unit vector in a uniformly random direction (a normalised Gaussian draw).
fn random_direction(rng: &mut impl Rng) -> [f32; 3] {
    loop {
        let v: [f64; 3] = [0; 3].map(|_| rng.sample(StandardNormal));
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-9 {
            return v.map(|x| (x / norm) as f32);
        }
    }
}

/// Returns, per pixel of `cur`, how far to move it along `dir`: the reference projection at
/// its rank minus its own projection.
fn slice_moves(cur: &[f32], reference: &[f32], dir: &[f32; 3]) -> Vec<f32> {
    let proj_cur = project(cur, dir);
    let mut proj_ref = project(reference, dir);
    proj_ref.sort_unstable_by(f32::total_cmp);
    let (n, m) = (proj_cur.len(), proj_ref.len());
    let mut moves = vec![0.0f32; n];
    for (rank, i) in argsort(&proj_cur).into_iter().enumerate() {
        let i = i as usize;
        moves[i] = proj_ref[rank * m / n] - proj_cur[i];
    }
    moves
}

fn project(data: &[f32], dir: &[f32; 3]) -> Vec<f32> {
    data.chunks_exact(3).map(|px| px[0] * dir[0] + px[1] * dir[1] + px[2] * dir[2]).collect()
}

/// Returns the indices that sort `values` ascending (ties by index).
fn argsort(values: &[f32]) -> Vec<u32> {
    // One u64 per value: the float's bits made order-preserving as an unsigned integer, then
    // the index; sorting these plain integers is much faster than sorting by a closure.
    let mut keys: Vec<u64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let bits = v.to_bits();
            let ordered = if bits >> 31 == 1 { !bits } else { bits | 1 << 31 };
            (u64::from(ordered) << 32) | i as u64
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| k as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn argsort_orders_negative_zero_and_positive_values() {
        let values = [0.5, -1.0, 0.0, -0.25, 3.0, -0.0];
        let order = argsort(&values);
        let sorted: Vec<f32> = order.iter().map(|&i| values[i as usize]).collect();
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "{sorted:?}");
        assert_eq!(order[0], 1);
    }

    #[test]
    fn directions_are_unit_vectors() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..10 {
            let d = random_direction(&mut rng);
            assert!((d.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn one_slice_moves_onto_the_reference_values() {
        // Along any direction, pixels shifted by a constant move back by that constant.
        let cur = [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.9, 0.1, 0.0];
        let reference: Vec<f32> = cur.iter().map(|v| v + 0.5).collect();
        let dir = [1.0, 0.0, 0.0];
        let moves = slice_moves(&cur, &reference, &dir);
        assert!(moves.iter().all(|m| (m - 0.5).abs() < 1e-6), "{moves:?}");
        // A reference with a different pixel count is matched quantile by quantile.
        let moves = slice_moves(&cur, &[1.0, 1.0, 1.0], &dir);
        assert!(moves.iter().zip([0.9, 0.6, 0.1]).all(|(m, e)| (m - e).abs() < 1e-6));
    }
}
