//! `dfl merge`: the src face onto every dst frame, then `result.mp4` with the dst audio
//! (design §6, anchors doc §5).
//!
//! The dst frames are decoded again from the dst input, in order. Chunks of frames go through
//! three steps: crop every face (all cores), predict the swaps in fixed-size batches on the
//! device (this thread), then merge, write `data_dst/merged/<frame>.png` and log the frame
//! (a second thread, using all cores), so the device works on the next chunk while the CPU
//! finishes this one. A frame's log line is appended only after its PNG is on disk, so a rerun
//! after a crash skips exactly the finished frames. Merging is deterministic (random colour
//! transfers are seeded per face, batches are padded to one shape), so a resumed merge writes
//! the same bytes an uninterrupted one does.

pub mod blend;
pub mod config;
pub mod faces;
pub mod mask;
pub mod masked;
pub mod predict;
pub mod preview;
pub mod video;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use opencv::core::{CV_8UC3, CV_32FC1, Mat, Scalar};
use opencv::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::extract::frames::{
    Frame, FrameSource, FramesError, Pick, image_frame_name, list_images, video_frame_name,
};
use crate::face::align::{FaceType, transform_mat, transform_mat_scaled, transform_points};
use crate::img::{ImageWriteError, write_image};
use crate::progress::Progress;
use crate::report::StageReport;
use crate::settings::{SettingsError, check_settings};
use crate::stage_log::{StageLog, StageLogError, resume_entries};
use crate::workspace::{Input, Side, Stage, Workspace};
use config::{BlendMode, MergeConfig, OutOfRange};
use faces::{DstFaceInfo, DstFaces, FacesError};
use masked::{DstFace, FacePrediction, MergeFaceError, crop_face, merge_face};
use predict::{PredictError, Predictor};
use video::{EncodeOptions, Rational, Timing, VideoError};

/// Frames decoded ahead per worker thread.
const FRAMES_PER_THREAD_IN_FLIGHT: usize = 4;

/// A range of frames by 1-based position: `A..B` (inclusive), `A..`, `..B` or `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameRange {
    /// The first frame (1-based), if bounded.
    pub first: Option<usize>,
    /// The last frame (1-based, inclusive), if bounded.
    pub last: Option<usize>,
}

impl FrameRange {
    /// Returns whether the 0-based frame `index` is in the range.
    pub fn contains(&self, index: usize) -> bool {
        let n = index + 1;
        self.first.is_none_or(|f| n >= f) && self.last.is_none_or(|l| n <= l)
    }

    /// Returns whether the range ends before the input does.
    pub fn is_bounded_above(&self) -> bool {
        self.last.is_some()
    }
}

impl std::str::FromStr for FrameRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a frame range; write A..B, A.., ..B or N (1-based)");
        let num = |t: &str| -> Result<Option<usize>, String> {
            let t = t.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<usize>().ok().filter(|&n| n >= 1).map(Some).ok_or_else(bad)
        };
        let range = match s.split_once("..") {
            Some((a, b)) => FrameRange { first: num(a)?, last: num(b.trim_start_matches('='))? },
            None => {
                let n = num(s)?.ok_or_else(bad)?;
                FrameRange { first: Some(n), last: Some(n) }
            }
        };
        if let (Some(a), Some(b)) = (range.first, range.last)
            && a > b
        {
            return Err(bad());
        }
        Ok(range)
    }
}

/// How a merge run goes, beyond the per-face settings.
pub struct MergeOptions<'a> {
    /// The model's name (its folder under `model/`).
    pub model: &'a str,
    /// The inference device.
    pub device: Device,
    /// Faces per forward pass.
    pub batch_size: usize,
    /// Which frames to merge.
    pub frames: FrameRange,
    /// Continue even though the saved settings differ (re-merges every frame).
    pub force: bool,
    /// Encoding of `result.mp4`; `None` writes frames only.
    pub video: Option<EncodeOptions>,
    /// Also write each frame's blend mask to `data_dst/merged_mask/<frame>.png`.
    pub write_masks: bool,
    /// The frame rate of `result.mp4` for an image-folder dst.
    pub image_fps: Rational,
    /// Frames progress.
    pub progress: &'a dyn Progress,
}

