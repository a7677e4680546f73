//! A trained XSeg model loaded for inference: faces in (any size, any face type), masks out in
//! each face's own pixels. `dfl xseg apply`, `dfl merge`'s XSeg modes and `dfl train --mask`
//! read masks through it.

use opencv::core::{self, Mat, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::folder::{XSegConfig, XSegFolder};
use super::net::{BASE_CHANNELS, XSeg};
use crate::augment::warp::{Fit, Layer, fit_to_model, push_chw, to_unit_float};
use crate::face::align::{FaceType, transform_mat};
use crate::face::landmarks::Landmarks68;
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::folder::{FolderError, WEIGHTS_FILE};

/// Predicted values below this are noise and set to 0, as DFL does.
pub const NOISE_FLOOR: f64 = 0.1;

/// Errors of loading or running an XSeg model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XSegError {
    /// The folder has no checkpoint.
    #[error("XSeg model {name} ({}) has no checkpoint yet; train it first: dfl xseg train --name {name}", .dir.display())]
    Untrained {
        /// The model's name.
        name: String,
        /// Its folder.
        dir: std::path::PathBuf,
    },
    /// The folder cannot be read.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The weights do not fit the network.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// OpenCV failed on a face.
    #[error("XSeg: image error: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// One face to segment.
#[derive(Debug, Clone, Copy)]
pub struct FaceIn<'a> {
    /// The aligned face, BGR u8, square.
    pub image: &'a Mat,
    /// Its 68 landmarks in its own pixels.
    pub landmarks: &'a Landmarks68,
    /// Its crop.
    pub face_type: FaceType,
}

/// A trained XSeg model, ready to segment faces.
#[derive(Debug)]
pub struct XSegModel {
    net: XSeg,
    _vs: VarStore,
    cfg: XSegConfig,
    name: String,
    iteration: u64,
    device: Device,
}

