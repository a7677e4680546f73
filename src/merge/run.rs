//! The merge run: load the model and the dst faces, merge every pending frame (crop on all
//! cores, predict on the device, merge and write on a second thread), then assemble
//! `result.mp4`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use opencv::core::Mat;
use opencv::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use super::MergeError;
use super::config::{MaskMode, MergeConfig};
use super::faces::{ClipFaces, DstFaceInfo, DstFaces};
use super::frame::merge_frame;
use super::masked::{DstFace, FacePrediction, crop_face};
use super::options::{MergeEntry, MergeOptions, MergeReport};
use super::predict::Predictor;
use super::scenes::{MergeSettings, Scene};
use super::video::{self, EncodeOptions, Timing};
use crate::face::align::{Affine, FaceType, compose, invert, transform_mat, transform_mat_scaled};
use crate::faceset::Faceset;
use crate::frames::{Frame, FrameSource, Pick, frame_names, process_in_order};
use crate::img::write_image;
use crate::model::xseg::{FaceIn, XSegFolder, XSegModel};
use crate::progress::NoProgress;
use crate::report::StageReport;
use crate::settings::check_settings;
use crate::stage_log::{StageLog, resume_entries};
use crate::workspace::{Input, Side, Stage, Workspace};

/// The settings that shape the merged frames, saved as `data_dst/merge.settings.json`.
#[derive(Debug, Serialize)]
struct SavedSettings<'a> {
    input: &'a Path,
    model: &'a str,
    iteration: u64,
    /// The settings of every frame outside the scenes.
    merge: &'a MergeConfig,
    /// The XSeg model (name, iteration) of the XSeg mask modes.
    #[serde(skip_serializing_if = "Option::is_none")]
    xseg: Option<(&'a str, u64)>,
    /// The scenes merged with their own settings (`data_dst/merge.config.json`); absent
    /// without scenes, so a run without them saves what runs before scenes saved.
    #[serde(skip_serializing_if = "<[Scene]>::is_empty")]
    scenes: &'a [Scene],
}

/// The JPEG quality `write_image` asks for; merged frames are PNG, so it does not apply.
const PNG_QUALITY_UNUSED: u8 = 95;

/// The faces and settings every frame of a run shares (CPU side; the model stays on the
/// thread that runs it).
pub(super) struct Session<'a> {
    /// The per-face settings of every frame.
    pub settings: &'a MergeSettings,
    /// The model's resolution R.
    pub resolution: i32,
    /// The model's face type (the crops' geometry).
    pub face_type: FaceType,
    /// The dst faces (smoothed at every radius the settings use).
    pub faces: &'a ClipFaces,
    /// The dst input (for messages).
    pub input: &'a Path,
}

impl Session<'_> {
    /// The settings of the 0-based frame `index`.
    fn config_of(&self, index: usize) -> &MergeConfig {
        self.settings.config_of(index)
    }

    /// The faces of frame `name` at `index`, smoothed as its settings ask.
    fn faces_of(&self, index: usize, name: &str) -> &[DstFaceInfo] {
        self.faces.at(self.config_of(index).smooth).of(name)
    }

    /// The key of what frame `name` is merged from (its faces as its settings smooth them).
    fn key_of(&self, name: &str) -> String {
        let cfg = self.faces.position(name).map_or(&self.settings.default, |i| self.config_of(i));
        self.faces.at(cfg.smooth).key_of(name)
    }
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

