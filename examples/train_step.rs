//! Times SAEHD training steps on random tensors (no data pipeline): forward of src and dst,
//! DFL's losses, backward, AdaBelief. The Rust side of `scripts/bench/train_step.sh`.
//!
//! usage: cargo run --release --example train_step -- [archi] [resolution] [batch] [steps]
//!        [--profile TRACE.json]
//!
//! With `--profile`, one more (untimed) step runs under libtorch's op profiler and its Chrome
//! trace is written to the path (`scripts/bench/profile_step.py` sets it beside PyTorch's).

use std::path::PathBuf;
use std::time::Instant;

use dfl::model::arch::ModelConfig;
use dfl::model::loss::{LossOptions, SideBatch, side_loss};
use dfl::model::optim::{Optimizer, OptimizerConfig, trainable_variables};
use dfl::model::profiler::{Profiler, range};
use dfl::model::saehd::Saehd;
use tch::{Device, Kind, Tensor, nn};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.iter().position(|a| a == "--profile").map(|i| {
        let path = PathBuf::from(args.get(i + 1).expect("--profile takes a path"));
        args.drain(i..=i + 1);
        path
    });
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let arch = arg(0, "df");
    let resolution: i64 = arg(1, "128").parse().expect("resolution is a number");
    let batch: i64 = arg(2, "8").parse().expect("batch is a number");
    let steps: usize = arg(3, "3").parse().expect("steps is a number");
    let cfg = ModelConfig {
        arch: arch.parse().expect("a valid archi"),
        resolution,
        ..Default::default()
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Saehd::new(&vs.root(), &cfg);
    let mut opt =
        Optimizer::new(trainable_variables(&vs), OptimizerConfig::default()).expect("optimizer");
    let opts = (Kind::Float, Device::Cpu);
    let img = || Tensor::rand([batch, 3, resolution, resolution], opts);
    let mask = Tensor::rand([batch, 1, resolution, resolution], opts).gt(0.3).to_kind(Kind::Float);
    let em = Tensor::rand([batch, 1, resolution, resolution], opts).gt(0.9).to_kind(Kind::Float);
    let (ws, wd, ts, td) = (img(), img(), img(), img());
    let loss_opts = LossOptions { masked_training: true, eyes_mouth_prio: true };
    let mut times = Vec::new();
    for i in 0..=steps + usize::from(profile.is_some()) {
        // One more step, untimed, under the profiler.
        let profiler = (i > steps).then(|| Profiler::start(false).expect("start the profiler"));
        let start = Instant::now();
        range("zero_grad", || opt.zero_grad());
        let pred = range("forward", || model.train_forward(&ws, &wd));
        let side = |target, p: &dfl::model::saehd::Prediction| {
            let b = SideBatch {
                target,
                target_mask: &mask,
                target_eyes_mouth: Some(&em),
                pred: &p.image,
                pred_mask: &p.mask,
            };
            side_loss(&b, resolution, &loss_opts)
        };
        let loss = range("loss", || side(&ts, &pred.src_src) + side(&td, &pred.dst_dst));
        range("backward", || loss.sum(Kind::Float).backward());
        range("optimizer", || opt.step().expect("step"));
        if (1..=steps).contains(&i) {
            times.push(start.elapsed().as_secs_f64()); // the first step warms up allocators
        }
        if let (Some(profiler), Some(path)) = (profiler, &profile) {
            profiler.save(path).expect("save the trace");
        }
    }
    let t = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "dfl (tch) {arch}@{resolution} batch {batch}: {t:.2} s/step, {:.3} steps/s, {:.2} samples/s ({} threads, {steps} steps)",
        1.0 / t,
        batch as f64 / t,
        tch::get_num_threads()
    );
}