/// The settings that shape the merged frames, saved as `data_dst/merge.settings.json`.
#[derive(Debug, Serialize)]
struct SavedSettings<'a> {
    input: &'a Path,
    model: &'a str,
    iteration: u64,
    merge: &'a MergeConfig,
}

/// One line of `merge.jsonl`: a finished frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeEntry {
    /// The frame's name.
    pub frame: String,
    /// Faces swapped in it.
    pub faces: usize,
}

/// What a merge run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MergeReport {
    /// Frame counts: merged now, finished earlier, skipped as unreadable.
    pub frames: StageReport,
    /// Faces swapped in this run.
    pub faces: usize,
    /// Merged frames with no face (copied unchanged).
    pub frames_without_faces: usize,
    /// The model iteration used.
    pub iteration: u64,
    /// `result.mp4`, when it was written in this run.
    pub video: Option<PathBuf>,
    /// Frames of the input still without a merged PNG (when known).
    pub not_merged: Option<usize>,
}

/// Errors that stop a merge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// There is no dst input to decode.
    #[error("no dst input in {}: put data_dst.mp4 (or a data_dst/ image folder) there, the one the dst faces were extracted from", .0.display())]
    NoInput(PathBuf),
    /// The input cannot be read.
    #[error(transparent)]
    Frames(#[from] FramesError),
    /// The dst faces cannot be read.
    #[error(transparent)]
    Faces(#[from] FacesError),
    /// The model cannot be loaded or run.
    #[error(transparent)]
    Predict(#[from] PredictError),
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] OutOfRange),
    /// The saved settings differ.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The stage log cannot be read or written.
    #[error(transparent)]
    Log(#[from] StageLogError),
    /// A merged frame cannot be written.
    #[error(transparent)]
    ImageWrite(#[from] ImageWriteError),
    /// Merging a face failed.
    #[error("frame {frame}: {source}")]
    Face {
        /// The frame.
        frame: String,
        /// What failed.
        #[source]
        source: MergeFaceError,
    },
    /// The frames are not the size the faces were extracted at.
    #[error("frame {frame} of {} is {got:?} but its faces were extracted from a {want:?} frame; the dst input changed since `dfl extract dst` — extract again", .input.display())]
    FrameSize {
        /// The frame.
        frame: String,
        /// The input.
        input: PathBuf,
        /// The decoded size.
        got: [u32; 2],
        /// The size in the face metadata.
        want: [u32; 2],
    },
    /// `result.mp4` could not be made.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// An output folder cannot be created.
    #[error("cannot create {}: {source}; check the path and its permissions", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An image operation failed.
    #[error("image operation failed: {0}")]
    Cv(#[from] opencv::Error),
    /// The preview frame cannot be used.
    #[error("{0}")]
    Preview(String),
}

/// The faces and settings every frame of a run shares (CPU side; the model stays on the
/// thread that runs it).
pub struct Session<'a> {
    /// The per-face settings.
    pub cfg: &'a MergeConfig,
    /// The model's resolution R.
    pub resolution: i32,
    /// The model's face type (the crops' geometry).
    pub face_type: FaceType,
    /// The dst faces (smoothed when asked).
    pub faces: &'a DstFaces,
    /// The dst input (for messages).
    pub input: &'a Path,
}

/// A decoded frame with its faces cropped.
struct Prepared {
    frame: Frame,
    faces: Vec<DstFace>,
}

/// A frame ready to merge: its faces and their predictions.
struct Predicted {
    prepared: Prepared,
    predictions: Vec<FacePrediction>,
}

/// Merges the dst frames of `ws` with `opts.model`, resuming a previous run, then assembles
/// `result.mp4` when every frame is merged.
///
/// # Errors
/// Fatal problems only (no input, no model, changed settings without `force`, unwritable
/// outputs); unreadable frames are logged, skipped and counted.
pub fn run(
    cfg: &MergeConfig,
    ws: &Workspace,
    opts: &MergeOptions<'_>,
) -> Result<MergeReport, MergeError> {
    cfg.validate()?;
    let input =
        ws.find_input(Side::Dst).ok_or_else(|| MergeError::NoInput(ws.root().to_owned()))?;
    let predictor = Predictor::load(ws, opts.model, opts.device)?;
    let faces = load_faces(ws, &input, cfg.smooth)?;
    let done = prepare_outputs(cfg, ws, &input, opts, predictor.iteration())?;
    let mut log = StageLog::open(ws.stage_log(Stage::Merge, Side::Dst))?;
    let mut report = MergeReport {
        frames: StageReport { already_done: done.len(), ..Default::default() },
        iteration: predictor.iteration(),
        ..Default::default()
    };
    let session = Session {
        cfg,
        resolution: predictor.resolution(),
        face_type: predictor.face_type(),
        faces: &faces,
        input: input.path(),
    };
    let mut source = FrameSource::open(&input)?;
    let range = opts.frames;
    let pending = |i: usize, name: &str| -> Pick {
        if range.last.is_some_and(|l| i + 1 > l) {
            Pick::Stop
        } else if !range.contains(i) || done.contains(name) {
            Pick::Skip
        } else {
            Pick::Take
        }
    };
    let len = source.len_hint();
    let end = match range.last {
        Some(last) if len > 0 => last.min(len),
        Some(last) => last,
        None => len,
    };
    let total_hint = (end + 1).saturating_sub(range.first.unwrap_or(1));
    opts.progress.set_len(total_hint.saturating_sub(done.len()) as u64);
    let chunk_len =
        (rayon::current_num_threads() * FRAMES_PER_THREAD_IN_FLIGHT).max(opts.batch_size);
    let merged_dir = ws.merged_dir();
    let mask_dir = opts.write_masks.then(|| ws.merged_mask_dir());

    let (tx, rx) = sync_channel::<Vec<Predicted>>(1);
    let finished = std::thread::scope(|scope| -> Result<bool, MergeError> {
        let session = &session;
        let (log, report) = (&mut log, &mut report);
        let (merged_dir, mask_dir) = (&merged_dir, mask_dir.as_deref());
        let writer = scope.spawn(move || -> Result<(), MergeError> {
            for chunk in rx {
                let written: Vec<Result<Option<usize>, MergeError>> = chunk
                    .par_iter()
                    .map(|p| merge_and_write(session, p, merged_dir, mask_dir))
                    .collect();
                for (p, result) in chunk.iter().zip(written) {
                    record(log, report, &p.prepared.frame, result?)?;
                    opts.progress.inc(1);
                }
                opts.progress.note(&format!("{} faces", report.faces));
            }
            Ok(())
        });
        let produced = (|| -> Result<bool, MergeError> {
            loop {
                let chunk: Vec<Frame> =
                    std::iter::from_fn(|| source.next_picked(pending)).take(chunk_len).collect();
                if chunk.is_empty() {
                    return Ok(
                        !range.is_bounded_above() || source.position() < range.last.unwrap_or(0)
                    );
                }
                let predicted = predict_chunk(session, &predictor, chunk, opts.batch_size)?;
                if tx.send(predicted).is_err() {
                    return Ok(false); // the writer stopped; its error is reported below
                }
            }
        })();
        drop(tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(MergeError::Cv(opencv::Error::new(
                opencv::core::StsError,
                "the merge writer thread panicked",
            )))
        });
        written?;
        produced
    })?;
    // Whole input seen: every frame's name is known, so result.mp4 can be checked for.
    if finished {
        report_truncation(&source);
        let names = frame_names(&input, source.position())?;
        let missing =
            names.iter().filter(|n| !merged_dir.join(format!("{n}.png")).is_file()).count();
        report.not_merged = Some(missing);
        if let (Some(encode), 0) = (&opts.video, missing) {
            let result = ws.result_video();
            if report.frames.done > 0 || !result.is_file() {
                let frames: Vec<PathBuf> =
                    names.iter().map(|n| merged_dir.join(format!("{n}.png"))).collect();
                assemble_video(&input, &frames, encode, opts, &result)?;
                report.video = Some(result);
            }
        } else if missing > 0 {
            log::warn!(
                "{missing} frame(s) have no merged image yet; result.mp4 is made once all are merged"
            );
        }
    }
    Ok(report)
}

/// Reads the dst faces and smooths their tracks when asked.
fn load_faces(ws: &Workspace, input: &Input, smooth: u32) -> Result<DstFaces, MergeError> {
    let (faces, skipped) = DstFaces::read(&ws.aligned_dir(Side::Dst))?;
    if skipped > 0 {
        log::warn!("{skipped} dst face file(s) without readable metadata are not merged");
    }
    if faces.is_empty() {
        log::warn!("data_dst/aligned holds no faces: every frame is copied unchanged");
    }
    if smooth == 0 {
        return Ok(faces);
    }
    let order = match input {
        Input::Video(_) => {
            let n = FrameSource::open(input)?.len_hint() + 2;
            (0..n).map(video_frame_name).collect()
        }
        Input::Images(dir) => {
            list_images(dir)?.iter().map(|p| image_frame_name(p)).collect::<Vec<_>>()
        }
    };
    Ok(faces.smoothed(&order, smooth as usize))
}

/// Checks the saved settings, creates the output folder and returns the finished frames (those
/// logged whose PNG exists).
fn prepare_outputs(
    cfg: &MergeConfig,
    ws: &Workspace,
    input: &Input,
    opts: &MergeOptions<'_>,
    iteration: u64,
) -> Result<HashSet<String>, MergeError> {
    let merged = ws.merged_dir();
    let mut dirs = vec![merged.clone()];
    dirs.extend(opts.write_masks.then(|| ws.merged_mask_dir()));
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .map_err(|source| MergeError::CreateDir { path: dir.clone(), source })?;
    }
    let input_path = input.path().canonicalize().unwrap_or_else(|_| input.path().to_owned());
    let settings = SavedSettings { input: &input_path, model: opts.model, iteration, merge: cfg };
    let log_path = ws.stage_log(Stage::Merge, Side::Dst);
    let check = check_settings(&ws.stage_settings(Stage::Merge, Side::Dst), &settings, opts.force)?;
    let entries = resume_entries::<MergeEntry>(&log_path, &check, "merging every frame again")?;
    Ok(entries
        .into_iter()
        .map(|e| e.frame)
        .filter(|f| merged.join(format!("{f}.png")).is_file())
        .collect())
}

