//! Which face each sample of each iteration shows, and the seeded RNG it draws its
//! augmentation from: everything derives from `(seed, iteration, index)`, so a
//! batch is the same whatever the thread count or the iteration a run resumed at.
//!
//! DFL: `samplelib/SampleGeneratorFace.py`, `core/mplib` (`IndexHost`, `Index2DHost`).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::samples::SampleSet;

/// Number of yaw bins. DFL: `SampleGeneratorFace` `grads = 128`.
pub const YAW_BINS: usize = 128;
/// The bins' edges span ±this. DFL: `np.linspace(-1.2, 1.2, grads)`, "maximum yaw for 2DFAN".
pub const YAW_RANGE: f64 = 1.2;

/// Tags that keep the per-sample and per-epoch random streams apart.
const SAMPLE_STREAM: u64 = 0x5341_4d50_4c45; // "SAMPLE"
const EPOCH_STREAM: u64 = 0x0045_504f_4348; // "EPOCH"

/// Returns the RNG of sample `index` of `iteration`: ChaCha8 keyed by the three numbers.
pub fn sample_rng(seed: u64, iteration: u64, index: u64) -> ChaCha8Rng {
    keyed_rng([seed, iteration, index, SAMPLE_STREAM])
}

/// Returns the RNG that shuffles epoch `epoch`.
fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    keyed_rng([seed, epoch, 0, EPOCH_STREAM])
}

fn keyed_rng(words: [u64; 4]) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, w) in key.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// How faces are picked for samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Every face once per epoch, in an order shuffled from `(seed, epoch)`. DFL: `IndexHost`.
    Shuffled {
        /// The number of faces.
        len: usize,
    },
    /// A non-empty yaw bin uniformly, then a face in it uniformly. DFL: `Index2DHost`.
    UniformYaw {
        /// Face indices per non-empty bin, bins in yaw order.
        bins: Vec<Vec<usize>>,
    },
}

impl Order {
    /// Returns the order for `faceset`: by yaw bins when `uniform_yaw`, else shuffled epochs.
    pub fn new(faceset: &SampleSet, uniform_yaw: bool) -> Self {
        if !uniform_yaw {
            return Order::Shuffled { len: faceset.len() };
        }
        let mut bins = vec![Vec::new(); YAW_BINS];
        for (i, face) in faceset.faces().iter().enumerate() {
            bins[yaw_bin(f64::from(face.yaw))].push(i);
        }
        bins.retain(|b| !b.is_empty());
        Order::UniformYaw { bins }
    }

    /// Returns the face of each sample of `iteration`, drawing from the samples' own RNGs
    /// where the order is random per sample.
    ///
    /// Shuffled order counts positions `iteration · total + first + index` through the epochs
    /// (`total` samples per iteration, of which these are `first..first + rngs.len()`), so
    /// resuming needs the same total.
    pub fn faces_for_batch(
        &self,
        seed: u64,
        iteration: u64,
        first: u64,
        total: u64,
        rngs: &mut [ChaCha8Rng],
    ) -> Vec<usize> {
        match self {
            Order::Shuffled { len } => {
                let batch = rngs.len() as u64;
                let first = iteration * total + first;
                let mut epoch: Option<(u64, Vec<usize>)> = None;
                (first..first + batch)
                    .map(|pos| {
                        let (e, at) = (pos / *len as u64, (pos % *len as u64) as usize);
                        if epoch.as_ref().is_none_or(|(have, _)| *have != e) {
                            epoch = Some((e, epoch_permutation(seed, e, *len)));
                        }
                        epoch.as_ref().map_or(0, |(_, perm)| perm[at])
                    })
                    .collect()
            }
            Order::UniformYaw { bins } => rngs
                .iter_mut()
                .map(|rng| {
                    let bin = &bins[rng.random_range(0..bins.len())];
                    bin[rng.random_range(0..bin.len())]
                })
                .collect(),
        }
    }
}

