//! `dfl extract`: frames to an aligned faceset.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::assets::{SHAPE_PREDICTOR_FILE, YUNET_FILE};
use crate::detect::YuNetModel;
use crate::detect::{DetectError, FaceDetector};
use crate::extract::{self, ExtractConfig, ExtractModels};
use crate::face::align::FaceType;
use crate::face::metadata::ImageFormat;
use crate::face::shape_predictor::ShapePredictor;
use crate::report::Outcome;
use crate::workspace::{Input, Side, Workspace, count_images};

use super::GlobalArgs;
use super::progress::Bar;

/// Arguments of `dfl extract`. Unset options keep their defaults (shown in brackets).
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Which faceset to extract.
    pub side: Side,
    /// A video file or image folder to read instead of workspace/data_<side>.mp4 or data_<side>/.
    #[arg(long, short = 'i', value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// How much of the head each face image shows [whole_face].
    #[arg(long, value_enum)]
    pub face_type: Option<FaceType>,
    /// Side of the aligned face images in pixels, 64–2048 [256].
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(64..=2048))]
    pub size: Option<u32>,
    /// File format of the face images [jpg].
    #[arg(long, value_enum)]
    pub format: Option<ImageFormat>,
    /// JPEG quality, 1–100 [95].
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: Option<u8>,
    /// Minimum detector confidence, 0–1 [0.6].
    #[arg(long, value_name = "SCORE")]
    pub score_threshold: Option<f32>,
    /// Overlap (IoU) above which two detections are the same face [0.3].
    #[arg(long, value_name = "IOU")]
    pub nms_iou: Option<f32>,
    /// Ignore faces whose box is smaller than this many pixels [see DetectorConfig].
    #[arg(long, value_name = "PX")]
    pub min_face_px: Option<f32>,
    /// Keep at most this many faces per frame, largest first (0 = all) [0].
    #[arg(long, value_name = "N")]
    pub max_faces: Option<usize>,
    /// Skip the second landmark pass (faster, a little less stable).
    #[arg(long)]
    pub no_refine: bool,
    /// Also write each decoded video frame as PNG into data_<side>/frames/.
    #[arg(long)]
    pub keep_frames: bool,
    /// Also write each frame with boxes, landmarks and crop outlines into aligned_debug/.
    #[arg(long)]
    pub debug: bool,
    /// Continue even though the saved settings differ from these (re-extracts every frame).
    #[arg(long)]
    pub force: bool,
}

impl ExtractArgs {
    /// Applies the overrides to the defaults.
    fn config(&self) -> anyhow::Result<ExtractConfig> {
        let mut cfg = ExtractConfig::default();
        cfg.face_type = self.face_type.unwrap_or(cfg.face_type);
        cfg.size_px = self.size.unwrap_or(cfg.size_px);
        cfg.format = self.format.unwrap_or(cfg.format);
        cfg.jpeg_quality = self.jpeg_quality.unwrap_or(cfg.jpeg_quality);
        let det = &mut cfg.detector;
        det.score_threshold = self.score_threshold.unwrap_or(det.score_threshold);
        det.nms_iou = self.nms_iou.unwrap_or(det.nms_iou);
        det.min_face_px = self.min_face_px.unwrap_or(det.min_face_px);
        det.max_faces = self.max_faces.unwrap_or(det.max_faces);
        anyhow::ensure!(
            (0.0..=1.0).contains(&det.score_threshold) && (0.0..=1.0).contains(&det.nms_iou),
            "--score-threshold and --nms-iou take values from 0 to 1"
        );
        cfg.refine_landmarks = !self.no_refine;
        cfg.keep_frames = self.keep_frames;
        cfg.debug = self.debug;
        cfg.force = self.force;
        Ok(cfg)
    }

    /// Returns the input: `--input`, else the workspace's video or image folder.
    fn input(&self, ws: &Workspace) -> anyhow::Result<Input> {
        match &self.input {
            Some(path) => Ok(Input::from_path(path)?),
            None => ws.find_input(self.side).with_context(|| {
                format!(
                    "no {side} input: put a video at {} or images in {}, or pass --input PATH",
                    ws.default_video(self.side).display(),
                    ws.side_dir(self.side).display(),
                    side = self.side
                )
            }),
        }
    }
}

/// Runs `dfl extract`.
pub fn run(
    args: &ExtractArgs,
    global: &GlobalArgs,
    bars: &MultiProgress,
) -> anyhow::Result<Outcome> {
    let cfg = args.config()?;
    let ws = Workspace::create(&global.workspace)?;
    let input = args.input(&ws)?;
    let assets = crate::assets::Assets::from_env();
    let yunet_path = assets.model(YUNET_FILE)?;
    let predictor_path = assets.model(SHAPE_PREDICTOR_FILE)?;
    log::info!("extracting {} faces from {}", args.side, input.path().display());
    let predictor = ShapePredictor::load(&predictor_path)?;
    let yunet = YuNetModel::load(&yunet_path, cfg.detector)?;
    // One detector per rayon worker: OpenCV's own threads would only oversubscribe the cores.
    opencv::core::set_num_threads(1).context("setting OpenCV's thread count")?;
    let factory =
        move || -> Result<Box<dyn FaceDetector>, DetectError> { Ok(Box::new(yunet.detector()?)) };
    let models = ExtractModels { detector: &factory, predictor: &predictor };
    let bar = Bar::new(bars, "frames");
    let report = extract::run(&cfg, &ws, args.side, &input, &models, &bar)?;
    drop(bar);
    let f = &report.frames;
    log::info!(
        "{} faces from {} frames ({} without a face, {} done before, {} skipped) in {}",
        report.faces,
        f.done,
        report.frames_without_faces,
        f.already_done,
        f.skipped,
        ws.aligned_dir(args.side).display()
    );
    let faceset_is_empty = count_images(&ws.aligned_dir(args.side)) == 0;
    if f.done > 0 && report.faces == 0 && faceset_is_empty {
        log::warn!(
            "no face was found in any of the {} frames of {}: check that it shows a face, or lower --score-threshold (now {})",
            f.done,
            input.path().display(),
            cfg.detector.score_threshold
        );
        return Ok(Outcome::DoneWithSkips);
    }
    Ok(f.outcome())
}
