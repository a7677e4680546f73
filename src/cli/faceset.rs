//! `dfl faceset`: tools for face files (`info` prints the metadata inside them).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::face::metadata::{FaceMetadata, read_metadata};
use crate::report::Outcome;

/// Arguments of `dfl faceset`.
#[derive(Debug, clap::Args)]
pub struct FacesetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FacesetCommand,
}

/// The faceset tools.
#[derive(Debug, clap::Subcommand)]
pub enum FacesetCommand {
    /// Print the metadata of face files as JSON, one object per line.
    Info {
        /// Face files (.jpg or .png written by dfl extract).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// One line of `dfl faceset info`.
#[derive(Serialize)]
struct InfoLine<'a> {
    file: &'a std::path::Path,
    #[serde(flatten)]
    meta: &'a FaceMetadata,
}

/// Runs `dfl faceset`.
pub fn run(args: &FacesetArgs) -> anyhow::Result<Outcome> {
    let FacesetCommand::Info { files } = &args.command;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for file in files {
        match read_metadata(file) {
            Ok(meta) => {
                serde_json::to_writer(&mut out, &InfoLine { file, meta: &meta })
                    .context("writing to stdout")?;
                writeln!(out).context("writing to stdout")?;
            }
            Err(err) => {
                log::error!("{err}");
                failed += 1;
            }
        }
    }
    Ok(match failed {
        0 => Outcome::Done,
        n if n == files.len() => Outcome::Fatal,
        _ => Outcome::DoneWithSkips,
    })
}