/// Returns `0..len` shuffled by epoch `epoch`'s RNG.
fn epoch_permutation(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..len).collect();
    perm.shuffle(&mut epoch_rng(seed, epoch));
    perm
}

/// Returns DFL's bin for `yaw`: edges `linspace(-1.2, 1.2, 128)`, bin `g` holds
/// `[edge g, edge g+1)`; below the second edge is bin 0, from the last edge on is bin 127.
pub fn yaw_bin(yaw: f64) -> usize {
    let g = ((yaw + YAW_RANGE) * (YAW_BINS - 1) as f64 / (2.0 * YAW_RANGE)).floor();
    if g.is_nan() { 0 } else { g.clamp(0.0, (YAW_BINS - 1) as f64) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::align::FaceType;
    use crate::train::sampler::samples::FaceRecord;

    fn faceset(yaws: &[f32]) -> SampleSet {
        let faces = yaws
            .iter()
            .map(|&yaw| FaceRecord {
                path: "x.jpg".into(),
                landmarks: crate::face::landmarks::Landmarks68::new([[0.0; 2]; 68]),
                face_type: FaceType::WholeFace,
                size_px: 64,
                yaw,
                xseg_mask: None,
            })
            .collect();
        SampleSet::from_records("/set", faces)
    }

    fn rngs(seed: u64, iteration: u64, n: u64) -> Vec<ChaCha8Rng> {
        (0..n).map(|i| sample_rng(seed, iteration, i)).collect()
    }

    #[test]
    fn yaw_bins_follow_dfl_edges() {
        assert_eq!(yaw_bin(-5.0), 0);
        assert_eq!(yaw_bin(-1.2), 0);
        assert_eq!(yaw_bin(0.0), 63);
        assert_eq!(yaw_bin(1.2), 127);
        assert_eq!(yaw_bin(9.0), 127);
        assert_eq!(yaw_bin(f64::NAN), 0);
    }

    #[test]
    fn every_epoch_shows_every_face_once() {
        let set = faceset(&[0.0; 10]);
        let order = Order::new(&set, false);
        // Batches of 4 over 10 faces: iterations 0..5 cover exactly two epochs.
        let mut seen: Vec<usize> =
            (0..5).flat_map(|t| order.faces_for_batch(7, t, 0, 4, &mut rngs(7, t, 4))).collect();
        let (first, second) = seen.split_at_mut(10);
        assert_ne!(first, second, "each epoch has its own shuffle");
        first.sort();
        second.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_eq!(second, first);
    }

    #[test]
    fn uniform_yaw_picks_from_every_non_empty_bin() {
        // 20 frontal faces and one face in each of two profile bins.
        let mut yaws = vec![0.0; 20];
        yaws.extend([-0.9, 0.9]);
        let set = faceset(&yaws);
        let order = Order::new(&set, true);
        let Order::UniformYaw { bins } = &order else { panic!("{order:?}") };
        assert_eq!(bins.iter().map(Vec::len).collect::<Vec<_>>(), [1, 20, 1]);
        let picks: Vec<usize> =
            (0..100).flat_map(|t| order.faces_for_batch(1, t, 0, 3, &mut rngs(1, t, 3))).collect();
        let count = |face: usize| picks.iter().filter(|&&f| f == face).count();
        // Each bin gets about a third of 300 picks, although the profiles are 2 of 22 faces.
        for profile in [20, 21] {
            assert!((70..130).contains(&count(profile)), "face {profile}: {}", count(profile));
        }
    }

    #[test]
    fn sample_rngs_differ_by_every_key() {
        let draw = |mut r: ChaCha8Rng| r.random::<u64>();
        let base = draw(sample_rng(1, 2, 3));
        assert_eq!(base, draw(sample_rng(1, 2, 3)));
        for other in [sample_rng(0, 2, 3), sample_rng(1, 3, 3), sample_rng(1, 2, 4)] {
            assert_ne!(base, draw(other));
        }
    }
}
