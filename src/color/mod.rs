//! Colour transfer: recolour a face toward a reference (DFL's ct modes).
//!
//! [`transfer`] is the training-time recolouring of a src sample toward a random dst sample
//! (`ct_mode`); [`transfer_masked`] is the merger's recolouring of the
//! predicted face toward the dst face (`color_transfer_mode`). Both work on plain
//! float BGR [`Image`]s with no OpenCV or libtorch, so they run on sampler threads; converting
//! from an OpenCV `Mat` is the caller's job.
//!
//! DFL: `core/imagelib/color_transfer.py`, `merger/MergeMasked.py`. One file per mode.

mod bilateral;
mod idt;
mod lab;
mod lct;
mod linalg;
mod mix;
mod mkl;
mod rct;
mod sot;
mod stats;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// An image for colour transfer: interleaved HWC, BGR, f32 nominally in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `height × width × 3` values, row by row, each pixel as B, G, R.
    pub data: Vec<f32>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Image {
    /// Wraps interleaved BGR data.
    ///
    /// # Errors
    /// [`ColorError::BadLength`] when `data` does not hold `width·height·3` values.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Self, ColorError> {
        let image = Self { data, width, height };
        image.check_length()?;
        Ok(image)
    }

    /// Returns a `width`×`height` image of one colour.
    pub fn filled(width: usize, height: usize, bgr: [f32; 3]) -> Self {
        Self { data: bgr.repeat(width * height), width, height }
    }

    /// Returns the number of pixels.
    pub fn pixel_count(&self) -> usize {
        self.width * self.height
    }

    fn check_length(&self) -> Result<(), ColorError> {
        let expected = self.width.checked_mul(self.height).and_then(|n| n.checked_mul(3));
        if expected != Some(self.data.len()) {
            let (width, height, got) = (self.width, self.height, self.data.len());
            return Err(ColorError::BadLength { width, height, got });
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ColorError> {
        self.check_length()?;
        if self.data.is_empty() {
            return Err(ColorError::Empty { width: self.width, height: self.height });
        }
        Ok(())
    }

    fn with_data(&self, data: Vec<f32>) -> Image {
        Image { data, width: self.width, height: self.height }
    }
}

/// Why a colour transfer could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ColorError {
    /// The image's data does not match its size.
    #[error("image data has {got} values, not {width}×{height}×3; build images with Image::new")]
    BadLength {
        /// Claimed width.
        width: usize,
        /// Claimed height.
        height: usize,
        /// Number of values present.
        got: usize,
    },
    /// The image has no pixels.
    #[error("image is empty ({width}×{height}); colour transfer needs at least one pixel")]
    Empty {
        /// Width.
        width: usize,
        /// Height.
        height: usize,
    },
    /// The predicted face and the dst face differ in size.
    #[error("prd is {prd:?} but dst is {dst:?} (width, height); warp dst to the prd size first")]
    SizeMismatch {
        /// Predicted face size (width, height).
        prd: (usize, usize),
        /// Dst face size (width, height).
        dst: (usize, usize),
    },
    /// The mask does not hold one value per pixel.
    #[error("mask has {got} values for {expected} pixels; pass one value per pixel (H×W)")]
    MaskLength {
        /// Pixels in the image.
        expected: usize,
        /// Values in the mask.
        got: usize,
    },
}

/// Training-time colour transfer of a src sample toward a dst sample (DFL's `ct_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorTransfer {
    /// No recolouring.
    #[default]
    None,
    /// Reinhard: match per-channel mean and standard deviation in Lab.
    Rct,
    /// Linear (PCA): match mean and covariance in BGR.
    Lct,
    /// Monge–Kantorovich linear: match mean and covariance with the optimal-transport map.
    Mkl,
    /// Iterative distribution transfer: histogram matching along random rotations.
    Idt,
    /// Sliced optimal transport, then a bilateral-filtered change.
    Sot,
}

/// Merge-time colour transfer of the predicted face toward the dst face (DFL's
/// `color_transfer_mode`); the `-m` modes see only the pixels inside the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeColorTransfer {
    /// No recolouring.
    #[default]
    None,
    /// Reinhard in Lab with statistics over the masked faces (masked-out pixels count as 0).
    Rct,
    /// Linear (PCA) over the whole crops.
    Lct,
    /// Monge–Kantorovich linear over the whole crops.
    Mkl,
    /// Monge–Kantorovich linear on the masked faces (masked-out pixels black).
    MklM,
    /// Iterative distribution transfer over the whole crops.
    Idt,
    /// Iterative distribution transfer on the masked faces.
    IdtM,
    /// Sliced optimal transport (30 directions per step) on the masked faces.
    SotM,
    /// Lightness by lct and chroma by sot, on the masked faces.
    MixM,
}

/// Recolours `src` toward `reference` with `mode` (training time, no masks); the result is
/// clipped to [0, 1]. The images may differ in size. idt and sot draw from `rng`.
///
/// # Errors
/// [`ColorError::BadLength`] or [`ColorError::Empty`] for a malformed or empty image.
pub fn transfer(
    mode: ColorTransfer,
    src: &Image,
    reference: &Image,
    rng: &mut impl Rng,
) -> Result<Image, ColorError> {
    src.check()?;
    reference.check()?;
    let (s, r) = (&src.data, &reference.data);
    let out = match mode {
        ColorTransfer::None => s.clone(),
        ColorTransfer::Rct => rct::transfer(s, r, None),
        ColorTransfer::Lct => lct::transfer(s, r),
        ColorTransfer::Mkl => mkl::transfer(s, r),
        ColorTransfer::Idt => idt::transfer(s, r, rng),
        ColorTransfer::Sot => sot::transfer(src, r, sot::TRAIN_DIRECTIONS, rng),
    };
    Ok(src.with_data(clip_unit(out)))
}