/// Merges the dst frames of `ws` with `opts.model`, each with its scene's settings, resuming a
/// previous run, then assembles `result.mp4` when every frame is merged.
///
/// # Errors
/// Fatal problems only (no input, no model, changed settings without `force`, unwritable
/// outputs); unreadable frames are logged, skipped and counted.
pub fn run(
    settings: &MergeSettings,
    ws: &Workspace,
    opts: &MergeOptions<'_>,
) -> Result<MergeReport, MergeError> {
    settings.validate()?;
    let dst_lock = crate::lock::shared(&ws.faceset_lock(Side::Dst), "the dst faceset")?;
    let DstSide { input, mut faces, skipped_faces } = load_dst(ws, opts.input.as_ref())?;
    for radius in settings.smooth_radii() {
        faces.smooth(radius);
    }
    let merge_lock =
        crate::lock::exclusive(&ws.merge_lock(), "the merge output (data_dst/merged)")?;
    let _locks = [dst_lock, merge_lock];
    let predictor = Predictor::load(ws, opts.model, opts.device)?;
    let xseg = load_xseg(settings, ws, opts, faces.raw())?;
    let xseg_id = xseg.as_ref().map(|x| (x.name(), x.iteration()));
    let session = Session {
        settings,
        resolution: predictor.resolution(),
        face_type: predictor.face_type(),
        faces: &faces,
        input: input.path(),
    };
    let done = prepare_outputs(&session, ws, &input, opts, predictor.iteration(), xseg_id)?;
    let mut report = MergeReport {
        frames: StageReport { already_done: done.len(), ..Default::default() },
        iteration: predictor.iteration(),
        skipped_faces,
        ..Default::default()
    };
    let mut source = FrameSource::open(&input)?;
    let range = opts.frames;
    opts.progress.set_len(range.len_hint(source.len_hint()).saturating_sub(done.len()) as u64);
    let pending = |i: usize, name: &str| -> Pick {
        if range.last.is_some_and(|l| i + 1 > l) {
            Pick::Stop
        } else if !range.contains(i) || done.contains(name) {
            Pick::Skip
        } else {
            Pick::Take
        }
    };
    let writer = Writer { session: &session, ws, opts };
    let pipeline = Pipeline { writer, predictor: &predictor, xseg: xseg.as_ref() };
    let all_seen = pipeline.merge_frames(&mut source, pending, &mut report)?;
    let range_ends_before_input = range.last.is_some_and(|last| source.position() >= last);
    if all_seen && !range_ends_before_input {
        // The whole input was seen: every frame's name is known, so result.mp4 can be made.
        source.warn_if_truncated();
        let names = frame_names(&input, source.position())?;
        finish_video(ws, &input, &names, opts, &mut report)?;
    }
    Ok(report)
}

/// What the merge loop works with: the writer's side, and the model (which stays on the
/// thread that decodes and predicts).
struct Pipeline<'a> {
    writer: Writer<'a>,
    predictor: &'a Predictor,
    xseg: Option<&'a XSegModel>,
}

/// What the writer thread merges and writes with.
struct Writer<'a> {
    session: &'a Session<'a>,
    ws: &'a Workspace,
    opts: &'a MergeOptions<'a>,
}

