//! `dfl faceset`: tools for face files (`info` prints the metadata inside them) and for demo
//! footage (`synth` animates still portraits with a video's landmark motion; `occlude` paints
//! occluders with exact masks over a clip, for measuring XSeg).

mod interop;
mod occlude;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::MultiProgress;
use serde::Serialize;

use crate::assets::{SHAPE_PREDICTOR_FILE, YUNET_FILE};
use crate::detect::{DetectorConfig, YuNetModel};
use crate::face::metadata::{FaceMetadata, read_metadata};
use crate::face::shape_predictor::ShapePredictor;
use crate::report::Outcome;
use crate::synth::{MIN_WIDTH_PX, SynthConfig, SynthModels, synthesize};

use super::progress::Bar;

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
    /// Make test/demo footage: animate still portraits with the landmark motion of a video.
    ///
    /// A deterministic tool for tests and demos, not a deepfake generator: it bends the
    /// portrait's own pixels with a piecewise-affine warp so its landmarks follow the driver's
    /// motion (relative to the driver's first frame), plus a small seeded jitter. With several
    /// portraits, the driver's frames are split into equal consecutive runs, one per portrait.
    /// Writes 00001.png, 00002.png, … into --out, ready for `dfl extract src --input DIR`.
    Synth(SynthArgs),
    /// Test bed for XSeg: paint moving occluders (hands, bars, blobs) over a clip, with masks.
    ///
    /// Writes DIR/frames/<frame>.png (the occluded frames, named like the input's frames),
    /// DIR/masks/<frame>.png (255 exactly where an occluder was painted, hard-edged) and
    /// DIR/occlude.json. Deterministic for a seed; a rerun resumes.
    Occlude(occlude::OccludeArgs),
    /// Make every face's true mask (landmark hull minus occluder) and polygon labels for some.
    ///
    /// For faces extracted from `occlude` frames: writes the true masks in aligned-face space
    /// to --out-truth and include/exclude polygons of --count faces (mostly occluded ones,
    /// spread over the clip) to --out-labels, for `dfl xseg labels import`.
    OccludeLabels(occlude::OccludeLabelsArgs),
    /// Score face masks against the true masks (mean IoU), and optionally a merge: the share of
    /// occluder pixels it kept.
    OccludeScore(occlude::OccludeScoreArgs),
    /// Import a DeepFaceLab faceset (a folder of aligned .jpg/.png faces, or a faceset.pak).
    ///
    /// Every face keeps its file name and pixels (only the metadata is converted):
    /// landmarks, face type, source frame, box and landmarks, the image-to-face matrix, XSeg
    /// polygons and an applied XSeg mask. The source files are only read. Faces already
    /// imported are skipped, so a rerun finishes an interrupted import.
    ImportDfl(interop::ImportDflArgs),
    /// Write a faceset as DeepFaceLab faces (DFLJPG), to go back to DeepFaceLab at any time.
    ///
    /// JPEG faces keep their image bytes; PNG faces are re-encoded as JPEG (quality 100).
    /// Landmarks, face type, source frame, box and landmarks, the matrix, XSeg polygons and
    /// an applied mask go into DeepFaceLab's metadata. The faceset is only read.
    ExportDfl(interop::ExportDflArgs),
}

/// Widest frames `dfl faceset synth` writes (8K): beyond that a typo, not a demo.
const MAX_WIDTH_PX: i64 = 8192;

/// Arguments of `dfl faceset synth`. Unset options keep their defaults (shown in brackets).
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// A still photo with one clear face; repeat for several portraits (shown in turn).
    #[arg(long, value_name = "FILE", required = true)]
    pub portrait: Vec<PathBuf>,
    /// The talking-head video whose landmark motion drives the portraits.
    #[arg(long, value_name = "VIDEO")]
    pub driver: PathBuf,
    /// The folder to write the frames into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Width of the frames in pixels; each portrait keeps its aspect ratio [480].
    #[arg(
        long,
        value_name = "PX",
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_WIDTH_PX)..=MAX_WIDTH_PX)
    )]
    pub width: Option<u32>,
    /// Seed of the jitter; the same inputs and seed give byte-identical frames [1].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Use only the first N driver frames [all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
}

