//! SAEHD's building blocks (`docs/dfl-parity.md`, "SAEHD networks"). DFL: `core/leras/archis/DeepFakeArchi.py`,
//! `core/leras/layers/{Conv2D,Dense}.py`, `core/leras/ops/__init__.py`.
//!
//! Every kernel is Glorot-uniform and every bias zero, as TF1's default that DFL relies on
//! (tch's own default would be Kaiming-uniform).

use tch::Tensor;
use tch::nn::{self, Module};

use crate::model::layout;

/// LeakyReLU slope after Downscale and Upscale convs.
pub const LRELU_SLOPE: f64 = 0.1;
/// LeakyReLU slope inside and after residual blocks.
pub const RES_LRELU_SLOPE: f64 = 0.2;
/// Added under the square root of pixel-norm (DFL `nn.pixel_norm`).
const PIXEL_NORM_EPS: f64 = 1e-6;

/// Returns Glorot-uniform bounds for a layer with these fans (`sqrt(6 / (fan_in + fan_out))`).
pub(crate) fn glorot(fan_in: i64, fan_out: i64) -> nn::Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// A k×k convolution with symmetric zero padding k/2 (DFL pads explicitly, then a VALID conv:
/// the same as PyTorch's `padding = k/2`, also at stride 2), Glorot init, zero bias.
pub fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        ws_init: glorot(c_in * k * k, c_out * k * k),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// A fully connected layer, Glorot init, zero bias.
pub fn dense(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: glorot(c_in, c_out),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, c_in, c_out, cfg)
}

/// A transposed k×k conv with TensorFlow's "SAME" output size (`H·stride`), Glorot init, zero
/// bias: the up-sampling of the patch discriminator and of XSeg.
#[derive(Debug)]
pub struct UpConv {
    conv: nn::ConvTranspose2D,
    stride: i64,
}

impl UpConv {
    /// Builds it under `p`.
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        // TF's SAME for a transpose is the gradient of a SAME conv: stride 1 pads k/2 on each
        // side; stride 2 pads nothing before, so the full output is cropped at the end.
        let padding = if stride == 1 { k / 2 } else { 0 };
        let cfg = nn::ConvTransposeConfig {
            stride,
            padding,
            ws_init: glorot(c_in * k * k, c_out * k * k),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        Self { conv: nn::conv_transpose2d(p, c_in, c_out, k, cfg), stride }
    }
}

impl Module for UpConv {
    /// # Shapes
    /// `[N, Ci, H, W]` → `[N, Co, H·stride, W·stride]`.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (_, _, h, w) = xs.size4().expect("invariant: NCHW");
        let ys = xs.apply(&self.conv);
        if self.stride == 1 {
            return ys;
        }
        ys.narrow(2, 0, h * self.stride).narrow(3, 0, w * self.stride) // [N, Co, sH, sW]
    }
}

/// Conv 5×5 stride 2 → LeakyReLU 0.1: halves the map.
#[derive(Debug)]
pub struct Downscale {
    conv: nn::Conv2D,
    act: LeakyRelu,
}

impl Downscale {
    /// Kernel 5, as DFL's encoder.
    pub const KERNEL: i64 = 5;

    /// Creates `conv` under `p`.
    pub fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        Self {
            act: LeakyRelu::new(&p, LRELU_SLOPE),
            conv: conv(p / "conv", c_in, c_out, Self::KERNEL, 2),
        }
    }
}

impl Module for Downscale {
    /// # Shapes
    /// `[N, Ci, H, W]` → `[N, Co, H/2, W/2]`.
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.conv).apply(&self.act)
    }
}

/// Conv 3×3 to 4·C → LeakyReLU 0.1 → depth-to-space ×2: doubles the map.
#[derive(Debug)]
pub struct Upscale {
    conv: nn::Conv2D,
    act: LeakyRelu,
}

impl Upscale {
    /// Creates `conv` (Ci → 4·Co) under `p`.
    pub fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        Self { act: LeakyRelu::new(&p, LRELU_SLOPE), conv: conv(p / "conv", c_in, c_out * 4, 3, 1) }
    }
}

impl Module for Upscale {
    /// # Shapes
    /// `[N, Ci, H, W]` → `[N, Co, 2H, 2W]`.
    fn forward(&self, xs: &Tensor) -> Tensor {
        depth_to_space(&xs.apply(&self.conv).apply(&self.act))
    }
}

