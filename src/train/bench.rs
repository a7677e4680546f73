//! `dfl bench`: standard SAEHD training configurations timed for a fixed number of steps on
//! random data, through the same [`Trainer`] as `dfl train` (precision, masked training, the
//! losses and the optimizer are `dfl train`'s defaults for a new model). Nothing is written.
//!
//! Timing: after the untimed warm-up steps, each timed step is followed by a device
//! synchronisation (a no-op on the CPU, where libtorch is synchronous), so the mean, minimum and
//! maximum are of whole steps, queueing included. The losses are read once, after the timed
//! steps, so a non-finite loss is an error rather than a fast number.
//!
//! Memory: the host's peak resident set (Linux `VmHWM`), reset before each configuration when
//! the kernel allows it, and its increase over the resident set before the configuration
//! started. On CUDA also the peak memory libtorch's caching allocator reserved and allocated on
//! the card (`device::cuda_runtime`), reset before each configuration.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::memory::{self, Need};
use super::trainer::{Check, SideTensors, TrainError, Trainer};
use crate::device;
use crate::model::arch::{Arch, ModelConfig};
use crate::model::folder::TrainConfig;
use crate::model::precision::Precision;

/// The largest `--batch` the bench accepts.
pub const MAX_BATCH: u64 = 1024;
/// The most timed steps the bench accepts.
pub const MAX_STEPS: u64 = 10_000;
/// The most warm-up steps the bench accepts.
pub const MAX_WARMUP: u64 = 1_000;
/// Timed steps per configuration on CUDA, unless `--steps` says otherwise.
pub const DEFAULT_STEPS_CUDA: u64 = 20;
/// Timed steps per configuration on the CPU, unless `--steps` says otherwise.
pub const DEFAULT_STEPS_CPU: u64 = 5;
/// Untimed warm-up steps per configuration, unless `--warmup` says otherwise.
pub const DEFAULT_WARMUP: u64 = 2;
/// Samples per side per iteration of the standard configurations (DFL's default).
pub const DEFAULT_BATCH: u64 = 8;
/// Samples per side per iteration with `--quick`.
pub const QUICK_BATCH: u64 = 2;
/// Timed steps with `--quick`.
pub const QUICK_STEPS: u64 = 2;
/// Warm-up steps with `--quick`.
pub const QUICK_WARMUP: u64 = 1;

/// The standard configurations, by `--config` name: DFL's default dims (ae 256, e 64, d 64,
/// d_mask 22) at the named archi and resolution.
pub const STANDARD: [(&str, &str, i64); 3] =
    [("df-128", "df", 128), ("liae-ud-128", "liae-ud", 128), ("df-256", "df", 256)];

/// The `--quick` configurations: 64 px with the narrowest dims a model may have.
const QUICK: [(&str, &str); 2] = [("df-64-quick", "df"), ("liae-ud-64-quick", "liae-ud")];

/// A network to benchmark: its name and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The `--config` name, e.g. `df-128`.
    pub name: &'static str,
    /// The network's archi, resolution and dims.
    pub model: ModelConfig,
}

impl Preset {
    /// Returns the standard configuration called `name`.
    ///
    /// # Errors
    /// `UnknownConfig` naming the valid ones.
    pub fn standard(name: &str) -> Result<Self, BenchError> {
        let (name, arch, resolution) = STANDARD
            .into_iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| BenchError::UnknownConfig(name.to_owned()))?;
        Ok(Self {
            name,
            model: ModelConfig { arch: parse_arch(arch), resolution, ..Default::default() },
        })
    }

    /// Returns every standard configuration, in `STANDARD`'s order.
    pub fn all_standard() -> Vec<Self> {
        STANDARD.iter().map(|(name, ..)| Self::standard(name).expect("a listed name")).collect()
    }

    /// Returns the `--quick` configurations.
    pub fn all_quick() -> Vec<Self> {
        let model = |arch| ModelConfig {
            arch: parse_arch(arch),
            resolution: 64,
            ae_dims: 32,
            e_dims: 16,
            d_dims: 16,
            d_mask_dims: 16,
        };
        QUICK.iter().map(|&(name, arch)| Self { name, model: model(arch) }).collect()
    }
}

