//! `dfl xseg apply`, `remove` and `fetch`.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::device;
use crate::model::xseg::{XSegFolder, XSegModel};
use crate::report::Outcome;
use crate::workspace::{Side, Workspace};
use crate::xseg::{ApplyReport, apply, fetch, remove};

use super::super::GlobalArgs;
use super::super::progress::Bar;

/// Arguments of `dfl xseg apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Which faceset.
    #[arg(value_enum)]
    pub side: Side,
    /// The XSeg model (its folder under workspace/xseg/).
    #[arg(long)]
    pub name: String,
}

/// Arguments of `dfl xseg remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// Which faceset.
    #[arg(value_enum)]
    pub side: Side,
}

/// Arguments of `dfl xseg fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Which faceset.
    #[arg(value_enum)]
    pub side: Side,
    /// Where to copy them [data_<side>/aligned_xseg].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `dfl xseg apply`.
pub fn run_apply(
    args: &ApplyArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let device = device::resolve(global.device)?.device;
    opencv::core::set_num_threads(1).context("setting OpenCV's thread count")?;
    let model = XSegModel::load(&XSegFolder::open(&ws, &args.name)?, device)?;
    let bar = Bar::new(bars, "faces");
    let report = apply(&ws, args.side, &model, &bar)?;
    drop(bar);
    log::info!(
        "XSeg {} (iteration {}): masks written into {} face(s), {} already had them, in {}",
        model.name(),
        model.iteration(),
        report.written,
        report.unchanged,
        ws.aligned_dir(args.side).display()
    );
    Ok(finish(&report))
}

/// Runs `dfl xseg remove`.
pub fn run_remove(
    args: &RemoveArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let bar = Bar::new(bars, "faces");
    let report = remove(&ws, args.side, &bar)?;
    drop(bar);
    log::info!(
        "applied XSeg masks removed from {} face(s) ({} had none; labels kept), in {}",
        report.written,
        report.unchanged,
        ws.aligned_dir(args.side).display()
    );
    Ok(finish(&report))
}

/// Runs `dfl xseg fetch`.
pub fn run_fetch(args: &FetchArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let report = fetch(&ws, args.side, args.out.as_deref())?;
    log::info!(
        "{} labelled face(s) copied to {} ({} already there)",
        report.copied,
        report.out.display(),
        report.unchanged
    );
    Ok(Outcome::Done)
}

/// Reports the faces left as they were; exit 1 when there are any.
fn finish(report: &ApplyReport) -> Outcome {
    for (path, why) in &report.failed {
        log::error!("{}: left as it was ({why})", path.display());
    }
    if report.not_faces > 0 {
        log::warn!("{} file(s) in the faceset are not dfl faces; left alone", report.not_faces);
    }
    if report.failed.is_empty() { Outcome::Done } else { Outcome::DoneWithSkips }
}
