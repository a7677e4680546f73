//! XSeg's training batches (`docs/xseg.md`, "Training"): each sample is a labelled face put
//! through the damage real footage does: half the time another face composited behind it,
//! always a random warp, affine and flip, then flares, colour shifts, sharpening or blur,
//! resolution loss and JPEG artefacts, each inside a random soft circle.
//!
//! Everything derives from `(iteration, slot)`: which face (an epoch-shuffled order) and the
//! RNG of its augmentation, so a resumed run draws exactly the batches an uninterrupted one
//! would.

use opencv::core::{self, Mat};
use opencv::imgproc;
use opencv::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::Tensor;

use super::samples::{LabelledFace, binarise};
use crate::augment::degrade;
use crate::augment::warp::{Layer, WarpParams, WarpRanges, apply_warp, push_chw};

/// The face's own geometry: rotation ±10°, scale ±5 %, shift ±5 %, flips.
const FACE_RANGES: WarpRanges =
    WarpRanges { rotation_deg: 10.0, scale_spread: 0.05, shift_share: 0.05, flip_probability: 0.4 };
/// The background face's geometry: any rotation, scale ±10 %, shift ±10 %, flips.
const BACKGROUND_RANGES: WarpRanges = WarpRanges {
    rotation_deg: 180.0,
    scale_spread: 0.10,
    shift_share: 0.10,
    flip_probability: 0.4,
};
/// Chance (percent) of each blur, sharpen, resize or JPEG degradation when it is picked.
const DEGRADE_CHANCE: u32 = 25;
/// Largest sharpen, motion-blur and Gaussian-blur kernels.
const DEGRADE_KERNEL: i32 = 5;
/// Largest shrink of the resize degradation, percent.
const RESIZE_MAX_PERCENT: u32 = 75;
/// Separates the order's RNG streams from the samples'.
const ORDER_STREAM: u64 = 0x005E_ED0F_0DE5;

/// One batch: inputs and targets.
#[derive(Debug)]
pub struct XSegBatch {
    /// `[N, 3, R, R]` BGR in `[0, 1]`.
    pub images: Tensor,
    /// `[N, 1, R, R]`: {0, 1} masks, or the grey face when pretraining.
    pub targets: Tensor,
    /// Which face each sample shows (indices into the sampler's faces).
    pub faces: Vec<usize>,
}

/// Draws batches from a fixed set of faces.
#[derive(Debug)]
pub struct XSegSampler<'a> {
    faces: &'a [LabelledFace],
    batch: usize,
    resolution: i32,
    pretrain: bool,
}

impl<'a> XSegSampler<'a> {
    /// A sampler over `faces` (not empty) at `resolution`, `batch` faces a step.
    pub fn new(faces: &'a [LabelledFace], batch: usize, resolution: i64, pretrain: bool) -> Self {
        Self { faces, batch, resolution: resolution as i32, pretrain }
    }

    /// The batch of `iteration`.
    ///
    /// # Errors
    /// OpenCV's error on a sample.
    pub fn batch(&self, iteration: u64) -> opencv::Result<XSegBatch> {
        let first = iteration * self.batch as u64;
        let picks: Vec<(usize, usize)> =
            Orders::new(self.faces.len(), first, self.batch as u64).collect();
        let samples: Vec<opencv::Result<(Mat, Mat)>> = picks
            .par_iter()
            .enumerate()
            .map(|(slot, &(face, background))| {
                let face = &self.faces[face];
                let mut rng = keyed_rng(iteration, slot as u64);
                if self.pretrain {
                    self.pretrain_sample(face, &mut rng)
                } else {
                    augmented(face, &self.faces[background], self.resolution, &mut rng)
                }
            })
            .collect();
        let r = i64::from(self.resolution);
        let n = self.batch as i64;
        let (mut images, mut targets) = (Vec::new(), Vec::new());
        for sample in samples {
            let (image, target) = sample?;
            push_chw(&image, &mut images)?;
            push_chw(&target, &mut targets)?;
        }
        Ok(XSegBatch {
            images: Tensor::from_slice(&images).view([n, 3, r, r]),
            targets: Tensor::from_slice(&targets).view([n, 1, r, r]),
            faces: picks.into_iter().map(|(face, _)| face).collect(),
        })
    }

    /// Pretraining: the face warped and flipped as the target is (the net learns the face
    /// through its bottleneck).
    fn pretrain_sample(
        &self,
        face: &LabelledFace,
        rng: &mut ChaCha8Rng,
    ) -> opencv::Result<(Mat, Mat)> {
        let params = WarpParams::draw_in(rng, self.resolution, true, true, &FACE_RANGES)?;
        let image = apply_warp(&face.image, &params, true, Layer::Image)?;
        let target = apply_warp(&face.mask, &params, true, Layer::Mask)?;
        Ok((degrade::clip_unit(&image)?, degrade::clip_unit(&target)?))
    }
}

/// The (face, background face) of draws `first..first + count`: every face once per epoch in
/// an order shuffled per epoch, one shuffle for the faces and another for the backgrounds;
/// each epoch's orders are drawn once, however many draws fall in it.
struct Orders {
    len: usize,
    draw: u64,
    end: u64,
    epoch: Option<(u64, Vec<usize>, Vec<usize>)>,
}

impl Orders {
    fn new(len: usize, first: u64, count: u64) -> Self {
        Self { len, draw: first, end: first + count, epoch: None }
    }
}