fn parse_arch(text: &str) -> Arch {
    text.parse().expect("the presets name valid archis")
}

/// Errors of `dfl bench`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// `--config` names no configuration.
    #[error("--config {0:?} is not a configuration; use df-128, liae-ud-128 or df-256")]
    UnknownConfig(String),
    /// `--steps` is out of range.
    #[error("--steps {0}: give 1 to {MAX_STEPS} timed steps")]
    Steps(u64),
    /// `--warmup` is out of range.
    #[error("--warmup {0}: give 0 to {MAX_WARMUP} warm-up steps")]
    Warmup(u64),
    /// `--batch` is out of range.
    #[error("--batch {0}: give a batch size from 1 to {MAX_BATCH}")]
    Batch(u64),
    /// The trainer failed.
    #[error("{config}: {source}")]
    Train {
        /// The configuration and precision, e.g. `df-128 fp32`.
        config: String,
        /// What failed.
        source: TrainError,
    },
    /// The loss was not finite: the numbers would be meaningless.
    #[error(
        "{config}: the loss was not finite after {steps} steps on random data; the timings are not reported (please report this with `dfl status`)"
    )]
    NotFinite {
        /// The configuration and precision.
        config: String,
        /// Steps run.
        steps: u64,
    },
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// The networks, in order.
    pub presets: Vec<Preset>,
    /// The precisions each network runs at, in order.
    pub precisions: Vec<Precision>,
    /// Samples per side per iteration.
    pub batch: usize,
    /// Timed steps per configuration.
    pub steps: u64,
    /// Untimed steps before them.
    pub warmup: u64,
    /// The `--quick` set (small networks) rather than the standard one.
    pub quick: bool,
    /// Memory format and math modes every configuration runs with.
    pub levers: Levers,
}

/// The speed options of `dfl train` that change how a step runs, not what it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Levers {
    /// Weights and inputs stored channels-last (`--channels-last`).
    pub channels_last: bool,
    /// TF32 tensor cores for fp32 on Ampere+ GPUs (`--tf32`).
    pub tf32: bool,
    /// cuDNN benchmark mode (`--cudnn-benchmark`).
    pub cudnn_benchmark: bool,
}

impl Levers {
    /// The levers `cfg` runs with.
    pub fn of(cfg: &TrainConfig) -> Self {
        Self {
            channels_last: cfg.channels_last,
            tf32: cfg.tf32,
            cudnn_benchmark: cfg.cudnn_benchmark,
        }
    }

    /// Sets these levers in `cfg`.
    pub fn set_in(self, cfg: &mut TrainConfig) {
        cfg.channels_last = self.channels_last;
        cfg.tf32 = self.tf32;
        cfg.cudnn_benchmark = self.cudnn_benchmark;
    }
}

impl Default for Levers {
    /// `dfl train`'s defaults.
    fn default() -> Self {
        Self::of(&TrainConfig::default())
    }
}

/// The command-line choices, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchRequest {
    /// `--config` names (empty: all standard configurations).
    pub configs: Vec<String>,
    /// `--batch`.
    pub batch: Option<u64>,
    /// `--steps`.
    pub steps: Option<u64>,
    /// `--warmup`.
    pub warmup: Option<u64>,
    /// `--quick`.
    pub quick: bool,
    /// `--channels-last`, `--tf32`, `--cudnn-benchmark`.
    pub levers: Levers,
}

