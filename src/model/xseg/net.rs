//! XSeg, the trainable face segmenter (`docs/xseg.md`, "The network"). DFL:
//! `core/leras/models/XSeg.py`, `core/leras/layers/{FRNorm2D,TLU,BlurPool}.py`.
//!
//! A U-Net over a BGR face in `[0, 1]`: six encoder levels of [`ConvBlock`]s (conv 3×3 → filter
//! response normalisation → thresholded linear unit), each ending in an anti-aliased stride-2
//! [`BlurPool`]; a dense bottleneck at `R/64`; six decoder levels that up-sample with a
//! transposed conv and concatenate the encoder's feature map of the same size (the skips, which
//! pretraining zeroes so the net must learn to reconstruct from the bottleneck); a 3×3 conv to
//! one logit per pixel. At 256 px with 32 base channels it has 17,569,317 parameters.
//!
//! The bottleneck's flatten is in NCHW order (DFL flattens NHWC; nothing here reads DFL's
//! files, and an importer would permute the dense weights).

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::model::blocks::{UpConv, conv, dense};

/// XSeg's width at full resolution, as DFL builds it.
pub const BASE_CHANNELS: i64 = 32;
/// DFL's XSeg resolution.
pub const DEFAULT_RESOLUTION: i64 = 256;
/// The encoder halves the map this many times: the resolution must be a multiple of 2⁶.
pub const DOWNSCALES: u32 = 6;
/// Width of the dense bottleneck.
const DENSE_DIMS: i64 = 512;
/// FRN's learnable ε starts here.
const FRN_EPS_INIT: f64 = 1e-6;

/// Returns why `resolution` cannot be an XSeg resolution, `None` when it can.
pub fn check_resolution(resolution: i64) -> Option<String> {
    let step = 1 << DOWNSCALES;
    (resolution < step || resolution % step != 0 || resolution > 1024)
        .then(|| format!("{resolution} is not a multiple of {step} between {step} and 1024"))
}

/// Filter response normalisation: `x / sqrt(mean_HW(x²) + |ε|) · γ + β`, per sample and
/// channel, with a learnable scalar ε.
#[derive(Debug)]
struct Frn {
    weight: Tensor,
    bias: Tensor,
    eps: Tensor,
}

impl Frn {
    fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            weight: p.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            eps: p.var("eps", &[1], nn::Init::Const(FRN_EPS_INIT)),
        }
    }
}

impl Module for Frn {
    /// # Shapes
    /// `[N, C, H, W]` → the same.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let nu2 = xs.square().mean_dim(&[2i64, 3][..], true, Kind::Float); // [N, C, 1, 1]
        let xs = xs * (nu2 + self.eps.abs()).rsqrt();
        xs * self.weight.view([1, -1, 1, 1]) + self.bias.view([1, -1, 1, 1])
    }
}

/// Thresholded linear unit: `max(x, τ)` with a learnable τ per channel.
#[derive(Debug)]
struct Tlu {
    tau: Tensor,
}

impl Tlu {
    fn new(p: nn::Path, channels: i64) -> Self {
        Self { tau: p.var("tau", &[channels], nn::Init::Const(0.0)) }
    }
}

impl Module for Tlu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.maximum(&self.tau.view([1, -1, 1, 1]))
    }
}

/// Conv 3×3 (or a transposed 3×3 stride-2 conv) → FRN → TLU.
#[derive(Debug)]
struct ConvBlock<C> {
    conv: C,
    frn: Frn,
    tlu: Tlu,
}

fn conv_block(p: nn::Path, c_in: i64, c_out: i64) -> ConvBlock<nn::Conv2D> {
    ConvBlock {
        conv: conv(&p / "conv", c_in, c_out, 3, 1),
        frn: Frn::new(&p / "frn", c_out),
        tlu: Tlu::new(&p / "tlu", c_out),
    }
}

fn up_conv_block(p: nn::Path, c_in: i64, c_out: i64) -> ConvBlock<UpConv> {
    ConvBlock {
        conv: UpConv::new(&p / "conv", c_in, c_out, 3, 2),
        frn: Frn::new(&p / "frn", c_out),
        tlu: Tlu::new(&p / "tlu", c_out),
    }
}

impl<C: Module> Module for ConvBlock<C> {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.conv).apply(&self.frn).apply(&self.tlu)
    }
}