/// Crops every face of the chunk (in parallel) and predicts them all (batched, in order).
fn predict_chunk(
    session: &Session<'_>,
    predictor: &Predictor,
    chunk: Vec<Frame>,
    batch: usize,
) -> Result<Vec<Predicted>, MergeError> {
    let prepared: Vec<Result<Prepared, MergeError>> =
        chunk.into_par_iter().map(|frame| prepare_frame(session, frame)).collect();
    let prepared: Vec<Prepared> = prepared.into_iter().collect::<Result<_, _>>()?;
    let crops: Vec<&Mat> = prepared.iter().flat_map(|p| p.faces.iter().map(|f| &f.crop)).collect();
    let mut predictions = predictor.predict(&crops, batch)?.into_iter();
    Ok(prepared
        .into_iter()
        .map(|p| {
            let predictions = predictions.by_ref().take(p.faces.len()).collect();
            Predicted { prepared: p, predictions }
        })
        .collect())
}

/// Crops the faces of one frame at the model's resolution and face type.
fn prepare_frame(session: &Session<'_>, frame: Frame) -> Result<Prepared, MergeError> {
    let Ok(image) = &frame.image else { return Ok(Prepared { frame, faces: Vec::new() }) };
    let size = [image.cols() as u32, image.rows() as u32];
    let infos = session.faces.of(&frame.name);
    if let Some(info) = infos.iter().find(|f| f.source_size != size) {
        return Err(MergeError::FrameSize {
            frame: frame.name.clone(),
            input: session.input.to_owned(),
            got: size,
            want: info.source_size,
        });
    }
    let (r, face_type, scale) = (session.resolution, session.face_type, session.cfg.output_scale());
    let faces = infos
        .iter()
        .filter_map(|info| dst_face(image, info, r, face_type, scale).transpose())
        .collect::<Result<_, _>>()?;
    Ok(Prepared { frame, faces })
}

