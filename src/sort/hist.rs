//! Histogram similarity: DFL's `hist` chain and `hist-dissim` scores.
//!
//! Features are histograms stored as `sqrt(count / total)` per channel of 256 bins, so the
//! Bhattacharyya coefficient of two histograms is a dot product and OpenCV's
//! `HISTCMP_BHATTACHARYYA` distance is `sqrt(1 − coefficient)`.

use rayon::prelude::*;

/// Bins per channel.
const BINS: usize = 256;

/// The sum over channels of the Bhattacharyya distances of two features.
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.chunks(BINS)
        .zip(b.chunks(BINS))
        .map(|(x, y)| {
            let coefficient: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            f64::from((1.0 - coefficient).max(0.0)).sqrt()
        })
        .sum()
}

/// DFL's `hist` order: start with item 0, then repeatedly take the unvisited item nearest to
/// the last one taken. Returns the order and each item's distance to its predecessor (0 for
/// the first).
pub fn similarity_chain<F: AsRef<[f32]> + Sync>(features: &[F]) -> Vec<(usize, f64)> {
    let n = features.len();
    if n == 0 {
        return Vec::new();
    }
    let mut left: Vec<usize> = (1..n).collect();
    let mut chain = vec![(0, 0.0)];
    while !left.is_empty() {
        let last = features[chain[chain.len() - 1].0].as_ref();
        let (pos, d) = left
            .par_iter()
            .enumerate()
            .map(|(pos, &j)| (pos, distance(last, features[j].as_ref())))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .expect("invariant: items are left");
        // `remove` keeps the rest in order, so ties go to the earliest item as in DFL.
        chain.push((left.remove(pos), d));
    }
    chain
}

/// DFL's `hist-dissim` score: each item's summed distance to all the others (higher = more
/// unlike the rest of the faceset).
pub fn dissimilarity<F: AsRef<[f32]> + Sync>(features: &[F]) -> Vec<f64> {
    (0..features.len())
        .into_par_iter()
        .map(|i| features.iter().map(|f| distance(features[i].as_ref(), f.as_ref())).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-channel histogram with all its mass in bin `at` (and `spill` of it in bin 255).
    fn spike(at: usize, spill: f32) -> Vec<f32> {
        let mut h = vec![0.0; BINS];
        h[at] = (1.0 - spill).sqrt();
        h[255] = spill.sqrt();
        h
    }

    #[test]
    fn distance_is_opencv_bhattacharyya() {
        assert!(distance(&spike(3, 0.0), &spike(3, 0.0)).abs() < 1e-6);
        assert!((distance(&spike(3, 0.0), &spike(4, 0.0)) - 1.0).abs() < 1e-6);
        // Coefficient sqrt(0.5·0.5) + sqrt(0.5·0.5)·0 … = 0.5·(1) for half overlap.
        let d = distance(&spike(3, 0.5), &spike(4, 0.5));
        assert!((d - 0.5f64.sqrt()).abs() < 1e-6, "{d}");
    }

    #[test]
    fn the_chain_walks_to_the_nearest_neighbour() {
        // 0 and 2 share bin 10, 1 and 3 bin 20; from 2 the nearer of 1 and 3 is 1, which
        // shares more mass with it in bin 255.
        let f = vec![spike(10, 0.1), spike(20, 0.6), spike(10, 0.15), spike(20, 0.5)];
        let order: Vec<usize> = similarity_chain(&f).into_iter().map(|(i, _)| i).collect();
        assert_eq!(order, [0, 2, 1, 3]);
    }

    #[test]
    fn the_odd_one_out_is_the_most_dissimilar() {
        let f = vec![spike(10, 0.1), spike(10, 0.12), spike(200, 0.0), spike(10, 0.11)];
        let d = dissimilarity(&f);
        let top = (0..4).max_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
        assert_eq!(top, 2, "{d:?}");
    }
}
