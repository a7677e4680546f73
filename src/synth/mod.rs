//! `dfl faceset synth`: a deterministic generator of test and demo footage. It animates still
//! portraits with the landmark motion of a driving video (a piecewise-affine warp of the
//! photo, nothing learned), so the demo has a second identity with varied pose and
//! expression.
//!
//! This is a tool for tests and demos, not a deepfake generator: it only bends the pixels of
//! the portrait it is given (no new face content; a mouth opened wider than in the photo is
//! only shaded dark), and the results look like what they are, a photo being pushed around.
//!
//! Each portrait gets an equal, consecutive run of the driver's frames. Within a run, frame
//! `t` moves the portrait's landmarks `P` to `L_t = P + S·(D_t − D_0)` ("relative" motion,
//! [`motion::relative_targets`]): `D_t` are the driver's landmarks (lightly smoothed over
//! time), `D_0` those of the run's first frame, and `S` the rotation and scale of the
//! similarity taking `D_0` onto `P`. Then, per frame ([`motion`]):
//! - lips and eyelids are kept in top-to-bottom order (a closed mouth stays closed),
//! - the face's shift is eased towards 0.4 eye distances (the hand-held driver wanders),
//! - a seeded jitter of at most 0.5° and 1 px is added,
//! - points are kept inside the image, and where a triangle would turn over, the points
//!   around it give up part of their expression.
//!
//! The photo is then warped so that `P` lands on `L_t` ([`warp::TriangleMesh`]): a Delaunay
//! mesh ([`delaunay`]) of the landmarks, a [`halo`] ring around the head that follows its
//! rigid motion, and eight fixed anchors on the border; outside the face the motion is
//! blurred so the background bends smoothly. A [`mouth`] opened wider than the portrait's
//! is shaded dark.

mod delaunay;
mod driver;
mod halo;
mod motion;
mod mouth;
mod warp;

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Size};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use rayon::prelude::*;

use crate::detect::{DetectError, YuNet, YuNetModel};
use crate::face::align::inter_ocular;
use crate::face::landmarks::{LANDMARK_COUNT, Landmarks68};
use crate::face::locate::{Landmarker, find_faces};
use crate::face::shape_predictor::ShapePredictor;
use crate::frames::FramesError;
use crate::img::{ImageWriteError, write_image};
use crate::progress::Progress;

use driver::{DriverTrack, driver_landmarks};
use halo::Halo;
use motion::{
    Jitter, Nudge, clamped, head_motion, in_order, nudged, relative_targets, shift_limited,
    unfolded,
};
use mouth::MouthShade;
use warp::{Smoothing, TriangleMesh};

/// The smallest output width that still leaves a face to find.
pub const MIN_WIDTH_PX: u32 = 64;
/// Default output width: small enough that a demo extracts quickly.
const DEFAULT_WIDTH_PX: u32 = 480;
/// Default seed of the jitter.
const DEFAULT_SEED: u64 = 1;
/// Targets stay this far inside the image, so no landmark reaches the fixed border anchors.
const EDGE_MARGIN_PX: f32 = 2.0;
/// Blur (Gaussian sigma) of the motion outside the face, in the portrait's eye distances:
/// wide enough that the background bends in curves, not at triangle edges.
const BACKGROUND_SIGMA_PER_EYE_DISTANCE: f64 = 0.6;
/// Soft edge (Gaussian sigma) between the face's exact motion and the blurred one.
const FACE_FEATHER_PER_EYE_DISTANCE: f64 = 0.15;
/// JPEG quality argument of `write_image` (unused for PNG).
const UNUSED_JPEG_QUALITY: u8 = 95;

/// Settings of one synth run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Width of the output frames in pixels (each portrait keeps its aspect ratio).
    pub width_px: u32,
    /// Seed of the jitter; the same inputs and seed give byte-identical frames.
    pub seed: u64,
    /// Use only the first this many driver frames (all when `None`).
    pub frames: Option<usize>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self { width_px: DEFAULT_WIDTH_PX, seed: DEFAULT_SEED, frames: None }
    }
}

/// The models synth finds faces with.
#[derive(Debug, Clone, Copy)]
pub struct SynthModels<'a> {
    /// The YuNet detector's model.
    pub detector: &'a YuNetModel,
    /// dlib's 68-point shape predictor.
    pub predictor: &'a ShapePredictor,
}