impl XSegModel {
    /// Loads the latest checkpoint of `folder` onto `device`.
    ///
    /// # Errors
    /// `Untrained` when the model has no checkpoint; `Folder` or `Checkpoint` when its files are
    /// unreadable or do not fit.
    pub fn load(folder: &XSegFolder, device: Device) -> Result<Self, XSegError> {
        let untrained = || XSegError::Untrained {
            name: folder.name().to_owned(),
            dir: folder.sets.dir().to_owned(),
        };
        let cfg = folder.read_config()?.ok_or_else(untrained)?;
        let weights = folder.sets.load_weights()?.ok_or_else(untrained)?;
        let vs = VarStore::new(device);
        let net = XSeg::new(&vs.root(), cfg.resolution, 3, BASE_CHANNELS, 1);
        copy_named(&weights.dir.join(WEIGHTS_FILE), weights.weights, &vs.variables())?;
        Ok(Self {
            net,
            _vs: vs,
            cfg,
            name: folder.name().to_owned(),
            iteration: weights.state.iteration,
            device,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The iteration its weights were saved at.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Where it runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The side of its input.
    pub fn resolution(&self) -> i64 {
        self.cfg.resolution
    }

    /// The crop it segments.
    pub fn face_type(&self) -> FaceType {
        self.cfg.face_type
    }

    /// Segments a batch of faces already fitted to the model, BGR in `[0, 1]`.
    ///
    /// # Shapes
    /// `[N, 3, R, R]` → `[N, 1, R, R]` in `[0, 1]`, values under [`NOISE_FLOOR`] set to 0.
    pub fn predict(&self, faces: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (_, mask) =
                self.net.forward(&faces.to_device(self.device).to_kind(Kind::Float), false);
            let mask = mask.clamp(0.0, 1.0);
            let keep = mask.ge(NOISE_FLOOR).to_kind(Kind::Float);
            (mask * keep).to_device(Device::Cpu)
        })
    }

    /// Segments faces of any size and crop, `batch` faces per forward pass (the last pass is
    /// padded with copies of its last face, so a face's mask never depends on which faces
    /// share its pass). Each mask comes back in its face's own pixels (CV_32FC1, the face's
    /// size, `[0, 1]`). Faces are BGR u8, or f32 in `[0, 1]`. A face whose landmarks cannot be
    /// aligned gets an empty (all 0) mask.
    ///
    /// # Errors
    /// `OpenCv` on a face that cannot be converted.
    pub fn predict_faces(&self, faces: &[FaceIn<'_>], batch: usize) -> Result<Vec<Mat>, XSegError> {
        let mut out = Vec::with_capacity(faces.len());
        for chunk in faces.chunks(batch.max(1)) {
            out.extend(self.predict_chunk(chunk, batch.max(1))?);
        }
        Ok(out)
    }

    fn predict_chunk(&self, faces: &[FaceIn<'_>], batch: usize) -> Result<Vec<Mat>, XSegError> {
        let r = self.cfg.resolution as i32;
        let mut input = Vec::with_capacity(batch * (3 * r * r) as usize);
        let mut fitted_ok = Vec::with_capacity(faces.len());
        for face in faces {
            let unit = if face.image.depth() == core::CV_8U {
                to_unit_float(face.image)?
            } else {
                face.image.try_clone()?
            };
            let fitted = fit_to_model(&unit, &self.fit(face), Layer::Image)?;
            fitted_ok.push(fitted.is_some());
            let blank = || Mat::new_rows_cols_with_default(r, r, core::CV_32FC3, Scalar::all(0.0));
            push_chw(&fitted.map_or_else(blank, Ok)?, &mut input)?;
        }
        // Padding: copies of the last face, so every pass has the same shape.
        let one = (3 * r * r) as usize;
        let last = input.len() - one;
        for _ in faces.len()..batch {
            input.extend_from_within(last..last + one);
        }
        let n = batch as i64;
        let tensor = Tensor::from_slice(&input).view([n, 3, i64::from(r), i64::from(r)]);
        let masks = self.predict(&tensor);
        let mut out = Vec::with_capacity(faces.len());
        for (i, face) in faces.iter().enumerate() {
            let side = face.image.rows();
            let values: Vec<f32> = Vec::try_from(masks.get(i as i64).flatten(0, -1))
                .map_err(|e: tch::TchError| opencv::Error::new(core::StsError, e.to_string()))?;
            let at_r = Mat::from_slice(&values)?.reshape(1, r)?.try_clone()?;
            out.push(if fitted_ok[i] { self.to_face(&at_r, face, side)? } else { zeros(side)? });
        }
        Ok(out)
    }

    fn fit<'a>(&self, face: &FaceIn<'a>) -> Fit<'a> {
        Fit {
            landmarks: face.landmarks,
            face_type: face.face_type,
            model_face_type: self.cfg.face_type,
            resolution_px: self.cfg.resolution as i32,
        }
    }

    /// Maps a mask at the model's crop back onto the face's own pixels.
    fn to_face(&self, mask: &Mat, face: &FaceIn<'_>, side: i32) -> Result<Mat, XSegError> {
        let mut out = Mat::default();
        if face.face_type == self.cfg.face_type {
            imgproc::resize(
                mask,
                &mut out,
                Size::new(side, side),
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )?;
            return Ok(out);
        }
        let Some(m) = transform_mat(face.landmarks, self.cfg.resolution as u32, self.cfg.face_type)
        else {
            return zeros(side);
        };
        let m = Mat::from_slice_2d(&m)?;
        let flags = imgproc::INTER_LINEAR | imgproc::WARP_INVERSE_MAP;
        let zero = Scalar::all(0.0);
        imgproc::warp_affine(
            mask,
            &mut out,
            &m,
            Size::new(side, side),
            flags,
            core::BORDER_CONSTANT,
            zero,
        )?;
        Ok(out)
    }
}

fn zeros(side: i32) -> Result<Mat, XSegError> {
    Ok(Mat::new_rows_cols_with_default(side, side, core::CV_32FC1, Scalar::all(0.0))?)
}
