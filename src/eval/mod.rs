//! `dfl eval`: numbers on a merged swap.
//!
//! For every dst face that has a merged frame, the face is cropped from the original dst frame
//! and from the merged frame with the same alignment (its metadata's frame → face matrix), and:
//! - **identity**: SFace cosine of each crop with the mean embedding of the src faceset; the
//!   swap should be closer to src than the original dst face was;
//! - **expression and pose**: the 68 landmarks are found again in both frames (the same
//!   predictor from the same start), and compared: NME over the inter-ocular distance, and the
//!   difference of solvePnP yaw and pitch;
//! - **temporal stability**: along each run of consecutive frames, the landmark and pixel
//!   jitter (second differences) of the swap against the dst clip's own.
//!
//! Reconstruction quality comes from training: a model trained with `--eval-every` measured
//! SSIM/PSNR on held-out faces, and the report quotes the latest of those for the merge's
//! model.

mod metrics;
mod page;

pub use page::summary_lines;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Serialize;

use crate::atomic::write_json_atomic;
use crate::face::identity::{Embedding, IdentityError, RecognizerPool, SFaceModel};
use crate::face::landmarks::Landmarks68;
use crate::face::locate::{Landmarker, Not68Points, intensities};
use crate::face::metadata::FaceFileError;
use crate::face::pose::{Pose, estimate_pitch_yaw_roll};
use crate::face::shape_predictor::{GrayImage, ShapePredictor};
use crate::faceset::scores::{self, EmbedError, ScoreCache};
use crate::faceset::{Face, Faceset, FacesetError};
use crate::frames::{Frame, FrameSource, FramesError, Pick, for_each_frame};
use crate::img;
use crate::model::folder::{EvalPoint, ModelFolder};
use crate::progress::{NoProgress, Progress};
use crate::workspace::{Input, Side, Stage, Workspace, count_images};
use metrics::Summary;

/// Side of the gray crops kept for pixel jitter.
const JITTER_PX: i32 = 64;

/// The models eval runs.
pub struct EvalModels<'a> {
    /// SFace, for identity.
    pub sface: &'a SFaceModel,
    /// dlib's 68-point predictor, to find landmarks again.
    pub predictor: &'a ShapePredictor,
}