/// One written frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthFrame {
    /// The PNG file.
    pub path: PathBuf,
    /// Index of the portrait it shows (into the `portraits` argument).
    pub portrait: usize,
    /// The 0-based driver frame whose motion it shows.
    pub driver_frame: usize,
    /// Where the portrait's 68 landmarks were moved, in output pixels.
    pub targets: Landmarks68,
    /// Where every mesh point went (the targets, then the halo's).
    mesh_targets: Vec<[f32; 2]>,
    /// The least share of its motion any mesh point (landmark or halo point) kept: below 1
    /// when the full motion would have turned triangles of the mesh over, and the points
    /// around them were held back.
    pub motion_share: f32,
}

/// What a synth run wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SynthReport {
    /// The frames, in order.
    pub frames: Vec<SynthFrame>,
    /// The landmarks of each portrait, in output pixels (the `P` of each run).
    pub portrait_landmarks: Vec<Landmarks68>,
    /// Driver frames without a face (they reused the landmarks of the one before).
    pub driver_frames_without_face: usize,
    /// Frames where some landmarks were held back to avoid turning triangles over.
    pub damped_frames: usize,
}

/// Why a synth run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// The landmark predictor is not the 68-point model.
    #[error(transparent)]
    Predictor(#[from] crate::face::locate::Not68Points),
    /// No portrait was given.
    #[error("no portrait given; pass at least one --portrait PHOTO")]
    NoPortraits,
    /// The output width is too small.
    #[error("width {width_px} px is too small; pass --width {MIN_WIDTH_PX} or more")]
    BadWidth {
        /// The width asked for.
        width_px: u32,
    },
    /// A portrait is not a readable image.
    #[error("cannot read portrait {}: not a readable image; pass a .jpg or .png photo", .0.display())]
    ReadPortrait(PathBuf),
    /// No face was found in a portrait.
    #[error("no face found in portrait {}; pass a photo with one clear, roughly frontal face", .0.display())]
    NoFace(PathBuf),
    /// The driver video does not open.
    #[error(transparent)]
    Driver(#[from] FramesError),
    /// No frame of the driver video has a face.
    #[error("no face in any frame of driver video {}; pass a talking-head video", .0.display())]
    DriverWithoutFace(PathBuf),
    /// Fewer driver frames than portraits.
    #[error(
        "{frames} driver frames cannot be shared by {portraits} portraits; use more frames or fewer portraits"
    )]
    TooFewFrames {
        /// Driver frames available.
        frames: usize,
        /// Portraits given.
        portraits: usize,
    },
    /// Face detection failed (bad model file, OpenCV error).
    #[error("finding faces in {}: {source}", .path.display())]
    Detect {
        /// The image or video being read.
        path: PathBuf,
        /// The detector's error.
        #[source]
        source: DetectError,
    },
    /// An OpenCV image operation failed.
    #[error("processing {}: {source}", .path.display())]
    Image {
        /// The portrait being processed.
        path: PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// The output folder cannot be created or cleaned.
    #[error("cannot prepare output folder {}: {source}; check the path and permissions", .path.display())]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A frame could not be written.
    #[error(transparent)]
    Write(#[from] ImageWriteError),
}

/// A portrait scaled to the output width, with its landmarks and mesh.
struct Portrait {
    path: PathBuf,
    image: Mat,
    landmarks: Landmarks68,
    halo: Halo,
    /// The mesh's points: the landmarks, then the halo.
    source: Vec<[f32; 2]>,
    mesh: TriangleMesh,
    mouth: MouthShade,
}

/// YuNet and dlib's predictor: the largest face of an image.
pub(crate) struct FaceFinder<'a> {
    detector: YuNet,
    landmarker: Landmarker<'a>,
}

impl FaceFinder<'_> {
    /// Returns the 68 landmarks of the largest face in `bgr`, if any.
    pub(crate) fn largest(&mut self, bgr: &Mat) -> Result<Option<Landmarks68>, DetectError> {
        let faces = find_faces(bgr, &mut self.detector, &self.landmarker, true)?;
        Ok(faces.into_iter().next().map(|(_, landmarks)| landmarks))
    }
}