impl Iterator for Orders {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.draw >= self.end {
            return None;
        }
        let n = self.len as u64;
        let epoch = self.draw / n;
        if self.epoch.as_ref().is_none_or(|(e, ..)| *e != epoch) {
            let order = |stream| {
                let mut order: Vec<usize> = (0..self.len).collect();
                order.shuffle(&mut keyed_rng(epoch ^ ORDER_STREAM, stream));
                order
            };
            self.epoch = Some((epoch, order(0), order(1)));
        }
        let (_, faces, backgrounds) = self.epoch.as_ref()?;
        let at = (self.draw % n) as usize;
        self.draw += 1;
        Some((faces[at], backgrounds[at]))
    }
}

/// The RNG of one (iteration, slot).
fn keyed_rng(a: u64, b: u64) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&a.to_le_bytes());
    seed[8..16].copy_from_slice(&b.to_le_bytes());
    seed[16..24].copy_from_slice(b"dfl-xseg");
    ChaCha8Rng::from_seed(seed)
}

/// One augmented training sample of `face`, with `background` perhaps composited behind it.
fn augmented(
    face: &LabelledFace,
    background: &LabelledFace,
    r: i32,
    rng: &mut ChaCha8Rng,
) -> opencv::Result<(Mat, Mat)> {
    let (mut img, mut mask) = (face.image.try_clone()?, face.mask.try_clone()?);
    if rng.random_bool(0.5) {
        img = composite(&img, &mask, background, r, rng)?;
    }
    let params = WarpParams::draw_in(rng, r, true, true, &FACE_RANGES)?;
    img = degrade::clip_unit(&apply_warp(&img, &params, true, Layer::Image)?)?;
    mask = binarise(&apply_warp(&mask, &params, true, Layer::Mask)?)?;
    if rng.random_bool(0.5) {
        img = degrade::random_flare(rng, &img, &mask)?;
    }
    if rng.random_bool(0.5) {
        img = degrade::random_flare(rng, &img, &inverse(&mask)?)?;
    }
    let circle = degrade::random_circle_faded(rng, r)?;
    img = if rng.random_bool(0.5) {
        degrade::random_hsv_shift(rng, &img, Some(&circle))?
    } else {
        degrade::random_rgb_levels(rng, &img, Some(&circle))?
    };
    if rng.random_bool(0.5) {
        let circle = degrade::random_circle_faded(rng, r)?;
        img = degrade::random_sharpen(rng, &img, DEGRADE_CHANCE, DEGRADE_KERNEL, Some(&circle))?;
    } else {
        let circle = degrade::random_circle_faded(rng, r)?;
        img =
            degrade::random_motion_blur(rng, &img, DEGRADE_CHANCE, DEGRADE_KERNEL, Some(&circle))?;
        let circle = degrade::random_circle_faded(rng, r)?;
        img = degrade::random_gaussian_blur(
            rng,
            &img,
            DEGRADE_CHANCE,
            DEGRADE_KERNEL,
            Some(&circle),
        )?;
    }
    let circle = degrade::random_circle_faded(rng, r)?;
    let interpolation =
        if rng.random_bool(0.5) { imgproc::INTER_NEAREST } else { imgproc::INTER_LINEAR };
    img = degrade::random_resize(
        rng,
        &img,
        DEGRADE_CHANCE,
        RESIZE_MAX_PERCENT,
        interpolation,
        Some(&circle),
    )?;
    img = degrade::clip_unit(&img)?;
    let circle = degrade::random_circle_faded(rng, r)?;
    img = degrade::random_jpeg(rng, &img, DEGRADE_CHANCE, Some(&circle))?;
    Ok((img, mask))
}

/// Puts another face, turned any way, behind the face: where neither face's mask is, the
/// pixel becomes a random mix of the face's own background and the other face's.
fn composite(
    img: &Mat,
    mask: &Mat,
    background: &LabelledFace,
    r: i32,
    rng: &mut ChaCha8Rng,
) -> opencv::Result<Mat> {
    let params = WarpParams::draw_in(rng, r, false, true, &BACKGROUND_RANGES)?;
    let bg_img = apply_warp(&background.image, &params, false, Layer::Image)?;
    let bg_mask = apply_warp(&background.mask, &params, false, Layer::Mask)?;
    let bg_only = inverse(&bg_mask)?;
    let mut bg = Mat::default();
    core::multiply(&bg_img, &degrade::to_channels(&bg_only, 3)?, &mut bg, 1.0, -1)?;
    bg = if rng.random_bool(0.5) {
        degrade::random_hsv_shift(rng, &bg, None)?
    } else {
        degrade::random_rgb_levels(rng, &bg, None)?
    };
    // Where either face is (c = 1) the face stays; elsewhere a mix of its background and bg.
    let mut neither = Mat::default();
    core::multiply(&bg_only, &inverse(mask)?, &mut neither, 1.0, -1)?;
    let keep = rng.random_range(0.15..1.0);
    let mut mixed = Mat::default();
    core::add_weighted_def(img, keep, &bg, 1.0 - keep, 0.0, &mut mixed)?;
    degrade::blend_masked(img, &mixed, &neither)
}

/// `1 − m`.
fn inverse(m: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    core::subtract(&core::Scalar::all(1.0), m, &mut out, &core::no_array(), -1)?;
    Ok(out)
}
