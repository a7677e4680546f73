//! SAEHD's reconstruction losses: masked DSSIM + pixel MSE, eyes/mouth priority, mask MSE, the
//! face- and background-style terms and `blur_out_mask`'s target preparation, plus the Gaussian
//! blur and DSSIM they are built from. The adversarial terms are in [`super::adversarial`].
//!
//! DFL: `models/Model_SAEHD/Model.py` (the loss graph) and `core/leras/ops/__init__.py`
//! (`gaussian_blur`, `dssim`); formulas in `docs/dfl-parity.md`, "Losses".
//!
//! Every loss returns one value per sample, `[N]`. DFL differentiates the *sum* of that vector
//! over the batch (a DFL quirk: `docs/dfl-parity.md`, "Quirks"); the caller picks sum or mean.

use tch::{Kind, Tensor};

/// Weight of the DSSIM term below [`DSSIM_DUAL_MIN_RESOLUTION`].
/// DFL: `Model_SAEHD/Model.py`, `10*nn.dssim(...)`.
pub const DSSIM_WEIGHT: f64 = 10.0;
/// Weight of each of the two DSSIM terms from [`DSSIM_DUAL_MIN_RESOLUTION`] up.
/// DFL: `Model_SAEHD/Model.py`, `5*nn.dssim(...)` twice.
pub const DSSIM_WEIGHT_DUAL: f64 = 5.0;
/// The resolution from which SAEHD uses two DSSIM kernel sizes. DFL: `if resolution < 256`.
pub const DSSIM_DUAL_MIN_RESOLUTION: i64 = 256;
/// The first DSSIM kernel size is `int(R / 11.6)`. DFL: `filter_size=int(resolution/11.6)`.
pub const DSSIM_KERNEL_DIVISOR: f64 = 11.6;
/// The second DSSIM kernel size (R ≥ 256) is `int(R / 23.2)`.
/// DFL: `filter_size=int(resolution/23.2)`.
pub const DSSIM_KERNEL_DIVISOR_DUAL: f64 = 23.2;
/// σ of the DSSIM Gaussian window. DFL: `nn.dssim(..., filter_sigma=1.5)`.
pub const DSSIM_SIGMA: f64 = 1.5;
/// c₁ = (k₁·max_val)² with k₁ = 0.01, max_val = 1. DFL: `nn.dssim(..., k1=0.01)`.
const DSSIM_C1: f64 = 0.01 * 0.01;
/// c₂ = (k₂·max_val)² with k₂ = 0.03, max_val = 1. DFL: `nn.dssim(..., k2=0.03)`.
const DSSIM_C2: f64 = 0.03 * 0.03;
/// Weight of the pixel MSE. DFL: `Model_SAEHD/Model.py`, `10*tf.square(...)`.
pub const PIXEL_MSE_WEIGHT: f64 = 10.0;
/// Weight of the mask MSE. DFL: `Model_SAEHD/Model.py`, `10*tf.square(target_m - pred_m)`.
pub const MASK_MSE_WEIGHT: f64 = 10.0;
/// Weight of the eyes/mouth L1 term. DFL: `Model_SAEHD/Model.py`, `300*tf.abs(...)`.
pub const EYES_MOUTH_L1_WEIGHT: f64 = 300.0;
/// The loss-mask blur has σ = max(1, R / 32) (integer division).
/// DFL: `nn.gaussian_blur(gpu_target_srcm, max(1, resolution // 32))`.
pub const LOSS_MASK_BLUR_DIVISOR: i64 = 32;
/// The blurred mask is clipped to [0, 0.5] … DFL: `tf.clip_by_value(blur, 0, 0.5) * 2`.
const LOSS_MASK_CLIP: f64 = 0.5;
/// … and doubled, so it is 1 up to the mask edge. DFL: same line.
const LOSS_MASK_GAIN: f64 = 2.0;
/// The blur kernel is `int(4σ)` wide. DFL: `nn.gaussian_blur`, `kernel_size = int(2 * 2 * sigma)`.
const BLUR_KERNEL_PER_SIGMA: f64 = 4.0;
/// The blur kernel is at least 3 wide. DFL: `nn.gaussian_blur`, `max(3, ...)`.
const BLUR_MIN_KERNEL: i64 = 3;
/// Background-style weight per unit of `bg_style_power` (0–100): 10·p/100.
/// DFL: `Model_SAEHD/Model.py`, `bg_style_power = options['bg_style_power'] / 100.0` and
/// `(10*bg_style_power)*...`.
pub const BG_STYLE_WEIGHT_PER_POWER: f64 = 0.1;
/// Face-style weight per unit of `face_style_power` (0–100): 10000·p/100.
/// DFL: `face_style_power = options['face_style_power'] / 100.0`, `loss_weight=10000*...`.
pub const FACE_STYLE_WEIGHT_PER_POWER: f64 = 100.0;
/// Both face-style images are blurred with σ = R / 8 (integer division).
/// DFL: `nn.style_loss(..., gaussian_blur_radius=resolution//8, ...)`.
pub const FACE_STYLE_BLUR_DIVISOR: i64 = 8;
/// Added to the variance before its square root in the style statistics. DFL: `nn.style_loss`.
const STYLE_VARIANCE_EPS: f64 = 1e-5;
/// `blur_out_mask` blurs the background with σ = R / 128 (real division).
/// DFL: `sigma = resolution / 128`.
pub const BLUR_OUT_MASK_DIVISOR: f64 = 128.0;

