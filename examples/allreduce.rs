//! Times the gradient all-reduce of data-parallel training: `world` ranks (threads of this
//! process, each with its own Gloo process group over loopback, as separate processes would
//! have) sum one flat f32 buffer the size of a model's trainable parameters. The Rust side of
//! `scripts/bench/distributed.sh`.
//!
//! usage: cargo run --release --example allreduce -- [archi] [resolution] [world] [rounds]
//!
//! Prints one JSON line: the parameter count, bytes, and the median and minimum milliseconds
//! per all-reduce (rank 0's clock, after a warm-up round).

use std::time::{Duration, Instant};

use dfl::distributed::{Group, ReduceOp, Rendezvous, free_local_port};
use dfl::model::arch::ModelConfig;
use dfl::model::optim::trainable_variables;
use dfl::model::saehd::Saehd;
use tch::{Device, Kind, Tensor, nn};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let arch = arg(0, "df");
    let resolution: i64 = arg(1, "128").parse().expect("resolution is a number");
    let world: usize = arg(2, "2").parse().expect("world is a number");
    let rounds: usize = arg(3, "10").parse().expect("rounds is a number");
    let cfg = ModelConfig {
        arch: arch.parse().expect("a valid archi"),
        resolution,
        ..Default::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Saehd::new(&vs.root(), &cfg);
    let params: i64 = trainable_variables(&vs).iter().map(|(_, t)| t.numel() as i64).sum();
    drop(vs);
    let port = free_local_port().expect("a free port");
    let times: Vec<f64> = std::thread::scope(|s| {
        let ranks: Vec<_> = (0..world)
            .map(|rank| {
                s.spawn(move || {
                    let rendezvous = Rendezvous {
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        rank,
                        world,
                        timeout: Duration::from_secs(120),
                        interface: None,
                    };
                    let group = Group::join(rendezvous, Device::Cpu).expect("join");
                    let grads = Tensor::ones([params], (Kind::Float, Device::Cpu));
                    let mut times = Vec::new();
                    for round in 0..=rounds {
                        group.barrier("bench barrier").expect("barrier");
                        let start = Instant::now();
                        group.all_reduce(&grads, ReduceOp::Sum, "bench").expect("all-reduce");
                        if round > 0 {
                            times.push(start.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    times
                })
            })
            .collect();
        let mut all: Vec<Vec<f64>> = ranks.into_iter().map(|h| h.join().expect("rank")).collect();
        all.swap_remove(0)
    });
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{{\"archi\":\"{arch}\",\"resolution\":{resolution},\"world\":{world},\"params\":{params},\"bytes\":{},\"median_ms\":{:.2},\"min_ms\":{:.2},\"rounds\":{rounds}}}",
        params * 4,
        sorted[sorted.len() / 2],
        sorted[0]
    );
}