/// Recolours the predicted face `prd` toward the dst face `dst` with `mode` (merge time);
/// the result is clipped to [0, 1].
///
/// `mask` is the working mask, H×W in [0, 1]; like DFL we use its support (`mask > 0`) as the
/// face area A. rct takes its statistics over both faces with pixels outside A zeroed; the
/// `-m` modes run on `prd·A` and `dst·A`, so pixels outside A come out as the transfer of
/// black. ⚠ In both cases the zeroed pixels still count in the statistics: kept for parity
/// with DFL (`docs/dfl-parity.md`, "Colour transfer"). sot-m and mix-m use the bilateral regularisation on the full
/// square, as DFL does.
///
/// # Errors
/// A malformed or empty image, prd and dst of different sizes, or a mask of the wrong length.
pub fn transfer_masked(
    mode: MergeColorTransfer,
    prd: &Image,
    dst: &Image,
    mask: &[f32],
    rng: &mut impl Rng,
) -> Result<Image, ColorError> {
    check_merge_inputs(prd, dst, mask)?;
    // DFL: `wrk_face_mask_area_a[wrk_face_mask_area_a > 0] = 1` in `MergeMasked.py`.
    let area: Vec<bool> = mask.iter().map(|&m| m > 0.0).collect();
    let (p, d) = (&prd.data, &dst.data);
    let masked = |image: &Image| apply_area(image, &area);
    let out = match mode {
        MergeColorTransfer::None => p.clone(),
        MergeColorTransfer::Rct => rct::transfer(p, d, Some(&area)),
        MergeColorTransfer::Lct => lct::transfer(p, d),
        MergeColorTransfer::Mkl => mkl::transfer(p, d),
        MergeColorTransfer::MklM => mkl::transfer(&masked(prd).data, &masked(dst).data),
        MergeColorTransfer::Idt => idt::transfer(p, d, rng),
        MergeColorTransfer::IdtM => idt::transfer(&masked(prd).data, &masked(dst).data, rng),
        MergeColorTransfer::SotM => {
            sot::transfer(&masked(prd), &masked(dst).data, sot::MERGE_DIRECTIONS, rng)
        }
        MergeColorTransfer::MixM => mix::transfer(&masked(prd), &masked(dst).data, rng),
    };
    Ok(prd.with_data(clip_unit(out)))
}

fn check_merge_inputs(prd: &Image, dst: &Image, mask: &[f32]) -> Result<(), ColorError> {
    prd.check()?;
    dst.check()?;
    if (prd.width, prd.height) != (dst.width, dst.height) {
        let (prd, dst) = ((prd.width, prd.height), (dst.width, dst.height));
        return Err(ColorError::SizeMismatch { prd, dst });
    }
    if mask.len() != prd.pixel_count() {
        return Err(ColorError::MaskLength { expected: prd.pixel_count(), got: mask.len() });
    }
    Ok(())
}

/// Returns `image·A`: every pixel outside the area set to black.
fn apply_area(image: &Image, area: &[bool]) -> Image {
    let mut data = image.data.clone();
    for (px, &inside) in data.chunks_exact_mut(3).zip(area) {
        if !inside {
            px.fill(0.0);
        }
    }
    image.with_data(data)
}

/// Clips every value to [0, 1] (NaN becomes 0).
fn clip_unit(mut data: Vec<f32>) -> Vec<f32> {
    for v in &mut data {
        *v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    }
    data
}

/// Test images shared by the mode files.
#[cfg(test)]
pub(crate) mod test_images {
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    /// Returns `n` correlated pixels: `centre + mix·u` with `u` uniform in [−1, 1]³.
    pub(crate) fn correlated(
        n: usize,
        centre: f32,
        mix: [[f32; 3]; 3],
        rng: &mut ChaCha8Rng,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * 3);
        for _ in 0..n {
            let u: [f32; 3] = [0; 3].map(|_| rng.random_range(-1.0..1.0));
            out.extend(mix.map(|row| centre + row[0] * u[0] + row[1] * u[1] + row[2] * u[2]));
        }
        out
    }

    /// Checks that `transfer` maps a fixed correlated image onto a reference's mean (to 1e-6)
    /// and covariance (to `cov_tol`).
    pub(crate) fn assert_matches_reference_stats(
        transfer: fn(&[f32], &[f32]) -> Vec<f32>,
        seed: u64,
        cov_tol: f64,
    ) {
        use super::stats::{covariance, mean};
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let src =
            correlated(3000, 0.5, [[0.2, 0.05, 0.0], [0.0, 0.1, 0.0], [0.05, 0.0, 0.15]], &mut rng);
        let reference = correlated(
            2000,
            0.4,
            [[0.05, 0.0, 0.02], [0.03, 0.08, 0.0], [0.0, 0.02, 0.06]],
            &mut rng,
        );
        let out = transfer(&src, &reference);
        let (mu_o, mu_r) = (mean(&out), mean(&reference));
        let (cov_o, cov_r) = (covariance(&out, mu_o), covariance(&reference, mu_r));
        for i in 0..3 {
            assert!((mu_o[i] - mu_r[i]).abs() < 1e-6, "{mu_o:?} vs {mu_r:?}");
            for j in 0..3 {
                assert!((cov_o[i][j] - cov_r[i][j]).abs() < cov_tol, "{cov_o:?} vs {cov_r:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