/// Switches of the per-side loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossOptions {
    /// Compare target and prediction only under the blurred target mask (DFL `masked_training`,
    /// default on for every face type).
    pub masked_training: bool,
    /// Add the 300·L1 eyes/mouth term (DFL `eyes_mouth_prio`, default off).
    pub eyes_mouth_prio: bool,
}

impl Default for LossOptions {
    fn default() -> Self {
        Self { masked_training: true, eyes_mouth_prio: false }
    }
}

/// One side's (src or dst) targets and reconstructions.
///
/// # Shapes
/// - `target`, `pred`: `[N, 3, R, R]` f32 in [0, 1], BGR.
/// - `target_mask`, `pred_mask`, `target_eyes_mouth`: `[N, 1, R, R]` f32 in [0, 1].
#[derive(Debug, Clone, Copy)]
pub struct SideBatch<'a> {
    /// The reconstruction target (t_s or t_d).
    pub target: &'a Tensor,
    /// The target's face mask (m_s or m_d).
    pub target_mask: &'a Tensor,
    /// The target's eyes+mouth mask (em_s or em_d); needed only with `eyes_mouth_prio`.
    pub target_eyes_mouth: Option<&'a Tensor>,
    /// The decoder's reconstruction (p_ss or p_dd).
    pub pred: &'a Tensor,
    /// The decoder's mask (pm_ss or pm_dd).
    pub pred_mask: &'a Tensor,
}

/// Blurs each channel with DFL's Gaussian (`nn.gaussian_blur`): same-size output, zero padding.
///
/// The kernel is max(3, int(4σ)) taps wide, forced odd, centred and normalised to sum 1. It is
/// separable, so this runs a vertical and a horizontal 1-D pass; the result equals DFL's 2-D
/// kernel up to f32 rounding.
///
/// # Shapes
/// `xs`: `[N, C, H, W]` f32; returns `[N, C, H, W]`.
pub fn gaussian_blur(xs: &Tensor, sigma: f64) -> Tensor {
    let taps = blur_taps(sigma);
    let radius = (taps.len() / 2) as i64;
    separable_depthwise(xs, &taps_tensor(&taps, xs), radius)
}

/// Turns a mask into DFL's loss mask: clip(G_σ(m), 0, 0.5)·2 with σ = max(1, R//32).
///
/// It is 1 inside the mask up to its edge and fades to 0 within about 2σ outside.
///
/// # Shapes
/// `mask`: `[N, 1, R, R]` f32 in [0, 1]; returns `[N, 1, R, R]` f32 in [0, 1].
pub fn loss_mask(mask: &Tensor, resolution: i64) -> Tensor {
    let sigma = (resolution / LOSS_MASK_BLUR_DIVISOR).max(1) as f64;
    gaussian_blur(mask, sigma).clamp(0.0, LOSS_MASK_CLIP) * LOSS_MASK_GAIN
}

/// Computes DFL's DSSIM = (1 − SSIM)/2 per sample and channel (`nn.dssim`, max_val 1).
///
/// The window is a `kernel_size`² Gaussian with σ 1.5 (softmax-normalised), applied per channel
/// without padding; SSIM is luminance × contrast-structure, averaged over the valid positions.
/// `kernel_size` must not exceed H or W.
///
/// # Shapes
/// `a`, `b`: `[N, C, H, W]` f32 in [0, 1]; returns `[N, C]` f32 in [0, 1].
pub fn dssim(a: &Tensor, b: &Tensor, kernel_size: i64) -> Tensor {
    let taps = dssim_taps(kernel_size.max(1));
    let c = a.size()[1];
    // One windowed pass over the four statistics DFL filters: a, b, a·b, a²+b².
    let stats = Tensor::cat(&[a, b, &(a * b), &(a.square() + b.square())], 1); // [N, 4C, H, W]
    let means = separable_depthwise(&stats, &taps_tensor(&taps, a), 0).split(c, 1); // 4 × [N, C, H', W']
    let (mean0, mean1, mean_ab, mean_sq) = (&means[0], &means[1], &means[2], &means[3]);
    let num0 = mean0 * mean1 * 2.0;
    let den0 = mean0.square() + mean1.square();
    let luminance = (&num0 + DSSIM_C1) / (&den0 + DSSIM_C1);
    let num1 = mean_ab * 2.0;
    let cs = (num1 - &num0 + DSSIM_C2) / (mean_sq - &den0 + DSSIM_C2);
    let ssim = (luminance * cs).mean_dim(&[2i64, 3][..], false, Kind::Float); // [N, C]
    (1.0 - ssim) * 0.5
}

