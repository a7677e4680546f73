//! The `dfl` binary: parse, set up logging and threads, dispatch, report.

use std::process::ExitCode;

use clap::Parser;
use dfl::cli::{self, Cli};
use dfl::report::Outcome;
use indicatif::MultiProgress;

/// Environment variables that keep OpenCV's and FFmpeg's own chatter (GStreamer probes, "moov
/// atom not found", …) off stderr; dfl reports those failures itself, in one line. Set only
/// when the user has not set them, and not with -v.
const QUIET_NATIVE_LOGS: [(&str, &str); 2] =
    [("OPENCV_LOG_LEVEL", "ERROR"), ("OPENCV_FFMPEG_LOGLEVEL", "-8")];

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.global.verbose == 0 {
        for (name, value) in QUIET_NATIVE_LOGS {
            if std::env::var_os(name).is_none() {
                // SAFETY: no other thread exists yet; nothing has read the environment.
                unsafe { std::env::set_var(name, value) };
            }
        }
    }
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
            eprintln!("dfl: {}", cli::logger::one_line(&format!("{err:#}")));
            Outcome::Fatal
        }
    };
    ExitCode::from(outcome.code())
}
