//! SAEHD's two discriminators (`docs/dfl-parity.md`, "SAEHD networks"):
//!
//! - the **code discriminator** of "true face" (DF only), which reads the inter's output code and
//!   tells src codes from dst codes;
//! - the **U-Net patch discriminator** of GAN power, which tells a src target from its src→src
//!   reconstruction, with one logit per patch at the bottleneck and one per pixel at full size.
//!
//! DFL: `core/leras/models/CodeDiscriminator.py`, `core/leras/models/PatchDiscriminator.py`.
//! Convolutions pad symmetrically by k/2 as DFL's own layer does; transposed convolutions follow
//! TensorFlow's "SAME" (the output is the input times the stride, the extra row and column of a
//! stride-2 transpose falling at the bottom and right).

use tch::Tensor;
use tch::nn::{self, Module};

use super::arch::ModelConfig;
use super::blocks::{LeakyRelu, UpConv, conv};
use super::folder::TrainConfig;

/// LeakyReLU slope in the code discriminator.
const CODE_LRELU_SLOPE: f64 = 0.1;
/// LeakyReLU slope in the patch discriminator.
const PATCH_LRELU_SLOPE: f64 = 0.2;
/// Base width of SAEHD's code discriminator's convs (each level doubles it, up to 8×).
pub const CODE_BASE_CHANNELS: i64 = 256;
/// Largest width of a patch-discriminator level.
const PATCH_MAX_CHANNELS: i64 = 512;
/// Most 3×3 layers the patch discriminator's search tries.
const PATCH_MAX_LAYERS: usize = 9;

/// The code discriminator: `1 + code_res/8` stride-2 convs (4×4, then 3×3), widths
/// `base_ch`·2ⁱ up to 8·`base_ch` (SAEHD: [`CODE_BASE_CHANNELS`]), LeakyReLU 0.1, then a 1×1
/// conv to one logit per position.
#[derive(Debug)]
pub struct CodeDiscriminator {
    convs: Vec<nn::Conv2D>,
    out_conv: nn::Conv2D,
    act: LeakyRelu,
}

impl CodeDiscriminator {
    /// Builds it for a code of `in_ch` channels and `code_res`² positions under `p`, with
    /// `base_ch` channels in its first conv.
    pub fn new(p: &nn::Path, in_ch: i64, code_res: i64, base_ch: i64) -> Self {
        let n = 1 + code_res / 8;
        let mut convs = Vec::new();
        let mut prev = in_ch;
        for i in 0..n {
            let cur = base_ch * (1 << i.min(3));
            let k = if i == 0 { 4 } else { 3 };
            convs.push(conv(p / "convs" / i, prev, cur, k, 2));
            prev = cur;
        }
        Self {
            convs,
            out_conv: conv(p / "out_conv", prev, 1, 1, 1),
            act: LeakyRelu::new(p, CODE_LRELU_SLOPE),
        }
    }
}

impl Module for CodeDiscriminator {
    /// # Shapes
    /// `[N, A, L, L]` (the inter's code) → `[N, 1, l, l]` logits, `l` ≈ L / 2^(1 + L/8).
    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = self.convs.iter().fold(xs.shallow_clone(), |x, c| x.apply(c).apply(&self.act));
        xs.apply(&self.out_conv)
    }
}

/// Returns the side of the code the code discriminator reads: the inter's output, twice the
/// lowest dense resolution.
pub fn code_res(cfg: &ModelConfig) -> i64 {
    cfg.lowest_dense_res() * 2
}

