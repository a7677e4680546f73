//! Training samples: faces of a faceset fitted to the model's face type and resolution,
//! augmented as DFL's SAEHD augments them, with their masks, batched into tensors ahead of the
//! trainer (`docs/dfl-parity.md`, "Training samples").
//!
//! DFL: `samplelib/SampleGeneratorFace.py`, `samplelib/SampleProcessor.py`.
//!
//! Sample `i` of iteration `t` draws everything (its face under `uniform_yaw`, its warp) from an
//! RNG keyed by `(seed, t, i)`, and shuffled epochs are keyed by `(seed, epoch)`: batch `t` is
//! the same whatever the thread count, and a run resumed at `t` continues exactly.

mod batch;
pub mod cache;
pub mod order;
mod prefetch;
pub mod recolor;
pub mod samples;
#[cfg(test)]
mod testutil;

use opencv::core::Mat;
use opencv::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::augment::hsv;
use crate::augment::warp::{self as augment, Fit, Layer, WarpParams};
use crate::color::ColorTransfer;
use crate::face::align::FaceType;
use crate::face::landmarks::Landmarks68;
use crate::face::masks;
use crate::face::metadata::FaceFileError;
use crate::model::folder::TrainMask;
pub use batch::{Batch, make_batch};
pub use cache::FaceCache;
pub use prefetch::{Sampler, SamplerOptions};
pub use recolor::ColorReference;
pub use samples::{FaceRecord, SampleSet, SampleSetError};

/// What samples look like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// The model's resolution `R`: samples are `R`×`R`.
    pub resolution_px: u32,
    /// The model's face type; faces of a wider type are re-cropped to it.
    pub face_type: FaceType,
    /// Apply DFL's random warp grid to the network input (`warped`).
    pub random_warp: bool,
    /// Mirror 40 % of samples (DFL: `random_src_flip` off, `random_dst_flip` on by default).
    pub random_flip: bool,
    /// Build the eyes-and-mouth mask (all zeros when off).
    pub eyes_mouth: bool,
    /// Pick faces uniformly over yaw bins instead of shuffled epochs.
    pub uniform_yaw: bool,
    /// Seeds every random choice.
    pub seed: u64,
    /// Recolour samples toward the faceset's colour reference (DFL's `ct_mode`; src only).
    pub ct_mode: ColorTransfer,
    /// Jitter the network input's hue, saturation and value by up to this much (DFL's
    /// `random_hsv_power`, 0–0.3; src only; see [`hsv`]).
    #[serde(default)]
    pub random_hsv_power: f32,
    /// Which face mask the samples carry (the eyes-and-mouth mask always comes from the
    /// landmarks).
    #[serde(default)]
    pub mask: TrainMask,
    /// Which part of each iteration's samples this process makes (data-parallel training).
    #[serde(skip)]
    pub shard: Shard,
}

/// A rank's share of each iteration: of the `ranks · batch_size` samples of iteration `t`
/// (numbered from 0, each drawn from its own RNG), rank r makes `r · batch_size ..
/// (r + 1) · batch_size`. So `ranks` processes of batch b together draw exactly what one
/// process of batch `ranks · b` draws, and a rank's stream resumes with the iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's rank.
    pub rank: u32,
    /// The number of ranks.
    pub ranks: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { rank: 0, ranks: 1 }
    }
}

impl Shard {
    /// The numbers of this rank's samples among the iteration's, for batches of `batch_size`
    /// per rank, and the iteration's total.
    pub fn positions(self, batch_size: u64) -> (std::ops::Range<u64>, u64) {
        let first = u64::from(self.rank) * batch_size;
        (first..first + batch_size, u64::from(self.ranks.max(1)) * batch_size)
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            resolution_px: 128,
            face_type: FaceType::Full,
            random_warp: true,
            random_flip: false,
            eyes_mouth: true,
            uniform_yaw: false,
            seed: 42,
            ct_mode: ColorTransfer::None,
            random_hsv_power: 0.0,
            mask: TrainMask::Hull,
            shard: Shard::default(),
        }
    }
}