/// The crop and matrices of one face; `None` (with a warning) for degenerate landmarks.
pub fn dst_face(
    image: &Mat,
    info: &DstFaceInfo,
    r: i32,
    face_type: FaceType,
    scale: f64,
) -> Result<Option<DstFace>, MergeError> {
    let side = r as u32;
    let mats = (
        transform_mat(&info.landmarks, side, face_type),
        transform_mat_scaled(&info.landmarks, side, face_type, scale),
    );
    let (Some(face_mat), Some(output_mat)) = mats else {
        log::warn!("face {} has degenerate landmarks; it is not merged", info.face_index);
        return Ok(None);
    };
    let crop = crop_face(image, &face_mat, r)?;
    let landmarks = transform_points(&face_mat, &info.landmarks);
    Ok(Some(DstFace { face_mat, output_mat, crop, landmarks }))
}

/// Merges every face of a frame and writes `merged/<name>.png` (and its mask first, when
/// asked: a frame counts as done once its image exists); `None` when the frame could not be
/// decoded (skipped), else the number of faces.
fn merge_and_write(
    session: &Session<'_>,
    p: &Predicted,
    merged_dir: &Path,
    mask_dir: Option<&Path>,
) -> Result<Option<usize>, MergeError> {
    let frame = &p.prepared.frame;
    let Ok(image) = &frame.image else { return Ok(None) };
    let out = merge_frame(session.cfg, &frame.name, image, &p.prepared.faces, &p.predictions)?;
    if let Some(dir) = mask_dir {
        write_image(&dir.join(format!("{}.png", frame.name)), &out.mask_u8()?, 95)?;
    }
    write_image(&merged_dir.join(format!("{}.png", frame.name)), &out.image, 95)?;
    Ok(Some(p.prepared.faces.len()))
}