/// Lists SAEHD's DSSIM terms for a resolution as (kernel size, weight).
///
/// R < 256: `[(int(R/11.6), 10)]`; R ≥ 256: `[(int(R/11.6), 5), (int(R/23.2), 5)]`.
pub fn dssim_terms(resolution: i64) -> Vec<(i64, f64)> {
    let k1 = (resolution as f64 / DSSIM_KERNEL_DIVISOR) as i64;
    if resolution < DSSIM_DUAL_MIN_RESOLUTION {
        vec![(k1, DSSIM_WEIGHT)]
    } else {
        let k2 = (resolution as f64 / DSSIM_KERNEL_DIVISOR_DUAL) as i64;
        vec![(k1, DSSIM_WEIGHT_DUAL), (k2, DSSIM_WEIGHT_DUAL)]
    }
}

/// Computes one side's SAEHD loss per sample (`docs/dfl-parity.md`, "Losses").
///
/// Sum of: the weighted DSSIM term(s), averaged over channels; 10·MSE of the images (both
/// multiplied by [`loss_mask`] of the target mask when `masked_training`); with
/// `eyes_mouth_prio`, 300·L1 of the raw target and prediction times the eyes/mouth mask; and
/// 10·MSE of target mask against predicted mask (never masked).
///
/// # Shapes
/// See [`SideBatch`]; returns `[N]` f32 ≥ 0, differentiable in `pred` and `pred_mask`.
///
/// # Panics
/// If `opts.eyes_mouth_prio` is set and `batch.target_eyes_mouth` is `None`.
pub fn side_loss(batch: &SideBatch<'_>, resolution: i64, opts: &LossOptions) -> Tensor {
    let (target, pred) = if opts.masked_training {
        let weight = loss_mask(batch.target_mask, resolution);
        (batch.target * &weight, batch.pred * &weight)
    } else {
        (batch.target.shallow_clone(), batch.pred.shallow_clone())
    };
    let loss = structural_loss(&target, &pred, resolution)
        + per_sample_mean(&(&target - &pred).square()) * PIXEL_MSE_WEIGHT
        + per_sample_mean(&(batch.target_mask - batch.pred_mask).square()) * MASK_MSE_WEIGHT;
    if opts.eyes_mouth_prio { loss + eyes_mouth_loss(batch) } else { loss }
}

/// 300·mean|t·em − p·em| per sample, on the raw (never masked) images: `[N]`.
fn eyes_mouth_loss(batch: &SideBatch<'_>) -> Tensor {
    let em = batch
        .target_eyes_mouth
        .expect("side_loss: eyes_mouth_prio needs SideBatch::target_eyes_mouth");
    let diff = batch.target * em - batch.pred * em;
    per_sample_mean(&diff.abs()) * EYES_MOUTH_L1_WEIGHT
}

/// Computes SAEHD's background-style term per sample (`docs/dfl-parity.md`, "Losses").
///
/// With S = stop_gradient(clip(loss_mask(m), 0, 1)) and the swap and dst target both multiplied
/// by 1 − S: (p/10)·(DSSIM_k₁ averaged over channels + MSE), p = `bg_style_power` in [0, 100].
///
/// ⚠ Kept for parity with DFL (`docs/dfl-parity.md`, "Quirks"): `src_target_mask` is the **src** target mask,
/// applied to dst images, because DFL overwrites its style mask (the blurred product of the
/// predicted masks) with the blurred src target mask. Pass the intended mask instead to drop
/// the quirk.
///
/// # Shapes
/// - `pred_swap` (p_sd), `target_dst` (t_d): `[N, 3, R, R]` f32 in [0, 1], BGR.
/// - `src_target_mask` (m_s): `[N, 1, R, R]` f32 in [0, 1]; no gradient flows into it.
/// - returns `[N]` f32 ≥ 0.
pub fn background_style_loss(
    pred_swap: &Tensor,
    target_dst: &Tensor,
    src_target_mask: &Tensor,
    resolution: i64,
    power: f64,
) -> Tensor {
    let style_mask = loss_mask(src_target_mask, resolution).clamp(0.0, 1.0).detach();
    let anti = 1.0 - style_mask;
    let pred = pred_swap * &anti;
    let target = target_dst * &anti;
    let kernel = (resolution as f64 / DSSIM_KERNEL_DIVISOR) as i64;
    let structural = dssim(&pred, &target, kernel).mean_dim(1, false, Kind::Float); // [N]
    (structural + per_sample_mean(&(pred - target).square())) * (BG_STYLE_WEIGHT_PER_POWER * power)
}