impl BenchOptions {
    /// Validates `req` and fills in the defaults for `device`: fp32 and bf16 on CUDA, fp32 on
    /// the CPU (bf16 autocast on the CPU is not what anyone trains with).
    ///
    /// # Errors
    /// `UnknownConfig`, `Steps`, `Warmup` or `Batch`.
    pub fn new(req: &BenchRequest, device: Device) -> Result<Self, BenchError> {
        let presets = if req.quick {
            Preset::all_quick()
        } else if req.configs.is_empty() {
            Preset::all_standard()
        } else {
            let mut presets = Vec::new();
            for name in &req.configs {
                let preset = Preset::standard(name)?;
                if !presets.contains(&preset) {
                    presets.push(preset);
                }
            }
            presets
        };
        let (default_batch, default_steps, default_warmup) = match (req.quick, device.is_cuda()) {
            (true, _) => (QUICK_BATCH, QUICK_STEPS, QUICK_WARMUP),
            (false, true) => (DEFAULT_BATCH, DEFAULT_STEPS_CUDA, DEFAULT_WARMUP),
            (false, false) => (DEFAULT_BATCH, DEFAULT_STEPS_CPU, DEFAULT_WARMUP),
        };
        let steps = req.steps.unwrap_or(default_steps);
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(BenchError::Steps(steps));
        }
        let warmup = req.warmup.unwrap_or(default_warmup);
        if warmup > MAX_WARMUP {
            return Err(BenchError::Warmup(warmup));
        }
        let batch = req.batch.unwrap_or(default_batch);
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(BenchError::Batch(batch));
        }
        let precisions = if device.is_cuda() && !req.quick {
            vec![Precision::Fp32, Precision::Bf16]
        } else {
            vec![Precision::Fp32]
        };
        let batch = usize::try_from(batch).map_err(|_| BenchError::Batch(batch))?;
        Ok(Self { presets, precisions, batch, steps, warmup, quick: req.quick, levers: req.levers })
    }
}

/// A network's widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dims {
    /// Bottleneck width.
    pub ae: i64,
    /// Encoder width.
    pub e: i64,
    /// Decoder width.
    pub d: i64,
    /// Mask-decoder width.
    pub d_mask: i64,
}

/// The result of one configuration at one precision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigResult {
    /// The `--config` name.
    pub name: String,
    /// The archi, e.g. `liae-ud`.
    pub arch: String,
    /// Input and output side, px.
    pub resolution: i64,
    /// Samples per side per iteration.
    pub batch: usize,
    /// The network's widths.
    pub dims: Dims,
    /// The forward pass's precision.
    pub precision: Precision,
    /// Timed steps.
    pub steps: u64,
    /// Untimed warm-up steps before them.
    pub warmup: u64,
    /// Mean wall time of a timed step, ms (null when skipped).
    pub ms_per_iteration: Option<f64>,
    /// Fastest timed step, ms.
    pub ms_per_iteration_min: Option<f64>,
    /// Slowest timed step, ms.
    pub ms_per_iteration_max: Option<f64>,
    /// `batch · 1000 / ms_per_iteration`: samples per side per second.
    pub samples_per_second: Option<f64>,
    /// The host's peak resident set while this configuration ran, bytes.
    pub host_peak_rss_bytes: Option<u64>,
    /// That peak minus the resident set before the configuration started, bytes.
    pub host_peak_rss_increase_bytes: Option<u64>,
    /// On CUDA, the peak bytes libtorch's caching allocator reserved on the card during the
    /// config (what the card must have free); null on the CPU, or when it cannot be read.
    pub device_peak_bytes: Option<u64>,
    /// On CUDA, the peak bytes held by tensors (at most `device_peak_bytes`); null otherwise.
    pub device_peak_allocated_bytes: Option<u64>,
    /// What the memory numbers mean here.
    pub note: String,
    /// True when the configuration did not run.
    pub skipped: bool,
    /// Why it did not run.
    pub reason: Option<String>,
}

/// Everything `dfl bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// This build's version.
    pub dfl_version: &'static str,
    /// The installed torch's `__version__` (e.g. `2.13.0+cu130`), when readable.
    pub libtorch_version: Option<String>,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// A description of the device: `cpu (N threads)`; null on CUDA (libtorch does not name
    /// the GPU through tch).
    pub device_name: Option<String>,
    /// The host CPU's model name (`/proc/cpuinfo`), when known.
    pub cpu_model: Option<String>,
    /// libtorch's intra-op threads.
    pub threads: i32,
    /// The host's 1-minute load average when the bench started (other work skews the times).
    pub load_average: Option<f64>,
    /// True for `--quick`: small networks, not the standard numbers.
    pub quick: bool,
    /// The memory format and math modes of every configuration.
    pub levers: Levers,
    /// How the times were taken.
    pub timing: &'static str,
    /// One entry per configuration and precision.
    pub configs: Vec<ConfigResult>,
}