/// A merged frame and where its faces went.
#[derive(Debug)]
pub struct MergedFrame {
    /// The frame with every face merged (`CV_8UC3`).
    pub image: Mat,
    /// The frame's blend mask: the faces' masks summed and clipped (`CV_32FC1`, frame size).
    pub mask: Mat,
}

impl MergedFrame {
    /// Returns the mask as 8-bit (0–255), DFL's `output-mask-dir` format.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn mask_u8(&self) -> opencv::Result<Mat> {
        let mut out = Mat::default();
        self.mask.convert_to(&mut out, opencv::core::CV_8U, 255.0, 0.0)?;
        Ok(out)
    }
}

/// Returns `image` with every face merged in order, and the frame's mask (`raw-predict`: the
/// last prediction itself with its mask, or a black R×R image when the frame has no face).
///
/// # Errors
/// `Face` naming the frame, or an OpenCV error.
pub fn merge_frame(
    cfg: &MergeConfig,
    name: &str,
    image: &Mat,
    faces: &[DstFace],
    predictions: &[FacePrediction],
) -> Result<MergedFrame, MergeError> {
    if cfg.mode == BlendMode::RawPredict {
        let side = predictions.last().map_or(image.rows().min(256), |p| p.face.rows());
        let mut out = Mat::new_rows_cols_with_default(side, side, CV_8UC3, Scalar::all(0.0))?;
        let mut mask = Mat::new_rows_cols_with_default(side, side, CV_32FC1, Scalar::all(0.0))?;
        if let Some(pred) = predictions.last() {
            pred.face.convert_to(&mut out, CV_8UC3, 255.0, 0.0)?;
            mask = pred.prd_mask.try_clone()?;
        }
        return Ok(MergedFrame { image: out, mask });
    }
    let mut out = image.try_clone()?;
    let mut mask =
        Mat::new_rows_cols_with_default(image.rows(), image.cols(), CV_32FC1, Scalar::all(0.0))?;
    for (i, (face, pred)) in faces.iter().zip(predictions).enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(face_seed(name, i));
        let patch = merge_face(&mut out, face, pred, cfg, &mut rng)
            .map_err(|source| MergeError::Face { frame: name.to_owned(), source })?;
        if let Some(patch) = patch {
            let mut roi = Mat::roi_mut(&mut mask, patch.rect)?;
            let mut sum = Mat::default();
            opencv::core::add(&roi, &patch.mask, &mut sum, &opencv::core::no_array(), -1)?;
            mask::clip_unit(&sum)?.copy_to(&mut roi)?;
        }
    }
    Ok(MergedFrame { image: out, mask })
}