/// Counts the parameters of the discriminators `cfg`'s options turn on: `(name, params)` for
/// `dfl train --dry-run`.
pub fn parameter_counts(cfg: &TrainConfig) -> Vec<(String, i64)> {
    let count = |build: &dyn Fn(&nn::Path)| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        tch::no_grad(|| build(&vs.root()));
        vs.variables().values().map(|t| t.numel() as i64).sum::<i64>()
    };
    let mut out = Vec::new();
    if cfg.true_face_power > 0.0 {
        let (a, res) = (cfg.model.ae_dims, code_res(&cfg.model));
        let n = count(&|p| drop(CodeDiscriminator::new(p, a, res, CODE_BASE_CHANNELS)));
        out.push((format!("code discriminator (true face), code {res}×{res}"), n));
    }
    if cfg.gan_power > 0.0 {
        let patch = cfg.gan_patch_px();
        let layers = find_archi(patch);
        let n = count(&|p| drop(UNetPatchDiscriminator::new(p, patch, 3, cfg.gan_dims)));
        let rf = receptive_field(&layers);
        out.push((format!("patch discriminator (GAN), patch {patch} → receptive field {rf}"), n));
    }
    out
}

/// A 3×3 layer of the patch discriminator's encoder: (kernel, stride).
pub type PatchLayer = (i64, i64);

/// Returns the receptive field of a stack of layers, as DFL computes it.
fn receptive_field(layers: &[PatchLayer]) -> i64 {
    let (mut rf, mut total_stride) = (0, 1);
    for (i, &(k, s)) in layers.iter().enumerate() {
        rf = if i == 0 { k } else { rf + (k - 1) * total_stride };
        total_stride *= s;
    }
    rf
}

/// Finds the patch discriminator's encoder for a target patch size, as DFL's `find_archi`:
/// stacks of 3×3 layers, the first of stride 2 and the others of stride 1 or 2; for each
/// receptive field the fewest layers (then the most striding) win, and the receptive field
/// nearest `patch_size` (the smaller on a tie) is taken.
pub fn find_archi(patch_size: i64) -> Vec<PatchLayer> {
    let mut best: std::collections::BTreeMap<i64, (usize, i64, Vec<PatchLayer>)> =
        std::collections::BTreeMap::new();
    for count in 1..=PATCH_MAX_LAYERS {
        // DFL counts `val` down from 2^(count−1) − 1 to 0; bit i of it gives layer i+1 stride 2.
        for val in (0..1u32 << (count - 1)).rev() {
            let mut layers = vec![(3, 2)];
            layers.extend((0..count - 1).map(|i| (3, 1 + i64::from(val >> i & 1))));
            let strides: i64 = layers.iter().map(|l| l.1).sum();
            let rf = receptive_field(&layers);
            let better = match best.get(&rf) {
                None => true,
                Some((c, s, _)) => count < *c || (count == *c && strides > *s),
            };
            if better {
                best.insert(rf, (count, strides, layers));
            }
        }
    }
    let (_, (_, _, layers)) = best
        .into_iter()
        .min_by_key(|(rf, _)| (rf - patch_size).abs())
        .expect("invariant: the search always finds layers");
    layers
}

/// The U-Net patch discriminator.
#[derive(Debug)]
pub struct UNetPatchDiscriminator {
    in_conv: nn::Conv2D,
    convs: Vec<nn::Conv2D>,
    /// Decoder, bottleneck first.
    upconvs: Vec<UpConv>,
    center_out: nn::Conv2D,
    center_conv: nn::Conv2D,
    out_conv: nn::Conv2D,
    act: LeakyRelu,
}

/// What the patch discriminator says about a batch.
#[derive(Debug)]
pub struct PatchLogits {
    /// One logit per patch at the bottleneck: `[N, 1, h, w]`.
    pub center: Tensor,
    /// One logit per pixel: `[N, 1, H, W]`.
    pub pixel: Tensor,
}