/// y = conv2(lrelu₀.₂(conv1(x))); out = lrelu₀.₂(x + y), with 3×3 convs.
#[derive(Debug)]
pub struct ResidualBlock {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    act: LeakyRelu,
}

impl ResidualBlock {
    /// Creates `conv1` and `conv2` (C → C) under `p`.
    pub fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            conv1: conv(&p / "conv1", channels, channels, 3, 1),
            conv2: conv(&p / "conv2", channels, channels, 3, 1),
            act: LeakyRelu::new(&p, RES_LRELU_SLOPE),
        }
    }
}

impl Module for ResidualBlock {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let ys = xs.apply(&self.conv1).apply(&self.act).apply(&self.conv2);
        (xs + ys).apply(&self.act)
    }
}

/// LeakyReLU with a fixed slope: libtorch's `leaky_relu` (one kernel forward, one backward, as
/// PyTorch's `F.leaky_relu`), reached through the C++ shim (`csrc/ops.cpp`) because tch's
/// `Tensor::leaky_relu` has no slope argument. (The PReLU with a constant weight used before
/// computes the same values but also reduces a weight gradient over the whole map in backward.)
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    slope: f64,
}

unsafe extern "C" {
    fn dfl_leaky_relu(xs: *const std::ffi::c_void, slope: f64) -> *mut std::ffi::c_void;
}

impl LeakyRelu {
    /// The activation with this negative slope (`p` is unused: it holds no tensor).
    pub fn new(_p: &nn::Path, slope: f64) -> Self {
        Self { slope }
    }
}

/// Returns `leaky_relu(xs, slope)`: x where x ≥ 0, slope·x elsewhere, differentiable in `xs`.
///
/// # Panics
/// If libtorch refuses the op (as tch's own ops do).
pub fn leaky_relu(xs: &Tensor, slope: f64) -> Tensor {
    // SAFETY: tch's tensor handle is an `at::Tensor*`, which the shim only reads; it returns a
    // fresh heap `at::Tensor*` (or null) that `Tensor::from_ptr` takes ownership of.
    unsafe {
        let out = dfl_leaky_relu(xs.as_ptr().cast(), slope);
        assert!(!out.is_null(), "libtorch failed in leaky_relu on a {:?} tensor", xs.size());
        Tensor::from_ptr(out.cast())
    }
}

impl Module for LeakyRelu {
    /// # Shapes
    /// Any shape `[N, C, …]` → the same.
    fn forward(&self, xs: &Tensor) -> Tensor {
        leaky_relu(xs, self.slope)
    }
}

/// Rearranges `[N, 4C, H, W]` into `[N, C, 2H, 2W]` in TensorFlow's DCR order, as DFL does:
/// `out[c, 2h+i, 2w+j] = in[(2i+j)·C + c, h, w]`.
///
/// (`torch.pixel_shuffle` uses CRD order, `in[4c + 2i + j]`; both train the same from scratch,
/// but DCR keeps DFL's weights importable.)
///
/// A channels-last input gives a channels-last output (one copy either way).
pub fn depth_to_space(xs: &Tensor) -> Tensor {
    let (n, c4, h, w) = xs.size4().expect("invariant: depth_to_space takes NCHW");
    let c = c4 / 4;
    if layout::is_channels_last(xs) {
        return xs
            .permute([0, 2, 3, 1]) // [N, H, W, 4C], contiguous
            .view([n, h, w, 2, 2, c]) // [N, H, W, i, j, C]
            .permute([0, 1, 3, 2, 4, 5]) // [N, H, i, W, j, C]
            .reshape([n, h * 2, w * 2, c]) // [N, 2H, 2W, C]
            .permute([0, 3, 1, 2]); // [N, C, 2H, 2W], channels-last
    }
    xs.view([n, 2, 2, c, h, w]) // [N, i, j, C, H, W]
        .permute([0, 3, 4, 1, 5, 2]) // [N, C, H, i, W, j]
        .reshape([n, c, h * 2, w * 2]) // [N, C, 2H, 2W]
}