/// What [`BenchReport::timing`] says.
pub const TIMING: &str = "each timed step is followed by a device synchronisation; ms_per_iteration is their mean, min and max are single steps; warm-up steps are not timed";

/// Mean, fastest and slowest of some step times, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean, ms.
    pub mean_ms: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

impl StepStats {
    /// Summarises `times`; `None` when there are none.
    pub fn of(times: &[Duration]) -> Option<Self> {
        if times.is_empty() {
            return None;
        }
        let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        Some(Self {
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
            max_ms: ms.iter().copied().fold(0.0, f64::max),
        })
    }
}

/// Samples per second of `batch` samples per `ms`-millisecond step.
pub fn samples_per_second(batch: usize, ms: f64) -> f64 {
    batch as f64 * 1000.0 / ms
}

/// Rounds to 3 decimals (µs for ms) so the JSON does not carry timer noise.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs every configuration of `opts` on `device`, logging each as it starts.
///
/// # Errors
/// `Train` when a step fails for a reason other than memory, `NotFinite` when a loss is not
/// finite. Configurations that do not fit are skipped, not errors.
pub fn run(opts: &BenchOptions, device: Device) -> Result<BenchReport, BenchError> {
    let threads = tch::get_num_threads();
    let load_average = load_average();
    if let Some(load) = load_average.filter(|&l| l >= f64::from(threads)) {
        log::warn!(
            "the machine is busy (load average {load:.1} for {threads} threads): libtorch's threads will wait on each other, and the numbers will be slow and noisy"
        );
    }
    let mut configs = Vec::new();
    for preset in &opts.presets {
        for &precision in &opts.precisions {
            log::info!(
                "bench {} {}, batch {}: {} warm-up + {} timed steps",
                preset.name,
                precision_name(precision),
                opts.batch,
                opts.warmup,
                opts.steps
            );
            configs.push(run_config(preset, precision, opts, device)?);
        }
    }
    let device_name = match device {
        Device::Cuda(_) => None,
        _ => Some(format!("cpu ({threads} thread{})", if threads == 1 { "" } else { "s" })),
    };
    Ok(BenchReport {
        dfl_version: env!("CARGO_PKG_VERSION"),
        libtorch_version: libtorch_version(),
        device: device_label(device),
        device_name,
        cpu_model: cpu_model(),
        threads,
        load_average,
        quick: opts.quick,
        levers: opts.levers,
        timing: TIMING,
        configs,
    })
}

fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_owned(),
    }
}

fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => "fp32",
        Precision::Bf16 => "bf16",
    }
}

/// Timings and memory of one configuration that ran.
struct Measured {
    stats: StepStats,
    peak_rss: Option<u64>,
}

