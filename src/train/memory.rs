//! Whether a training run fits in memory, checked before the first batch is made: an absurd
//! `--batch-size` or resolution is refused with the size that fits, instead of an allocation
//! failure (a crash) or a machine that swaps until the kernel kills the run.
//!
//! What a run holds, per sample of the batch and for the run as a whole:
//! - the sampler's batches on the host: both sides, the batches queued ahead and the two in use,
//!   each sample `3·R²` floats twice (warped and target) and `R²` twice (mask, eyes-and-mouth);
//! - on the CPU, also the network's activations kept for the backward pass, about
//!   [`ACTIVATION_BYTES_PER_PIXEL_DIM`] bytes per pixel of the resolution and per unit of the
//!   encoder, decoder and mask-decoder widths (measured, see `docs/reliability.md`), and the
//!   weights with their gradients and the optimizer's two moments (four floats a parameter).
//!
//! On a GPU the activations live in device memory, which libtorch does not report: a step that
//! runs out of it is caught and reported with the same advice (`run`).

use tch::Device;

use crate::model::folder::TrainConfig;

/// Activation bytes per pixel (R²) and per unit of `e_dims + d_dims + d_mask_dims`, per sample,
/// for a DF or LIAE step on the CPU. Peak-RSS slopes over the batch size measured 96–160 (DF at
/// 64–128 px, release build); this rounds the largest up.
pub const ACTIVATION_BYTES_PER_PIXEL_DIM: u64 = 192;
/// Bytes a parameter costs while training: weight, gradient and two optimizer moments, f32.
const BYTES_PER_PARAMETER: u64 = 16;
/// Floats per pixel of one sample as the sampler holds it: warped and target BGR, mask,
/// eyes-and-mouth mask.
const SAMPLE_FLOATS_PER_PIXEL: u64 = 3 + 3 + 1 + 1;
/// Batches per side the sampler holds besides its queue: the one being made and the one in use.
const BATCHES_IN_HAND: u64 = 2;
/// Share of the available memory a run may plan to use (the rest is for OpenCV, the face
/// cache, libtorch's own buffers and the system).
const USABLE_SHARE: f64 = 0.8;

/// A run that does not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "batch {batch} at {resolution} px needs about {need_gib:.1} GiB of memory, and {available_gib:.1} GiB are available; {advice}"
)]
pub struct TooBig {
    /// The batch size asked for.
    pub batch: usize,
    /// The model's resolution.
    pub resolution: i64,
    /// The estimate, in GiB.
    pub need_gib: f64,
    /// The memory available, in GiB.
    pub available_gib: f64,
    /// What fits.
    pub advice: String,
}

/// The memory a run needs: a fixed part and a part per sample of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Bytes whatever the batch size.
    pub fixed: u64,
    /// Bytes per sample of the batch.
    pub per_sample: u64,
}

impl Need {
    /// Estimates the host memory of a run of `cfg` with `params` parameters on `device`, with
    /// `queue_depth` batches queued ahead per side.
    pub fn of(cfg: &TrainConfig, params: u64, device: Device, queue_depth: usize) -> Need {
        let r = u64::try_from(cfg.model.resolution).unwrap_or(u64::MAX);
        let pixels = r.saturating_mul(r);
        let batches = 2u64.saturating_mul(queue_depth as u64 + BATCHES_IN_HAND);
        let sampler = batches.saturating_mul(SAMPLE_FLOATS_PER_PIXEL * 4).saturating_mul(pixels);
        if device.is_cuda() {
            return Need { fixed: 0, per_sample: sampler };
        }
        let m = &cfg.model;
        let dims = u64::try_from(m.e_dims + m.d_dims + m.d_mask_dims).unwrap_or(u64::MAX);
        let activations =
            ACTIVATION_BYTES_PER_PIXEL_DIM.saturating_mul(pixels).saturating_mul(dims);
        Need {
            fixed: params.saturating_mul(BYTES_PER_PARAMETER),
            per_sample: sampler.saturating_add(activations),
        }
    }

    /// Returns the bytes for a batch of `batch`.
    pub fn total(&self, batch: usize) -> u64 {
        self.fixed.saturating_add(self.per_sample.saturating_mul(batch as u64))
    }

    /// Checks a batch of `batch` against `available` bytes.
    ///
    /// # Errors
    /// `TooBig` with the largest batch that fits (or, when none does, what to lower).
    pub fn check(&self, cfg: &TrainConfig, available: u64) -> Result<(), TooBig> {
        let usable = (available as f64 * USABLE_SHARE) as u64;
        let need = self.total(cfg.batch_size);
        if need <= usable {
            return Ok(());
        }
        let fits = usable.saturating_sub(self.fixed) / self.per_sample.max(1);
        let advice = if fits >= 1 {
            format!("at most {fits} fit: pass --batch-size {fits}")
        } else {
            "not even one sample fits: train a smaller --resolution or narrower dims".to_owned()
        };
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        Err(TooBig {
            batch: cfg.batch_size,
            resolution: cfg.model.resolution,
            need_gib: gib(need),
            available_gib: gib(available),
            advice,
        })
    }
}

/// Returns the host memory available to a new allocation (Linux `MemAvailable`), if known.
pub fn available_host_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(resolution: i64, batch_size: usize) -> TrainConfig {
        let mut cfg = TrainConfig { batch_size, ..TrainConfig::default() };
        cfg.model.resolution = resolution;
        cfg
    }

    #[test]
    fn a_batch_that_fits_passes_and_one_that_does_not_names_what_fits() {
        let c = cfg(128, 8);
        let need = Need::of(&c, 50_000_000, Device::Cpu, 2);
        let per_sample = need.per_sample;
        assert!(need.check(&c, 64 << 30).is_ok(), "8 samples of 128 px fit in 64 GiB");
        let huge = cfg(128, 100_000);
        let err = need.check(&huge, 16 << 30).unwrap_err();
        let fits = ((16u64 << 30) as f64 * USABLE_SHARE) as u64 - need.fixed;
        assert!(err.advice.contains(&format!("--batch-size {}", fits / per_sample)), "{err}");
        assert!(err.to_string().contains("batch 100000 at 128 px"), "{err}");
        // Sizes that would overflow saturate instead of wrapping around to "fits".
        let absurd = cfg(128, usize::MAX);
        assert!(need.check(&absurd, u64::MAX / 2).is_err());
    }

    #[test]
    fn nothing_fits_when_one_sample_is_too_big() {
        let c = cfg(640, 1);
        let need = Need::of(&c, 1_000_000, Device::Cpu, 2);
        let err = need.check(&c, 1 << 30).unwrap_err();
        assert!(err.advice.contains("smaller --resolution"), "{err}");
    }

    #[test]
    fn on_a_gpu_only_the_sampler_counts_on_the_host() {
        let c = cfg(128, 8);
        let gpu = Need::of(&c, 50_000_000, Device::Cuda(0), 2);
        let cpu = Need::of(&c, 50_000_000, Device::Cpu, 2);
        assert_eq!(gpu.fixed, 0);
        assert_eq!(gpu.per_sample, 2 * 4 * 8 * 4 * 128 * 128);
        assert!(cpu.per_sample > gpu.per_sample && cpu.fixed == 50_000_000 * 16);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let bytes = available_host_bytes().expect("Linux reports MemAvailable");
        assert!(bytes > 1 << 20, "{bytes}");
    }
}
