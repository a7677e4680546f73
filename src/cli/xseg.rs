//! `dfl xseg`: the XSeg face segmentation. `labels export` and `labels import` move the
//! polygons users draw on faces between a faceset and a JSON file (`docs/xseg.md`).

mod apply;
mod train;

use std::path::PathBuf;

use indicatif::MultiProgress;

use crate::report::Outcome;
use crate::workspace::{Side, Workspace};
use crate::xseg::{export_labels, import_labels};

use super::GlobalArgs;
use super::progress::Bar;

/// Arguments of `dfl xseg`.
#[derive(Debug, clap::Args)]
pub struct XsegArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: XsegCommand,
}

/// The XSeg tools; each is one variant, dispatched in [`run`].
#[derive(Debug, clap::Subcommand)]
pub enum XsegCommand {
    /// Export or import the include/exclude polygons drawn on the faces of a faceset.
    ///
    /// Labels live inside each face file (metadata key seg_ie_polys) and move with it through
    /// `dfl sort`; the JSON file is for backing them up, editing them with other tools, and
    /// carrying them to a re-extracted faceset.
    #[command(subcommand)]
    Labels(LabelsCommand),
    /// Train an XSeg model on the labelled faces of both sides (resumable; Ctrl-C saves).
    ///
    /// Trains on every face with labels (or, when none has any, with an applied mask), one in
    /// eight held out to measure IoU beside the landmark hull's. RMSprop with lr dropout, DFL's
    /// augmentations; `--pretrain` learns faces without labels first.
    Train(train::XSegTrainArgs),
    /// Write a trained XSeg model's mask into every face of a side (resumable: faces that
    /// already carry this model's mask at its iteration are skipped; pixels are not touched).
    Apply(apply::ApplyArgs),
    /// Remove the applied XSeg masks from every face of a side (labels stay).
    Remove(apply::RemoveArgs),
    /// Copy the labelled faces of a side to a folder (default data_<side>/aligned_xseg).
    Fetch(apply::FetchArgs),
}

/// `dfl xseg labels` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LabelsCommand {
    /// Write the labels of every labelled face of a side to FILE (JSON, one face per line).
    Export(LabelsFileArgs),
    /// Write the labels in FILE into the faces of a side (faces found by frame and face
    /// index; one not found is reported and skipped, exit 1). Running it again changes
    /// nothing; faces FILE does not name keep their labels.
    Import(LabelsFileArgs),
}

/// Arguments of `dfl xseg labels export|import`.
#[derive(Debug, clap::Args)]
pub struct LabelsFileArgs {
    /// Which faceset.
    #[arg(long, value_enum)]
    pub side: Side,
    /// The labels file.
    #[arg(value_name = "FILE.json")]
    pub file: PathBuf,
}

/// Runs `dfl xseg`.
pub fn run(args: &XsegArgs, global: &GlobalArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    match &args.command {
        XsegCommand::Labels(LabelsCommand::Export(a)) => run_export(a, global, bars),
        XsegCommand::Labels(LabelsCommand::Import(a)) => run_import(a, global, bars),
        XsegCommand::Train(a) => train::run(a, global, bars),
        XsegCommand::Apply(a) => apply::run_apply(a, global, bars),
        XsegCommand::Remove(a) => apply::run_remove(a, global, bars),
        XsegCommand::Fetch(a) => apply::run_fetch(a, global),
    }
}

fn run_export(
    args: &LabelsFileArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let bar = Bar::new(bars, "faces");
    let report = export_labels(&ws, args.side, &args.file, &bar)?;
    drop(bar);
    if report.labelled == 0 {
        log::warn!(
            "none of the {} faces of {} has labels; wrote an empty list to {}",
            report.faces,
            ws.aligned_dir(args.side).display(),
            args.file.display()
        );
    } else {
        log::info!(
            "wrote the labels of {} of {} faces ({} polygons) to {}",
            report.labelled,
            report.faces,
            report.polys,
            args.file.display()
        );
    }
    Ok(if report.unreadable > 0 { Outcome::DoneWithSkips } else { Outcome::Done })
}

fn run_import(
    args: &LabelsFileArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let bar = Bar::new(bars, "faces");
    let report = import_labels(&ws, args.side, &args.file, &bar)?;
    drop(bar);
    for skipped in &report.skipped {
        log::error!("{skipped}");
    }
    log::info!(
        "labels of {} face(s) written, {} already up to date, {} skipped, in {}",
        report.written,
        report.unchanged,
        report.skipped.len(),
        ws.aligned_dir(args.side).display()
    );
    Ok(if report.skipped.is_empty() { Outcome::Done } else { Outcome::DoneWithSkips })
}
