//! [`Sampler`]: makes the batches of upcoming iterations on its own threads while the trainer
//! steps, and hands them over in iteration order through a bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Batch, FaceCache, SampleConfig, SampleError, SampleSet, check_faceset, make_batch};

/// Finished batches waiting for the trainer by default: enough to absorb slow batches
/// (cache misses) without holding much memory (4 × 2.5 MB at R 128, batch 8).
pub const DEFAULT_QUEUE_DEPTH: usize = 4;

/// How a [`Sampler`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Worker threads that make the samples of a batch; 0 = one per core.
    pub threads: usize,
    /// Finished batches held ahead of the trainer (at least 1).
    pub queue_depth: usize,
    /// Copy batches into pinned host memory for this CUDA device, so host → GPU copies can be
    /// asynchronous (`Tensor::pin_memory`). Untested without a GPU; `None` on the CPU.
    pub pin_memory: Option<tch::Device>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self { threads: 0, queue_depth: DEFAULT_QUEUE_DEPTH, pin_memory: None }
    }
}

/// Everything the producer thread owns.
struct Producer {
    faceset: Arc<SampleSet>,
    cache: Arc<FaceCache>,
    cfg: SampleConfig,
    batch_size: usize,
    pin_memory: Option<tch::Device>,
    pool: rayon::ThreadPool,
    stop: Arc<AtomicBool>,
}

/// Batches `start, start + 1, …` made ahead on worker threads; iterate to take them in order.
///
/// Batch `t` equals `make_batch(.., t, batch_size)`, so resuming at `t` continues exactly. After
/// an error the iterator yields that error and then ends. Dropping the sampler stops its threads
/// (after the batch in progress).
pub struct Sampler {
    rx: Option<Receiver<Result<Batch, SampleError>>>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    next_iteration: u64,
    finished: bool,
}

impl Sampler {
    /// Starts making batches of `batch_size` from iteration `start_iteration` on.
    ///
    /// # Errors
    /// `FaceTypeTooNarrow` when a face cannot be cropped to `cfg.face_type` ([`check_faceset`]);
    /// `ThreadPool` or `Spawn` when the worker threads cannot be created.
    pub fn start(
        faceset: Arc<SampleSet>,
        cache: Arc<FaceCache>,
        cfg: SampleConfig,
        batch_size: usize,
        start_iteration: u64,
        opts: SamplerOptions,
    ) -> Result<Self, SampleError> {
        check_faceset(&faceset, &cfg)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("dfl-sampler-{i}"))
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(opts.queue_depth.max(1));
        let producer = Producer {
            faceset,
            cache,
            cfg,
            batch_size,
            pin_memory: opts.pin_memory,
            pool,
            stop: Arc::clone(&stop),
        };
        let worker = std::thread::Builder::new()
            .name("dfl-sampler".into())
            .spawn(move || producer.run(start_iteration, &tx))
            .map_err(SampleError::Spawn)?;
        Ok(Self {
            rx: Some(rx),
            stop,
            worker: Some(worker),
            next_iteration: start_iteration,
            finished: false,
        })
    }

    /// Returns the iteration of the batch the next call to `next` yields.
    pub fn next_iteration(&self) -> u64 {
        self.next_iteration
    }
}

impl Producer {
    /// Makes batches until the receiver is gone, `stop` is set, or a batch fails.
    fn run(self, start: u64, tx: &SyncSender<Result<Batch, SampleError>>) {
        for iteration in start.. {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let batch = self.pool.install(|| {
                make_batch(&self.faceset, &self.cache, &self.cfg, iteration, self.batch_size)
            });
            let batch = match (batch, self.pin_memory) {
                (Ok(b), Some(device)) => b.pinned(device),
                (other, _) => other,
            };
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
        }
    }
}

impl Iterator for Sampler {
    type Item = Result<Batch, SampleError>;

    /// Waits for the next batch in iteration order.
    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let received = self.rx.as_ref().map(Receiver::recv);
        let item = match received {
            Some(Ok(item)) => item,
            // The worker is gone without saying why: it panicked.
            Some(Err(_)) | None => Err(SampleError::WorkerStopped),
        };
        match &item {
            Ok(_) => self.next_iteration += 1,
            Err(_) => self.finished = true,
        }
        Some(item)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes a producer blocked on a full queue.
        self.rx = None;
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            log::warn!("the sampler's worker thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::sampler::testutil::small_faceset;

    fn setup(dir: &std::path::Path) -> (Arc<SampleSet>, Arc<FaceCache>, SampleConfig) {
        let (set, cache, cfg) = small_faceset(dir);
        (Arc::new(set), Arc::new(cache), cfg)
    }

    #[test]
    fn a_sampler_resumed_at_k_yields_batch_k_and_then_k_plus_1() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = setup(tmp.path());
        let opts = SamplerOptions { threads: 2, queue_depth: 2, pin_memory: None };
        let mut sampler =
            Sampler::start(Arc::clone(&set), Arc::clone(&cache), cfg, 3, 7, opts).unwrap();
        for k in [7, 8] {
            assert_eq!(sampler.next_iteration(), k);
            let got = sampler.next().unwrap().unwrap();
            let want = make_batch(&set, &cache, &cfg, k, 3).unwrap();
            assert_eq!(got.iteration, k);
            assert_eq!(got.face_indices, want.face_indices);
            assert!(got.warped.equal(&want.warped) && got.eyes_mouth.equal(&want.eyes_mouth));
        }
        // Dropping with a full queue and a blocked producer returns promptly.
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(sampler);
    }

    #[test]
    fn an_error_is_yielded_once_and_ends_the_sampler() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, _, cfg) = setup(tmp.path());
        std::fs::remove_file(&set.faces()[0].path).unwrap();
        let cache = Arc::new(FaceCache::new(0));
        let mut sampler = Sampler::start(set, cache, cfg, 5, 0, SamplerOptions::default()).unwrap();
        let err = sampler.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("face_000.png"), "{err}");
        assert!(sampler.next().is_none());
    }

    #[test]
    fn a_faceset_too_narrow_for_the_model_fails_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = setup(tmp.path());
        let head = SampleConfig { face_type: crate::face::align::FaceType::Head, ..cfg };
        let err = Sampler::start(set, cache, head, 2, 0, SamplerOptions::default()).err();
        assert!(matches!(err, Some(SampleError::FaceTypeTooNarrow { .. })), "{err:?}");
    }
}