/// Compares the colour statistics of two images per sample (DFL's `nn.style_loss`): both are
/// blurred with σ `blur_sigma` (none when 0), then Σ over channels of (μ_a − μ_b)² + (σ_a − σ_b)²,
/// with population statistics over H×W and σ = √(var + 1e-5), times `weight` / C.
///
/// # Shapes
/// `a`, `b`: `[N, C, H, W]` f32; returns `[N]`.
pub fn style_loss(a: &Tensor, b: &Tensor, blur_sigma: f64, weight: f64) -> Tensor {
    let blurred = |x: &Tensor| {
        if blur_sigma > 0.0 { gaussian_blur(x, blur_sigma) } else { x.shallow_clone() }
    };
    let moments = |x: &Tensor| {
        let mean = x.mean_dim(&[2i64, 3][..], true, Kind::Float); // [N, C, 1, 1]
        let var = (x - &mean).square().mean_dim(&[2i64, 3][..], true, Kind::Float);
        (mean, (var + STYLE_VARIANCE_EPS).sqrt())
    };
    let ((mean_a, std_a), (mean_b, std_b)) = (moments(&blurred(a)), moments(&blurred(b)));
    let per_sample = |x: Tensor| x.sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
    let channels = a.size()[1] as f64;
    (per_sample((mean_a - mean_b).square()) + per_sample((std_a - std_b).square()))
        * (weight / channels)
}

/// Computes SAEHD's face-style term per sample (`docs/dfl-parity.md`, "Losses"): the style
/// of the swap inside its own predicted mask against the dst reconstruction inside its mask,
/// [`style_loss`] with blur σ = R//8 and weight 100·p, p = `face_style_power` in [0, 100].
///
/// Only the decoder learns from it: the caller decodes `swap` from a code with its gradient
/// stopped, and the masks and the dst side are constants here.
///
/// # Shapes
/// `swap`, `dst_dst`: `[N, 3, R, R]` f32 in [0, 1]; `swap_mask`, `dst_dst_mask`:
/// `[N, 1, R, R]`; returns `[N]`.
pub fn face_style_loss(
    swap: &Tensor,
    swap_mask: &Tensor,
    dst_dst: &Tensor,
    dst_dst_mask: &Tensor,
    resolution: i64,
    power: f64,
) -> Tensor {
    let content = swap * swap_mask.detach();
    let style = (dst_dst * dst_dst_mask).detach();
    let sigma = (resolution / FACE_STYLE_BLUR_DIVISOR) as f64;
    style_loss(&content, &style, sigma, FACE_STYLE_WEIGHT_PER_POWER * power)
}

/// Prepares a target for `blur_out_mask` (`docs/dfl-parity.md`, "Losses"): inside the mask the
/// target stays; outside, each pixel becomes the blur of the background alone, normalised by
/// how much background the blur saw: t·m + G(t·(1−m)) / (1 − G(m))·(1−m), σ = R/128, the
/// divisor taken as 1 where it is 0.
///
/// # Shapes
/// `target`: `[N, 3, R, R]`, `mask`: `[N, 1, R, R]` in [0, 1]; returns `[N, 3, R, R]`.
pub fn blur_out_mask(target: &Tensor, mask: &Tensor, resolution: i64) -> Tensor {
    let sigma = resolution as f64 / BLUR_OUT_MASK_DIVISOR;
    let anti = 1.0 - mask;
    let background = gaussian_blur(&(target * &anti), sigma);
    let seen: Tensor = 1.0 - gaussian_blur(mask, sigma);
    let seen = seen.where_self(&seen.ne(0.0), &seen.ones_like());
    target * mask + background / seen * anti
}

/// Sums the weighted, channel-averaged DSSIM terms of [`dssim_terms`]: `[N, C, R, R]` → `[N]`.
fn structural_loss(target: &Tensor, pred: &Tensor, resolution: i64) -> Tensor {
    dssim_terms(resolution)
        .into_iter()
        .map(|(kernel, weight)| {
            dssim(target, pred, kernel).mean_dim(1, false, Kind::Float) * weight
        })
        .reduce(|acc, term| acc + term)
        .expect("dssim_terms always returns at least one term")
}