fn run_config(
    preset: &Preset,
    precision: Precision,
    opts: &BenchOptions,
    device: Device,
) -> Result<ConfigResult, BenchError> {
    let mut cfg = TrainConfig {
        model: preset.model,
        batch_size: opts.batch,
        precision,
        ..TrainConfig::default()
    };
    opts.levers.set_in(&mut cfg);
    let label = format!("{} {}", preset.name, precision_name(precision));
    let cuda = match device {
        Device::Cuda(n) => {
            let runtime = device::cuda_runtime()
                .map_err(|why| log::warn!("GPU memory is not measured: {why}"))
                .ok();
            runtime.filter(|r| r.reset_peak(n)).map(|r| (r, n))
        }
        _ => None,
    };
    let peak_resets = release_and_reset_peak();
    let rss_before = read_status_bytes("VmRSS:");
    let outcome = match super::catch_out_of_memory(|| measure(&cfg, opts, device, &label)) {
        Some(outcome) => outcome?,
        None => {
            Err(format!("ran out of memory on {} at batch {}", device_label(device), opts.batch))
        }
    };
    let m = &cfg.model;
    let device_peak = cuda.and_then(|(runtime, n)| runtime.peak_memory(n));
    let mut note = match (device, device_peak) {
        (Device::Cuda(_), Some(_)) => "device_peak_bytes is what libtorch's caching allocator reserved on the card (device_peak_allocated_bytes: held by tensors); host_peak_rss_bytes is the host process only".to_owned(),
        (Device::Cuda(_), None) => "device memory could not be read from libtorch's allocator; host_peak_rss_bytes is the host process only".to_owned(),
        _ => "on the CPU the device's memory is the host's: see host_peak_rss_bytes".to_owned(),
    };
    if !peak_resets {
        note.push_str("; the peak could not be reset, so it is the process's since it started");
    }
    let mut result = ConfigResult {
        name: preset.name.to_owned(),
        arch: m.arch.to_string(),
        resolution: m.resolution,
        batch: opts.batch,
        dims: Dims { ae: m.ae_dims, e: m.e_dims, d: m.d_dims, d_mask: m.d_mask_dims },
        precision,
        steps: opts.steps,
        warmup: opts.warmup,
        ms_per_iteration: None,
        ms_per_iteration_min: None,
        ms_per_iteration_max: None,
        samples_per_second: None,
        host_peak_rss_bytes: None,
        host_peak_rss_increase_bytes: None,
        device_peak_bytes: None,
        device_peak_allocated_bytes: None,
        note,
        skipped: false,
        reason: None,
    };
    match outcome {
        Ok(measured) => {
            let s = measured.stats;
            result.ms_per_iteration = Some(round3(s.mean_ms));
            result.ms_per_iteration_min = Some(round3(s.min_ms));
            result.ms_per_iteration_max = Some(round3(s.max_ms));
            result.samples_per_second = Some(round3(samples_per_second(opts.batch, s.mean_ms)));
            result.host_peak_rss_bytes = measured.peak_rss;
            result.host_peak_rss_increase_bytes =
                measured.peak_rss.zip(rss_before).map(|(p, b)| p.saturating_sub(b));
            result.device_peak_bytes = device_peak.map(|p| p.reserved);
            result.device_peak_allocated_bytes = device_peak.map(|p| p.allocated);
        }
        Err(reason) => {
            log::warn!("bench {label} skipped: {reason}");
            result.skipped = true;
            result.reason = Some(reason);
        }
    }
    Ok(result)
}

/// Builds the trainer, checks that the run fits in memory and times the steps. `Ok(Err(reason))`
/// is a skip.
fn measure(
    cfg: &TrainConfig,
    opts: &BenchOptions,
    device: Device,
    label: &str,
) -> Result<Result<Measured, String>, BenchError> {
    let train_err = |source| BenchError::Train { config: label.to_owned(), source };
    let mut trainer = Trainer::new(cfg, device).map_err(train_err)?;
    if let Some(available) = memory::available_host_bytes() {
        let params: i64 = trainer
            .var_store()
            .variables()
            .values()
            .map(Tensor::numel)
            .map(|n| n as i64)
            .sum::<i64>()
            + trainer.discriminators().num_parameters();
        if let Err(too_big) = Need::of(cfg, params.unsigned_abs(), device, 0).check(cfg, available)
        {
            return Ok(Err(format!(
                "does not fit in {:.1} GiB (needs about {:.1} GiB)",
                too_big.available_gib, too_big.need_gib
            )));
        }
    }
    let (src, dst) = (random_side(cfg, device), random_side(cfg, device));
    for _ in 0..opts.warmup {
        trainer.step(&src, &dst).map_err(train_err)?;
    }
    synchronize(device);
    let mut times = Vec::new();
    for _ in 0..opts.steps {
        let start = Instant::now();
        trainer.step(&src, &dst).map_err(train_err)?;
        synchronize(device);
        times.push(start.elapsed());
    }
    match trainer.check().map_err(train_err)? {
        Check::Good { .. } => {}
        Check::RolledBack { .. } | Check::Idle => {
            return Err(BenchError::NotFinite {
                config: label.to_owned(),
                steps: opts.warmup + opts.steps,
            });
        }
    }
    let peak_rss = read_status_bytes("VmHWM:");
    let stats = StepStats::of(&times).expect("at least one timed step");
    Ok(Ok(Measured { stats, peak_rss }))
}