impl Pipeline<'_> {
    /// Merges the frames `pick` takes: this thread decodes chunks, crops their faces on all
    /// cores and predicts them on the device; a second thread merges, writes and logs each
    /// chunk (on all cores, recorded in frame order) while the device works on the next.
    /// Returns whether the input was read to its end (`false` when a writer error stopped it).
    fn merge_frames(
        &self,
        source: &mut FrameSource,
        pick: impl Fn(usize, &str) -> Pick,
        report: &mut MergeReport,
    ) -> Result<bool, MergeError> {
        let w = &self.writer;
        let mut log = StageLog::open(w.ws.stage_log(Stage::Merge, Side::Dst))?;
        let chunk_len = crate::frames::chunk_len().max(w.opts.batch_size);
        let (tx, rx) = sync_channel::<Vec<Predicted>>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| w.write_chunks(rx, &mut log, report));
            let produced = (|| -> Result<bool, MergeError> {
                loop {
                    let chunk = source.next_chunk(&pick, chunk_len);
                    if chunk.is_empty() {
                        return Ok(true);
                    }
                    let predicted = self.predict_chunk(chunk)?;
                    if tx.send(predicted).is_err() {
                        return Ok(false); // the writer stopped; its error is reported below
                    }
                }
            })();
            drop(tx);
            // A panic in the writer is a bug: it goes on as the panic it is.
            writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            produced
        })
    }

    /// Crops every face of the chunk (in parallel) and predicts them all (batched, in order).
    fn predict_chunk(&self, chunk: Vec<Frame>) -> Result<Vec<Predicted>, MergeError> {
        let session = self.writer.session;
        let prepared: Vec<Result<Prepared, MergeError>> =
            chunk.into_par_iter().map(|frame| prepare_frame(session, frame)).collect();
        let prepared: Vec<Prepared> = prepared.into_iter().collect::<Result<_, _>>()?;
        let crops: Vec<&Mat> =
            prepared.iter().flat_map(|p| p.faces.iter().map(|f| &f.crop)).collect();
        let batch = self.writer.opts.batch_size;
        let mut predictions = self.predictor.predict(&crops, batch)?;
        let faces: Vec<&DstFace> = prepared.iter().flat_map(|p| p.faces.iter()).collect();
        let modes: Vec<MaskMode> = prepared
            .iter()
            .flat_map(|p| {
                let mode = session.config_of(p.frame.index).mask_mode;
                std::iter::repeat_n(mode, p.faces.len())
            })
            .collect();
        add_xseg_masks(&modes, self.xseg, session.face_type, &faces, &mut predictions, batch)?;
        let mut predictions = predictions.into_iter();
        Ok(prepared
            .into_iter()
            .map(|p| {
                let predictions = predictions.by_ref().take(p.faces.len()).collect();
                Predicted { prepared: p, predictions }
            })
            .collect())
    }
}

impl Writer<'_> {
    /// The writer thread: merges, writes and logs every chunk it receives, in frame order.
    fn write_chunks(
        &self,
        chunks: std::sync::mpsc::Receiver<Vec<Predicted>>,
        log: &mut StageLog,
        report: &mut MergeReport,
    ) -> Result<(), MergeError> {
        for chunk in chunks {
            process_in_order(
                &chunk,
                |p| merge_and_write(self.session, p, self.ws, self.opts.write_masks),
                |p, result| {
                    let key = self.session.key_of(&p.prepared.frame.name);
                    record(log, report, &p.prepared.frame, result?, key)?;
                    self.opts.progress.inc(1);
                    Ok::<(), MergeError>(())
                },
            )?;
            self.opts.progress.note(&format!("{} faces", report.faces));
        }
        Ok(())
    }
}

/// Once every frame of the input has a merged image, encodes `result.mp4` (unless it exists
/// and nothing changed in this run); else says how many frames are missing.
fn finish_video(
    ws: &Workspace,
    input: &Input,
    names: &[String],
    opts: &MergeOptions<'_>,
    report: &mut MergeReport,
) -> Result<(), MergeError> {
    let frames: Vec<PathBuf> = names.iter().map(|n| ws.merged_frame(n)).collect();
    let missing = frames.iter().filter(|f| !f.is_file()).count();
    report.not_merged = Some(missing);
    if missing > 0 {
        log::warn!(
            "{missing} frame(s) have no merged image yet; result.mp4 is made once all are merged"
        );
        return Ok(());
    }
    let result = ws.result_video();
    if let Some(encode) = &opts.video
        && (report.frames.done > 0 || !result.is_file())
    {
        assemble_video(input, &frames, encode, opts, &result)?;
        report.video = Some(result);
    }
    Ok(())
}

/// The dst side of a merge: the frames' input and the faces to swap in them.
pub(super) struct DstSide {
    /// The dst frames.
    pub(super) input: Input,
    /// The dst faces by frame (not smoothed yet).
    pub(super) faces: ClipFaces,
    /// Face files of `data_dst/aligned` that are not usable faces (not merged).
    pub(super) skipped_faces: usize,
}

