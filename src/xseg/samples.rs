//! The faces XSeg trains on: every labelled face of both sides (or, when no face has labels,
//! every face with an applied mask), fitted once to the model's crop and resolution and kept in
//! memory; a fixed share held out to measure IoU on.

use std::path::PathBuf;

use opencv::core::{self, Mat};
use opencv::imgproc;
use opencv::prelude::*;
use rayon::prelude::*;

use crate::augment::warp::{Fit, Layer, fit_to_model, to_unit_float};
use crate::face::align::FaceType;
use crate::face::landmarks::Landmarks68;
use crate::face::masks::hull_mask;
use crate::face::metadata::read_face_image;
use crate::face::seg;
use crate::faceset::{Face, Faceset, FacesetError};
use crate::progress::NoProgress;
use crate::workspace::{Side, Workspace};

/// One face in eight (in origin order) is held out when at least this many are labelled.
pub const HOLDOUT_EVERY: usize = 8;

/// Where a face's training mask comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSource {
    /// The polygons a person drew.
    Labels,
    /// A mask an earlier XSeg model applied (used only when no face has labels).
    Applied,
    /// None: pretraining reconstructs the face itself.
    None,
}

/// One face ready for sampling.
#[derive(Debug)]
pub struct LabelledFace {
    /// BGR f32 `[0, 1]`, `R`².
    pub image: Mat,
    /// f32 {0, 1}, `R`²: the target (for pretraining, the grey face in `[0, 1]`).
    pub mask: Mat,
    /// The landmark hull at `R`², f32 {0, 1}: the mask a face gets without XSeg.
    pub hull: Mat,
    /// Its side.
    pub side: Side,
}

/// The faces of a run.
#[derive(Debug)]
pub struct TrainingFaces {
    /// The faces trained on.
    pub train: Vec<LabelledFace>,
    /// The faces held out for IoU.
    pub held_out: Vec<LabelledFace>,
    /// What the masks are.
    pub source: MaskSource,
    /// Labelled faces per side (src, dst).
    pub per_side: [usize; 2],
    /// Face files that could not be read or fitted (reported, not trained on).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Errors of gathering the faces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamplesError {
    /// A faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// Nothing to train on.
    #[error(
        "no face in {src} or {dst} has XSeg labels (or an applied XSeg mask); label a few dozen faces first: import labels with `dfl xseg labels import --side dst FILE.json` (see docs/xseg.md), or train `--pretrain` without labels"
    )]
    NoLabels {
        /// The src faceset.
        src: String,
        /// The dst faceset.
        dst: String,
    },
    /// No face at all (pretraining).
    #[error("no faces in {src} or {dst}; run `dfl extract` first")]
    NoFaces {
        /// The src faceset.
        src: String,
        /// The dst faceset.
        dst: String,
    },
}

/// Gathers the faces of both sides for a model of `resolution` and `face_type`.
///
/// # Errors
/// `Faceset` when a folder cannot be listed; `NoLabels`/`NoFaces` when nothing is usable.
pub fn gather(
    ws: &Workspace,
    resolution: i64,
    face_type: FaceType,
    pretrain: bool,
) -> Result<TrainingFaces, SamplesError> {
    let mut all = Vec::new();
    for side in Side::ALL {
        let dir = ws.aligned_dir(side);
        if !dir.is_dir() {
            continue;
        }
        let set = Faceset::read(&dir, &NoProgress)?;
        all.extend(set.faces.into_iter().map(|f| (side, set.dir.join(&f.name), f)));
    }
    let shown = |side| ws.portable(&ws.aligned_dir(side)).display().to_string();
    let labelled = |f: &Face| !f.meta.seg_ie_polys.is_empty();
    let applied = |f: &Face| f.meta.xseg_mask.is_some();
    let source = if pretrain {
        MaskSource::None
    } else if all.iter().any(|(_, _, f)| labelled(f)) {
        MaskSource::Labels
    } else if all.iter().any(|(_, _, f)| applied(f)) {
        MaskSource::Applied
    } else {
        return Err(SamplesError::NoLabels { src: shown(Side::Src), dst: shown(Side::Dst) });
    };
    all.retain(|(_, _, f)| match source {
        MaskSource::Labels => labelled(f),
        MaskSource::Applied => applied(f),
        MaskSource::None => true,
    });
    if all.is_empty() {
        return Err(SamplesError::NoFaces { src: shown(Side::Src), dst: shown(Side::Dst) });
    }
    let mut per_side = [0; 2];
    for (side, ..) in &all {
        per_side[usize::from(*side == Side::Dst)] += 1;
    }
    // Origin order (side, frame, face index): the same faces in the same order whatever their
    // names after a sort and whatever `xseg apply` wrote into them since, so the held-out faces
    // stay held out across runs.
    all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()).then_with(|| Face::origin_order(&a.2, &b.2)));
    let fitted: Vec<Result<LabelledFace, (PathBuf, String)>> = all
        .par_iter()
        .map(|(side, path, face)| {
            fit_face(path, face, resolution, face_type, source)
                .map(|f| LabelledFace { side: *side, ..f })
                .map_err(|e| (path.clone(), e))
        })
        .collect();
    let mut faces = Vec::new();
    let mut skipped = Vec::new();
    for r in fitted {
        match r {
            Ok(face) => faces.push(face),
            Err(e) => skipped.push(e),
        }
    }
    let hold = !pretrain && faces.len() >= HOLDOUT_EVERY;
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    for (i, face) in faces.into_iter().enumerate() {
        if hold && i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 {
            held_out.push(face);
        } else {
            train.push(face);
        }
    }
    if train.is_empty() {
        return Err(SamplesError::NoLabels { src: shown(Side::Src), dst: shown(Side::Dst) });
    }
    Ok(TrainingFaces { train, held_out, source, per_side, skipped })
}