/// Anti-aliased down-sampling: a normalised binomial filter of `size` taps (the outer product
/// of a row of Pascal's triangle), depthwise, stride 2, zero-padded by `⌊(size−1)/2⌋` before
/// and `⌈(size−1)/2⌉` after.
#[derive(Debug)]
struct BlurPool {
    /// `[1, 1, size, size]`, summing to 1.
    kernel: Tensor,
    pad: [i64; 2],
}

impl BlurPool {
    fn new(size: i64, device: tch::Device) -> Self {
        let mut row = vec![1.0f32];
        for _ in 1..size {
            let next: Vec<f32> = (0..=row.len())
                .map(|i| row.get(i).copied().unwrap_or(0.0) + if i > 0 { row[i - 1] } else { 0.0 })
                .collect();
            row = next;
        }
        let row = Tensor::from_slice(&row).to_device(device);
        let kernel = row.outer(&row);
        let kernel = (&kernel / kernel.sum(Kind::Float)).view([1, 1, size, size]);
        Self { kernel, pad: [(size - 1) / 2, size / 2] }
    }
}

impl Module for BlurPool {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H/2, W/2]`.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let c = xs.size()[1];
        let [before, after] = self.pad;
        let xs = xs.constant_pad_nd([before, after, before, after]);
        let kernel = self.kernel.to_kind(xs.kind()).expand([c, 1, -1, -1], false);
        xs.conv2d(&kernel, None::<Tensor>, [2, 2], [0, 0], [1, 1], c)
    }
}

/// One encoder level: its conv blocks, then the blur-pool.
#[derive(Debug)]
struct Down {
    blocks: Vec<ConvBlock<nn::Conv2D>>,
    pool: BlurPool,
}

/// One decoder level: the up-sampling block, then the conv blocks after the skip's concat.
#[derive(Debug)]
struct Up {
    up: ConvBlock<UpConv>,
    blocks: Vec<ConvBlock<nn::Conv2D>>,
}

/// The XSeg network.
#[derive(Debug)]
pub struct XSeg {
    downs: Vec<Down>,
    dense1: nn::Linear,
    dense2: nn::Linear,
    /// Deepest level first.
    ups: Vec<Up>,
    out_conv: nn::Conv2D,
    /// `[C, R/64, R/64]` at the bottleneck.
    bottleneck: [i64; 3],
}

/// Per encoder level: the blocks' output width (× base), how many blocks, the blur-pool size.
const LEVELS: [(i64, usize, i64); 6] =
    [(1, 2, 4), (2, 2, 3), (4, 2, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2)];
/// Per decoder level, deepest first: the up-sampling block's width (× base), then the widths of
/// the conv blocks after the concat.
const UP_LEVELS: [(i64, &[i64]); 6] =
    [(4, &[8, 8, 8]), (4, &[8, 8, 8]), (4, &[8, 8, 8]), (4, &[4, 4]), (2, &[2, 2]), (1, &[1, 1])];

impl XSeg {
    /// Builds XSeg under `p` for `resolution`² inputs of `in_ch` channels with `base_ch` channels
    /// at full resolution ([`BASE_CHANNELS`] for DFL's) and `out_ch` output maps.
    ///
    /// # Panics
    /// When [`check_resolution`] refuses `resolution` (validated where it enters).
    pub fn new(p: &nn::Path, resolution: i64, in_ch: i64, base_ch: i64, out_ch: i64) -> Self {
        assert!(check_resolution(resolution).is_none(), "invariant: resolution checked");
        let names = ["0", "1", "2", "3", "4", "5"];
        let mut prev = in_ch;
        let downs = LEVELS
            .iter()
            .zip(names)
            .map(|(&(width, n, pool), level)| {
                let out = width * base_ch;
                let blocks = (1..=n)
                    .map(|i| {
                        let b = conv_block(p / format!("conv{level}{i}"), prev, out);
                        prev = out;
                        b
                    })
                    .collect();
                Down { blocks, pool: BlurPool::new(pool, p.device()) }
            })
            .collect::<Vec<_>>();
        let side = resolution >> DOWNSCALES;
        let flat = side * side * prev;
        let mut skips: Vec<i64> = LEVELS.iter().map(|&(w, ..)| w * base_ch).collect();
        let ups = UP_LEVELS
            .iter()
            .zip(names.iter().rev())
            .map(|(&(up_width, widths), level)| {
                let up = up_conv_block(p / format!("up{level}"), prev, up_width * base_ch);
                let mut c = up_width * base_ch + skips.pop().expect("invariant: one skip a level");
                let n = widths.len();
                let blocks = widths
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| {
                        let b = conv_block(p / format!("uconv{level}{}", n - i), c, w * base_ch);
                        c = w * base_ch;
                        b
                    })
                    .collect();
                prev = c;
                Up { up, blocks }
            })
            .collect();
        Self {
            downs,
            dense1: dense(p / "dense1", flat, DENSE_DIMS),
            dense2: dense(p / "dense2", DENSE_DIMS, flat),
            ups,
            out_conv: conv(p / "out_conv", prev, out_ch, 3, 1),
            bottleneck: [flat / (side * side), side, side],
        }
    }

    /// Runs the network; `pretrain` zeroes the skips.
    ///
    /// # Shapes
    /// `[N, in_ch, R, R]` → (logits, sigmoid), each `[N, out_ch, R, R]`.
    pub fn forward(&self, xs: &Tensor, pretrain: bool) -> (Tensor, Tensor) {
        let mut skips = Vec::with_capacity(self.downs.len());
        let mut x = xs.shallow_clone();
        for down in &self.downs {
            x = down.blocks.iter().fold(x, |x, b| x.apply(b));
            skips.push(x.shallow_clone());
            x = x.apply(&down.pool);
        }
        let n = x.size()[0];
        let [c, h, w] = self.bottleneck;
        x = x.flatten(1, -1).apply(&self.dense1).apply(&self.dense2).view([n, c, h, w]);
        for up in &self.ups {
            x = x.apply(&up.up);
            let skip = skips.pop().expect("invariant: one skip a level");
            let skip = if pretrain { skip.zeros_like() } else { skip };
            x = up.blocks.iter().fold(Tensor::cat(&[x, skip], 1), |x, b| x.apply(b));
        }
        let logits = x.apply(&self.out_conv);
        let sigmoid = logits.sigmoid();
        (logits, sigmoid)
    }
}

/// XSeg's training loss: the mean over C, H, W of the sigmoid cross-entropy between the logits
/// and the (binary) target mask.
///
/// # Shapes
/// `[N, C, H, W]` twice → `[N]`.
pub fn xseg_loss(logits: &Tensor, target: &Tensor) -> Tensor {
    // max(x, 0) − x·t + log(1 + e^−|x|): the stable form of −t·log σ(x) − (1−t)·log(1−σ(x)).
    let loss = logits.relu() - logits * target + (-logits.abs()).exp().log1p();
    loss.mean_dim(&[1i64, 2, 3][..], false, Kind::Float)
}

/// Pretraining's loss (reconstructing the grey face): `5·DSSIM(R/11.6) + 5·DSSIM(R/23.2) +
/// 10·MSE` per sample, between the sigmoid output and the target.
///
/// # Shapes
/// `[N, C, R, R]` twice → `[N]`.
pub fn xseg_pretrain_loss(pred: &Tensor, target: &Tensor) -> Tensor {
    let r = pred.size()[3] as f64;
    let mut loss = (target - pred).square().mean_dim(&[1i64, 2, 3][..], false, Kind::Float) * 10.0;
    for div in [11.6, 23.2] {
        let k = (r / div) as i64;
        let per_channel = crate::model::loss::dssim(target, pred, k); // [N, C]
        loss += per_channel.mean_dim(&[1i64][..], false, Kind::Float) * 5.0;
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn params(vs: &nn::VarStore) -> i64 {
        vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    #[test]
    fn at_256_px_xseg_has_dfls_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _x = XSeg::new(&vs.root(), DEFAULT_RESOLUTION, 3, BASE_CHANNELS, 1);
        assert_eq!(params(&vs), 17_569_317);
    }

    #[test]
    fn shapes_at_a_small_resolution() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = XSeg::new(&vs.root(), 128, 3, 4, 1);
        let input = Tensor::rand([2, 3, 128, 128], (Kind::Float, Device::Cpu));
        let (logits, sigmoid) = x.forward(&input, false);
        assert_eq!(logits.size(), [2, 1, 128, 128]);
        assert!(sigmoid.min().double_value(&[]) >= 0.0 && sigmoid.max().double_value(&[]) <= 1.0);
        let (pre, _) = x.forward(&input, true);
        assert!(pre.ne_tensor(&logits).any().int64_value(&[]) == 1, "pretrain zeroes the skips");
    }

    #[test]
    fn resolutions_are_checked() {
        assert!(check_resolution(256).is_none() && check_resolution(64).is_none());
        for bad in [0, 32, 100, 2048] {
            assert!(check_resolution(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn blur_pool_filters_are_normalised_binomials() {
        let p = BlurPool::new(4, Device::Cpu);
        let row: Vec<f32> = Vec::try_from(p.kernel.get(0).get(0).get(0) * 64.0).unwrap();
        assert_eq!(row, [1.0, 3.0, 3.0, 1.0]);
        assert_eq!(p.pad, [1, 2]);
        let ones = Tensor::ones([1, 2, 8, 8], (Kind::Float, Device::Cpu));
        let y = p.forward(&ones);
        assert_eq!(y.size(), [1, 2, 4, 4]);
        // Inside, a constant stays constant; at the border the zero padding pulls it down.
        assert!((y.double_value(&[0, 1, 1, 1]) - 1.0).abs() < 1e-6);
        assert!(y.double_value(&[0, 0, 0, 0]) < 1.0);
    }

    #[test]
    fn the_loss_is_the_cross_entropy_of_the_sigmoid() {
        let logits = Tensor::from_slice(&[-3.0f32, 0.0, 2.0, 4.0]).view([1, 1, 2, 2]);
        let target = Tensor::from_slice(&[0.0f32, 1.0, 1.0, 0.0]).view([1, 1, 2, 2]);
        let p = logits.sigmoid();
        let q: Tensor = 1.0 - &p;
        let not_t: Tensor = 1.0 - &target;
        let ll: Tensor = &target * p.log() + not_t * q.log();
        let want = -ll.mean(Kind::Float);
        let got = xseg_loss(&logits, &target);
        assert!((got.double_value(&[0]) - want.double_value(&[])).abs() < 1e-5);
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::model::optim::{Optimizer, OptimizerConfig, OptimizerKind, trainable_variables};
    use tch::Device;

    /// XSeg's training step (batch 4) and its batched forward rate (batch 32), on random
    /// tensors: `DFL_BENCH_RES=64|256 DFL_BENCH_ROUNDS=3 cargo test --release --lib
    /// bench_xseg -- --ignored --nocapture` (`scripts/bench/xseg.sh`).
    #[test]
    #[ignore = "benchmark; run by hand"]
    fn bench_xseg() {
        let res: i64 =
            std::env::var("DFL_BENCH_RES").ok().and_then(|r| r.parse().ok()).unwrap_or(256);
        let rounds: usize =
            std::env::var("DFL_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = XSeg::new(&vs.root(), res, 3, BASE_CHANNELS, 1);
        let cfg = OptimizerConfig {
            kind: OptimizerKind::RmsProp,
            lr: 1e-4,
            lr_dropout: true,
            lr_cos: false,
            ..OptimizerConfig::default()
        };
        let mut opt = Optimizer::new(trainable_variables(&vs), cfg).unwrap();
        let images = Tensor::rand([4, 3, res, res], opts);
        let masks = Tensor::rand([4, 1, res, res], opts).gt(0.5).to_kind(Kind::Float);
        let mut step = || {
            opt.zero_grad();
            let (logits, _) = net.forward(&images, false);
            xseg_loss(&logits, &masks).sum(Kind::Float).backward();
            opt.step().unwrap();
        };
        step();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let times: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = std::time::Instant::now();
                step();
                t.elapsed().as_secs_f64()
            })
            .collect();
        let step_s = median(times);
        let batch = Tensor::rand([32, 3, res, res], opts);
        let forward =
            || tch::no_grad(|| net.forward(&batch, false).1.sum(Kind::Float).double_value(&[]));
        forward();
        let times: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = std::time::Instant::now();
                forward();
                t.elapsed().as_secs_f64()
            })
            .collect();
        let fwd_s = median(times);
        eprintln!(
            "xseg {res}px: train step (batch 4) {step_s:.3} s = {:.1} faces/s; forward (batch 32) {:.1} faces/s ({} threads)",
            4.0 / step_s,
            32.0 / fwd_s,
            tch::get_num_threads()
        );
    }
}