/// Scales each sample's features to unit root-mean-square (`u` archis).
///
/// # Shapes
/// `[N, F]` → `[N, F]`.
pub fn pixel_norm(xs: &Tensor) -> Tensor {
    let mean_sq = xs.square().mean_dim(-1, true, xs.kind());
    xs * (mean_sq + PIXEL_NORM_EPS).rsqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn blocks_have_the_documented_shapes_and_sizes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let down = Downscale::new(&root / "down", 3, 8);
        let up = Upscale::new(&root / "up", 8, 6);
        let res = ResidualBlock::new(&root / "res", 6);
        let xs = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let ys = xs.apply(&down);
        assert_eq!(ys.size(), [2, 8, 8, 8]);
        let ys = ys.apply(&up);
        assert_eq!(ys.size(), [2, 6, 16, 16]);
        assert_eq!(ys.apply(&res).size(), [2, 6, 16, 16]);
        // conv(k, i, o) = k²·i·o + o
        let count: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(count, (25 * 3 * 8 + 8) + (9 * 8 * 24 + 24) + 2 * (9 * 6 * 6 + 6));
    }

    #[test]
    fn depth_to_space_uses_dcr_order() {
        // in[(2i+j)·C + c, h, w] = 100·(2i+j) + 10·c + h·2 + w for C = 2, H = W = 2.
        let vals: Vec<f32> = (0..4 * 2 * 2 * 2)
            .map(|k| {
                let (q, c, h, w) = (k / 8, (k / 4) % 2, (k / 2) % 2, k % 2);
                (100 * q + 10 * c + 2 * h + w) as f32
            })
            .collect();
        let xs = Tensor::from_slice(&vals).view([1, 8, 2, 2]);
        let ys = depth_to_space(&xs);
        assert_eq!(ys.size(), [1, 2, 4, 4]);
        for (c, y, x) in [(0, 0, 0), (1, 3, 1), (0, 2, 3), (1, 1, 2)] {
            let (h, i, w, j) = (y / 2, y % 2, x / 2, x % 2);
            let want = (100 * (2 * i + j) + 10 * c + 2 * h + w) as f64;
            assert_eq!(ys.double_value(&[0, c, y, x]), want, "at c={c} y={y} x={x}");
        }
    }

    #[test]
    fn depth_to_space_keeps_channels_last() {
        let xs = Tensor::randn([2, 12, 3, 5], (Kind::Float, Device::Cpu));
        let nhwc = depth_to_space(&layout::channels_last(&xs));
        assert!(layout::is_channels_last(&nhwc) && !nhwc.is_contiguous());
        assert_eq!(f64::try_from((&nhwc - depth_to_space(&xs)).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn init_is_glorot_with_zero_bias() {
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = dense(vs.root() / "d", 300, 100);
        let bound = (6.0f64 / 400.0).sqrt();
        assert!(layer.ws.abs().max().double_value(&[]) <= bound);
        assert!(layer.ws.abs().max().double_value(&[]) > bound * 0.9);
        assert_eq!(layer.bs.as_ref().unwrap().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn pixel_norm_gives_unit_rms() {
        let xs = Tensor::randn([3, 50], (Kind::Float, Device::Cpu)) * 7.0;
        let rms = pixel_norm(&xs).square().mean_dim(-1, false, Kind::Float).sqrt();
        assert!((rms - 1.0).abs().max().double_value(&[]) < 1e-4);
    }

    #[test]
    fn a_stride_2_transpose_has_tensorflows_same_alignment() {
        // One input pixel of 1 at (0, 0) through a transposed conv whose kernel is 1..=9: with
        // no padding before, kernel tap (i, j) lands at output (i, j), the last row and column
        // of the full output being cut.
        let vs = nn::VarStore::new(Device::Cpu);
        let up = UpConv::new(vs.root(), 1, 1, 3, 2);
        tch::no_grad(|| {
            let w = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([1, 1, 3, 3]) + 1.0;
            up.conv.ws.shallow_clone().copy_(&w);
        });
        let x = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
        let _ = x.get(0).get(0).get(0).get(0).fill_(1.0);
        let y = up.forward(&x);
        assert_eq!(y.size(), [1, 1, 4, 4]);
        let row0: Vec<f32> = Vec::try_from(y.get(0).get(0).get(0)).unwrap();
        assert_eq!(row0, [1.0, 2.0, 3.0, 0.0]);
    }
}