/// Loads and fits one face and its target.
fn fit_face(
    path: &std::path::Path,
    face: &Face,
    resolution: i64,
    face_type: FaceType,
    source: MaskSource,
) -> Result<LabelledFace, String> {
    let meta = &face.meta;
    let bgr = read_face_image(path).map_err(|e| e.to_string())?;
    let side = bgr.rows();
    let fit = Fit {
        landmarks: &meta.landmarks,
        face_type: meta.face_type,
        model_face_type: face_type,
        resolution_px: resolution as i32,
    };
    let cv = |e: opencv::Error| format!("{}: {e}", path.display());
    let degenerate = || format!("{}: degenerate landmarks", path.display());
    let image = fit_to_model(&to_unit_float(&bgr).map_err(cv)?, &fit, Layer::Image)
        .map_err(cv)?
        .ok_or_else(degenerate)?;
    let raw_mask = match source {
        MaskSource::Labels => {
            let m = seg::rasterize(&meta.seg_ie_polys, meta.size_px, side as u32)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            unit_mask(&m).map_err(cv)?
        }
        MaskSource::Applied => {
            let applied = meta.xseg_mask.as_ref().ok_or_else(|| "no applied mask".to_owned())?;
            let m = applied.decode().map_err(|e| format!("{}: {e}", path.display()))?;
            let mut resized = Mat::default();
            let size = core::Size::new(side, side);
            imgproc::resize(&m, &mut resized, size, 0.0, 0.0, imgproc::INTER_LINEAR).map_err(cv)?;
            unit_mask(&resized).map_err(cv)?
        }
        MaskSource::None => Mat::default(),
    };
    let mask = if source == MaskSource::None {
        grey(&image).map_err(cv)?
    } else {
        let fitted =
            fit_to_model(&raw_mask, &fit, Layer::Mask).map_err(cv)?.ok_or_else(degenerate)?;
        binarise(&fitted).map_err(cv)?
    };
    let hull = hull_at(&meta.landmarks, side, &fit).map_err(cv)?.ok_or_else(degenerate)?;
    Ok(LabelledFace { image, mask, hull, side: Side::Src })
}

/// The face's landmark hull, fitted like the face.
fn hull_at(landmarks: &Landmarks68, side: i32, fit: &Fit<'_>) -> opencv::Result<Option<Mat>> {
    let hull = hull_mask(side, landmarks)?;
    Ok(match fit_to_model(&hull, fit, Layer::Mask)? {
        Some(m) => Some(binarise(&m)?),
        None => None,
    })
}

/// CV_8UC1 0/255 → CV_32FC1 0/1.
fn unit_mask(m: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    m.convert_to(&mut out, core::CV_32F, 1.0 / 255.0, 0.0)?;
    Ok(out)
}

/// 1 where ≥ 0.5, else 0 (f32).
pub fn binarise(m: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    imgproc::threshold(m, &mut out, 0.5 - f64::EPSILON, 1.0, imgproc::THRESH_BINARY)?;
    Ok(out)
}

/// BGR f32 → grey f32 with OpenCV's weights (0.114 B + 0.587 G + 0.299 R).
pub fn grey(bgr: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    imgproc::cvt_color_def(bgr, &mut out, imgproc::COLOR_BGR2GRAY)?;
    Ok(out)
}