/// Errors of `dfl eval`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Something the evaluation needs is not there yet.
    #[error("{}: {what}; run `{next}` first", .path.display())]
    Missing {
        /// The file or folder.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
        /// The command that makes it.
        next: &'static str,
    },
    /// A folder or file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The dst input does not decode.
    #[error(transparent)]
    Frames(#[from] FramesError),
    /// A face or merged frame could not be read.
    #[error(transparent)]
    Face(#[from] FaceFileError),
    /// SFace failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// A faceset cannot be listed.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// A src face could not be embedded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The landmark predictor is not the 68-point model.
    #[error(transparent)]
    Predictor(#[from] Not68Points),
    /// A merged frame could not be read.
    #[error(transparent)]
    ReadImage(#[from] crate::img::ImageReadError),
    /// A dst frame does not decode.
    #[error("frame {frame} of {}: {reason}; check the dst input", .input.display())]
    Frame {
        /// The frame's name.
        frame: String,
        /// The dst input.
        input: PathBuf,
        /// Why it does not decode.
        reason: String,
    },
    /// The report page could not be written.
    #[error(transparent)]
    Page(#[from] crate::img::ImageWriteError),
    /// Image processing failed.
    #[error("{}: {source}", .path.display())]
    OpenCv {
        /// The frame or output involved.
        path: PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
}

/// One evaluated face.
#[derive(Debug, Clone, Serialize)]
pub struct FaceEval {
    /// The frame's name.
    pub frame: String,
    /// Which face of the frame.
    pub face_index: usize,
    /// Cosine of the swapped face with the src faceset's mean.
    pub identity_swap: f64,
    /// Cosine of the original dst face with the src faceset's mean.
    pub identity_dst: f64,
    /// Cosine of the swapped face with the original dst face.
    pub swap_vs_dst: f64,
    /// NME of the landmarks found on the swap against those found on the dst face.
    pub nme: Option<f64>,
    /// The same over the 51 inner landmarks (no jaw line).
    pub nme_inner: Option<f64>,
    /// |yaw(swap) − yaw(dst)| in degrees.
    pub yaw_diff_deg: Option<f64>,
    /// |pitch(swap) − pitch(dst)| in degrees.
    pub pitch_diff_deg: Option<f64>,
}

/// Identity numbers.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityReport {
    /// Cosine of swapped faces with the src mean.
    pub swap_to_src: Option<Summary>,
    /// Cosine of the original dst faces with the src mean: where the swap started from.
    pub dst_to_src: Option<Summary>,
    /// Cosine of swapped faces with their dst face.
    pub swap_to_dst: Option<Summary>,
    /// Share of faces whose swap is closer to src than their original was.
    pub closer_to_src: f64,
    /// Cosine between src faces and their own mean: what a perfect swap would reach.
    pub src_to_src: Option<Summary>,
}

/// Expression and pose numbers.
#[derive(Debug, Clone, Serialize)]
pub struct ExpressionReport {
    /// Landmark NME, swap against dst, over all 68 points.
    pub nme: Option<Summary>,
    /// Landmark NME over the 51 inner points (brows, eyes, nose, mouth).
    pub nme_inner: Option<Summary>,
    /// Yaw differences in degrees.
    pub yaw_diff_deg: Option<Summary>,
    /// Pitch differences in degrees.
    pub pitch_diff_deg: Option<Summary>,
}

/// Temporal stability numbers (face 0 of runs of consecutive frames).
#[derive(Debug, Clone, Serialize)]
pub struct TemporalReport {
    /// Landmark jitter of the swap (second difference / inter-ocular distance).
    pub landmark_jitter_swap: Option<f64>,
    /// The same for the dst clip.
    pub landmark_jitter_dst: Option<f64>,
    /// Pixel jitter of the swapped face crops (gray levels).
    pub pixel_jitter_swap: Option<f64>,
    /// The same for the dst face crops.
    pub pixel_jitter_dst: Option<f64>,
}

/// The model that made the merge, from `data_dst/merge.settings.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Its name under `model/`.
    pub name: String,
    /// The iteration the merge used.
    pub iteration: Option<u64>,
    /// Its latest held-out evaluation: SSIM/PSNR of reconstructions and swap identity on faces
    /// it never trained on (`None` unless trained with `--eval-every`).
    pub held_out: Option<EvalPoint>,
}

/// Everything `dfl eval` writes to `eval/report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Faces evaluated.
    pub faces: usize,
    /// Frames evaluated.
    pub frames: usize,
    /// src faces the identity reference was made from.
    pub src_faces: usize,
    /// Identity.
    pub identity: IdentityReport,
    /// Expression and pose.
    pub expression: ExpressionReport,
    /// Temporal stability.
    pub temporal: TemporalReport,
    /// The merge's model and its last held-out evaluation (`dfl train --eval-every`), if any.
    pub model: Option<ModelReport>,
    /// Per face, in frame order.
    pub per_face: Vec<FaceEval>,
}

/// What the evaluation of one frame keeps.
struct FrameResult {
    order: usize,
    faces: Vec<FaceEval>,
    /// Face 0: landmarks (dst, swap) and jitter crops (dst, swap).
    track: Option<TrackPoint>,
    /// Crops for the page: (dst, swap), BGR.
    crops: Option<(Mat, Mat)>,
}

struct TrackPoint {
    landmarks: [Landmarks68; 2],
    pixels: [Vec<f32>; 2],
}

/// Evaluates the merged frames of `ws`; returns the report and the folder it was written to.
///
/// # Errors
/// See [`EvalError`].
pub fn run(
    ws: &Workspace,
    models: &EvalModels<'_>,
    input: Option<&Input>,
    progress: &dyn Progress,
) -> Result<(EvalReport, PathBuf), EvalError> {
    let merged = ws.merged_dir();
    if count_images(&merged) == 0 {
        return Err(EvalError::Missing {
            path: merged,
            what: "no merged frames",
            next: "dfl merge",
        });
    }
    let _locks = [
        crate::lock::shared(&ws.merge_lock(), "the merge output (data_dst/merged)")?,
        crate::lock::shared(&ws.faceset_lock(Side::Src), "the src faceset")?,
        crate::lock::shared(&ws.faceset_lock(Side::Dst), "the dst faceset")?,
    ];
    let src = read_set(ws, Side::Src, "dfl extract src")?;
    let dst = read_set(ws, Side::Dst, "dfl extract dst")?;
    let input = input
        .cloned()
        .or_else(|| ws.find_input(Side::Dst))
        .or_else(|| dst.source_input())
        .ok_or_else(|| EvalError::Missing {
            path: ws.default_video(Side::Dst),
            what: "no dst input (pass --input with the one the merge used)",
            next: "dfl extract dst",
        })?;
    let mut cache = ScoreCache::open(&ws.face_scores(Side::Src));
    let src_embeddings = scores::embeddings(&src, &mut cache, models.sface, &NoProgress)?;
    let src_mean = Embedding::mean(&src_embeddings).ok_or_else(|| EvalError::Missing {
        path: src.dir.clone(),
        what: "no src identity (the faces' embeddings cancel out)",
        next: "dfl sort src --by identity",
    })?;
    let src_to_src = Summary::of(src_embeddings.iter().map(|e| e.cosine(&src_mean)));
    let evaluator = FrameEvaluator {
        ws,
        by_frame: faces_by_frame(&dst),
        src_mean,
        landmarker: Landmarker::new(models.predictor)?,
        pool: RecognizerPool::new(models.sface.clone()),
    };
    let mut source = FrameSource::open(&input)?;
    progress.set_len(source.len_hint() as u64);
    let mut results = Vec::new();
    for_each_frame(
        &mut source,
        |_, name| evaluator.pick(name),
        |f| evaluator.eval(f),
        |_, r| {
            progress.inc(1);
            results.push(r?);
            Ok::<(), EvalError>(())
        },
    )?;
    if results.is_empty() {
        return Err(EvalError::Missing {
            path: merged,
            what: "no merged frame has a dst face",
            next: "dfl merge",
        });
    }
    let mut report = summarise(&results, src.faces.len(), src_to_src);
    report.model = merge_model(ws);
    write_report(ws, &report, &results)?;
    Ok((report, ws.eval_dir()))
}

/// Writes `eval/report.json` and the one-page `eval/report.png`.
fn write_report(
    ws: &Workspace,
    report: &EvalReport,
    results: &[FrameResult],
) -> Result<(), EvalError> {
    let dir = ws.eval_dir();
    std::fs::create_dir_all(&dir).map_err(|source| EvalError::Io { path: dir.clone(), source })?;
    let json = dir.join("report.json");
    write_json_atomic(&json, report).map_err(|source| EvalError::Io { path: json, source })?;
    page::write_page(&dir.join("report.png"), report, &sample_frames(results))?;
    Ok(())
}

/// The merge's model and its last held-out evaluation (what the files say; `None` if unread).
fn merge_model(ws: &Workspace) -> Option<ModelReport> {
    let settings = ws.stage_settings(Stage::Merge, Side::Dst);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(settings).ok()?).ok()?;
    let name = saved.get("model")?.as_str()?.to_owned();
    let state = ModelFolder::open(ws, &name).ok()?.latest_state().ok().flatten();
    Some(ModelReport {
        name,
        iteration: saved.get("iteration").and_then(serde_json::Value::as_u64),
        held_out: state.and_then(|s| s.eval_history.last().copied()),
    })
}

fn read_set(ws: &Workspace, side: Side, next: &'static str) -> Result<Faceset, EvalError> {
    let dir = ws.aligned_dir(side);
    let set = match Faceset::read(&dir, &NoProgress) {
        Err(FacesetError::Missing(_)) => Faceset::default(),
        other => other?,
    };
    if set.faces.is_empty() {
        return Err(EvalError::Missing { path: dir, what: "no faces", next });
    }
    Ok(set)
}

/// The dst faces by frame name, each frame's in face order.
fn faces_by_frame(dst: &Faceset) -> HashMap<String, Vec<Face>> {
    let mut by_frame: HashMap<String, Vec<Face>> = HashMap::new();
    for f in &dst.faces {
        by_frame.entry(f.meta.source_filename.clone()).or_default().push(f.clone());
    }
    for faces in by_frame.values_mut() {
        faces.sort_by_key(|f| f.meta.face_index);
    }
    by_frame
}

/// What evaluating a frame needs, shared by the worker threads.
struct FrameEvaluator<'a> {
    ws: &'a Workspace,
    by_frame: HashMap<String, Vec<Face>>,
    /// The src faceset's identity.
    src_mean: Embedding,
    landmarker: Landmarker<'a>,
    pool: RecognizerPool,
}