/// A stable seed for face `i` of frame `name` (FNV-1a), so reruns draw the same numbers.
fn face_seed(name: &str, i: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain((i as u64).to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Appends a frame to the log and the report.
fn record(
    log: &mut StageLog,
    report: &mut MergeReport,
    frame: &Frame,
    faces: Option<usize>,
) -> Result<(), MergeError> {
    match (faces, &frame.image) {
        (Some(n), _) => {
            report.frames.done += 1;
            report.faces += n;
            report.frames_without_faces += usize::from(n == 0);
            log.append(&MergeEntry { frame: frame.name.clone(), faces: n })?;
        }
        (None, Err(reason)) => {
            log::warn!("skipping frame {} ({}): {reason}", frame.name, frame.source.display());
            report.frames.skipped += 1;
        }
        (None, Ok(_)) => report.frames.skipped += 1,
    }
    Ok(())
}

/// Counts the frames a truncated video lost.
fn report_truncation(source: &FrameSource) {
    let FrameSource::Video { path, reported, .. } = source else { return };
    let decoded = source.decoded_frames();
    if *reported > decoded + 1 && decoded > 0 {
        log::warn!(
            "{}: only {decoded} of {reported} frames decode; the file may be truncated",
            path.display()
        );
    }
}

/// The names of all frames of `input` (`count` frames for a video).
fn frame_names(input: &Input, count: usize) -> Result<Vec<String>, MergeError> {
    Ok(match input {
        Input::Video(_) => (0..count).map(video_frame_name).collect(),
        Input::Images(dir) => list_images(dir)?.iter().map(|p| image_frame_name(p)).collect(),
    })
}

/// Encodes `frames` into `result` with the dst's timing and audio.
///
/// A video whose container lists another number of frames than OpenCV decodes (rare: damaged
/// or oddly packed files) is encoded at its nominal rate, with a warning.
fn assemble_video(
    input: &Input,
    frames: &[PathBuf],
    encode: &EncodeOptions,
    opts: &MergeOptions<'_>,
    result: &Path,
) -> Result<(), MergeError> {
    let Input::Video(path) = input else {
        video::assemble(
            frames,
            Timing::Constant(opts.image_fps),
            None,
            encode,
            result,
            opts.progress,
        )?;
        return Ok(());
    };
    let info = video::probe(path)?;
    let timing = if info.frame_count() == frames.len() {
        Timing::Source(&info)
    } else {
        let rate =
            if info.frame_rate.to_f64().is_some() { info.frame_rate } else { opts.image_fps };
        log::warn!(
            "{} lists {} frames but {} decode; encoding at its nominal {rate} fps",
            path.display(),
            info.frame_count(),
            frames.len()
        );
        Timing::Constant(rate)
    };
    opts.progress.set_len(frames.len() as u64);
    video::assemble(frames, timing, Some(path), encode, result, opts.progress)?;
    Ok(())
}