/// Reads the dst faces and finds the frames they came from (`input` when given, else the
/// workspace's dst video or image folder, else the input the faces name) and their names.
///
/// # Errors
/// `Faces` when `data_dst/aligned` cannot be read, `NoInput` when no input is found, `Frames`
/// when it cannot be opened.
pub(super) fn load_dst(ws: &Workspace, input: Option<&Input>) -> Result<DstSide, MergeError> {
    let set = Faceset::read(&ws.aligned_dir(Side::Dst), &NoProgress)?;
    set.warn_skipped("that face is not merged");
    let input = input
        .cloned()
        .or_else(|| ws.find_input(Side::Dst))
        .or_else(|| set.source_input())
        .ok_or_else(|| MergeError::NoInput(ws.root().to_owned()))?;
    let faces = DstFaces::of_faceset(&set);
    if faces.is_empty() {
        log::warn!("data_dst/aligned holds no faces: every frame is copied unchanged");
    }
    // A video's container may undercount its frames: name a few more than it reports.
    let order = frame_names(&input, FrameSource::open(&input)?.len_hint() + 2)?;
    Ok(DstSide { input, faces: ClipFaces::new(faces, order), skipped_faces: set.skipped.len() })
}

/// Checks the saved settings, creates the output folder and returns the finished frames (those
/// logged whose PNG exists).
fn prepare_outputs(
    session: &Session<'_>,
    ws: &Workspace,
    input: &Input,
    opts: &MergeOptions<'_>,
    iteration: u64,
    xseg: Option<(&str, u64)>,
) -> Result<HashSet<String>, MergeError> {
    let merged = ws.merged_dir();
    let mut dirs = vec![merged.clone()];
    dirs.extend(opts.write_masks.then(|| ws.merged_mask_dir()));
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .map_err(|source| MergeError::CreateDir { path: dir.clone(), source })?;
    }
    // Relative to the workspace when inside it, so a moved workspace resumes.
    let input_path = ws.portable(input.path());
    let settings = SavedSettings {
        input: &input_path,
        model: opts.model,
        iteration,
        merge: &session.settings.default,
        xseg,
        scenes: &session.settings.scenes,
    };
    let log_path = ws.stage_log(Stage::Merge, Side::Dst);
    let check = check_settings(&ws.stage_settings(Stage::Merge, Side::Dst), &settings, opts.force)?;
    let entries = resume_entries::<MergeEntry>(&log_path, &check, "merging every frame again")?;
    // The last entry of a frame counts; it is done if its image exists and its faces are still
    // the ones it was merged from.
    let last: HashMap<String, String> =
        entries.into_iter().map(|e| (e.frame, e.faces_key)).collect();
    let mut done = HashSet::new();
    let mut changed = 0;
    for (frame, key) in last.into_iter().filter(|(frame, _)| ws.merged_frame(frame).is_file()) {
        if key == session.key_of(&frame) {
            done.insert(frame);
        } else {
            changed += 1;
        }
    }
    if changed > 0 {
        log::info!("{changed} merged frame(s) have other dst faces now; merging them again");
    }
    Ok(done)
}

