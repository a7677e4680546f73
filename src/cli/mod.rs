//! The command line: clap types (one file per subcommand), dispatch, logger and progress bars.
//! `anyhow` lives here and in `main.rs` only (`docs/architecture.md`).

pub mod logger;
pub mod progress;

mod bench;
mod demo;
mod eval;
mod extract;
mod faceset;
mod launch;
mod merge;
mod model;
mod sort;
mod status;
mod studio;
mod train;
mod xseg;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use indicatif::MultiProgress;

use crate::device::DeviceRequest;
use crate::report::Outcome;

/// dfl: a face-swap workbench in the tradition of DeepFaceLab.
///
/// Put two videos in the workspace (data_src.mp4: the face you want; data_dst.mp4: the footage
/// to change), then run the stages in order: extract, sort, train, merge. Every stage can be
/// stopped at any moment and run again; `dfl status` says what is done and what comes next.
///
/// Exit codes: 0 done, 1 done but some items were skipped, 2 fatal error.
#[derive(Debug, Parser)]
#[command(name = "dfl", version, max_term_width = 100)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// The workspace folder.
    #[arg(long, short = 'w', global = true, env = "DFL_WORKSPACE", default_value = "workspace")]
    pub workspace: PathBuf,
    /// Compute device for models: auto (CUDA when available, else CPU with a warning), cpu,
    /// cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: DeviceRequest,
    /// Worker threads for CPU work (default: one per core).
    #[arg(long, short = 'j', global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// More messages (-v debug, -vv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Fewer messages (-q warnings and errors only, -qq errors only).
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

/// The subcommands, in pipeline order.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect, landmark and align faces from data_src/data_dst into a faceset.
    Extract(extract::ExtractArgs),
    /// Score, reorder and clean a faceset; rejects go to aligned_trash, --undo puts names back.
    Sort(sort::SortArgs),
    /// Train a DF or LIAE model on the two facesets; resumable, saves on Ctrl-C.
    Train(Box<train::TrainArgs>),
    /// Put the src face on every dst frame and build result.mp4 with the dst audio.
    Merge(merge::MergeArgs),
    /// Measure the merged swap: identity, expression, stability; eval/report.json and .png.
    Eval(eval::EvalArgs),
    /// Tools for face files (read their metadata) and demo footage (synth).
    Faceset(faceset::FacesetArgs),
    /// Show what each stage has produced in the workspace and what to run next.
    Status(status::StatusArgs),
    /// Run the whole pipeline on the bundled samples (resumable): the place to start.
    Demo(demo::DemoArgs),
    /// XSeg face segmentation: export and import the polygons drawn on faces.
    Xseg(xseg::XsegArgs),
    /// Models in and out of DeepFaceLab's SAEHD layout (import-dfl, export-dfl).
    Model(model::ModelArgs),
    /// A local web app over the workspace: watch training, clean facesets, label, tune merges.
    Studio(studio::StudioArgs),
    /// Time standard SAEHD training configurations on random data: ms/iteration, samples/s,
    /// peak memory; `--json` to share.
    Bench(bench::BenchArgs),
}

/// Runs the parsed command; progress bars draw into `bars`.
///
/// # Errors
/// Any fatal error, with context naming the file involved and the next step.
pub fn run(cli: &Cli, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    // Commands that may compute on a device load libtorch's CUDA backend before anything else
    // touches libtorch (see `device`); the others never pay for it.
    let computes = matches!(
        cli.command,
        Command::Train(_)
            | Command::Merge(_)
            | Command::Eval(_)
            | Command::Status(_)
            | Command::Demo(_)
            | Command::Xseg(_)
            | Command::Bench(_)
    );
    if computes && cli.global.device != DeviceRequest::Cpu {
        crate::device::load_cuda_backend();
    }
    // A CUDA device that is not there is an error for every command, not only for those that
    // run a network: the flag is global, and silently ignoring it would hide the mistake.
    if let DeviceRequest::Cuda(_) = cli.global.device {
        crate::device::resolve(cli.global.device)?;
    }
    match &cli.command {
        Command::Extract(args) => extract::run(args, &cli.global, bars),
        Command::Faceset(args) => faceset::run(args, &cli.global, bars),
        Command::Sort(args) => sort::run(args, &cli.global, bars),
        Command::Train(args) => train::run(args, &cli.global, bars),
        Command::Merge(args) => merge::run(args, &cli.global, bars),
        Command::Eval(args) => eval::run(args, &cli.global, bars),
        Command::Status(args) => status::run(args, &cli.global),
        Command::Demo(args) => demo::run(args, &cli.global),
        Command::Xseg(args) => xseg::run(args, &cli.global, bars),
        Command::Studio(args) => studio::run(args, &cli.global),
        Command::Model(args) => model::run(args, &cli.global),
        Command::Bench(args) => bench::run(args, &cli.global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bad_device_is_a_usage_error() {
        let err = Cli::try_parse_from(["dfl", "status", "--device", "tpu"]).unwrap_err();
        assert!(err.to_string().contains("cuda:N"), "{err}");
        let cli = Cli::try_parse_from(["dfl", "--device", "cuda:1", "status"]).unwrap();
        assert_eq!(cli.global.device, DeviceRequest::Cuda(1));
    }
}
