//! `dfl xseg train`: train an XSeg model on the labelled faces of both sides.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::device;
use crate::face::align::FaceType;
use crate::faceset::Faceset;
use crate::model::xseg::{XSegConfig, XSegFolder};
use crate::progress::NoProgress;
use crate::report::Outcome;
use crate::workspace::{Side, Workspace};
use crate::xseg::{XSegRunOptions, describe_iou, layer_table, train};

use super::super::GlobalArgs;
use super::super::progress::Bar;

/// Arguments of `dfl xseg train`. Unset options keep the saved (or default) values.
#[derive(Debug, clap::Args)]
pub struct XSegTrainArgs {
    /// The model's name: its folder under workspace/xseg/ (required unless --dry-run).
    #[arg(long, required_unless_present = "dry_run")]
    pub name: Option<String>,
    /// Input and mask side in pixels, a multiple of 64 (fixed by the first run) [256].
    #[arg(long, value_name = "PX")]
    pub resolution: Option<i64>,
    /// The crop the model segments (fixed by the first run) [the faces' own].
    #[arg(long, value_enum)]
    pub face_type: Option<FaceType>,
    /// Faces per step [4].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// RMSprop's learning rate [1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// DFL's lr dropout [true].
    #[arg(long, value_name = "BOOL")]
    pub lr_dropout: Option<bool>,
    /// Pretrain: reconstruct the faces through the bottleneck (no labels needed) [false].
    /// Turning it off restarts the iteration count.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub pretrain: Option<bool>,
    /// Stop after this many iterations in this run (then save).
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Stop at this iteration (0: never) [0].
    #[arg(long, value_name = "N")]
    pub target_iter: Option<u64>,
    /// Minutes between checkpoint sets [25].
    #[arg(long, value_name = "MIN")]
    pub save_every_min: Option<f64>,
    /// Iterations between preview grids [100].
    #[arg(long, value_name = "N")]
    pub preview_every: Option<u64>,
    /// Iterations between held-out IoU measurements (0: only at the end) [500].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Build the network, print its layer table and parameter count, and exit.
    #[arg(long)]
    pub dry_run: bool,
}

impl XSegTrainArgs {
    fn apply(&self, mut cfg: XSegConfig) -> XSegConfig {
        cfg.resolution = self.resolution.unwrap_or(cfg.resolution);
        cfg.face_type = self.face_type.unwrap_or(cfg.face_type);
        cfg.batch_size = self.batch_size.unwrap_or(cfg.batch_size);
        cfg.lr = self.lr.unwrap_or(cfg.lr);
        cfg.lr_dropout = self.lr_dropout.unwrap_or(cfg.lr_dropout);
        cfg.pretrain = self.pretrain.unwrap_or(cfg.pretrain);
        cfg.target_iter = self.target_iter.unwrap_or(cfg.target_iter);
        cfg.save_every_min = self.save_every_min.unwrap_or(cfg.save_every_min);
        cfg.preview_every = self.preview_every.unwrap_or(cfg.preview_every);
        cfg.eval_every = self.eval_every.unwrap_or(cfg.eval_every);
        cfg
    }
}

/// Runs `dfl xseg train`.
pub fn run(
    args: &XSegTrainArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    if args.dry_run {
        let cfg = args.apply(XSegConfig::default());
        cfg.validate().map_err(anyhow::Error::msg)?;
        let (table, total) = layer_table(&cfg);
        print!("{table}");
        let total = crate::model::summary::with_commas(total);
        println!("XSeg at {0}×{0}: {total} parameters", cfg.resolution);
        return Ok(Outcome::Done);
    }
    let name = args.name.as_deref().context("--name NAME is required")?;
    let ws = Workspace::new(&global.workspace);
    let folder = XSegFolder::open(&ws, name)?;
    let base = match folder.read_config()? {
        Some(saved) => saved,
        None => XSegConfig { face_type: faces_own_type(&ws), ..XSegConfig::default() },
    };
    let cfg = args.apply(base);
    let device = device::resolve(global.device)?.device;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }
    opencv::core::set_num_threads(1).context("setting OpenCV's thread count")?;
    let bar = Bar::new(bars, "iterations");
    let opts = XSegRunOptions { name, iterations: args.iterations, stop, device, progress: &bar };
    let report = train(&cfg, &ws, &opts)?;
    drop(bar);
    if let Some(p) = &report.last_iou {
        log::info!("{}", describe_iou(p));
    }
    log::info!(
        "XSeg model {name} at iteration {} ({} this run; {} faces trained on, {} held out); preview: {}",
        report.iteration,
        report.ran,
        report.faces.0,
        report.faces.1,
        report.preview.display()
    );
    Ok(if report.skipped.is_empty() { Outcome::Done } else { Outcome::DoneWithSkips })
}

/// The face type most faces of the workspace have (dst first), for a new model.
fn faces_own_type(ws: &Workspace) -> FaceType {
    for side in [Side::Dst, Side::Src] {
        if let Ok(set) = Faceset::read(&ws.aligned_dir(side), &NoProgress) {
            let mut counts = std::collections::HashMap::new();
            for f in &set.faces {
                *counts.entry(f.meta.face_type).or_insert(0usize) += 1;
            }
            if let Some((t, _)) = counts.into_iter().max_by_key(|(t, n)| (*n, t.as_str())) {
                return t;
            }
        }
    }
    FaceType::default()
}
