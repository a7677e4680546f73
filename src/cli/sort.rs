//! `dfl sort`: score, order and clean a faceset.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::assets::{SFACE_FILE, YUNET_FILE};
use crate::detect::{DetectorConfig, YuNetModel};
use crate::face::identity::SFaceModel;
use crate::report::Outcome;
use crate::sort::{self, SortModels, SortOptions, SortReport};
use crate::sort::{Filters, Method};
use crate::workspace::{Side, Workspace};

use super::GlobalArgs;
use super::progress::Bar;

/// Arguments of `dfl sort`.
///
/// Kept faces are renamed `<rank>_<frame>_<face>.jpg` in the new order; rejected faces move to
/// aligned_trash/ with the reason in aligned_trash/reasons.json. Nothing is deleted, and
/// `dfl sort <side> --undo` puts the names of the last sort back.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").args(["by", "undo", "sheet"]).multiple(true).required(true)))]
pub struct SortArgs {
    /// Which faceset to sort.
    pub side: Side,
    /// How to order the faces.
    #[arg(long, value_enum, conflicts_with = "undo")]
    pub by: Option<Method>,
    /// Keep the first N faces of the new order, trash the rest (the target of `best`, which
    /// defaults to 2000).
    #[arg(long, value_name = "N", requires = "by")]
    pub keep: Option<usize>,
    /// Trash faces whose score is below this (in the unit the sheet shows; `black` is a
    /// fraction, yaw/pitch/hue are degrees; `identity --keep-like` defaults to 0.363).
    #[arg(long, value_name = "SCORE", requires = "by", allow_negative_numbers = true, value_parser = finite_score)]
    pub min_score: Option<f64>,
    /// Trash faces whose score is above this.
    #[arg(long, value_name = "SCORE", requires = "by", allow_negative_numbers = true, value_parser = finite_score)]
    pub max_score: Option<f64>,
    /// With `--by identity`: keep the faces of the person in these photos or aligned faces.
    #[arg(long, value_name = "IMAGE", num_args = 1.., requires = "by")]
    pub keep_like: Vec<PathBuf>,
    /// Print what would move; move nothing.
    #[arg(long, conflicts_with = "undo")]
    pub dry_run: bool,
    /// Write contact sheets of the new order to data_<side>/sort_sheets/ (alone: of the
    /// current order).
    #[arg(long, conflicts_with = "undo")]
    pub sheet: bool,
    /// Write every face's score, rank and new name to this JSON file.
    #[arg(long, value_name = "FILE", requires = "by")]
    pub scores_json: Option<PathBuf>,
    /// Put back the names of the last sort (repeat to go further back).
    #[arg(long)]
    pub undo: bool,
}

impl SortArgs {
    fn options(&self, method: Method) -> anyhow::Result<SortOptions> {
        anyhow::ensure!(
            self.keep_like.is_empty() || method == Method::Identity,
            "--keep-like goes with --by identity"
        );
        let scored = self.min_score.is_some() || self.max_score.is_some();
        anyhow::ensure!(
            !scored || method.filters_by_score(),
            "--by {} has no per-face score to filter on; drop --min-score/--max-score",
            method.name()
        );
        let mut filters =
            Filters { keep: self.keep, min_score: self.min_score, max_score: self.max_score };
        if method == Method::Identity && !self.keep_like.is_empty() && filters.min_score.is_none() {
            filters.min_score = Some(crate::face::identity::SAME_PERSON_COSINE);
        }
        Ok(SortOptions {
            method,
            filters,
            keep_like: self.keep_like.clone(),
            dry_run: self.dry_run,
            sheet: self.sheet,
            scores_json: self.scores_json.clone(),
        })
    }
}

/// Runs `dfl sort`.
pub fn run(args: &SortArgs, global: &GlobalArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let side = args.side;
    if args.undo {
        let (moved, recovered) = sort::undo(&ws, side)?;
        if let Some(what) = recovered {
            log::info!("finished the interrupted {what}");
        }
        log::info!("undo: {moved} file(s) moved back in {}", ws.side_dir(side).display());
        return Ok(Outcome::Done);
    }
    let Some(method) = args.by else {
        let bar = Bar::new(bars, "faces");
        let sheets = sort::sheets_only(&ws, side, &bar)?;
        drop(bar);
        log::info!("{} contact sheet(s) in {}", sheets.len(), ws.sort_sheets_dir(side).display());
        return Ok(Outcome::Done);
    };
    let opts = args.options(method)?;
    let models = if method == Method::Identity { Some(load_models()?) } else { None };
    let bar = Bar::new(bars, "faces");
    let report = sort::sort(&ws, side, &opts, models.as_ref(), &bar)?;
    drop(bar);
    print_report(&ws, side, &opts, &report);
    Ok(if report.skipped.is_empty() { Outcome::Done } else { Outcome::DoneWithSkips })
}

fn load_models() -> anyhow::Result<SortModels> {
    let assets = crate::assets::Assets::from_env();
    let sface_path = assets.model(SFACE_FILE)?;
    let sface =
        SFaceModel::load(&sface_path).with_context(|| format!("{}", sface_path.display()))?;
    let yunet = YuNetModel::load(assets.model(YUNET_FILE)?, DetectorConfig::default())?;
    Ok(SortModels { sface, yunet })
}

fn print_report(ws: &Workspace, side: Side, opts: &SortOptions, r: &SortReport) {
    if let Some(what) = &r.recovered {
        log::info!("finished the interrupted {what} first");
    }
    let by = opts.method.name();
    if opts.dry_run {
        for m in &r.plan {
            let why = m.reason.as_deref().map(|w| format!("  ({w})")).unwrap_or_default();
            println!("{} -> {}{why}", m.from, m.to);
        }
        log::info!(
            "dry run, nothing moved: sorting {} faces by {by} would keep {}, trash {}, move {} file(s)",
            r.faces,
            r.kept,
            r.trashed,
            r.moved
        );
    } else {
        log::info!(
            "sorted {} faces by {by} ({} measured, the rest cached): {} kept in aligned/, {} moved to aligned_trash/, {} file(s) renamed",
            r.faces,
            r.measured,
            r.kept,
            r.trashed,
            r.moved
        );
        if r.moved > 0 {
            log::info!("undo with `dfl sort {} --undo`", side.as_str());
        }
    }
    if !r.sheets.is_empty() {
        log::info!("{} contact sheet(s) in {}", r.sheets.len(), ws.sort_sheets_dir(side).display());
    }
    if !r.skipped.is_empty() {
        log::warn!(
            "{} file(s) in aligned/ are not dfl faces and were left as they are",
            r.skipped.len()
        );
    }
}
/// Parses `--min-score` and `--max-score`: a finite number (NaN compares false with every
/// score, so it would keep or trash everything silently).
fn finite_score(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}
