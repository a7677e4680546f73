//! The `dfl` binary: parse, set up logging and threads, dispatch, report (style rule 1).

use std::process::ExitCode;

use clap::Parser;
use dfl::cli::{self, Cli};
use dfl::report::Outcome;
use indicatif::MultiProgress;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bars = MultiProgress::new();
    cli::logger::init(bars.clone(), cli::logger::level(cli.global.verbose, cli.global.quiet));
    if let Some(jobs) = cli.global.jobs
        && let Err(err) =
            rayon::ThreadPoolBuilder::new().num_threads(usize::from(jobs)).build_global()
    {
        log::warn!("cannot set --jobs {jobs}: {err}");
    }
    let outcome = match cli::run(&cli, &bars) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("dfl: {err:#}");
            Outcome::Fatal
        }
    };
    ExitCode::from(outcome.code())
}
