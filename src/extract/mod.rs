//! `dfl extract`: frames → detected faces → 68 landmarks → aligned face files with their
//! metadata inside (`docs/dfl-parity.md`, "Extraction").
//!
//! Frames are decoded on the calling thread in chunks and processed on all cores; results are
//! written and logged in frame order. A frame's log line is appended only after all its face
//! files are on disk, so a rerun after a crash skips exactly the finished frames and redoes the
//! rest, ending with the same faceset an uninterrupted run gives.

mod debug;
mod process;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::detect::{DetectError, DetectorConfig, FaceDetector};
use crate::face::align::FaceType;
use crate::face::locate::Landmarker;
use crate::face::metadata::{FaceFileError, ImageFormat};
use crate::face::shape_predictor::ShapePredictor;
use crate::frames::{Frame, FrameSource, FramesError, Pick, for_each_frame};
use crate::img::ImageWriteError;
use crate::progress::Progress;
use crate::report::StageReport;
use crate::settings::{SettingsCheck, SettingsError, check_settings};
use crate::stage_log::{StageLog, StageLogError, resume_entries};
use crate::workspace::{Input, Side, Stage, Workspace, count_images};
use process::{DetectorPool, FrameContext, FrameOutcome};

/// Settings of one extraction run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractConfig {
    /// How much of the head the crop shows.
    pub face_type: FaceType,
    /// The aligned image's side in pixels.
    pub size_px: u32,
    /// JPEG or PNG face files.
    pub format: ImageFormat,
    /// JPEG quality, 1–100.
    pub jpeg_quality: u8,
    /// Detector thresholds and limits.
    pub detector: DetectorConfig,
    /// Run the landmark cascade a second time from the box the first pass implies.
    pub refine_landmarks: bool,
    /// Also write every decoded video frame as PNG into `data_<side>/frames/`.
    pub keep_frames: bool,
    /// Also write frames with detections drawn into `data_<side>/aligned_debug/`.
    pub debug: bool,
    /// Continue even though the saved settings differ (re-extracts every frame).
    pub force: bool,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            face_type: FaceType::WholeFace,
            size_px: 256,
            format: ImageFormat::Jpg,
            jpeg_quality: 95,
            detector: DetectorConfig::default(),
            refine_landmarks: true,
            keep_frames: false,
            debug: false,
            force: false,
        }
    }
}

/// The settings that shape the faceset, saved as `data_<side>/extract.settings.json`.
#[derive(Debug, Serialize)]
struct SavedSettings<'a> {
    input: &'a Path,
    face_type: FaceType,
    size_px: u32,
    format: ImageFormat,
    jpeg_quality: u8,
    score_threshold: f32,
    nms_iou: f32,
    min_face_px: f32,
    max_faces: usize,
    refine_landmarks: bool,
}

/// One line of `extract.jsonl`: a finished frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractEntry {
    /// The frame's name.
    pub frame: String,
    /// The face files written for it (file names in `aligned/`).
    pub faces: Vec<String>,
}

/// What an extraction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExtractReport {
    /// Frame counts: processed now, finished earlier, skipped as unreadable.
    pub frames: StageReport,
    /// Faces written in this run.
    pub faces: usize,
    /// Processed frames in which no face was found.
    pub frames_without_faces: usize,
}