/// Animates `portraits` with the landmark motion of `driver` and writes the frames as
/// `00001.png`, `00002.png`, … into `out_dir` (created if needed; frames of an earlier,
/// longer run that this run does not overwrite are removed).
///
/// # Errors
/// [`SynthError`]: a portrait without a face or unreadable, a driver that does not open or
/// has no face, a model failure, or a file that cannot be written — each naming the file.
pub fn synthesize(
    portraits: &[PathBuf],
    driver: &Path,
    out_dir: &Path,
    cfg: &SynthConfig,
    models: &SynthModels<'_>,
    progress: &dyn Progress,
) -> Result<SynthReport, SynthError> {
    check_config(portraits, cfg)?;
    let detector = models
        .detector
        .detector()
        .map_err(|source| SynthError::Detect { path: models.detector.path().to_owned(), source })?;
    let mut finder = FaceFinder { detector, landmarker: Landmarker::new(models.predictor)? };
    let portraits = portraits
        .iter()
        .map(|path| load_portrait(path, cfg.width_px, &mut finder))
        .collect::<Result<Vec<_>, _>>()?;
    let DriverTrack { landmarks: driven, without_face } =
        driver_landmarks(driver, cfg.frames, &mut finder)?;
    if driven.len() < portraits.len() {
        return Err(SynthError::TooFewFrames { frames: driven.len(), portraits: portraits.len() });
    }
    let mut report = plan_frames(&portraits, &driven, cfg.seed, out_dir);
    report.driver_frames_without_face = without_face;
    std::fs::create_dir_all(out_dir)
        .map_err(|source| SynthError::OutDir { path: out_dir.to_owned(), source })?;
    progress.set_len(report.frames.len() as u64);
    report
        .frames
        .par_iter()
        .try_for_each(|frame| render(&portraits[frame.portrait], frame, progress))?;
    remove_stale_frames(out_dir, report.frames.len())?;
    log::info!(
        "{} frames of {} portraits in {} ({} driver frames without a face, {} damped)",
        report.frames.len(),
        portraits.len(),
        out_dir.display(),
        without_face,
        report.damped_frames
    );
    Ok(report)
}

fn check_config(portraits: &[PathBuf], cfg: &SynthConfig) -> Result<(), SynthError> {
    if portraits.is_empty() {
        return Err(SynthError::NoPortraits);
    }
    if cfg.width_px < MIN_WIDTH_PX {
        return Err(SynthError::BadWidth { width_px: cfg.width_px });
    }
    Ok(())
}

/// Reads a portrait, finds its face at full resolution, and scales both to `width_px`.
fn load_portrait(
    path: &Path,
    width_px: u32,
    finder: &mut FaceFinder<'_>,
) -> Result<Portrait, SynthError> {
    let image = match imgcodecs::imread(path, imgcodecs::IMREAD_COLOR) {
        Ok(image) if !image.empty() => image,
        _ => return Err(SynthError::ReadPortrait(path.to_owned())),
    };
    let landmarks = finder
        .largest(&image)
        .map_err(|source| SynthError::Detect { path: path.to_owned(), source })?
        .ok_or_else(|| SynthError::NoFace(path.to_owned()))?;
    let image_err = |source| SynthError::Image { path: path.to_owned(), source };
    let (cols, rows) = (image.cols().max(1), image.rows().max(1));
    let width = i32::try_from(width_px).unwrap_or(i32::MAX);
    let height = ((f64::from(rows) * f64::from(width) / f64::from(cols)).round() as i32).max(1);
    let interpolation = if width < cols { imgproc::INTER_AREA } else { imgproc::INTER_CUBIC };
    let mut scaled = Mat::default();
    imgproc::resize(&image, &mut scaled, Size::new(width, height), 0.0, 0.0, interpolation)
        .map_err(image_err)?;
    let (sx, sy) = (width as f32 / cols as f32, height as f32 / rows as f32);
    let (w, h) = (width as usize, height as usize);
    let landmarks = landmarks.map(|p| clamped(&[[p[0] * sx, p[1] * sy]], w, h, EDGE_MARGIN_PX)[0]);
    let halo = Halo::around(&landmarks, w, h, EDGE_MARGIN_PX);
    let source = [&landmarks[..], halo.points()].concat();
    let mesh = TriangleMesh::new(&source, w, h);
    let mouth = MouthShade::measure(&scaled, &landmarks).map_err(image_err)?;
    Ok(Portrait { path: path.to_owned(), image: scaled, landmarks, halo, source, mesh, mouth })
}

