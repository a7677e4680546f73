//! The trained model for merging: loaded from `model/<name>/` (its `config.json` and the
//! latest checkpoint's weights, not the optimizer) and run on batches of dst face crops.

use std::path::PathBuf;

use opencv::core::Mat;
use opencv::prelude::*;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::masked::FacePrediction;
use crate::face::align::FaceType;
use crate::img::{bgr_f32_from_mat, mat_from_bgr_f32};
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::folder::{FolderError, ModelFolder, WEIGHTS_FILE, Weights};
use crate::model::precision::{AutocastError, Precision, run_at};
use crate::model::saehd::Saehd;
use crate::workspace::{Workspace, WorkspaceError};

/// A trained model ready to predict swaps.
#[derive(Debug)]
pub struct Predictor {
    model: Saehd,
    // Owns the weights `model` reads.
    _vs: VarStore,
    device: Device,
    precision: Precision,
    face_type: FaceType,
    iteration: u64,
    checkpoint: PathBuf,
}

/// Errors of loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The model name is unusable.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The model folder or its options are missing or unreadable.
    #[error("{}: {reason}", .path.display())]
    Model {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The options or the checkpoint cannot be read.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The checkpoint's tensors do not fit the model its options describe.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// bfloat16 autocast failed.
    #[error(transparent)]
    Autocast(#[from] AutocastError),
    /// A crop is not the model's size (a bug in the caller).
    #[error("a face crop is {}×{}, the model takes {want}×{want}", .got[0], .got[1])]
    CropSize {
        /// The crop's width and height.
        got: [i32; 2],
        /// The model's resolution.
        want: i32,
    },
    /// A crop could not be converted.
    #[error("face crop conversion failed: {0}")]
    Cv(#[from] opencv::Error),
    /// libtorch failed (e.g. out of memory).
    #[error("the model failed: {0}; try a smaller --batch-size")]
    Torch(#[from] tch::TchError),
}

impl Predictor {
    /// Loads model `name` of `ws` onto `device`, for inference only.
    ///
    /// # Errors
    /// `Model` when the folder, `config.json` or a checkpoint is missing; `Folder` or
    /// `Checkpoint` for unreadable or mismatched options or weights.
    pub fn load(ws: &Workspace, name: &str, device: Device) -> Result<Self, PredictError> {
        let folder = ModelFolder::open(ws, name)?;
        let model_err =
            |reason: String| PredictError::Model { path: folder.dir().to_owned(), reason };
        let Some(cfg) = folder.read_config()? else {
            return Err(model_err(format!(
                "no trained model here; train it with `dfl train --name {name}`"
            )));
        };
        let cfg = cfg.effective();
        let Some(Weights { dir: checkpoint, weights, state }) = folder.load_weights()? else {
            return Err(model_err(format!(
                "no checkpoint saved yet; run `dfl train --name {name}` until it saves"
            )));
        };
        let vs = VarStore::new(device);
        let model = Saehd::new(&vs.root(), &cfg.model);
        copy_named(&checkpoint.join(WEIGHTS_FILE), weights, &vs.variables())?;
        Ok(Self {
            model,
            _vs: vs,
            device,
            precision: cfg.precision,
            face_type: cfg.face_type,
            iteration: state.iteration,
            checkpoint,
        })
    }

    /// Returns the model's resolution R.
    pub fn resolution(&self) -> i32 {
        i32::try_from(self.model.resolution()).unwrap_or(i32::MAX)
    }

    /// Returns the face type the model was trained on (the merge crops use it).
    pub fn face_type(&self) -> FaceType {
        self.face_type
    }

    /// Returns the training iteration of the loaded weights.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Returns the checkpoint folder the weights came from.
    pub fn checkpoint(&self) -> &std::path::Path {
        &self.checkpoint
    }

    /// Predicts the swap of every crop, `batch` crops per forward pass.
    ///
    /// The last batch is padded to `batch` with copies of its last crop, so every face goes
    /// through a pass of the same shape and its prediction does not depend on which faces
    /// share its batch (a resumed merge gives the same bytes as an uninterrupted one).
    ///
    /// # Shapes
    /// `crops`: `[R, R]` `CV_32FC3` BGR in [0, 1]. Output: one [`FacePrediction`] per crop.
    ///
    /// # Errors
    /// `Cv` for a crop of the wrong type or size, `Torch` when libtorch fails.
    pub fn predict(
        &self,
        crops: &[&Mat],
        batch: usize,
    ) -> Result<Vec<FacePrediction>, PredictError> {
        let r = self.resolution();
        let (side, batch) = (r as usize, batch.max(1));
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(batch) {
            let mut data = Vec::with_capacity(batch * side * side * 3);
            for i in 0..batch {
                let crop = chunk[i.min(chunk.len() - 1)];
                if crop.rows() != r || crop.cols() != r {
                    return Err(PredictError::CropSize {
                        got: [crop.cols(), crop.rows()],
                        want: r,
                    });
                }
                data.extend(bgr_f32_from_mat(crop)?);
            }
            let n = batch as i64;
            let input = Tensor::from_slice(&data)
                .view([n, i64::from(r), i64::from(r), 3])
                .permute([0, 3, 1, 2])
                .to_device(self.device);
            let pred = tch::no_grad(|| {
                run_at(self.precision, self.device, || self.model.merge_forward(&input))
            })?;
            let to_host = |t: &Tensor, channels_last: bool| -> Result<Vec<f32>, PredictError> {
                let t = if channels_last { t.permute([0, 2, 3, 1]) } else { t.shallow_clone() };
                let t = t.to_kind(Kind::Float).clamp(0.0, 1.0).contiguous().to_device(Device::Cpu);
                Ok(Vec::<f32>::try_from(t.flatten(0, -1))?)
            };
            let faces = to_host(&pred.swap.image, true)?;
            let prd_masks = to_host(&pred.swap.mask, false)?;
            let dst_masks = to_host(&pred.dst_mask, false)?;
            let (face_len, mask_len) = (side * side * 3, side * side);
            for i in 0..chunk.len() {
                out.push(FacePrediction {
                    face: mat_from_bgr_f32(&faces[i * face_len..(i + 1) * face_len], side, side)?,
                    prd_mask: mask_mat(&prd_masks[i * mask_len..(i + 1) * mask_len], r)?,
                    dst_mask: mask_mat(&dst_masks[i * mask_len..(i + 1) * mask_len], r)?,
                    xseg_prd: None,
                    xseg_dst: None,
                });
            }
        }
        Ok(out)
    }
}

/// An R×R `CV_32FC1` Mat from `R·R` values.
fn mask_mat(values: &[f32], r: i32) -> opencv::Result<Mat> {
    Mat::from_slice(values)?.reshape(1, r)?.try_clone()
}