impl FrameEvaluator<'_> {
    /// Takes the frames that have a dst face and a merged image.
    fn pick(&self, name: &str) -> Pick {
        if self.by_frame.contains_key(name) && self.ws.merged_frame(name).is_file() {
            Pick::Take
        } else {
            Pick::Skip
        }
    }

    /// Evaluates every face of one picked frame against its merged image.
    fn eval(&self, frame: &Frame) -> Result<FrameResult, EvalError> {
        let image = frame.image.as_ref().map_err(|reason| EvalError::Frame {
            frame: frame.name.clone(),
            input: frame.source.clone(),
            reason: reason.clone(),
        })?;
        let path = self.ws.merged_frame(&frame.name);
        let swapped = img::read_image(&path)?;
        let faces = self.by_frame.get(&frame.name).map_or(&[][..], Vec::as_slice);
        self.eval_faces(frame, image, &swapped, faces).map_err(|e| match e {
            FrameError::Cv(source) => EvalError::OpenCv { path, source },
            FrameError::Identity(e) => EvalError::Identity(e),
        })
    }

    fn eval_faces(
        &self,
        frame: &Frame,
        dst_frame: &Mat,
        swapped: &Mat,
        faces: &[Face],
    ) -> Result<FrameResult, FrameError> {
        let (dst_gray, swap_gray) = (Gray::of(dst_frame)?, Gray::of(swapped)?);
        let mut out =
            FrameResult { order: frame.index, faces: Vec::new(), track: None, crops: None };
        for face in faces {
            let meta = &face.meta;
            let crop_dst = img::warp_to_face(dst_frame, &meta.image_to_face_mat, meta.size_px)?;
            let crop_swap = img::warp_to_face(swapped, &meta.image_to_face_mat, meta.size_px)?;
            let five = meta.landmarks.five_points();
            let mut sface = self.pool.take()?;
            let embedded = sface
                .embed(&crop_dst, &five)
                .and_then(|d| Ok((d, sface.embed(&crop_swap, &five)?)));
            self.pool.put(sface);
            let (e_dst, e_swap) = embedded?;
            let find = |g: &Gray| self.landmarker.locate_near(&g.image(), &meta.source_landmarks);
            let (l_dst, l_swap) = (find(&dst_gray), find(&swap_gray));
            let pose = |l: &Landmarks68| {
                estimate_pitch_yaw_roll(&l.transformed(&meta.image_to_face_mat), meta.size_px)
            };
            let (p_dst, p_swap) = (pose(&l_dst), pose(&l_swap));
            let diff = |f: fn(&Pose) -> f64| match (&p_dst, &p_swap) {
                (Some(a), Some(b)) => Some((f(a) - f(b)).abs().to_degrees()),
                _ => None,
            };
            out.faces.push(FaceEval {
                frame: frame.name.clone(),
                face_index: meta.face_index,
                identity_swap: e_swap.cosine(&self.src_mean),
                identity_dst: e_dst.cosine(&self.src_mean),
                swap_vs_dst: e_swap.cosine(&e_dst),
                nme: metrics::nme(&l_swap, &l_dst),
                nme_inner: metrics::nme_inner(&l_swap, &l_dst),
                yaw_diff_deg: diff(|p| p.yaw),
                pitch_diff_deg: diff(|p| p.pitch),
            });
            if meta.face_index == 0 {
                out.track = Some(TrackPoint {
                    landmarks: [l_dst, l_swap],
                    pixels: [jitter_crop(&crop_dst)?, jitter_crop(&crop_swap)?],
                });
                out.crops = Some((crop_dst, crop_swap));
            }
        }
        Ok(out)
    }
}

