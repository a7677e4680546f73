//! `dfl faceset import-dfl` and `export-dfl`: DeepFaceLab facesets in and out.

use std::path::PathBuf;

use indicatif::MultiProgress;

use crate::interop::{
    ExportOptions, ExportReport, ImportOptions, ImportReport, export_dfl, import_dfl,
};
use crate::report::Outcome;
use crate::workspace::{Side, Workspace};

use super::super::GlobalArgs;
use super::super::progress::Bar;

/// Skipped files listed one per line before the rest are only counted.
const LISTED_SKIPS: usize = 20;

/// Arguments of `dfl faceset import-dfl`.
#[derive(Debug, clap::Args)]
pub struct ImportDflArgs {
    /// DeepFaceLab's aligned folder (e.g. `workspace/data_src/aligned`) or a faceset.pak.
    #[arg(value_name = "DIR|faceset.pak")]
    pub from: PathBuf,
    /// The faceset to import into (`data_<side>/aligned`).
    #[arg(long, value_enum)]
    pub side: Side,
    /// The video or folder of frames the faces came from (merging needs their size); by
    /// default the workspace's input for the side, else the folder above DIR.
    #[arg(long, value_name = "VIDEO|DIR")]
    pub frames: Option<PathBuf>,
}

/// Runs `dfl faceset import-dfl`.
pub fn run_import(
    args: &ImportDflArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::create(&global.workspace)?;
    let opts =
        ImportOptions { from: args.from.clone(), side: args.side, frames: args.frames.clone() };
    let bar = Bar::new(bars, "faces");
    let report = import_dfl(&ws, &opts, &bar)?;
    drop(bar);
    print_import(&ws, args, &report);
    Ok(match (report.imported + report.already, report.skipped.len()) {
        (0, 0) => {
            log::error!(
                "{}: no face files in it; pass DeepFaceLab's aligned folder",
                args.from.display()
            );
            Outcome::Fatal
        }
        (0, _) => Outcome::Fatal,
        (_, 0) => Outcome::Done,
        _ => Outcome::DoneWithSkips,
    })
}

fn print_import(ws: &Workspace, args: &ImportDflArgs, r: &ImportReport) {
    for (name, why) in r.skipped.iter().take(LISTED_SKIPS) {
        log::warn!("{}: {why}; skipped", args.from.join(name).display());
    }
    if r.skipped.len() > LISTED_SKIPS {
        log::warn!("… and {} more skipped files", r.skipped.len() - LISTED_SKIPS);
    }
    if r.frame_not_found > 0 {
        let looked = r.frames.as_ref().map_or_else(
            || "no frames were found".to_owned(),
            |p| format!("not found in {}", p.display()),
        );
        log::warn!(
            "{} faces: their frame was {looked}; they train and sort, but to merge them rerun with --frames VIDEO|DIR",
            r.frame_not_found
        );
    }
    if r.masks_dropped > 0 {
        log::warn!(
            "{} applied XSeg masks were not square images of at most 2048 px and were left out",
            r.masks_dropped
        );
    }
    if r.eyebrows_changed > 0 {
        log::warn!(
            "{} faces had DeepFaceLab's eyebrows_expand_mod set; dfl has no such setting and ignores it",
            r.eyebrows_changed
        );
    }
    log::info!(
        "imported {} faces into {} ({} already there, {} skipped; {} with XSeg labels, {} with an applied mask); next: dfl sort {} or dfl train",
        r.imported,
        ws.aligned_dir(args.side).display(),
        r.already,
        r.skipped.len(),
        r.labelled,
        r.masked,
        args.side,
    );
}

/// Arguments of `dfl faceset export-dfl`.
#[derive(Debug, clap::Args)]
pub struct ExportDflArgs {
    /// The faceset to export (`data_<side>/aligned`).
    #[arg(long, value_enum)]
    pub side: Side,
    /// The folder to write DeepFaceLab's faces into, e.g. a DeepFaceLab workspace's
    /// `data_src/aligned` (created if needed; files already there are never overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `dfl faceset export-dfl`.
pub fn run_export(
    args: &ExportDflArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let opts = ExportOptions { side: args.side, out: args.out.clone() };
    let bar = Bar::new(bars, "faces");
    let report = export_dfl(&ws, &opts, &bar)?;
    drop(bar);
    print_export(args, &report);
    Ok(match (report.exported + report.already, report.skipped.len()) {
        (0, 0) => {
            log::error!(
                "{}: no faces to export; extract or import the {} faceset first",
                ws.aligned_dir(args.side).display(),
                args.side
            );
            Outcome::Fatal
        }
        (0, _) => Outcome::Fatal,
        (_, 0) => Outcome::Done,
        _ => Outcome::DoneWithSkips,
    })
}

fn print_export(args: &ExportDflArgs, r: &ExportReport) {
    for (name, why) in r.skipped.iter().take(LISTED_SKIPS) {
        log::warn!("{name}: {why}; not exported");
    }
    if r.skipped.len() > LISTED_SKIPS {
        log::warn!("… and {} more faces not exported", r.skipped.len() - LISTED_SKIPS);
    }
    if r.reencoded > 0 {
        log::warn!(
            "{} PNG faces were re-encoded as JPEG at quality 100 (DeepFaceLab reads only .jpg faces)",
            r.reencoded
        );
    }
    log::info!(
        "exported {} faces to {} ({} already there, {} not exported)",
        r.exported,
        args.out.display(),
        r.already,
        r.skipped.len()
    );
}
