//! Measures the training sampler: samples/s of `make_batch` with 1 and 2 threads (first epoch
//! = decoding, then 4 warm epochs), and of the prefetching `Sampler`, on carphone faces (whole_face, 256 px) at R 128, batch 8.
//!
//! ```sh
//! cargo run --release --example sampler_rate                      # extracts carphone first
//! cargo run --release --example sampler_rate -- --faceset DIR     # an existing faceset
//! cargo run --release --example sampler_rate -- --face-type whole_face
//! ```
//!
//! OpenCV's own threads are set to 1 (as `dfl extract` does), so the thread counts below are
//! the only parallelism.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use dfl::assets::{SHAPE_PREDICTOR_FILE, YUNET_FILE};
use dfl::detect::{DetectError, FaceDetector, YuNetModel};
use dfl::extract::{self, ExtractConfig, ExtractModels};
use dfl::face::align::FaceType;
use dfl::face::shape_predictor::ShapePredictor;
use dfl::progress::NoProgress;
use dfl::train::sampler::{
    Batch, FaceCache, SampleConfig, SampleError, SampleSet, Sampler, SamplerOptions, make_batch,
    order,
};
use dfl::workspace::{Input, Side, Workspace};

const BATCH: usize = 8;
/// Batches per measurement: one epoch of carphone's 120 faces.
const BATCHES: u64 = 15;
/// Epochs timed once the cache is warm.
const WARM_EPOCHS: u64 = 4;
/// The trainer's consumption at R 128, batch 8 on this CPU (samples/s), from the brief.
const TRAINER_RATES: [(&str, f64); 2] = [("LIAE-UD", 2.3), ("DF", 0.8)];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    opencv::core::set_num_threads(1)?;
    let tmp = tempfile::tempdir()?;
    let dir = match flag("--faceset") {
        Some(dir) => PathBuf::from(dir),
        None => extract_carphone(tmp.path())?,
    };
    let face_type = match flag("--face-type").map(String::as_str) {
        Some("whole_face") => FaceType::WholeFace,
        _ => FaceType::Full,
    };
    let (set, skipped) = SampleSet::load(&dir, &NoProgress)?;
    println!("{} faces ({} skipped) in {}", set.len(), skipped.len(), dir.display());
    let yaws = set.faces().iter().map(|f| f.yaw);
    let (lo, hi) = yaws.fold((f32::MAX, f32::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let order::Order::UniformYaw { bins } = order::Order::new(&set, true) else {
        anyhow::bail!("invariant: uniform_yaw gives yaw bins")
    };
    println!("averaged yaw in [{lo:.3}, {hi:.3}], {} non-empty yaw bins", bins.len());
    let cfg = SampleConfig { face_type, random_flip: true, ..SampleConfig::default() };
    println!("config: {cfg:?}, batch {BATCH}");
    let set = Arc::new(set);
    measure_make_batch(&set, &cfg)?;
    let sampler_rate = measure_sampler(&set, cfg)?;
    for (arch, need) in TRAINER_RATES {
        println!("vs {arch} trainer at {need} samples/s: ×{:.0}", sampler_rate / need);
    }
    Ok(())
}

/// Prints `make_batch`'s rate on 1 and 2 threads: the first epoch (decoding every face into
/// the cache) and the second (all cache hits).
fn measure_make_batch(set: &SampleSet, cfg: &SampleConfig) -> Result<()> {
    for threads in [1, 2] {
        let cache = FaceCache::default();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        let mut batch = |t| pool.install(|| make_batch(set, &cache, cfg, t, BATCH));
        let cold = rate(&mut batch, 0, BATCHES)?;
        let warm = rate(&mut batch, BATCHES, WARM_EPOCHS * BATCHES)?;
        println!("make_batch, {threads} thread(s): {cold:.1} samples/s cold, {warm:.1} warm");
    }
    Ok(())
}

/// Returns the `Sampler`'s rate in steady state: a warm cache (one epoch decoded), resumed
/// after that epoch, batches taken as fast as it makes them.
fn measure_sampler(set: &Arc<SampleSet>, cfg: SampleConfig) -> Result<f64> {
    let cache = Arc::new(FaceCache::default());
    for t in 0..BATCHES {
        make_batch(set, &cache, &cfg, t, BATCH)?;
    }
    let opts = SamplerOptions { threads: 2, ..SamplerOptions::default() };
    let start = Instant::now();
    let mut sampler = Sampler::start(Arc::clone(set), cache, cfg, BATCH, BATCHES, opts)?;
    sampler.next().context("the sampler ended")??;
    println!("Sampler: first batch after {:.2} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for _ in 0..WARM_EPOCHS * BATCHES {
        sampler.next().context("the sampler ended")??;
    }
    let rate = (WARM_EPOCHS * BATCHES) as f64 * BATCH as f64 / start.elapsed().as_secs_f64();
    println!("Sampler (2 threads, queue 4): {rate:.1} samples/s");
    Ok(rate)
}

/// Returns samples/s over batches `first..first + count`.
fn rate(
    batch: &mut impl FnMut(u64) -> Result<Batch, SampleError>,
    first: u64,
    count: u64,
) -> Result<f64> {
    let start = Instant::now();
    for t in first..first + count {
        batch(t)?;
    }
    Ok(count as f64 * BATCH as f64 / start.elapsed().as_secs_f64())
}

/// Extracts carphone (whole_face, 256 px) into a workspace under `root`; returns the faceset.
fn extract_carphone(root: &std::path::Path) -> Result<PathBuf> {
    let assets = dfl::assets::Assets::from_env();
    let ws = Workspace::create(root.join("ws"))?;
    let cfg = ExtractConfig { size_px: 256, ..ExtractConfig::default() };
    let predictor = ShapePredictor::load(&assets.model(SHAPE_PREDICTOR_FILE)?)?;
    let yunet = YuNetModel::load(assets.model(YUNET_FILE)?, cfg.detector)?;
    let factory =
        move || -> Result<Box<dyn FaceDetector>, DetectError> { Ok(Box::new(yunet.detector()?)) };
    let models = ExtractModels { detector: &factory, predictor: &predictor };
    let input = Input::Video(assets.sample("carphone_pristine.mp4")?);
    let start = Instant::now();
    let report = extract::run(&cfg, &ws, Side::Src, &input, &models, &NoProgress)?;
    println!("extracted {} faces in {:.1} s", report.faces, start.elapsed().as_secs_f64());
    Ok(ws.aligned_dir(Side::Src))
}
