//! Training-time evaluation on held-out faces (`--eval-every N`).
//!
//! With evaluation on, every 10th face of each faceset (at most 16) is kept out of training.
//! Every N iterations the model reconstructs those faces (src → src, dst → dst) and swaps the
//! dst ones; the run records SSIM and PSNR of the reconstructions, their sharpness against the
//! faces' own, and the SFace identity of the swaps against the src faceset's mean, so a user
//! sees likeness and detail grow, not just loss fall.

use opencv::core::Mat;
use tch::{Device, Kind, Tensor};

use super::sampler::cache::FaceCache;
use super::sampler::samples::SampleSet;
use super::sampler::{SampleConfig, SampleError, model_landmarks, still_sample};
use crate::face::identity::{Embedding, IdentityError, RecognizerPool};
use crate::img::mat_from_bgr_f32;
use crate::model::folder::EvalPoint;
use crate::model::loss::dssim;
use crate::model::saehd::Saehd;

/// Every this many faces (in file order) one is held out.
pub const HOLDOUT_EVERY: usize = 10;
/// At most this many faces are held out per side.
pub const HOLDOUT_MAX: usize = 16;
/// The SSIM window (the usual 11 px, σ 1.5).
const SSIM_WINDOW: i64 = 11;

/// Errors of measuring the held-out faces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldoutError {
    /// SFace failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// libtorch failed.
    #[error("evaluating the held-out faces: {0}")]
    Torch(#[from] tch::TchError),
    /// A face could not be converted.
    #[error("evaluating the held-out faces: {0}")]
    Cv(#[from] opencv::Error),
    /// A held-out face could not be read or fitted.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

/// The held-out faces as model-ready tensors, and what identity needs.
pub struct HeldOut {
    src: Tensor,
    dst: Tensor,
    /// The faces' landmark-hull masks: `[N, 1, R, R]`.
    src_mask: Tensor,
    dst_mask: Tensor,
    /// Five points per held-out dst face, in model-crop pixels.
    dst_five: Vec<[[f32; 2]; 5]>,
    /// What identity needs, when SFace is available.
    identity: Option<Identity>,
}

/// The src faceset's identity and the held-out dst faces' own likeness to it.
struct Identity {
    /// The mean SFace embedding of the src faceset.
    mean: Embedding,
    pool: RecognizerPool,
    /// Mean cosine of the held-out dst faces themselves with `mean` (fixed: measured once).
    dst: f64,
}

impl HeldOut {
    /// Builds the tensors of the held-out `src` and `dst` faces, unaugmented.
    ///
    /// # Errors
    /// A face that cannot be read or fitted, or SFace's error.
    pub fn new(
        src: &SampleSet,
        dst: &SampleSet,
        cfg: &SampleConfig,
        identity: Option<(Embedding, RecognizerPool)>,
    ) -> Result<Self, HoldoutError> {
        let stack = |set: &SampleSet| -> Result<(Tensor, Tensor), SampleError> {
            let cache = FaceCache::default();
            let (n, r) = (set.len() as i64, i64::from(cfg.resolution_px));
            let (mut images, mut masks) = (Vec::new(), Vec::new());
            for i in 0..set.len() {
                let sample = still_sample(set, &cache, i, cfg)?;
                images.extend(sample.target);
                masks.extend(sample.mask);
            }
            let images = Tensor::from_slice(&images).view([n, 3, r, r]);
            Ok((images, Tensor::from_slice(&masks).view([n, 1, r, r])))
        };
        let dst_five = dst
            .faces()
            .iter()
            .map(|f| {
                model_landmarks(f, cfg.resolution_px, cfg.face_type)
                    .map_or([[0.0; 2]; 5], |l| l.five_points())
            })
            .collect::<Vec<_>>();
        let (dst_tensor, dst_mask) = stack(dst)?;
        let identity = match identity {
            Some((mean, pool)) => {
                let dst = mean_identity(&dst_tensor, &dst_five, &mean, &pool)?;
                Some(Identity { mean, pool, dst })
            }
            None => None,
        };
        let (src, src_mask) = stack(src)?;
        Ok(Self { src, dst: dst_tensor, src_mask, dst_mask, dst_five, identity })
    }

    /// Measures `model` at `iteration`.
    ///
    /// # Errors
    /// The identity model's, libtorch's or OpenCV's error.
    pub fn measure(
        &self,
        model: &Saehd,
        device: Device,
        iteration: u64,
    ) -> Result<EvalPoint, HoldoutError> {
        let _guard = tch::no_grad_guard();
        let (src, dst) = (self.src.to_device(device), self.dst.to_device(device));
        let ss = model.src_src(&src).image;
        let dd = model.dst_dst(&dst).image;
        let (src_ssim, src_psnr) = ssim_psnr(&ss, &src);
        let (dst_ssim, dst_psnr) = ssim_psnr(&dd, &dst);
        let swap = model.swap(&dst).image;
        let (src_mask, dst_mask) =
            (self.src_mask.to_device(device), self.dst_mask.to_device(device));
        let finite = |x: f64| Some(x).filter(|x| x.is_finite());
        let src_sharpness = finite(sharpness_ratio(&ss, &src, &src_mask));
        let swap_sharpness = finite(sharpness_ratio(&swap, &dst, &dst_mask));
        let (swap_identity, dst_identity) = match &self.identity {
            Some(id) => {
                (Some(mean_identity(&swap, &self.dst_five, &id.mean, &id.pool)?), Some(id.dst))
            }
            None => (None, None),
        };
        Ok(EvalPoint {
            iteration,
            src_ssim,
            src_psnr,
            dst_ssim,
            dst_psnr,
            src_sharpness,
            swap_sharpness,
            swap_identity,
            dst_identity,
        })
    }
}

/// Mean cosine of the faces in `images` (`[N, 3, R, R]` BGR in [0, 1]) with `mean`.
fn mean_identity(
    images: &Tensor,
    five_points: &[[[f32; 2]; 5]],
    mean: &Embedding,
    pool: &RecognizerPool,
) -> Result<f64, HoldoutError> {
    let (n, r) = (images.size()[0], images.size()[2]);
    let host = images
        .to_kind(Kind::Float)
        .clamp(0.0, 1.0)
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(Device::Cpu);
    let values = Vec::<f32>::try_from(host.flatten(0, -1))?;
    let plane = (r * r * 3) as usize;
    let mut sface = pool.take()?;
    let mut embed = |i: usize, five: &[[f32; 2]; 5]| -> Result<f64, HoldoutError> {
        let face = &values[i * plane..(i + 1) * plane];
        let bgr = to_u8(&mat_from_bgr_f32(face, r as usize, r as usize)?)?;
        let e = sface.embed(&bgr, five)?;
        Ok(e.cosine(mean))
    };
    let cosines: Result<Vec<f64>, HoldoutError> =
        five_points.iter().enumerate().take(n as usize).map(|(i, five)| embed(i, five)).collect();
    pool.put(sface);
    let cosines = cosines?;
    Ok(cosines.iter().sum::<f64>() / cosines.len().max(1) as f64)
}

fn to_u8(bgr_f32: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    opencv::prelude::MatTraitConst::convert_to(
        bgr_f32,
        &mut out,
        opencv::core::CV_8UC3,
        255.0,
        0.0,
    )?;
    Ok(out)
}

/// Mean SSIM (11-px Gaussian window) and PSNR (dB, peak 1) of `a` against `b`.
///
/// # Shapes
/// `a`, `b`: `[N, C, H, W]` in [0, 1].
pub fn ssim_psnr(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let a = a.to_kind(Kind::Float).clamp(0.0, 1.0);
    let b = b.to_kind(Kind::Float);
    let ssim = 1.0 - 2.0 * dssim(&a, &b, SSIM_WINDOW).mean(Kind::Float).double_value(&[]);
    let mse = (&a - &b).square().mean(Kind::Float).double_value(&[]);
    let psnr = if mse > 0.0 { 10.0 * (1.0 / mse).log10() } else { f64::INFINITY };
    (ssim, psnr)
}

/// BGR → gray weights (ITU-R BT.601, as OpenCV's).
const GRAY_BGR: [f32; 3] = [0.114, 0.587, 0.299];

/// High-frequency energy per face: the mean squared 4-neighbour Laplacian of the gray image
/// over the mask (where the Laplacian's 3×3 window fits in the image).
///
/// # Shapes
/// `images`: `[N, 3, R, R]` in [0, 1]; `masks`: `[N, 1, R, R]` in [0, 1]; returns `[N]` f64.
pub fn laplacian_energy(images: &Tensor, masks: &Tensor) -> Tensor {
    let (device, r) = (images.device(), images.size()[2]);
    let weights = Tensor::from_slice(&GRAY_BGR).to_device(device).view([1, 3, 1, 1]);
    let gray = (images.to_kind(Kind::Float) * weights).sum_dim_intlist(1, true, Kind::Float);
    let kernel = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0])
        .to_device(device)
        .view([1, 1, 3, 3]);
    let lap = gray.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1); // [N, 1, R-2, R-2]
    let inside = masks.to_kind(Kind::Float).narrow(2, 1, r - 2).narrow(3, 1, r - 2);
    let dims = &[1i64, 2, 3][..];
    let energy = (lap.square() * &inside).sum_dim_intlist(dims, false, Kind::Double);
    energy / inside.sum_dim_intlist(dims, false, Kind::Double).clamp_min(1.0)
}

