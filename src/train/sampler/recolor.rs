//! DFL's `ct_mode` at training time (`docs/dfl-parity.md`, "Colour transfer"): each src sample's fitted
//! image is recoloured toward a random face of the other faceset (resized to R×R) before
//! warping; masks are left alone.

use std::sync::Arc;

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;

use super::{FaceCache, SampleError, SampleSet};
use crate::augment::warp::to_unit_float;
use crate::color::{self, ColorTransfer, Image};

/// The faces src samples are recoloured toward (the dst faceset and its cache).
#[derive(Clone)]
pub struct ColorReference {
    /// The reference faces.
    pub faceset: Arc<SampleSet>,
    /// Their decoded images.
    pub cache: Arc<FaceCache>,
}

impl std::fmt::Debug for ColorReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ColorReference({} faces in {})",
            self.faceset.len(),
            self.faceset.dir().display()
        )
    }
}

/// Recolours `image` (`CV_32FC3` BGR in [0,1], `R`×`R`) toward a random reference face.
///
/// # Errors
/// The reference face cannot be decoded, or OpenCV fails.
pub fn recolor(
    image: &Mat,
    mode: ColorTransfer,
    reference: &ColorReference,
    rng: &mut impl Rng,
) -> Result<Mat, SampleError> {
    let faces = reference.faceset.faces();
    let face = &faces[rng.random_range(0..faces.len())];
    let cv = |source| SampleError::OpenCv { path: face.path.clone(), source };
    let bgr = reference.cache.get_or_load(&face.path)?;
    let (w, h) = (image.cols(), image.rows());
    let mut resized = Mat::default();
    imgproc::resize(&*bgr, &mut resized, Size::new(w, h), 0.0, 0.0, imgproc::INTER_LINEAR)
        .map_err(cv)?;
    let transfer_err = |source| SampleError::ColorTransfer { path: face.path.clone(), source };
    let as_image = |mat: &Mat| -> Result<Image, SampleError> {
        let data = crate::img::bgr_f32_from_mat(mat).map_err(cv)?;
        let (w, h) = (mat.cols() as usize, mat.rows() as usize);
        Image::new(w, h, data).map_err(transfer_err)
    };
    let reference_img = as_image(&to_unit_float(&resized).map_err(cv)?)?;
    let src_img = as_image(image)?;
    let out = color::transfer(mode, &src_img, &reference_img, rng).map_err(transfer_err)?;
    crate::img::mat_from_bgr_f32(&out.data, out.width, out.height).map_err(cv)
}