/// A frame's intensities, the landmark predictor's input.
struct Gray {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl Gray {
    fn of(bgr: &Mat) -> opencv::Result<Self> {
        Ok(Self {
            data: intensities(bgr)?,
            width: bgr.cols() as usize,
            height: bgr.rows() as usize,
        })
    }

    fn image(&self) -> GrayImage<'_> {
        GrayImage { data: &self.data, width: self.width, height: self.height }
    }
}

/// A failure inside one frame's evaluation (mapped to [`EvalError`] with the frame's path).
enum FrameError {
    Cv(opencv::Error),
    Identity(IdentityError),
}

impl From<opencv::Error> for FrameError {
    fn from(e: opencv::Error) -> Self {
        FrameError::Cv(e)
    }
}

impl From<IdentityError> for FrameError {
    fn from(e: IdentityError) -> Self {
        FrameError::Identity(e)
    }
}

/// A small gray version of a face crop, for pixel jitter.
fn jitter_crop(crop: &Mat) -> opencv::Result<Vec<f32>> {
    let mut small = Mat::default();
    imgproc::resize(
        crop,
        &mut small,
        Size::new(JITTER_PX, JITTER_PX),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut gray = Mat::default();
    imgproc::cvt_color_def(&small, &mut gray, imgproc::COLOR_BGR2GRAY)?;
    Ok(gray.data_bytes()?.iter().map(|&v| f32::from(v)).collect())
}

fn summarise(results: &[FrameResult], src_faces: usize, src_to_src: Option<Summary>) -> EvalReport {
    let faces: Vec<&FaceEval> = results.iter().flat_map(|r| &r.faces).collect();
    let closer = faces.iter().filter(|f| f.identity_swap > f.identity_dst).count();
    // Runs of consecutive frames with face 0.
    let mut runs: Vec<Vec<&TrackPoint>> = Vec::new();
    let mut last = None;
    for r in results {
        match &r.track {
            Some(t) => {
                if last.is_none_or(|l: usize| l + 1 != r.order) {
                    runs.push(Vec::new());
                }
                runs.last_mut().expect("invariant: a run was started").push(t);
                last = Some(r.order);
            }
            None => last = None,
        }
    }
    let jitter = |which: usize, pixels: bool| {
        let mut weighted = (0.0, 0usize);
        for run in runs.iter().filter(|r| r.len() >= 3) {
            let value = if pixels {
                let crops: Vec<&[f32]> = run.iter().map(|t| t.pixels[which].as_slice()).collect();
                metrics::pixel_jitter(&crops)
            } else {
                let lms: Vec<&Landmarks68> = run.iter().map(|t| &t.landmarks[which]).collect();
                metrics::landmark_jitter(&lms)
            };
            if let Some(v) = value {
                weighted.0 += v * (run.len() - 2) as f64;
                weighted.1 += run.len() - 2;
            }
        }
        (weighted.1 > 0).then(|| weighted.0 / weighted.1 as f64)
    };
    EvalReport {
        faces: faces.len(),
        frames: results.len(),
        src_faces,
        identity: IdentityReport {
            swap_to_src: Summary::of(faces.iter().map(|f| f.identity_swap)),
            dst_to_src: Summary::of(faces.iter().map(|f| f.identity_dst)),
            swap_to_dst: Summary::of(faces.iter().map(|f| f.swap_vs_dst)),
            closer_to_src: closer as f64 / faces.len().max(1) as f64,
            src_to_src,
        },
        expression: ExpressionReport {
            nme: Summary::of(faces.iter().filter_map(|f| f.nme)),
            nme_inner: Summary::of(faces.iter().filter_map(|f| f.nme_inner)),
            yaw_diff_deg: Summary::of(faces.iter().filter_map(|f| f.yaw_diff_deg)),
            pitch_diff_deg: Summary::of(faces.iter().filter_map(|f| f.pitch_diff_deg)),
        },
        temporal: TemporalReport {
            landmark_jitter_swap: jitter(1, false),
            landmark_jitter_dst: jitter(0, false),
            pixel_jitter_swap: jitter(1, true),
            pixel_jitter_dst: jitter(0, true),
        },
        model: None,
        per_face: faces.into_iter().cloned().collect(),
    }
}

/// Up to 4 frames evenly spread over the evaluated ones: (name, identity swap, identity dst,
/// dst crop, swap crop).
fn sample_frames(results: &[FrameResult]) -> Vec<page::Sample<'_>> {
    let with: Vec<&FrameResult> =
        results.iter().filter(|r| r.crops.is_some() && !r.faces.is_empty()).collect();
    let n = with.len().min(4);
    let picks: BTreeSet<usize> =
        (0..n).map(|k| if n == 1 { 0 } else { k * (with.len() - 1) / (n - 1) }).collect();
    picks
        .into_iter()
        .map(|i| {
            let r = with[i];
            let (d, s) = r.crops.as_ref().expect("invariant: filtered");
            (r.faces[0].frame.as_str(), r.faces[0].identity_swap, r.faces[0].identity_dst, d, s)
        })
        .collect()
}
