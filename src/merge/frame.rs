//! One frame merged: every face of it in order, and the frame's blend mask.

use opencv::core::{CV_8UC3, CV_32FC1, Mat, Scalar};
use opencv::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::MergeError;
use super::config::{BlendMode, MergeConfig};
use super::mask;
use super::masked::{DstFace, FacePrediction, merge_face};

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
