//! Batches: the samples of one iteration stacked into tensors, made on the current rayon pool.

use rayon::prelude::*;
use tch::Tensor;

use super::order::{Order, sample_rng};
use super::{FaceCache, Sample, SampleConfig, SampleError, SampleSet, make_sample};

/// One batch of samples as CPU tensors.
///
/// # Shapes
/// `warped`, `target`: `[N, 3, R, R]` f32 in [0, 1], BGR. `mask`, `eyes_mouth`:
/// `[N, 1, R, R]` f32 in [0, 1]. All on the CPU (pinned when the sampler pins).
#[derive(Debug)]
pub struct Batch {
    /// The iteration the batch belongs to.
    pub iteration: u64,
    /// The faces the samples show (indices into the faceset).
    pub face_indices: Vec<usize>,
    /// Network inputs.
    pub warped: Tensor,
    /// Reconstruction targets.
    pub target: Tensor,
    /// Full-face masks.
    pub mask: Tensor,
    /// Eyes-and-mouth masks.
    pub eyes_mouth: Tensor,
}

impl Batch {
    /// Returns the batch with its tensors copied into page-locked (pinned) host memory, so
    /// `to_device(cuda, non_blocking)` copies asynchronously. Only useful with CUDA.
    ///
    /// # Errors
    /// libtorch's error, e.g. when no CUDA device is present.
    pub fn pinned(self, device: tch::Device) -> Result<Batch, SampleError> {
        Ok(Batch {
            warped: self.warped.f_pin_memory(device)?,
            target: self.target.f_pin_memory(device)?,
            mask: self.mask.f_pin_memory(device)?,
            eyes_mouth: self.eyes_mouth.f_pin_memory(device)?,
            ..self
        })
    }
}

/// Makes batch `iteration` of `batch_size` samples on the current rayon pool. Sample `i`
/// uses an RNG keyed by `(cfg.seed, iteration, i)` (`i` counted over all ranks, see
/// [`super::Shard`]), so the batch does not depend on the number of threads; the shuffled order counts `iteration · batch_size` samples, so keep the
/// batch size when resuming.
///
/// # Errors
/// The first sample's error, in sample order; `EmptyBatch` for a size or resolution of 0.
pub fn make_batch(
    faceset: &SampleSet,
    cache: &FaceCache,
    cfg: &SampleConfig,
    iteration: u64,
    batch_size: usize,
) -> Result<Batch, SampleError> {
    if batch_size == 0 || cfg.resolution_px == 0 {
        let resolution_px = cfg.resolution_px;
        return Err(SampleError::EmptyBatch { batch_size, resolution_px });
    }
    let (positions, total) = cfg.shard.positions(batch_size as u64);
    let first = positions.start;
    let mut rngs: Vec<_> = positions.map(|i| sample_rng(cfg.seed, iteration, i)).collect();
    let faces = Order::new(faceset, cfg.uniform_yaw)
        .faces_for_batch(cfg.seed, iteration, first, total, &mut rngs);
    let samples = rngs
        .into_par_iter()
        .zip(faces.par_iter())
        .map(|(mut rng, &face)| make_sample(faceset, cache, face, cfg, &mut rng))
        .collect::<Result<Vec<Sample>, SampleError>>()?;
    Ok(stack(iteration, faces, &samples, cfg.resolution_px))
}