/// Loads the XSeg model when a mask mode in use needs one: always for xseg-prd, and for
/// xseg-dst when some dst face has no applied mask. Without `--xseg` that is an error naming
/// what is missing.
fn load_xseg(
    settings: &MergeSettings,
    ws: &Workspace,
    opts: &MergeOptions<'_>,
    faces: &DstFaces,
) -> Result<Option<XSegModel>, MergeError> {
    let modes = || settings.configs().map(|c| c.mask_mode);
    let prd_mode = modes().find(|m| m.needs_xseg_prd());
    let dst_mode = modes().find(|m| m.needs_xseg_dst());
    let (prd, dst) = (prd_mode.is_some(), dst_mode.is_some());
    let Some(mode) = prd_mode.or(dst_mode) else { return Ok(None) };
    let without = faces.without_xseg();
    match opts.xseg {
        Some(name) => {
            let model = XSegModel::load(&XSegFolder::open(ws, name)?, opts.device)?;
            if dst && without > 0 {
                log::info!(
                    "{without} of {} dst faces have no applied XSeg mask: XSeg {name} segments them",
                    faces.len()
                );
            }
            Ok(Some(model))
        }
        None if prd || without > 0 => {
            let mode = serde_json::to_value(mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let why = if prd {
                " (it segments the swapped face)".to_owned()
            } else {
                format!(
                    " for the {without} dst face(s) without an applied mask (`dfl xseg apply dst`)"
                )
            };
            Err(MergeError::NeedsXSeg { mode, why })
        }
        None => Ok(None),
    }
}

/// Fills the XSeg masks each face's mask mode (`modes`, one per face) reads: `xseg_dst` from
/// the face's applied mask (or the model on the dst crop), `xseg_prd` from the model on the
/// swap. Both images are crops of `crop_type` at the merge resolution; XSeg re-crops them to
/// its own face type and maps its masks back. DFL zeroes XSeg values under 0.1 (done in the
/// model).
pub(super) fn add_xseg_masks(
    modes: &[MaskMode],
    model: Option<&XSegModel>,
    crop_type: FaceType,
    faces: &[&DstFace],
    predictions: &mut [FacePrediction],
    batch: usize,
) -> Result<(), MergeError> {
    // XSeg on `images`, the crops of `faces[pick]`.
    let run = |pick: &[usize], images: Vec<&Mat>| -> Result<Vec<Mat>, MergeError> {
        if pick.is_empty() {
            return Ok(Vec::new());
        }
        let Some(model) = model else {
            let why = " for faces without an applied mask".to_owned();
            let mode = pick.first().map_or(MaskMode::XsegDst, |&i| modes[i]);
            return Err(MergeError::NeedsXSeg { mode: format!("{mode:?}"), why });
        };
        let inputs: Vec<FaceIn<'_>> = pick
            .iter()
            .zip(images)
            .map(|(&i, image)| FaceIn {
                image,
                landmarks: &faces[i].landmarks,
                face_type: crop_type,
            })
            .collect();
        Ok(model.predict_faces(&inputs, batch)?)
    };
    let needs_dst = |i: usize| modes.get(i).is_some_and(|m| m.needs_xseg_dst());
    let missing: Vec<usize> =
        (0..faces.len()).filter(|&i| needs_dst(i) && faces[i].applied_xseg.is_none()).collect();
    let crops = missing.iter().map(|&i| &faces[i].crop).collect();
    let mut computed = run(&missing, crops)?.into_iter();
    for (i, pred) in predictions.iter_mut().enumerate().filter(|(i, _)| needs_dst(*i)) {
        pred.xseg_dst = match &faces[i].applied_xseg {
            Some(m) => Some(m.try_clone()?),
            None => computed.next(),
        };
    }
    let prd: Vec<usize> =
        (0..faces.len()).filter(|&i| modes.get(i).is_some_and(|m| m.needs_xseg_prd())).collect();
    let masks = run(&prd, prd.iter().map(|&i| &predictions[i].face).collect())?;
    for (&i, mask) in prd.iter().zip(masks) {
        predictions[i].xseg_prd = Some(mask);
    }
    Ok(())
}

/// Crops the faces of one frame at the model's resolution and face type.
fn prepare_frame(session: &Session<'_>, frame: Frame) -> Result<Prepared, MergeError> {
    let Ok(image) = &frame.image else { return Ok(Prepared { frame, faces: Vec::new() }) };
    let size = [image.cols() as u32, image.rows() as u32];
    let infos = session.faces_of(frame.index, &frame.name);
    if let Some(info) = infos.iter().find(|f| f.source_size != size) {
        return Err(MergeError::FrameSize {
            frame: frame.name.clone(),
            input: session.input.to_owned(),
            got: size,
            want: info.source_size,
        });
    }
    let cfg = session.config_of(frame.index);
    let (r, face_type, scale) = (session.resolution, session.face_type, cfg.output_scale());
    let faces = infos
        .iter()
        .filter_map(|info| {
            let with_applied = cfg.mask_mode.needs_xseg_dst();
            dst_face(image, info, r, face_type, scale, with_applied).transpose()
        })
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
    with_applied: bool,
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
    let landmarks = info.landmarks.transformed(&face_mat);
    let applied_xseg = match (&info.xseg, with_applied) {
        (Some(applied), true) => applied_in_crop(applied, &face_mat, r)?,
        _ => None,
    };
    Ok(Some(DstFace { face_mat, output_mat, crop, landmarks, applied_xseg }))
}

/// Brings a face file's applied XSeg mask into the merge crop: face-file pixels → frame →
/// crop, one linear warp. `None` (with a warning) when the mask or its matrix is unusable.
fn applied_in_crop(
    applied: &super::faces::AppliedXSeg,
    face_mat: &Affine,
    r: i32,
) -> Result<Option<Mat>, MergeError> {
    let decoded = match applied.mask.decode() {
        Ok(m) => m,
        Err(e) => {
            log::warn!("an applied XSeg mask does not decode ({e}); that face uses the XSeg model");
            return Ok(None);
        }
    };
    let Some(face_to_frame) = invert(&applied.image_to_face_mat) else { return Ok(None) };
    // Mask pixels → face-file pixels (the mask may be stored at another size).
    let k = f64::from(applied.size_px) / f64::from(decoded.rows().max(1));
    let mask_to_face = [[k, 0.0, 0.0], [0.0, k, 0.0]];
    let m = compose(face_mat, &compose(&face_to_frame, &mask_to_face));
    let mut unit = Mat::default();
    decoded.convert_to(&mut unit, opencv::core::CV_32F, 1.0 / 255.0, 0.0)?;
    let mut out = Mat::default();
    opencv::imgproc::warp_affine(
        &unit,
        &mut out,
        &Mat::from_slice_2d(&m)?,
        opencv::core::Size::new(r, r),
        opencv::imgproc::INTER_LINEAR,
        opencv::core::BORDER_CONSTANT,
        opencv::core::Scalar::all(0.0),
    )?;
    Ok(Some(out))
}

/// Merges every face of a frame and writes `merged/<name>.png` (and its mask first, when
/// asked: a frame counts as done once its image exists); `None` when the frame could not be
/// decoded (skipped), else the number of faces.
fn merge_and_write(
    session: &Session<'_>,
    p: &Predicted,
    ws: &Workspace,
    write_mask: bool,
) -> Result<Option<usize>, MergeError> {
    let frame = &p.prepared.frame;
    let Ok(image) = &frame.image else { return Ok(None) };
    let cfg = session.config_of(frame.index);
    let out = merge_frame(cfg, &frame.name, image, &p.prepared.faces, &p.predictions)?;
    if write_mask {
        write_image(&ws.merged_mask(&frame.name), &out.mask_u8()?, PNG_QUALITY_UNUSED)?;
    }
    write_image(&ws.merged_frame(&frame.name), &out.image, PNG_QUALITY_UNUSED)?;
    Ok(Some(p.prepared.faces.len()))
}

/// Appends a frame to the log and the report.
fn record(
    log: &mut StageLog,
    report: &mut MergeReport,
    frame: &Frame,
    faces: Option<usize>,
    faces_key: String,
) -> Result<(), MergeError> {
    match (faces, &frame.image) {
        (Some(n), _) => {
            report.frames.done += 1;
            report.faces += n;
            report.frames_without_faces += usize::from(n == 0);
            log.append(&MergeEntry { frame: frame.name.clone(), faces: n, faces_key })?;
        }
        (None, Err(reason)) => {
            log::warn!("skipping frame {} ({}): {reason}", frame.name, frame.source.display());
            report.frames.skipped += 1;
        }
        (None, Ok(_)) => report.frames.skipped += 1,
    }
    Ok(())
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