/// Errors of making a sample or a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// A face file cannot be read or decoded.
    #[error(transparent)]
    FaceFile(#[from] FaceFileError),
    /// An OpenCV operation failed on a face.
    #[error("{}: {source}", .path.display())]
    OpenCv {
        /// The face file.
        path: std::path::PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// Recolouring a sample toward a dst face failed.
    #[error("recolouring toward {}: {source}", .path.display())]
    ColorTransfer {
        /// The dst face the sample was recoloured toward.
        path: std::path::PathBuf,
        /// The colour transfer's error.
        #[source]
        source: crate::color::ColorError,
    },
    /// The decoded image's size differs from the metadata's.
    #[error("{}: the image is {got} px but its metadata says {expected_px}x{expected_px}; re-extract this face", .path.display())]
    SizeMismatch {
        /// The face file.
        path: std::path::PathBuf,
        /// `size_px` from the metadata.
        expected_px: u32,
        /// The decoded width×height.
        got: String,
    },
    /// The face shows less of the head than the model needs. DFL raises the same.
    #[error("{}: a {} face cannot be re-cropped to the model's {} face type; extract with --face-type {} or train a narrower face type", .path.display(), .face.as_str(), .model.as_str(), .model.as_str())]
    FaceTypeTooNarrow {
        /// The face file.
        path: std::path::PathBuf,
        /// The face's type.
        face: FaceType,
        /// The model's type.
        model: FaceType,
    },
    /// The landmarks do not define an alignment.
    #[error("{}: degenerate landmarks; remove this face or re-extract it", .path.display())]
    DegenerateLandmarks {
        /// The face file.
        path: std::path::PathBuf,
    },
    /// A batch size or resolution of 0.
    #[error("batch size and resolution must be at least 1 (got {batch_size} and {resolution_px})")]
    EmptyBatch {
        /// The batch size asked for.
        batch_size: usize,
        /// The resolution asked for.
        resolution_px: u32,
    },
    /// A tensor operation failed (pinning memory).
    #[error("batch tensors: {0}")]
    Tensor(#[from] tch::TchError),
    /// The worker thread pool cannot be created.
    #[error("cannot start the sampler's threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// The sampler's producer thread cannot be started.
    #[error("cannot start the sampler's thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The sampler's worker thread stopped without a batch or an error (it panicked).
    #[error("the sampler's worker thread stopped unexpectedly; see the log above")]
    WorkerStopped,
}

/// One augmented sample.
///
/// # Shapes
/// `warped`, `target`: `[3, R, R]` f32 in [0, 1], BGR, CHW. `mask`, `eyes_mouth`: `[1, R, R]`
/// f32 in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The network input: target plus the random warp grid.
    pub warped: Vec<f32>,
    /// The reconstruction target.
    pub target: Vec<f32>,
    /// The full-face mask (the landmark hull; DFL uses an XSeg mask when a face has one).
    pub mask: Vec<f32>,
    /// The eyes-and-mouth mask, maximum 1 (zeros when off or when the face has none).
    pub eyes_mouth: Vec<f32>,
}

/// One face's layers at one stage of the pipeline.
struct Layers {
    image: Mat,
    mask: Mat,
    eyes_mouth: Option<Mat>,
}

/// Makes the sample of face `face_index`, drawing its geometry from `rng`.
///
/// # Errors
/// The face cannot be decoded, is narrower than `cfg.face_type`, has a size or landmarks that
/// do not fit its metadata, or OpenCV fails.
///
/// # Panics
/// When `face_index` is not an index of `faceset`.
pub fn make_sample(
    faceset: &SampleSet,
    cache: &FaceCache,
    face_index: usize,
    cfg: &SampleConfig,
    rng: &mut impl Rng,
) -> Result<Sample, SampleError> {
    let face = &faceset.faces()[face_index];
    let cv = |source| SampleError::OpenCv { path: face.path.clone(), source };
    let fitted = fitted_layers(face, cache, cfg, cfg.eyes_mouth)?;
    let resolution_px = cfg.resolution_px as i32;
    // The geometry is drawn first, so turning colour transfer on or off keeps every warp.
    let params =
        WarpParams::draw(rng, resolution_px, cfg.random_warp, cfg.random_flip).map_err(cv)?;
    // DFL recolours the fitted image toward a random dst face here, before
    // warping; masks are left alone.
    let fitted = match (cfg.ct_mode, faceset.color_reference()) {
        (ColorTransfer::None, _) | (_, None) => fitted,
        (mode, Some(reference)) => {
            Layers { image: recolor::recolor(&fitted.image, mode, reference, rng)?, ..fitted }
        }
    };
    // Then the input alone gets its colour jitter; the target keeps the true colours.
    let input = if cfg.random_hsv_power > 0.0 {
        Some(hsv::HsvShift::draw(rng, cfg.random_hsv_power).apply(&fitted.image).map_err(cv)?)
    } else {
        None
    };
    warp_layers(&fitted, input.as_ref(), &params, resolution_px).map_err(cv)
}

/// Returns face `face_index` fitted to the model's crop with no augmentation at all (no
/// warp, affine, flip or recolouring): the held-out faces training-time evaluation measures.
/// Only `target` and `mask` are filled (`warped` equals `target`).
///
/// # Errors
/// As [`make_sample`].
///
/// # Panics
/// When `face_index` is not an index of `faceset`.
pub fn still_sample(
    faceset: &SampleSet,
    cache: &FaceCache,
    face_index: usize,
    cfg: &SampleConfig,
) -> Result<Sample, SampleError> {
    let face = &faceset.faces()[face_index];
    let cv = |source| SampleError::OpenCv { path: face.path.clone(), source };
    let fitted = fitted_layers(face, cache, cfg, false)?;
    let resolution_px = cfg.resolution_px as i32;
    warp_layers(&fitted, None, &WarpParams::identity(resolution_px), resolution_px).map_err(cv)
}

/// Reads a face (through the cache), checks it and fits it with its masks to the model's crop.
fn fitted_layers(
    face: &FaceRecord,
    cache: &FaceCache,
    cfg: &SampleConfig,
    eyes_mouth: bool,
) -> Result<Layers, SampleError> {
    let cv = |source| SampleError::OpenCv { path: face.path.clone(), source };
    check_face_type(face, cfg.face_type)?;
    let bgr = cache.get_or_load(&face.path)?;
    check_size(face, &bgr)?;
    let source = source_layers(face, &bgr, eyes_mouth, cfg.mask).map_err(cv)?;
    let fit = Fit {
        landmarks: &face.landmarks,
        face_type: face.face_type,
        model_face_type: cfg.face_type,
        resolution_px: cfg.resolution_px as i32,
    };
    fit_layers(&source, &fit)
        .map_err(cv)?
        .ok_or_else(|| SampleError::DegenerateLandmarks { path: face.path.clone() })
}

/// Returns a face's 68 landmarks in the pixels of its [`still_sample`]: the model's crop at
/// `resolution_px`. `None` for degenerate landmarks.
pub fn model_landmarks(
    face: &FaceRecord,
    resolution_px: u32,
    model_face_type: crate::face::align::FaceType,
) -> Option<Landmarks68> {
    if face.face_type == model_face_type {
        let k = resolution_px as f32 / face.size_px.max(1) as f32;
        return Some(face.landmarks.map(|p| [p[0] * k, p[1] * k]));
    }
    let m = crate::face::align::transform_mat(&face.landmarks, resolution_px, model_face_type)?;
    Some(face.landmarks.transformed(&m))
}

/// Checks up front that every face can be cropped to `cfg.face_type`, so a wrong faceset fails
/// before training starts rather than at the batch that first draws a bad face.
///
/// # Errors
/// `FaceTypeTooNarrow` for the first face (in file order) whose type is narrower.
pub fn check_faceset(faceset: &SampleSet, cfg: &SampleConfig) -> Result<(), SampleError> {
    faceset.faces().iter().try_for_each(|face| check_face_type(face, cfg.face_type))
}

/// DFL refuses to widen a crop (`SampleProcessor`: "does not match model requirement").
fn check_face_type(face: &FaceRecord, model: FaceType) -> Result<(), SampleError> {
    if face.face_type.padding() < model.padding() {
        return Err(SampleError::FaceTypeTooNarrow {
            path: face.path.clone(),
            face: face.face_type,
            model,
        });
    }
    Ok(())
}

fn check_size(face: &FaceRecord, bgr: &Mat) -> Result<(), SampleError> {
    let n = face.size_px as i32;
    if bgr.rows() != n || bgr.cols() != n {
        return Err(SampleError::SizeMismatch {
            path: face.path.clone(),
            expected_px: face.size_px,
            got: format!("{}x{}", bgr.cols(), bgr.rows()),
        });
    }
    Ok(())
}

/// The face as f32 [0, 1] and its masks, at the face file's own size (as DFL draws them): the
/// face mask is the applied XSeg mask when `mask` asks for it and the face has one (resized to
/// the face), else the landmark hull; the eyes-and-mouth mask always comes from the hull.
fn source_layers(
    face: &FaceRecord,
    bgr: &Mat,
    eyes_mouth: bool,
    mask: TrainMask,
) -> opencv::Result<Layers> {
    let image = augment::to_unit_float(bgr)?;
    let hull = masks::hull_mask(face.size_px as i32, &face.landmarks)?;
    let eyes_mouth =
        if eyes_mouth { Some(masks::eyes_mouth_mask(&hull, &face.landmarks)?) } else { None };
    let mask = match (mask, &face.xseg_mask) {
        (TrainMask::Xseg | TrainMask::Auto, Some(applied)) => {
            xseg_face_mask(applied, face.size_px as i32)?
        }
        _ => hull,
    };
    Ok(Layers { image, mask, eyes_mouth })
}

/// An applied XSeg mask as f32 {0, 1} at the face's side.
fn xseg_face_mask(applied: &crate::face::seg::XSegMask, side: i32) -> opencv::Result<Mat> {
    let decoded =
        applied.decode().map_err(|e| opencv::Error::new(opencv::core::StsError, e.to_string()))?;
    let mut resized = Mat::default();
    let size = opencv::core::Size::new(side, side);
    opencv::imgproc::resize(&decoded, &mut resized, size, 0.0, 0.0, opencv::imgproc::INTER_LINEAR)?;
    let mut unit = Mat::default();
    resized.convert_to(&mut unit, opencv::core::CV_32F, 1.0 / 255.0, 0.0)?;
    Ok(unit)
}

fn fit_layers(src: &Layers, fit: &Fit<'_>) -> opencv::Result<Option<Layers>> {
    let Some(image) = augment::fit_to_model(&src.image, fit, Layer::Image)? else {
        return Ok(None);
    };
    let Some(mask) = augment::fit_to_model(&src.mask, fit, Layer::Mask)? else {
        return Ok(None);
    };
    let eyes_mouth = match &src.eyes_mouth {
        Some(em) => augment::fit_to_model(em, fit, Layer::Mask)?,
        None => None,
    };
    Ok(Some(Layers { image, mask, eyes_mouth }))
}

/// Warps every layer with the same `params` (the grid only on `warped`, made from `input` when
/// given, else from the image) and flattens them.
fn warp_layers(
    fitted: &Layers,
    input: Option<&Mat>,
    params: &WarpParams,
    resolution_px: i32,
) -> opencv::Result<Sample> {
    let plane = (resolution_px * resolution_px) as usize;
    let mut sample = Sample {
        warped: Vec::with_capacity(3 * plane),
        target: Vec::with_capacity(3 * plane),
        mask: Vec::with_capacity(plane),
        eyes_mouth: Vec::with_capacity(plane),
    };
    let warp = augment::apply_warp;
    let input = input.unwrap_or(&fitted.image);
    augment::push_chw(&warp(input, params, true, Layer::Image)?, &mut sample.warped)?;
    augment::push_chw(&warp(&fitted.image, params, false, Layer::Image)?, &mut sample.target)?;
    augment::push_chw(&warp(&fitted.mask, params, false, Layer::Mask)?, &mut sample.mask)?;
    match &fitted.eyes_mouth {
        Some(em) => {
            let warped = masks::normalise_max(&warp(em, params, false, Layer::Mask)?)?;
            augment::push_chw(&warped, &mut sample.eyes_mouth)?;
        }
        None => sample.eyes_mouth.resize(plane, 0.0),
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use opencv::core::Size;
    use opencv::imgproc;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use testutil::{small_faceset, write_faceset};

    fn sample(set: &SampleSet, cache: &FaceCache, cfg: &SampleConfig, seed: u64) -> Sample {
        make_sample(set, cache, 0, cfg, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
    }

    /// Mean of channel `c` of a CHW sample image of `plane` pixels per channel.
    fn channel_mean(chw: &[f32], c: usize, plane: usize) -> f32 {
        chw[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32
    }

    #[test]
    fn colour_transfer_moves_src_colours_toward_the_reference() {
        use crate::face::metadata::{ImageFormat, read_face_image, read_metadata, write_face};
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (set, cache, cfg) = small_faceset(a.path());
        // Reference faces: the same synthetic faces, tinted red (blue and green scaled down).
        for path in write_faceset(b.path(), 3, 64, |_| 0.0) {
            let (img, meta) = (read_face_image(&path).unwrap(), read_metadata(&path).unwrap());
            let mut tinted = Mat::default();
            let tint = opencv::core::Scalar::new(0.3, 0.3, 1.0, 0.0);
            opencv::core::multiply(&img, &tint, &mut tinted, 1.0, -1).unwrap();
            write_face(&path, &tinted, &meta, ImageFormat::Png, 95).unwrap();
        }
        let (reference, _) = SampleSet::load(b.path(), &NoProgress).unwrap();
        let set = set.recolor_toward(ColorReference {
            faceset: std::sync::Arc::new(reference),
            cache: std::sync::Arc::new(FaceCache::default()),
        });
        let plane = (cfg.resolution_px * cfg.resolution_px) as usize;
        let red_over_blue =
            |s: &Sample| channel_mean(&s.target, 2, plane) / channel_mean(&s.target, 0, plane);
        let plain = sample(&set, &cache, &cfg, 1);
        let lct = SampleConfig { ct_mode: ColorTransfer::Lct, ..cfg };
        let recoloured = sample(&set, &cache, &lct, 1);
        assert!(
            red_over_blue(&recoloured) > 1.5 * red_over_blue(&plain),
            "ct moved colours toward red"
        );
        assert_eq!(plain.mask, recoloured.mask, "masks are left alone");
    }

    #[test]
    fn the_mask_covers_the_centre_and_not_the_corners() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        for seed in 0..8 {
            let s = sample(&set, &cache, &cfg, seed);
            let at = |x: usize, y: usize| s.mask[y * 32 + x];
            assert_eq!(at(16, 16), 1.0, "seed {seed}");
            for (x, y) in [(0, 0), (31, 0), (0, 31), (31, 31)] {
                assert_eq!(at(x, y), 0.0, "seed {seed} corner {x},{y}");
            }
            let em_max = s.eyes_mouth.iter().copied().fold(0.0, f32::max);
            assert!((em_max - 1.0).abs() < 1e-6, "eyes/mouth max {em_max}");
            assert!(s.warped.iter().chain(&s.target).all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn a_flip_mirrors_the_sample() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let flipping = SampleConfig { random_flip: true, ..cfg };
        // The flip is the last draw, so both configs share the rest of the geometry.
        let (plain, flipped) = (0..20)
            .map(|seed| (sample(&set, &cache, &cfg, seed), sample(&set, &cache, &flipping, seed)))
            .find(|(a, b)| a.mask != b.mask)
            .expect("some of 20 seeds flip at p = 0.4");
        for y in 0..32 {
            for x in 0..32 {
                assert_eq!(flipped.mask[y * 32 + x], plain.mask[y * 32 + 31 - x]);
                assert_eq!(flipped.target[y * 32 + x], plain.target[y * 32 + 31 - x]);
            }
        }
    }

    #[test]
    fn without_warp_and_affine_the_target_is_the_plain_resize() {
        // At R ≥ 64 warps run at R itself (below, DFL detours through 64 px).
        let tmp = tempfile::tempdir().unwrap();
        write_faceset(tmp.path(), 1, 96, |_| 0.0);
        let (set, _) = SampleSet::load(tmp.path(), &NoProgress).unwrap();
        let cache = FaceCache::default();
        let face = &set.faces()[0];
        let bgr = cache.get_or_load(&face.path).unwrap();
        let fit = Fit {
            landmarks: &face.landmarks,
            face_type: face.face_type,
            model_face_type: FaceType::WholeFace,
            resolution_px: 64,
        };
        let layers = source_layers(face, &bgr, true, TrainMask::Hull).unwrap();
        let fitted = fit_layers(&layers, &fit).unwrap().unwrap();
        let s = warp_layers(&fitted, None, &WarpParams::identity(64), 64).unwrap();
        assert_eq!(s.warped, s.target, "no grid without random warp");
        let mut resized = Mat::default();
        let img = augment::to_unit_float(&bgr).unwrap();
        imgproc::resize(&img, &mut resized, Size::new(64, 64), 0.0, 0.0, imgproc::INTER_CUBIC)
            .unwrap();
        let mut want = Vec::new();
        augment::push_chw(&resized, &mut want).unwrap();
        let max_diff = s.target.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max_diff < 1e-5, "target differs from the resize by {max_diff}");
    }

    #[test]
    fn re_cropping_whole_face_to_full_makes_the_face_larger() {
        let tmp = tempfile::tempdir().unwrap();
        let (set, cache, cfg) = small_faceset(tmp.path());
        let area = |face_type| {
            let cfg = SampleConfig { face_type, random_warp: false, ..cfg };
            let s = sample(&set, &cache, &cfg, 9);
            assert_eq!(s.warped, s.target, "random_warp off leaves only the shared affine");
            s.mask.iter().sum::<f32>() / (32.0 * 32.0)
        };
        let (whole, full) = (area(FaceType::WholeFace), area(FaceType::Full));
        // Full's unit square is 62.6 % of the crop against whole face's 46.9 %: (0.626/0.469)².
        let ratio = full / whole;
        assert!((1.5..2.1).contains(&ratio), "mask area {whole} → {full} (×{ratio})");
    }
}
