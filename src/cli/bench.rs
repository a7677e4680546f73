//! `dfl bench`: times standard SAEHD training configurations on random data and prints a table,
//! or JSON to share. Needs no workspace and writes no files.

use std::io::Write;

use anyhow::Context;

use crate::device;
use crate::report::Outcome;
use crate::train::bench::{self, BenchOptions, BenchRequest, Levers};

use super::GlobalArgs;
use super::train::LeverArgs;

/// Arguments of `dfl bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A configuration to run: df-128, liae-ud-128 or df-256 (repeatable) [all three; df-256
    /// is skipped when it does not fit in memory]. Each runs in fp32, and on CUDA in bf16 too.
    #[arg(long = "config", value_name = "NAME")]
    pub configs: Vec<String>,
    /// Samples per side per iteration, 1–1024 [8; 2 with --quick].
    #[arg(long, value_name = "N")]
    pub batch: Option<u64>,
    /// Timed steps per configuration, 1–10000 [20 on CUDA, 5 on the CPU; 2 with --quick].
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Untimed warm-up steps before them, 0–1000 [2; 1 with --quick].
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// A check that runs in seconds: small DF and LIAE-UD networks at 64 px, batch 2, fp32.
    /// Not comparable with the standard numbers (the JSON says "quick": true).
    #[arg(long, conflicts_with = "configs")]
    pub quick: bool,
    #[command(flatten)]
    pub levers: LeverArgs,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dfl bench`.
pub fn run(args: &BenchArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let request = BenchRequest {
        configs: args.configs.clone(),
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        quick: args.quick,
        levers: args.levers.over(Levers::default()),
    };
    // The flags are checked before the device is resolved, so a typo costs nothing.
    BenchOptions::new(&request, tch::Device::Cpu)?;
    let device = device::resolve(global.device)?.device;
    let opts = BenchOptions::new(&request, device)?;
    let report = bench::run(&opts, device)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the results to stdout")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", bench::table(&report)).context("writing the results to stdout")?;
    }
    let skipped = report.configs.iter().any(|c| c.skipped);
    Ok(if skipped { Outcome::DoneWithSkips } else { Outcome::Done })
}