/// One side's random batch: images uniform in [0,1], a mask that is 1 on about 70 % of the
/// pixels and an eyes-and-mouth mask on about 10 %.
fn random_side(cfg: &TrainConfig, device: Device) -> SideTensors {
    let (n, r) = (cfg.batch_size as i64, cfg.model.resolution);
    let opts = (Kind::Float, device);
    let binary = |share: f64| Tensor::rand([n, 1, r, r], opts).gt(1.0 - share).to_kind(Kind::Float);
    SideTensors {
        warped: Tensor::rand([n, 3, r, r], opts),
        target: Tensor::rand([n, 3, r, r], opts),
        mask: binary(0.7),
        eyes_mouth: binary(0.1),
    }
}

/// Waits for the device's queued work (the CPU runs synchronously).
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Reads a `kB` line of `/proc/self/status` (e.g. `VmHWM:`), in bytes.
fn read_status_bytes(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    status_bytes(&text, key)
}

fn status_bytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Returns freed heap memory to the system (so one configuration's leftovers do not count as
/// the next one's resident set), then resets the peak resident set to the current one. False
/// when the kernel refused the reset.
fn release_and_reset_peak() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's malloc_trim only releases free heap pages; no pointer is involved.
    unsafe {
        malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The installed torch's version, read from the `version.py` beside the libtorch this binary
/// was linked against.
fn libtorch_version() -> Option<String> {
    let lib = std::path::Path::new(env!("DFL_LIBTORCH_LIB"));
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = '"))
        .and_then(|v| v.strip_suffix('\''))
        .map(str::to_owned)
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The first CPU model name in `/proc/cpuinfo`.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// Bytes as `N.NN GiB`.
fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Renders `report` as an aligned table with a header line and a footnote on the method.
pub fn table(report: &BenchReport) -> String {
    let device = report.device_name.clone().unwrap_or_else(|| report.device.clone());
    let mut rows = vec![[
        "config".to_owned(),
        "precision".to_owned(),
        "batch".to_owned(),
        "ms/it".to_owned(),
        "samples/s".to_owned(),
        "peak memory".to_owned(),
        "device".to_owned(),
    ]];
    for c in &report.configs {
        let (ms, sps, memory) = match (c.ms_per_iteration, c.samples_per_second) {
            (Some(ms), Some(sps)) => {
                let peak = c.host_peak_rss_bytes.map_or("?".to_owned(), gib);
                let rise = c
                    .host_peak_rss_increase_bytes
                    .map_or(String::new(), |b| format!(" (+{})", gib(b)));
                let gpu =
                    c.device_peak_bytes.map_or(String::new(), |b| format!("gpu {}, ", gib(b)));
                (format!("{ms:.1}"), format!("{sps:.2}"), format!("{gpu}host {peak}{rise}"))
            }
            _ => (
                "-".to_owned(),
                "-".to_owned(),
                format!("skipped: {}", c.reason.as_deref().unwrap_or("?")),
            ),
        };
        rows.push([
            c.name.clone(),
            precision_name(c.precision).to_owned(),
            c.batch.to_string(),
            ms,
            sps,
            memory,
            device.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "dfl {}, libtorch {}, {}{}\n",
        report.dfl_version,
        report.libtorch_version.as_deref().unwrap_or("?"),
        device,
        report.cpu_model.as_deref().map_or(String::new(), |m| format!(", {m}")),
    );
    if report.quick {
        out.push_str("--quick: small networks at 64 px, not the standard configurations\n");
    }
    let on = |b: bool| if b { "on" } else { "off" };
    let l = report.levers;
    let _ = writeln!(
        out,
        "channels-last {}, TF32 {}, cuDNN benchmark {}{}",
        on(l.channels_last),
        on(l.tf32),
        on(l.cudnn_benchmark),
        if report.device.starts_with("cuda") { "" } else { " (TF32 and cuDNN act on GPUs only)" },
    );
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned.
            if (2..=4).contains(&i) {
                let _ = write!(line, "{cell:>w$}  ");
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let steps = report.configs.first().map_or((0, 0), |c| (c.steps, c.warmup));
    let _ = writeln!(
        out,
        "ms/it: mean of {} timed steps after {} warm-up, each synchronised; peak memory: {}the host's peak resident set during the config (its increase over the start)",
        steps.0,
        steps.1,
        if report.device.starts_with("cuda") {
            "what libtorch reserved on the GPU, and "
        } else {
            ""
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(configs: &[&str]) -> BenchRequest {
        BenchRequest {
            configs: configs.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn configs_parse_by_name_and_unknown_ones_list_the_valid_ones() {
        let opts =
            BenchOptions::new(&request(&["LIAE-UD-128", "df-128", "df-128"]), Device::Cpu).unwrap();
        let names: Vec<_> = opts.presets.iter().map(|p| p.name).collect();
        assert_eq!(names, ["liae-ud-128", "df-128"]);
        let liae = opts.presets[0].model;
        assert_eq!(liae.arch.to_string(), "liae-ud");
        assert_eq!(
            (liae.resolution, liae.ae_dims, liae.e_dims, liae.d_dims, liae.d_mask_dims),
            (128, 256, 64, 64, 22)
        );
        let err = BenchOptions::new(&request(&["df-512"]), Device::Cpu).unwrap_err();
        let text = err.to_string();
        for valid in ["--config", "df-128", "liae-ud-128", "df-256"] {
            assert!(text.contains(valid), "{text}");
        }
        for preset in Preset::all_standard().iter().chain(&Preset::all_quick()) {
            preset.model.validate().unwrap_or_else(|e| panic!("{}: {e}", preset.name));
        }
    }

    #[test]
    fn defaults_depend_on_the_device_and_bounds_are_enforced() {
        let cpu = BenchOptions::new(&request(&[]), Device::Cpu).unwrap();
        assert_eq!((cpu.presets.len(), cpu.batch, cpu.steps, cpu.warmup), (3, 8, 5, 2));
        assert_eq!(cpu.precisions, [Precision::Fp32]);
        let cuda = BenchOptions::new(&request(&[]), Device::Cuda(0)).unwrap();
        assert_eq!((cuda.steps, cuda.precisions.len()), (20, 2));
        let quick =
            BenchOptions::new(&BenchRequest { quick: true, ..Default::default() }, Device::Cpu)
                .unwrap();
        assert_eq!((quick.presets.len(), quick.batch, quick.steps, quick.warmup), (2, 2, 2, 1));
        assert!(quick.presets.iter().all(|p| p.model.resolution == 64));
        let bad = |req: BenchRequest| BenchOptions::new(&req, Device::Cpu).unwrap_err().to_string();
        assert!(
            bad(BenchRequest { steps: Some(0), ..Default::default() }).starts_with("--steps 0")
        );
        assert!(
            bad(BenchRequest { batch: Some(0), ..Default::default() }).starts_with("--batch 0")
        );
        assert!(
            bad(BenchRequest { batch: Some(1025), ..Default::default() })
                .starts_with("--batch 1025")
        );
        assert!(
            bad(BenchRequest { warmup: Some(1001), ..Default::default() }).starts_with("--warmup")
        );
        let ok = BenchRequest {
            batch: Some(1024),
            steps: Some(1),
            warmup: Some(0),
            ..Default::default()
        };
        assert!(BenchOptions::new(&ok, Device::Cpu).is_ok());
    }

    #[test]
    fn stats_are_the_mean_min_and_max_of_the_steps() {
        let ms = |v: u64| Duration::from_millis(v);
        let s = StepStats::of(&[ms(100), ms(300), ms(200)]).unwrap();
        assert!(
            (s.mean_ms - 200.0).abs() < 1e-9 && s.min_ms == 100.0 && s.max_ms == 300.0,
            "{s:?}"
        );
        assert!(StepStats::of(&[]).is_none());
        assert!((samples_per_second(8, 250.0) - 32.0).abs() < 1e-12);
        assert_eq!(round3(1.23456), 1.235);
    }

    #[test]
    fn proc_status_lines_are_read_in_bytes() {
        let text = "Name:\tdfl\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(status_bytes(text, "VmHWM:"), Some(2 << 20));
        assert_eq!(status_bytes(text, "VmRSS:"), Some(1 << 20));
        assert_eq!(status_bytes(text, "VmSwap:"), None);
        assert!(read_status_bytes("VmRSS:").is_some_and(|b| b > 1 << 20));
    }

    fn result(name: &str, ms: Option<f64>) -> ConfigResult {
        ConfigResult {
            name: name.to_owned(),
            arch: "df".to_owned(),
            resolution: 128,
            batch: 8,
            dims: Dims { ae: 256, e: 64, d: 64, d_mask: 22 },
            precision: Precision::Fp32,
            steps: 5,
            warmup: 2,
            ms_per_iteration: ms,
            ms_per_iteration_min: ms,
            ms_per_iteration_max: ms,
            samples_per_second: ms.map(|ms| samples_per_second(8, ms)),
            host_peak_rss_bytes: ms.map(|_| 3 << 30),
            host_peak_rss_increase_bytes: ms.map(|_| 1 << 30),
            device_peak_bytes: None,
            device_peak_allocated_bytes: None,
            note: String::new(),
            skipped: ms.is_none(),
            reason: ms
                .is_none()
                .then(|| "does not fit in 7.5 GiB (needs about 9.9 GiB)".to_owned()),
        }
    }

    #[test]
    fn the_table_aligns_columns_and_shows_skips_with_their_reason() {
        let report = BenchReport {
            dfl_version: "0.1.0",
            libtorch_version: Some("2.13.0+cpu".to_owned()),
            device: "cpu".to_owned(),
            device_name: Some("cpu (2 threads)".to_owned()),
            cpu_model: None,
            threads: 2,
            load_average: Some(0.1),
            quick: false,
            levers: Levers { channels_last: true, ..Levers::default() },
            timing: TIMING,
            configs: vec![result("df-128", Some(4000.0)), result("df-256", None)],
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "dfl 0.1.0, libtorch 2.13.0+cpu, cpu (2 threads)");
        assert!(lines[1].starts_with("channels-last on, TF32 on, cuDNN benchmark off"), "{text}");
        assert!(lines[2].starts_with("config ") && lines[2].contains("ms/it"), "{text}");
        assert!(lines[3].contains("4000.0") && lines[3].contains("2.00"), "{text}");
        assert!(
            lines[3].contains("host 3.00 GiB (+1.00 GiB)") && lines[3].ends_with("cpu (2 threads)"),
            "{text}"
        );
        assert!(lines[4].contains("skipped: does not fit in 7.5 GiB"), "{text}");
        // The samples/s column ends at the same place in the header and in every row.
        let end = |l: &str, s: &str| l.find(s).unwrap() + s.len();
        assert_eq!(end(lines[2], "samples/s"), end(lines[3], "2.00"), "{text}");
        assert!(lines[5].starts_with("ms/it: mean of 5 timed steps after 2 warm-up"), "{text}");
    }

    #[test]
    fn a_tiny_configuration_runs_through_the_trainer() {
        let mut preset = Preset::all_quick()[0];
        preset.model.resolution = 64;
        let opts = BenchOptions {
            presets: vec![preset],
            precisions: vec![Precision::Fp32],
            batch: 1,
            steps: 2,
            warmup: 0,
            quick: true,
            levers: Levers::default(),
        };
        let report = run(&opts, Device::Cpu).unwrap();
        let c = &report.configs[0];
        assert!(!c.skipped, "{c:?}");
        let ms = c.ms_per_iteration.unwrap();
        assert!(
            ms > 0.0
                && c.ms_per_iteration_min.unwrap() <= ms
                && ms <= c.ms_per_iteration_max.unwrap()
        );
        assert!(c.host_peak_rss_bytes.unwrap() > 0 && report.device == "cpu");
        assert!(
            report.libtorch_version.as_deref().is_some_and(|v| v.starts_with("2.")),
            "{report:?}"
        );
    }
}