/// Averages over everything but the batch axis: `[N, C, H, W]` → `[N]`.
pub(crate) fn per_sample_mean(xs: &Tensor) -> Tensor {
    xs.mean_dim(&[1i64, 2, 3][..], false, Kind::Float)
}

/// The odd blur width for σ: max(3, int(4σ)), plus one when even.
fn blur_kernel_size(sigma: f64) -> i64 {
    let size = ((BLUR_KERNEL_PER_SIGMA * sigma) as i64).max(BLUR_MIN_KERNEL);
    if size % 2 == 0 { size + 1 } else { size }
}

/// The 1-D blur taps: exp(−(i−c)²/2σ²) around c = k//2, normalised to sum 1.
fn blur_taps(sigma: f64) -> Vec<f64> {
    let size = blur_kernel_size(sigma);
    let centre = (size / 2) as f64;
    normalised((0..size).map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp()))
}

/// The 1-D DSSIM taps: softmax of −½(i−c)²/σ² with c = (k−1)/2. DFL softmaxes the 2-D
/// exponent, which factors into the outer product of these.
fn dssim_taps(kernel_size: i64) -> Vec<f64> {
    let centre = (kernel_size - 1) as f64 / 2.0;
    let sigma2 = DSSIM_SIGMA * DSSIM_SIGMA;
    normalised((0..kernel_size).map(|i| (-0.5 * (i as f64 - centre).powi(2) / sigma2).exp()))
}

/// Divides a list of weights by their sum.
fn normalised(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let weights: Vec<f64> = weights.collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| w / sum).collect()
}

/// 1-D taps as a tensor of `like`'s kind and device: `[K]`.
fn taps_tensor(taps: &[f64], like: &Tensor) -> Tensor {
    Tensor::from_slice(taps).to_kind(like.kind()).to_device(like.device())
}