impl UNetPatchDiscriminator {
    /// Builds it for `in_ch`-channel images under `p`, with the encoder [`find_archi`] gives for
    /// `patch_size` and `base_ch` channels at full size (doubling per level, up to 512).
    pub fn new(p: &nn::Path, patch_size: i64, in_ch: i64, base_ch: i64) -> Self {
        let layers = find_archi(patch_size);
        let n = layers.len();
        // Level i has `ch(i)` channels; level −1 is the full-size in_conv output.
        let ch = |i: i64| (base_ch << (i + 1).min(20)).min(PATCH_MAX_CHANNELS);
        let in_conv = conv(p / "in_conv", in_ch, ch(-1), 1, 1);
        let mut convs = Vec::with_capacity(n);
        let mut upconvs = Vec::with_capacity(n);
        for (i, &(k, s)) in layers.iter().enumerate() {
            let level = i as i64;
            convs.push(conv(p / "convs" / i, ch(level - 1), ch(level), k, s));
            let c_in = ch(level) * if i + 1 == n { 1 } else { 2 };
            upconvs.push(UpConv::new(p / "upconvs" / i, c_in, ch(level - 1), k, s));
        }
        upconvs.reverse();
        let bottom = ch(n as i64 - 1);
        Self {
            in_conv,
            convs,
            upconvs,
            center_out: conv(p / "center_out", bottom, 1, 1, 1),
            center_conv: conv(p / "center_conv", bottom, bottom, 1, 1),
            out_conv: conv(p / "out_conv", ch(-1) * 2, 1, 1, 1),
            act: LeakyRelu::new(p, PATCH_LRELU_SLOPE),
        }
    }

    /// Judges a batch of images.
    ///
    /// # Shapes
    /// `[N, C, R, R]` → center `[N, 1, R/2^s, R/2^s]` (s = the encoder's stride-2 layers),
    /// pixel `[N, 1, R, R]`.
    pub fn forward(&self, xs: &Tensor) -> PatchLogits {
        let mut x = xs.apply(&self.in_conv).apply(&self.act);
        let mut skips = Vec::with_capacity(self.convs.len());
        for c in &self.convs {
            skips.push(x.shallow_clone());
            x = x.apply(c).apply(&self.act);
        }
        let center = x.apply(&self.center_out);
        x = x.apply(&self.center_conv).apply(&self.act);
        for (up, skip) in self.upconvs.iter().zip(skips.iter().rev()) {
            x = x.apply(up).apply(&self.act);
            x = Tensor::cat(&[skip, &x], 1); // [N, 2·C, H, W]: the skip first, as DFL
        }
        PatchLogits { center, pixel: x.apply(&self.out_conv) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn params(vs: &nn::VarStore) -> i64 {
        vs.variables().values().map(Tensor::numel).map(|n| n as i64).sum()
    }

    #[test]
    fn patch_layers_match_dfls_search() {
        assert_eq!(find_archi(16), [(3, 2), (3, 2), (3, 2)], "R=128: receptive field 15");
        assert_eq!(find_archi(32), [(3, 2), (3, 2), (3, 2), (3, 2)], "R=256: 31");
        assert_eq!(receptive_field(&find_archi(16)), 15);
        assert_eq!(find_archi(3), [(3, 2)]);
    }

    /// DFL's parameter counts: code discriminator DF@128 (code 16²) 6,949,633, DF@256 (32²)
    /// 63,577,857, DF-UD@128 (8²) 2,229,505; patch discriminator R=128 233,650, R=256 946,994.
    #[test]
    fn parameter_counts_equal_dfls() {
        for (code_res, want) in [(16, 6_949_633), (32, 63_577_857), (8, 2_229_505)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _d = CodeDiscriminator::new(&vs.root(), 256, code_res, CODE_BASE_CHANNELS);
            assert_eq!(params(&vs), want, "code discriminator, code {code_res}");
        }
        for (r, want) in [(128, 233_650), (256, 946_994)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _d = UNetPatchDiscriminator::new(&vs.root(), r / 8, 3, 16);
            assert_eq!(params(&vs), want, "patch discriminator, R={r}");
        }
    }

    #[test]
    fn shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = UNetPatchDiscriminator::new(&vs.root(), 8, 3, 4);
        let out = d.forward(&Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)));
        assert_eq!(out.pixel.size(), [2, 1, 64, 64]);
        assert_eq!(out.center.size(), [2, 1, 16, 16], "find_archi(8): two stride-2 layers");
        let vs = nn::VarStore::new(Device::Cpu);
        let c = CodeDiscriminator::new(&vs.root(), 16, 16, 8);
        let logits = c.forward(&Tensor::rand([2, 16, 16, 16], (Kind::Float, Device::Cpu)));
        assert_eq!(logits.size()[..2], [2, 1]);
    }
}