/// Splits the driver frames into one equal run per portrait and computes every frame's
/// targets (relative motion, jitter, clamping, damping).
fn plan_frames(
    portraits: &[Portrait],
    driven: &[Landmarks68],
    seed: u64,
    out_dir: &Path,
) -> SynthReport {
    let jitter = Jitter::new(seed, driven.len());
    let mut report = SynthReport {
        portrait_landmarks: portraits.iter().map(|p| p.landmarks).collect(),
        ..SynthReport::default()
    };
    for (k, portrait) in portraits.iter().enumerate() {
        let run = run_range(k, portraits.len(), driven.len());
        let reference = &driven[run.start];
        for t in run {
            let moved = relative_targets(&portrait.landmarks, reference, &driven[t]);
            let (mesh_targets, motion_share) = plan_frame(portrait, &moved, jitter.at(t));
            report.damped_frames += usize::from(motion_share < 1.0);
            let name = format!("{}.png", crate::frames::video_frame_name(t));
            report.frames.push(SynthFrame {
                path: out_dir.join(name),
                portrait: k,
                driver_frame: t,
                targets: Landmarks68::new(
                    mesh_targets[..LANDMARK_COUNT]
                        .try_into()
                        .expect("invariant: the mesh's points start with the 68 landmarks"),
                ),
                motion_share,
                mesh_targets,
            });
        }
    }
    report
}

/// Returns the targets of every mesh point (landmarks, then halo) for landmarks `moved` by
/// the driver: lips and lids kept in order, the jitter added, clamped inside the image and
/// unfolded; and the least share of its motion a point kept.
fn plan_frame(portrait: &Portrait, moved: &Landmarks68, nudge: Nudge) -> (Vec<[f32; 2]>, f32) {
    let p = &portrait.landmarks;
    let moved = nudged(&shift_limited(&in_order(moved, p), p), nudge);
    let head = head_motion(p, &moved);
    let halo = portrait.halo.targets(&head);
    let calm = crate::face::align::transform_points(&head, p);
    let (w, h) = (portrait.image.cols() as usize, portrait.image.rows() as usize);
    let moved = clamped(&[moved.as_slice(), &halo].concat(), w, h, EDGE_MARGIN_PX);
    let calm = clamped(&[calm.as_slice(), portrait.halo.points()].concat(), w, h, EDGE_MARGIN_PX);
    unfolded(&portrait.mesh, &portrait.source, &calm, &moved)
}

/// Returns the driver frames of portrait `k` of `portraits`: consecutive, equal runs (the
/// last ones one frame longer when `frames` does not divide evenly).
fn run_range(k: usize, portraits: usize, frames: usize) -> std::ops::Range<usize> {
    (k * frames / portraits)..((k + 1) * frames / portraits)
}

/// Warps the frame's portrait to its targets, shades a mouth opened wider, and writes it.
fn render(
    portrait: &Portrait,
    frame: &SynthFrame,
    progress: &dyn Progress,
) -> Result<(), SynthError> {
    let image_err = |source| SynthError::Image { path: portrait.path.clone(), source };
    let keep = face_outline(&frame.targets);
    let eye_px = inter_ocular(&portrait.landmarks);
    let smoothing = Smoothing {
        keep: &keep,
        sigma_px: BACKGROUND_SIGMA_PER_EYE_DISTANCE * eye_px,
        feather_px: FACE_FEATHER_PER_EYE_DISTANCE * eye_px,
    };
    let mut image = portrait
        .mesh
        .warp_smoothed(&portrait.image, &frame.mesh_targets, &smoothing)
        .map_err(image_err)?;
    portrait.mouth.apply(&mut image, &frame.targets).map_err(image_err)?;
    write_image(&frame.path, &image, UNUSED_JPEG_QUALITY)?;
    progress.inc(1);
    Ok(())
}

/// Returns the face outline of 68 iBUG points as a polygon: the jaw (0–16), then the brows
/// from the subject's left to right (26–17).
fn face_outline(landmarks: &Landmarks68) -> Vec<[f32; 2]> {
    landmarks[..17].iter().chain(landmarks[17..27].iter().rev()).copied().collect()
}

/// Removes `NNNNN.png` frames numbered above `count` (left by an earlier, longer run), so the
/// folder holds exactly this run's clip.
fn remove_stale_frames(out_dir: &Path, count: usize) -> Result<(), SynthError> {
    let io_err = |source| SynthError::OutDir { path: out_dir.to_owned(), source };
    for entry in std::fs::read_dir(out_dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let is_png = path.extension().is_some_and(|e| e == "png");
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let is_frame_name = stem.len() >= 5 && stem.bytes().all(|b| b.is_ascii_digit());
        let number = stem.parse::<usize>().ok().filter(|_| is_frame_name);
        if let (true, Some(n)) = (is_png, number)
            && n > count
        {
            log::info!("removing {} (left by an earlier, longer run)", path.display());
            std::fs::remove_file(&path).map_err(io_err)?;
        }
    }
    Ok(())
}