/// Filters every channel with the separable kernel taps ⊗ taps and `padding` zeros on each side.
///
/// # Shapes
/// `xs`: `[N, C, H, W]`, `taps`: `[K]`; returns `[N, C, H + 2p − K + 1, W + 2p − K + 1]`.
fn separable_depthwise(xs: &Tensor, taps: &Tensor, padding: i64) -> Tensor {
    let (n, c, h, w) = xs.size4().expect("separable_depthwise takes an NCHW tensor");
    let k = taps.size()[0];
    let planes = xs.reshape([n * c, 1, h, w]); // [N*C, 1, H, W]
    let vertical = taps.view([1, 1, k, 1]); // [1, 1, K, 1]
    let horizontal = taps.view([1, 1, 1, k]); // [1, 1, 1, K]
    let ys = planes.conv2d(&vertical, None::<Tensor>, [1, 1], [padding, 0], [1, 1], 1).conv2d(
        &horizontal,
        None::<Tensor>,
        [1, 1],
        [0, padding],
        [1, 1],
        1,
    ); // [N*C, 1, H', W']
    let (h_out, w_out) = (ys.size()[2], ys.size()[3]);
    ys.reshape([n, c, h_out, w_out]) // [N, C, H', W']
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// A `[1, 1, r, r]` mask that is 1 on rows and columns `lo..hi`.
    fn square_mask(r: i64, lo: i64, hi: i64) -> Tensor {
        let mask = Tensor::zeros([1, 1, r, r], CPU);
        let _ = mask.narrow(2, lo, hi - lo).narrow(3, lo, hi - lo).fill_(1.0);
        mask
    }

    #[test]
    fn blur_kernel_sizes_match_dfl_examples() {
        // DFL's mask blur: R=96 → σ 3, kernel 13; R=128 → σ 4, 17; R=256 → σ 8, 33.
        assert_eq!(blur_kernel_size(3.0), 13);
        assert_eq!(blur_kernel_size(4.0), 17);
        assert_eq!(blur_kernel_size(8.0), 33);
        assert_eq!(blur_kernel_size(1.0), 5);
        assert_eq!(blur_kernel_size(0.5), 3);
    }

    #[test]
    fn blur_keeps_a_constant_interior_and_zero_pads_the_border() {
        let xs = Tensor::full([1, 2, 9, 9], 0.7, CPU);
        let ys = gaussian_blur(&xs, 1.0); // kernel 5, radius 2
        assert_eq!(ys.size(), [1, 2, 9, 9]);
        let interior = ys.narrow(2, 2, 5).narrow(3, 2, 5);
        assert!(max_abs_diff(&interior, &Tensor::full_like(&interior, 0.7)) < 1e-6);
        // The corner sees only the quadrant of the kernel inside the image.
        let taps = blur_taps(1.0);
        let half: f64 = taps[2..].iter().sum();
        let corner = ys.double_value(&[0, 0, 0, 0]);
        assert!((corner - 0.7 * half * half).abs() < 1e-6, "corner {corner}");
    }

    #[test]
    fn blur_of_an_impulse_is_the_normalised_kernel() {
        let xs = Tensor::zeros([1, 1, 9, 9], CPU);
        let _ = xs.narrow(2, 4, 1).narrow(3, 4, 1).fill_(1.0);
        let ys = gaussian_blur(&xs, 1.0);
        assert!((ys.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-6);
        let raw: Vec<f64> = (-2..=2).map(|d: i32| (-(d * d) as f64 / 2.0).exp()).collect();
        let centre = 1.0 / raw.iter().sum::<f64>();
        assert!((ys.double_value(&[0, 0, 4, 4]) - centre * centre).abs() < 1e-6);
    }

    #[test]
    fn loss_mask_is_one_inside_and_zero_far_outside() {
        let r = 64; // σ 2, kernel 9, radius 4
        let m = loss_mask(&square_mask(r, 16, 48), r);
        let inner = m.narrow(2, 18, 28).narrow(3, 18, 28);
        assert_eq!(inner.min().double_value(&[]), 1.0);
        assert_eq!(m.double_value(&[0, 0, 16, 32]), 1.0, "edge midpoint stays 1");
        let far = Tensor::ones([1, 1, r, r], CPU) - square_mask(r, 11, 53);
        assert_eq!((&m * &far).max().double_value(&[]), 0.0);
        assert!(m.double_value(&[0, 0, 14, 32]) > 0.0, "fades just outside");
    }

    #[test]
    fn dssim_terms_follow_the_resolution_table() {
        assert_eq!(dssim_terms(96), [(8, 10.0)]);
        assert_eq!(dssim_terms(128), [(11, 10.0)]);
        assert_eq!(dssim_terms(192), [(16, 10.0)]);
        assert_eq!(dssim_terms(256), [(22, 5.0), (11, 5.0)]);
        assert_eq!(dssim_terms(320), [(27, 5.0), (13, 5.0)]);
        assert_eq!(dssim_terms(512), [(44, 5.0), (22, 5.0)]);
    }

    #[test]
    fn dssim_of_identical_images_is_zero() {
        tch::manual_seed(1);
        let a = Tensor::rand([2, 3, 16, 16], CPU);
        let d = dssim(&a, &a, 5);
        assert_eq!(d.size(), [2, 3]);
        assert!(d.abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn dssim_matches_a_hand_computed_pair() {
        // One channel, 3×4 pixels, 3×3 window: two valid positions. The expected value comes
        // from a direct evaluation of the DSSIM formulas with the full 2-D softmax window
        // in f64 (SSIM 0.8991729810940379 and 0.879134942549193 at the two positions).
        let a = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.0, 0.25, 0.75f32];
        let b = [0.2, 0.1, 0.4, 0.3, 0.5, 0.9, 0.6, 0.7, 1.0, 0.1, 0.2, 0.8f32];
        let a = Tensor::from_slice(&a).view([1, 1, 3, 4]);
        let b = Tensor::from_slice(&b).view([1, 1, 3, 4]);
        let d = dssim(&a, &b, 3);
        assert_eq!(d.size(), [1, 1]);
        assert!((d.double_value(&[0, 0]) - 0.055_423_019_089_192_28).abs() < 1e-6);
        // The window itself: centre and corner weights of the 3×3 softmax.
        let taps = dssim_taps(3);
        assert!((taps[1] * taps[1] - 0.147_761_316_346_818_83).abs() < 1e-12);
        assert!((taps[0] * taps[0] - 0.094_741_658_210_174_7).abs() < 1e-12);
    }

    struct Side {
        target: Tensor,
        mask: Tensor,
        em: Tensor,
    }

    fn side(r: i64) -> Side {
        tch::manual_seed(7);
        let target = Tensor::rand([2, 3, r, r], CPU);
        let mask = square_mask(r, r / 4, 3 * r / 4).repeat([2, 1, 1, 1]);
        let em = square_mask(r, 3 * r / 8, 5 * r / 8).repeat([2, 1, 1, 1]);
        Side { target, mask, em }
    }

    fn loss_of(s: &Side, pred: &Tensor, pred_mask: &Tensor, r: i64, opts: LossOptions) -> Tensor {
        let batch = SideBatch {
            target: &s.target,
            target_mask: &s.mask,
            target_eyes_mouth: Some(&s.em),
            pred,
            pred_mask,
        };
        side_loss(&batch, r, &opts)
    }

    #[test]
    fn side_loss_is_zero_for_perfect_predictions() {
        for r in [32, 256] {
            let s = side(r);
            let opts = LossOptions { eyes_mouth_prio: true, ..LossOptions::default() };
            let loss = loss_of(&s, &s.target, &s.mask, r, opts);
            assert_eq!(loss.size(), [2]);
            assert!(loss.abs().max().double_value(&[]) < 1e-5, "R {r}: {loss}");
        }
    }

    #[test]
    fn side_loss_grows_with_the_error() {
        let r = 32;
        let s = side(r);
        let noise = Tensor::randn_like(&s.target);
        let losses: Vec<f64> = [0.0, 0.05, 0.2]
            .iter()
            .map(|&amp| {
                let pred = (&s.target + &noise * amp).clamp(0.0, 1.0);
                let pred_mask = (&s.mask * (1.0 - amp)).clamp(0.0, 1.0);
                let loss = loss_of(&s, &pred, &pred_mask, r, LossOptions::default());
                loss.sum(Kind::Double).double_value(&[])
            })
            .collect();
        assert!(losses[0] < 1e-5 && losses[0] < losses[1] && losses[1] < losses[2], "{losses:?}");
    }

    #[test]
    fn masked_training_ignores_errors_far_outside_the_mask() {
        let r = 32; // σ 1, kernel 5: the loss mask reaches 2 px past the mask
        let s = side(r);
        let outside = Tensor::ones([1, 1, r, r], CPU) - square_mask(r, 4, 28);
        let pred = &s.target * (1.0 - &outside) + 0.5 * &outside;
        let masked = loss_of(&s, &pred, &s.mask, r, LossOptions::default());
        assert!(masked.max().double_value(&[]) < 1e-5, "{masked}");
        let opts = LossOptions { masked_training: false, ..LossOptions::default() };
        let raw = loss_of(&s, &pred, &s.mask, r, opts);
        assert!(raw.min().double_value(&[]) > 0.1, "{raw}");
    }

    #[test]
    fn eyes_mouth_priority_adds_300_l1_on_the_raw_images() {
        let r = 32;
        let s = side(r);
        let pred = (&s.target + 0.1).clamp(0.0, 1.0);
        let off = loss_of(&s, &pred, &s.mask, r, LossOptions::default());
        let opts = LossOptions { eyes_mouth_prio: true, ..LossOptions::default() };
        let on = loss_of(&s, &pred, &s.mask, r, opts);
        let l1 = (&s.target * &s.em - &pred * &s.em).abs().mean_dim(
            &[1i64, 2, 3][..],
            false,
            Kind::Float,
        );
        assert!(max_abs_diff(&(on - off), &(l1 * EYES_MOUTH_L1_WEIGHT)) < 1e-4);
    }

    #[test]
    fn gradients_flow_to_pred_and_pred_mask() {
        let r = 32;
        let s = side(r);
        let pred = (&s.target * 0.9).detach().set_requires_grad(true);
        let pred_mask = (&s.mask * 0.5).detach().set_requires_grad(true);
        let opts = LossOptions { eyes_mouth_prio: true, ..LossOptions::default() };
        loss_of(&s, &pred, &pred_mask, r, opts).sum(Kind::Float).backward();
        for (name, t) in [("pred", &pred), ("pred_mask", &pred_mask)] {
            let g = t.grad();
            assert!(g.defined(), "{name} has no grad");
            assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name} grad is zero");
        }
    }

    #[test]
    fn background_style_is_zero_when_the_background_matches() {
        let r = 32;
        let s = side(r);
        let zero = background_style_loss(&s.target, &s.target, &s.mask, r, 50.0);
        assert!(zero.abs().max().double_value(&[]) < 1e-6);
        // Differences under the (src) mask do not count (away from its corners, where the
        // loss mask dips below 1).
        let core = square_mask(r, r / 4 + 2, 3 * r / 4 - 2);
        let pred = &s.target * (1.0 - &core) + 0.3 * &core;
        let inside = background_style_loss(&pred, &s.target, &s.mask, r, 50.0);
        assert!(inside.abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn background_style_scales_with_power_and_stops_the_mask_gradient() {
        let r = 32;
        let s = side(r);
        let pred = (1.0f64 - &s.target).detach().set_requires_grad(true);
        let mask = s.mask.detach().set_requires_grad(true);
        let p20 = background_style_loss(&pred, &s.target, &mask, r, 20.0);
        let p40 = background_style_loss(&pred, &s.target, &mask, r, 40.0);
        assert!(p20.min().double_value(&[]) > 0.0);
        assert!(max_abs_diff(&(&p20 * 2.0), &p40) < 1e-5);
        p40.sum(Kind::Float).backward();
        assert!(pred.grad().defined());
        assert!(!mask.grad().defined(), "the style mask is a stop_gradient");
    }

    #[test]
    fn style_loss_compares_channel_means_and_spreads() {
        tch::manual_seed(3);
        let a = Tensor::rand([2, 3, 16, 16], CPU);
        assert!(style_loss(&a, &a, 2.0, 100.0).abs().max().double_value(&[]) < 1e-6);
        // A constant offset δ in one channel moves only its mean: δ²·w/C.
        let offset = Tensor::from_slice(&[0.0f32, 0.2, 0.0]).view([1, 3, 1, 1]);
        let loss = style_loss(&(&a + &offset), &a, 0.0, 30.0);
        assert!(max_abs_diff(&loss, &Tensor::full([2], 0.04 * 30.0 / 3.0, CPU)) < 1e-5, "{loss}");
        // Scaling a zero-mean channel by 2 moves only its spread.
        let centred = &a - a.mean_dim(&[2i64, 3][..], true, Kind::Float);
        let loss = style_loss(&(&centred * 2.0), &centred, 0.0, 3.0).double_value(&[0]);
        let std = |x: &Tensor| {
            (x.square().mean_dim(&[2i64, 3][..], false, Kind::Float) + STYLE_VARIANCE_EPS).sqrt()
        };
        let want = (std(&(&centred * 2.0)) - std(&centred))
            .square()
            .sum_dim_intlist(&[1i64][..], false, Kind::Float)
            .double_value(&[0]);
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
    }

    #[test]
    fn face_style_teaches_only_the_swap_image() {
        let r = 32;
        tch::manual_seed(4);
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        let swap = leaf(Tensor::rand([2, 3, r, r], CPU));
        let swap_mask = leaf(Tensor::rand([2, 1, r, r], CPU));
        let dst = leaf(Tensor::rand([2, 3, r, r], CPU));
        let dst_mask = leaf(Tensor::rand([2, 1, r, r], CPU));
        let loss = face_style_loss(&swap, &swap_mask, &dst, &dst_mask, r, 10.0);
        assert!(loss.min().double_value(&[]) > 0.0);
        loss.sum(Kind::Float).backward();
        assert!(swap.grad().defined());
        for (name, t) in [("swap mask", &swap_mask), ("dst", &dst), ("dst mask", &dst_mask)] {
            assert!(!t.grad().defined(), "{name} must be a constant");
        }
        // The weight is 100·p.
        let (a, b) = (swap.detach(), dst.detach());
        let (am, bm) = (swap_mask.detach(), dst_mask.detach());
        let p10 = face_style_loss(&a, &am, &b, &bm, r, 10.0);
        let direct = style_loss(&(&a * &am), &(&b * &bm), (r / 8) as f64, 1000.0);
        assert!(max_abs_diff(&p10, &direct) < 1e-6);
    }

    #[test]
    fn blur_out_mask_keeps_the_face_and_smooths_only_the_background() {
        let r = 64; // σ 0.5, kernel 3
        let mask = square_mask(r, 16, 48);
        // A flat background stays flat (the blur is normalised by the background it sees).
        let flat = Tensor::full([1, 3, r, r], 0.25, CPU);
        let face = &flat * (1.0 - &mask) + &mask * 0.9;
        let out = blur_out_mask(&face, &mask, r);
        // (Away from the image border, where the zero padding darkens it, as DFL's does.)
        let inner = |t: &Tensor| t.narrow(2, 1, r - 2).narrow(3, 1, r - 2);
        assert!(max_abs_diff(&inner(&out), &inner(&face)) < 1e-6, "no face leaks out");
        // A checkerboard background is smoothed; the face under the mask is untouched.
        let checks = Tensor::arange(r, CPU).remainder(2.0);
        let board = (checks.view([1, 1, r, 1]) + checks.view([1, 1, 1, r]))
            .remainder(2.0)
            .repeat([1, 3, 1, 1]);
        let out = blur_out_mask(&board, &mask, r);
        assert!(max_abs_diff(&(&out * &mask), &(&board * &mask)) < 1e-6);
        let background: Tensor = 1.0 - &mask;
        let before = (&board * &background - 0.5).abs().mean(Kind::Float).double_value(&[]);
        let after =
            (&out * &background - &background * 0.5).abs().mean(Kind::Float).double_value(&[]);
        assert!(after < 0.5 * before, "smoothed: {before} → {after}");
    }
}