/// Stacks samples into the batch's tensors.
fn stack(
    iteration: u64,
    face_indices: Vec<usize>,
    samples: &[Sample],
    resolution_px: u32,
) -> Batch {
    let (n, r) = (samples.len() as i64, i64::from(resolution_px));
    let tensor = |get: fn(&Sample) -> &Vec<f32>, c: i64| {
        let flat: Vec<f32> = samples.iter().flat_map(|s| get(s).iter().copied()).collect();
        Tensor::from_slice(&flat).view([n, c, r, r]) // [N, C, R, R]
    };
    Batch {
        iteration,
        face_indices,
        warped: tensor(|s| &s.warped, 3),
        target: tensor(|s| &s.target, 3),
        mask: tensor(|s| &s.mask, 1),
        eyes_mouth: tensor(|s| &s.eyes_mouth, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::align::FaceType;
    use crate::progress::NoProgress;
    use crate::train::sampler::testutil::{small_faceset, write_faceset};

    fn batch_in_pool(
        set: &SampleSet,
        cache: &FaceCache,
        cfg: &SampleConfig,
        threads: usize,
    ) -> Batch {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| make_batch(set, cache, cfg, 3, 4).unwrap())
    }

    #[test]
    fn a_batch_depends_on_seed_and_iteration_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let one = batch_in_pool(&set, &cache, &cfg, 1);
        let two = batch_in_pool(&set, &cache, &cfg, 2);
        assert_eq!(one.warped.size(), [4, 3, 32, 32]);
        assert_eq!(one.eyes_mouth.size(), [4, 1, 32, 32]);
        assert_eq!(one.face_indices, two.face_indices);
        for (a, b) in [(&one.warped, &two.warped), (&one.target, &two.target)] {
            assert!(a.equal(b), "thread count changed the batch");
        }
        assert!(one.mask.equal(&two.mask) && one.eyes_mouth.equal(&two.eyes_mouth));
        let next = make_batch(&set, &cache, &cfg, 4, 4).unwrap();
        assert!(!next.target.equal(&one.target), "iterations 3 and 4 are the same");
        let other_seed = SampleConfig { seed: 1, ..cfg };
        let other = make_batch(&set, &cache, &other_seed, 3, 4).unwrap();
        assert!(!other.target.equal(&one.target), "seeds 42 and 1 are the same");
    }

    #[test]
    fn the_shards_of_two_ranks_are_the_halves_of_one_double_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let shard = |rank| SampleConfig { shard: super::super::Shard { rank, ranks: 2 }, ..cfg };
        for iteration in [0, 5] {
            let whole = make_batch(&set, &cache, &cfg, iteration, 4).unwrap();
            let halves = [0, 1].map(|r| make_batch(&set, &cache, &shard(r), iteration, 2).unwrap());
            let faces: Vec<usize> = halves.iter().flat_map(|h| h.face_indices.clone()).collect();
            assert_eq!(faces, whole.face_indices, "iteration {iteration}");
            let joined = Tensor::cat(&[&halves[0].warped, &halves[1].warped], 0);
            assert!(joined.equal(&whole.warped), "iteration {iteration}: warps differ");
        }
    }

    #[test]
    fn a_face_narrower_than_the_model_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let head = SampleConfig { face_type: FaceType::Head, ..cfg };
        let err = make_batch(&set, &cache, &head, 0, 2).unwrap_err();
        assert!(matches!(err, SampleError::FaceTypeTooNarrow { .. }), "{err}");
        assert!(err.to_string().contains("--face-type head"), "{err}");
        let err = make_batch(&set, &cache, &cfg, 0, 0).unwrap_err();
        assert!(matches!(err, SampleError::EmptyBatch { .. }), "{err}");
    }

    /// With CUDA the batch lands in pinned host memory; without it, asking is an error, not a
    /// crash. Both machines check something.
    #[test]
    fn pinning_pins_with_cuda_and_is_an_error_without() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let batch = make_batch(&set, &cache, &cfg, 0, 1).unwrap();
        let plain = batch.target.copy();
        let cuda = tch::Device::Cuda(0);
        match batch.pinned(cuda) {
            Ok(pinned) => {
                assert!(tch::Cuda::is_available(), "pinning succeeded without CUDA");
                for t in [&pinned.warped, &pinned.target, &pinned.mask, &pinned.eyes_mouth] {
                    assert!(t.is_pinned(cuda), "a batch tensor is not pinned");
                }
                assert!(pinned.target.equal(&plain), "pinning changed the values");
            }
            Err(err) => {
                assert!(!tch::Cuda::is_available(), "pinning failed with CUDA: {err}");
                assert!(matches!(err, SampleError::Tensor(_)), "{err}");
            }
        }
    }

    #[test]
    fn uniform_yaw_batches_reach_every_bin() {
        let tmp = tempfile::tempdir().unwrap();
        write_faceset(tmp.path(), 6, 64, |i| if i < 4 { 0.0 } else { [-0.8, 0.8][i - 4] });
        let (set, _) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
        let cfg = SampleConfig { resolution_px: 16, uniform_yaw: true, ..SampleConfig::default() };
        let cache = FaceCache::default();
        let picks: Vec<usize> = (0..10)
            .flat_map(|t| make_batch(&set, &cache, &cfg, t, 3).unwrap().face_indices)
            .collect();
        let profiles = picks.iter().filter(|&&f| f >= 4).count();
        // Two of three bins are the profiles: about 20 of 30 picks, against 10 by face count.
        assert!(profiles >= 14, "{profiles} profile picks of 30: {picks:?}");
    }
}