/// How sharp `pred` is against `target`: the Laplacian energy of the predictions over that of
/// the targets, summed over the faces, inside `masks`. Below 1 the model draws less fine
/// detail than the faces have (blur); above 1, more (noise, GAN artefacts).
///
/// # Shapes
/// `pred`, `target`: `[N, 3, R, R]`; `masks`: `[N, 1, R, R]`.
pub fn sharpness_ratio(pred: &Tensor, target: &Tensor, masks: &Tensor) -> f64 {
    let pred = pred.to_kind(Kind::Float).clamp(0.0, 1.0);
    let sum = |x: &Tensor| laplacian_energy(x, masks).sum(Kind::Double).double_value(&[]);
    let (p, t) = (sum(&pred), sum(target));
    if t > 0.0 { p / t } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_perfectly_and_noise_scores_lower() {
        let a = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let (ssim, psnr) = ssim_psnr(&a, &a);
        assert!((ssim - 1.0).abs() < 1e-5 && psnr.is_infinite(), "{ssim} {psnr}");
        let noisy =
            (&a + Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 0.1).clamp(0.0, 1.0);
        let (ssim, psnr) = ssim_psnr(&noisy, &a);
        assert!(ssim < 0.95 && (15.0..25.0).contains(&psnr), "{ssim} {psnr}");
    }

    #[test]
    fn psnr_is_ten_log_of_one_over_mse() {
        let a = Tensor::zeros([1, 3, 16, 16], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([1, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.1;
        let (_, psnr) = ssim_psnr(&b, &a);
        assert!((psnr - 20.0).abs() < 1e-4, "MSE 0.01 is 20 dB: {psnr}");
    }

    #[test]
    fn a_blurred_face_is_less_sharp_than_itself_and_noise_is_more() {
        let cpu = (Kind::Float, Device::Cpu);
        tch::manual_seed(5);
        let face = Tensor::rand([2, 3, 32, 32], cpu);
        let mask = Tensor::zeros([2, 1, 32, 32], cpu);
        let _ = mask.narrow(2, 8, 16).narrow(3, 8, 16).fill_(1.0);
        assert!((sharpness_ratio(&face, &face, &mask) - 1.0).abs() < 1e-9);
        let blurred = crate::model::loss::gaussian_blur(&face, 1.0);
        let r = sharpness_ratio(&blurred, &face, &mask);
        assert!(r < 0.2, "blur removes most of the high frequencies: {r}");
        let noisy = (&face + Tensor::randn([2, 3, 32, 32], cpu) * 0.2).clamp(0.0, 1.0);
        assert!(sharpness_ratio(&noisy, &face, &mask) > 1.0);
    }

    #[test]
    fn laplacian_energy_counts_only_the_mask() {
        let cpu = (Kind::Float, Device::Cpu);
        // A single bright pixel at (4, 4): gray 1, Laplacian −4 there and 1 at its 4 neighbours.
        let image = Tensor::zeros([1, 3, 16, 16], cpu);
        let _ = image.narrow(2, 4, 1).narrow(3, 4, 1).fill_(1.0);
        let everywhere = Tensor::ones([1, 1, 16, 16], cpu);
        let e = laplacian_energy(&image, &everywhere).double_value(&[0]);
        assert!((e - 20.0 / 196.0).abs() < 1e-5, "(16 + 4) / 14²: {e}");
        let elsewhere = Tensor::zeros([1, 1, 16, 16], cpu);
        let _ = elsewhere.narrow(2, 10, 4).narrow(3, 10, 4).fill_(1.0);
        assert_eq!(laplacian_energy(&image, &elsewhere).double_value(&[0]), 0.0);
    }
}