impl SynthArgs {
    /// Applies the overrides to the defaults.
    fn config(&self) -> SynthConfig {
        let mut cfg = SynthConfig::default();
        cfg.width_px = self.width.unwrap_or(cfg.width_px);
        cfg.seed = self.seed.unwrap_or(cfg.seed);
        cfg.frames = self.frames.map(|n| usize::try_from(n).unwrap_or(usize::MAX)).or(cfg.frames);
        cfg
    }
}

/// One line of `dfl faceset info`: the metadata, with the XSeg labels counted and the applied
/// mask described (`{model, iteration, size, bytes}`) instead of its base64 PNG.
#[derive(Serialize)]
struct InfoLine<'a> {
    file: &'a std::path::Path,
    /// The metadata without its labels and mask (empty, so not printed).
    #[serde(flatten)]
    meta: FaceMetadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    seg_ie_polys: Option<LabelsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xseg_mask: Option<MaskInfo>,
}

/// A face's XSeg labels in `dfl faceset info`: counts, then the polygons themselves.
#[derive(Serialize)]
struct LabelsInfo {
    polygons: usize,
    include: usize,
    exclude: usize,
    points: usize,
    polys: Vec<crate::face::seg::SegPoly>,
}

/// A face's applied XSeg mask in `dfl faceset info`; `size` is null when the PNG is broken.
#[derive(Serialize)]
struct MaskInfo {
    model: String,
    iteration: u64,
    size: Option<u32>,
    bytes: usize,
}

impl<'a> InfoLine<'a> {
    fn new(file: &'a std::path::Path, mut meta: FaceMetadata) -> Self {
        let polys = std::mem::take(&mut meta.seg_ie_polys);
        let seg_ie_polys = (!polys.is_empty()).then(|| {
            let (include, exclude, points) = crate::face::seg::counts(&polys);
            LabelsInfo { polygons: polys.len(), include, exclude, points, polys }
        });
        let xseg_mask = meta.xseg_mask.take().map(|m| MaskInfo {
            size: m.size().ok(),
            bytes: m.png.len(),
            model: m.model,
            iteration: m.iteration,
        });
        InfoLine { file, meta, seg_ie_polys, xseg_mask }
    }
}

/// Runs `dfl faceset`.
pub fn run(
    args: &FacesetArgs,
    global: &super::GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    match &args.command {
        FacesetCommand::ImportDfl(args) => interop::run_import(args, global, bars),
        FacesetCommand::ExportDfl(args) => interop::run_export(args, global, bars),
        FacesetCommand::Info { files } => info(files),
        FacesetCommand::Synth(synth) => run_synth(synth, bars),
        FacesetCommand::Occlude(args) => occlude::run_occlude(args, bars),
        FacesetCommand::OccludeLabels(args) => occlude::run_labels(args, bars),
        FacesetCommand::OccludeScore(args) => occlude::run_score(args, bars),
    }
}

/// Runs `dfl faceset synth`.
fn run_synth(args: &SynthArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let cfg = args.config();
    for path in args.portrait.iter().chain([&args.driver]) {
        anyhow::ensure!(path.is_file(), "{} does not exist; check the path", path.display());
    }
    let assets = crate::assets::Assets::from_env();
    let yunet = YuNetModel::load(assets.model(YUNET_FILE)?, DetectorConfig::default())?;
    let predictor = ShapePredictor::load(&assets.model(SHAPE_PREDICTOR_FILE)?)?;
    let models = SynthModels { detector: &yunet, predictor: &predictor };
    let bar = Bar::new(bars, "frames");
    let started = std::time::Instant::now();
    let report = synthesize(&args.portrait, &args.driver, &args.out, &cfg, &models, &bar)?;
    drop(bar);
    let per_frame = started.elapsed().as_secs_f64() / report.frames.len().max(1) as f64;
    log::info!(
        "wrote {} frames to {} ({:.0} ms per frame); next: dfl extract src --input {}",
        report.frames.len(),
        args.out.display(),
        per_frame * 1000.0,
        quoted(&args.out)
    );
    Ok(Outcome::Done)
}

/// Returns `path` for a shell command line, quoted when it has spaces.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') { format!("'{text}'") } else { text }
}

/// Runs `dfl faceset info`.
fn info(files: &[PathBuf]) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for file in files {
        match read_metadata(file) {
            Ok(meta) => {
                serde_json::to_writer(&mut out, &InfoLine::new(file, meta))
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