/// Errors that stop an extraction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The input cannot be read.
    #[error(transparent)]
    Frames(#[from] FramesError),
    /// The saved settings differ.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The stage log cannot be read or written.
    #[error(transparent)]
    Log(#[from] StageLogError),
    /// A face file cannot be written.
    #[error(transparent)]
    FaceFile(#[from] FaceFileError),
    /// A debug or frame image cannot be written.
    #[error(transparent)]
    ImageWrite(#[from] ImageWriteError),
    /// The detector cannot be created.
    #[error(transparent)]
    Detector(#[from] DetectError),
    /// The landmark predictor is not the 68-point model.
    #[error(transparent)]
    Predictor(#[from] crate::face::locate::Not68Points),
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The previous faceset cannot be moved aside before a re-extraction.
    #[error("cannot move {} to {}: {source}; move it out of the way yourself and run again", .from.display(), .to.display())]
    SetAside {
        /// What was to move.
        from: PathBuf,
        /// Where to.
        to: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An output folder cannot be created.
    #[error("cannot create {}: {source}; check the path and its permissions", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Makes a fresh detector (one per worker thread).
pub type DetectorFactory<'a> = dyn Fn() -> Result<Box<dyn FaceDetector>, DetectError> + Sync + 'a;

/// The models extraction runs: a detector factory and the landmark predictor.
pub struct ExtractModels<'a> {
    /// Makes a detector; called once per worker thread.
    pub detector: &'a DetectorFactory<'a>,
    /// dlib's 68-point predictor, shared read-only by all threads.
    pub predictor: &'a ShapePredictor,
}

/// Extracts the faces of `input` into `ws`'s `side` faceset, resuming a previous run.
///
/// # Errors
/// Fatal problems only (unreadable input, changed settings without `force`, unwritable
/// outputs); bad frames are logged, skipped and counted.
pub fn run(
    cfg: &ExtractConfig,
    ws: &Workspace,
    side: Side,
    input: &Input,
    models: &ExtractModels<'_>,
    progress: &dyn Progress,
) -> Result<ExtractReport, ExtractError> {
    let mut source = FrameSource::open(input)?;
    let _lock = crate::lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let done = prepare_outputs(cfg, ws, side, input)?;
    let mut log = StageLog::open(ws.stage_log(Stage::Extract, side))?;
    let mut report = ExtractReport {
        frames: StageReport { already_done: done.len(), ..Default::default() },
        ..Default::default()
    };
    // The bar counts this run's frames, so its rate and ETA are this run's.
    progress.set_len(source.len_hint().saturating_sub(done.len()) as u64);

    let pool = DetectorPool { free: Mutex::new(Vec::new()), make: models.detector };
    let landmarker = Landmarker::new(models.predictor)?;
    let ctx = FrameContext { cfg, ws, side, landmarker };
    let pending = |_: usize, name: &str| if done.contains(name) { Pick::Skip } else { Pick::Take };
    for_each_frame(
        &mut source,
        pending,
        |frame| pool.with(|det| ctx.process(frame, det))?,
        |frame, result| {
            record(&mut log, &mut report, frame, result?)?;
            progress.inc(1);
            progress.note(&format!("{} faces", report.faces));
            Ok::<(), ExtractError>(())
        },
    )?;
    report.frames.skipped += source.warn_if_truncated();
    Ok(report)
}

/// Checks the saved settings, creates the output folders and returns the finished frames.
fn prepare_outputs(
    cfg: &ExtractConfig,
    ws: &Workspace,
    side: Side,
    input: &Input,
) -> Result<HashSet<String>, ExtractError> {
    // Relative to the workspace when inside it, so a moved workspace resumes.
    let input_path = ws.portable(input.path());
    let settings = SavedSettings {
        input: &input_path,
        face_type: cfg.face_type,
        size_px: cfg.size_px,
        format: cfg.format,
        jpeg_quality: cfg.jpeg_quality,
        score_threshold: cfg.detector.score_threshold,
        nms_iou: cfg.detector.nms_iou,
        min_face_px: cfg.detector.min_face_px,
        max_faces: cfg.detector.max_faces,
        refine_landmarks: cfg.refine_landmarks,
    };
    let log_path = ws.stage_log(Stage::Extract, side);
    let check = check_settings(&ws.stage_settings(Stage::Extract, side), &settings, cfg.force)?;
    if matches!(check, SettingsCheck::Replaced(_)) {
        set_aside_faceset(ws, side)?;
    }
    let mut dirs = vec![ws.aligned_dir(side)];
    dirs.extend(cfg.debug.then(|| ws.aligned_debug_dir(side)));
    dirs.extend((cfg.keep_frames && matches!(input, Input::Video(_))).then(|| ws.frames_dir(side)));
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .map_err(|source| ExtractError::CreateDir { path: dir.clone(), source })?;
    }
    let entries = resume_entries::<ExtractEntry>(&log_path, &check, "re-extracting every frame")?;
    Ok(entries.into_iter().map(|e| e.frame).collect())
}

/// Before a re-extraction with new settings: the old faces (perhaps renamed by `dfl sort`) move
/// to `aligned.replaced/` (`.2`, `.3`… when taken) with the sort history that names them, so
/// the new faceset is not mixed with them and nothing is deleted.
fn set_aside_faceset(ws: &Workspace, side: Side) -> Result<(), ExtractError> {
    let aligned = ws.aligned_dir(side);
    if count_images(&aligned) == 0 {
        return Ok(());
    }
    let aside = (1..)
        .map(|k| match k {
            1 => aligned.with_file_name("aligned.replaced"),
            k => aligned.with_file_name(format!("aligned.replaced.{k}")),
        })
        .find(|p| !p.exists())
        .expect("invariant: some name is free");
    let set_aside = |from: &Path, to: PathBuf| {
        std::fs::rename(from, &to).map_err(|source| ExtractError::SetAside {
            from: from.to_owned(),
            to,
            source,
        })
    };
    set_aside(&aligned, aside.clone())?;
    // The sort history names the old faces: it goes with them.
    let history = ws.sort_history(side);
    if history.is_file() {
        set_aside(&history, aside.join(history.file_name().unwrap_or_default()))?;
    }
    log::warn!("the previous faces were moved to {} (new settings)", aside.display());
    Ok(())
}

/// Appends a processed frame to the log and the report.
fn record(
    log: &mut StageLog,
    report: &mut ExtractReport,
    frame: &Frame,
    outcome: FrameOutcome,
) -> Result<(), ExtractError> {
    match outcome {
        FrameOutcome::Skipped(reason) => {
            log::warn!("skipping frame {} ({}): {reason}", frame.name, frame.source.display());
            report.frames.skipped += 1;
        }
        FrameOutcome::Done(faces) => {
            report.frames.done += 1;
            report.faces += faces.len();
            report.frames_without_faces += usize::from(faces.is_empty());
            log.append(&ExtractEntry { frame: frame.name.clone(), faces })?;
        }
    }
    Ok(())
}
