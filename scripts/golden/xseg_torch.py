"""DeepFaceLab's XSeg segmentation network and its two losses, in plain PyTorch: the reference
that dfl's Rust XSeg is checked against (scripts/golden/xseg_reference.py writes the data).

An independent implementation written from the network's description (the layer list, shapes
and formulas below), not a translation of DFL's TensorFlow code. NCHW throughout.

Network (base = base_ch, R = resolution, a multiple of 64):

  ConvBlock(i, o)    = Conv2d 3x3 stride 1, zero padding 1 (TF SAME), with bias -> FRN -> TLU
  UpConvBlock(i, o)  = ConvTranspose 3x3 stride 2, TF SAME (output exactly 2H x 2W) -> FRN -> TLU
  FRN(c)             = x * rsqrt(mean over H,W of x^2 + |eps|) * weight + bias;
                       weight [c] init 1, bias [c] init 0, eps [1] (one learnable scalar) init 1e-6
  TLU(c)             = max(x, tau), tau [c] init 0
  BlurPool(f)        = depthwise f x f binomial filter (outer product of row f of Pascal's
                       triangle, normalised to sum 1), stride 2, after zero padding
                       floor((f-1)/2) before and ceil((f-1)/2) after on H and on W

  encoder  conv01(3->b) conv02(b->b) bp0(4)       skip x0 = conv02's output   [b,   R]
           conv11(b->2b) conv12 bp1(3)            skip x1                     [2b,  R/2]
           conv21(2b->4b) conv22 bp2(2)           skip x2                     [4b,  R/4]
           conv31(4b->8b) conv32 conv33 bp3(2)    skip x3                     [8b,  R/8]
           conv41 conv42 conv43 bp4(2)            skip x4                     [8b,  R/16]
           conv51 conv52 conv53 bp5(2)            skip x5                     [8b,  R/32]
  middle   flatten -> dense1 (S*S*8b -> 512) -> dense2 (512 -> S*S*8b) -> [N, 8b, S, S], S = R/64
           (no activation between or after the dense layers)
  decoder  up5(8b->4b)  uconv53(12b->8b) uconv52 uconv51     cat [up5 output, x5]
           up4(8b->4b)  uconv43(12b->8b) uconv42 uconv41     cat [.., x4]
           up3(8b->4b)  uconv33(12b->8b) uconv32 uconv31     cat [.., x3]
           up2(8b->4b)  uconv22(8b->4b)  uconv21(4b->4b)     cat [.., x2]
           up1(4b->2b)  uconv12(4b->2b)  uconv11(2b->2b)     cat [.., x1]
           up0(2b->b)   uconv02(2b->b)   uconv01(b->b)       cat [.., x0]
           out_conv: Conv2d 3x3 SAME b -> out_ch, bias; returns (logits, sigmoid(logits))
  pretrain=True replaces every skip x0..x5 by zeros (same shape) before the concatenation.

  Flatten order: the flatten before dense1 and the reshape after dense2 use NCHW (C, H, W)
  order, torch's `x.flatten(1)` / `view(N, C, S, S)`. DFL's nn.flatten / nn.reshape_4D also
  use (C, H, W) order whatever its data_format (in NHWC mode they transpose to NCHW first), so a
  DFL dense1 kernel [in, out] maps to ours by a plain transpose. (At R = 64, S = 1, so the order
  does not matter there at all.) DFL hard-codes S = 4 (R = 256); we use S = R / 64.

  With base 32 and R 256 there are 17,569,317 parameters, as in DFL (`python xseg_torch.py`
  checks it).

Weight initialisation (DFL's, matched in distribution by `XSeg.__init__`):
  - Conv2D: DFL passes no kernel initializer, so tf.compat.v1.get_variable's default applies,
    which is glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)) with
    fan_in = 9 * in_ch, fan_out = 9 * out_ch. (The convolution-aware "CA" init is commented out
    in DFL's Conv2D.) Bias zeros.
  - Conv2DTranspose: same default glorot_uniform. DFL's kernel is [3, 3, out_ch, in_ch]; TF
    takes fan_in = 9 * out_ch, fan_out = 9 * in_ch, so the limit is the same symmetric
    sqrt(6 / (9 (in_ch + out_ch))). torch's xavier_uniform_ on the [in, out, 3, 3] weight gives
    exactly that limit. Bias zeros.
  - Dense: explicit glorot_uniform, l = sqrt(6 / (in + out)). Bias zeros.
  - FRN weight 1, bias 0, eps 1e-6; TLU tau 0.

Weight layouts vs DFL: conv [o, i, kh, kw] = DFL [kh, kw, i, o] permuted; transposed conv
[i, o, kh, kw] = DFL [kh, kw, o, i] permuted (no spatial flip); dense [out, in] = DFL [in, out]
transposed.

TF-SAME transposed conv, k = 3, stride 2: it is the adjoint of TF's SAME stride-2 conv on a 2H
input, which pads 0 before and 1 after (pad_total = (H-1)*2 + 3 - 2H = 1, TF puts the odd pixel
after). So out[2i + k] += in[i] * w[k]: torch ConvTranspose2d(3, stride=2, padding=0) gives
2H + 1 rows and the LAST row and column are dropped. torch's padding=1, output_padding=1 also
gives 2H but drops the FIRST row and column instead: a one-pixel shift, not TF SAME.
`check_transposed_conv()` verifies this against autograd's adjoint of the SAME conv.

Losses (per sample, [N]; DFL differentiates the sum over the batch):
  xseg_loss          mean over C,H,W of sigmoid cross-entropy with logits
  xseg_pretrain_loss mean_c 5*DSSIM(k = int(R/11.6)) + mean_c 5*DSSIM(k = int(R/23.2))
                     + mean over C,H,W of 10 * (target - pred)^2, on the sigmoid output
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # imported as a module next to saehd_torch.py, or run as a script from this folder
    from saehd_torch import dssim, up_conv
except ImportError:  # pragma: no cover
    from .saehd_torch import dssim, up_conv


def conv3(c_in, c_out):
    layer = nn.Conv2d(c_in, c_out, 3, stride=1, padding=1)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def dense(c_in, c_out):
    layer = nn.Linear(c_in, c_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FRN(nn.Module):
    """Filter response normalisation: per sample and channel, divide by the RMS over H, W."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = nn.Parameter(torch.full((1,), 1e-6))

    def forward(self, x):
        nu2 = x.square().mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps.abs())
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class TLU(nn.Module):
    """Thresholded linear unit: max(x, tau) with a learnable per-channel tau."""

    def __init__(self, c):
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return torch.maximum(x, self.tau.view(1, -1, 1, 1))


class ConvBlock(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = conv3(c_in, c_out)
        self.frn = FRN(c_out)
        self.tlu = TLU(c_out)

    def forward(self, x):
        return self.tlu(self.frn(self.conv(x)))


class UpConvBlock(nn.Module):
    """TF-SAME 3x3 stride-2 transposed conv (full output, last row/column dropped) -> FRN -> TLU."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = up_conv(c_in, c_out, 3, 2)  # ConvTranspose2d(padding=0), glorot, zero bias
        self.frn = FRN(c_out)
        self.tlu = TLU(c_out)

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        y = self.conv(x)[:, :, : 2 * h, : 2 * w]
        return self.tlu(self.frn(y))


def binomial_row(f):
    row = [1.0]
    for _ in range(f - 1):
        row = [a + b for a, b in zip([0.0] + row, row + [0.0])]
    return row


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: zero pad, then a depthwise binomial filter."""

    def __init__(self, filt_size):
        super().__init__()
        a = torch.tensor(binomial_row(filt_size), dtype=torch.float64)
        k = torch.outer(a, a)
        self.register_buffer("kernel", (k / k.sum()).float(), persistent=False)
        self.pad = ((filt_size - 1) // 2, filt_size // 2)  # floor, ceil of (f-1)/2
        self.filt_size = filt_size

    def forward(self, x):
        c = x.shape[1]
        x = F.pad(x, [self.pad[0], self.pad[1], self.pad[0], self.pad[1]])
        k = self.kernel.expand(c, 1, self.filt_size, self.filt_size).contiguous()
        return F.conv2d(x, k, stride=2, groups=c)


class XSeg(nn.Module):
    def __init__(self, in_ch=3, base_ch=32, out_ch=1, resolution=256):
        super().__init__()
        if resolution % 64:
            raise ValueError("resolution must be a multiple of 64")
        b = base_ch
        self.base_ch, self.side = b, resolution // 64
        self.conv01, self.conv02, self.bp0 = ConvBlock(in_ch, b), ConvBlock(b, b), BlurPool(4)
        self.conv11, self.conv12, self.bp1 = ConvBlock(b, 2 * b), ConvBlock(2 * b, 2 * b), BlurPool(3)
        self.conv21, self.conv22, self.bp2 = ConvBlock(2 * b, 4 * b), ConvBlock(4 * b, 4 * b), BlurPool(2)
        self.conv31, self.conv32, self.conv33 = ConvBlock(4 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.bp3 = BlurPool(2)
        self.conv41, self.conv42, self.conv43 = ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.bp4 = BlurPool(2)
        self.conv51, self.conv52, self.conv53 = ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.bp5 = BlurPool(2)

        flat = self.side * self.side * 8 * b
        self.dense1 = dense(flat, 512)
        self.dense2 = dense(512, flat)

        self.up5 = UpConvBlock(8 * b, 4 * b)
        self.uconv53, self.uconv52, self.uconv51 = ConvBlock(12 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.up4 = UpConvBlock(8 * b, 4 * b)
        self.uconv43, self.uconv42, self.uconv41 = ConvBlock(12 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.up3 = UpConvBlock(8 * b, 4 * b)
        self.uconv33, self.uconv32, self.uconv31 = ConvBlock(12 * b, 8 * b), ConvBlock(8 * b, 8 * b), ConvBlock(8 * b, 8 * b)
        self.up2 = UpConvBlock(8 * b, 4 * b)
        self.uconv22, self.uconv21 = ConvBlock(8 * b, 4 * b), ConvBlock(4 * b, 4 * b)
        self.up1 = UpConvBlock(4 * b, 2 * b)
        self.uconv12, self.uconv11 = ConvBlock(4 * b, 2 * b), ConvBlock(2 * b, 2 * b)
        self.up0 = UpConvBlock(2 * b, b)
        self.uconv02, self.uconv01 = ConvBlock(2 * b, b), ConvBlock(b, b)
        self.out_conv = conv3(b, out_ch)

    def forward(self, x, pretrain=False):
        x = self.conv01(x)
        x = x0 = self.conv02(x)
        x = self.bp0(x)
        x = x1 = self.conv12(self.conv11(x))
        x = self.bp1(x)
        x = x2 = self.conv22(self.conv21(x))
        x = self.bp2(x)
        x = x3 = self.conv33(self.conv32(self.conv31(x)))
        x = self.bp3(x)
        x = x4 = self.conv43(self.conv42(self.conv41(x)))
        x = self.bp4(x)
        x = x5 = self.conv53(self.conv52(self.conv51(x)))
        x = self.bp5(x)

        x = self.dense2(self.dense1(x.flatten(1)))  # NCHW (C, H, W) order
        x = x.view(-1, 8 * self.base_ch, self.side, self.side)

        def join(up, skip):
            if pretrain:
                skip = torch.zeros_like(skip)
            return torch.cat([up, skip], 1)

        x = self.uconv51(self.uconv52(self.uconv53(join(self.up5(x), x5))))
        x = self.uconv41(self.uconv42(self.uconv43(join(self.up4(x), x4))))
        x = self.uconv31(self.uconv32(self.uconv33(join(self.up3(x), x3))))
        x = self.uconv21(self.uconv22(join(self.up2(x), x2)))
        x = self.uconv11(self.uconv12(join(self.up1(x), x1)))
        x = self.uconv01(self.uconv02(join(self.up0(x), x0)))
        logits = self.out_conv(x)
        return logits, torch.sigmoid(logits)


def xseg_loss(logits, target):
    """Per-sample [N] mean over C,H,W of sigmoid cross-entropy with logits
    (max(x, 0) - x z + log(1 + exp(-|x|)))."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2, 3))


def xseg_pretrain_loss(pred, target, resolution):
    """Per-sample [N] pretraining loss on the sigmoid output `pred` against a 1-channel image.

    dssim() returns [N, C] (SSIM averaged over the VALID positions of each channel); DFL takes
    the mean over C of 5*DSSIM for each of the two filter sizes, plus the mean over C,H,W of
    10*(target - pred)^2. dssim is symmetric in its two images.
    """
    loss = (5 * dssim(target, pred, int(resolution / 11.6))).mean(1)
    loss = loss + (5 * dssim(target, pred, int(resolution / 23.2))).mean(1)
    return loss + (10 * (target - pred).square()).mean((1, 2, 3))


def check_transposed_conv():
    """UpConvBlock's transposed conv equals the adjoint (input gradient) of TF's SAME 3x3
    stride-2 conv (pad 0 before, 1 after) with the same weight; and torch's padding=1,
    output_padding=1 does not."""
    torch.manual_seed(0)
    layer = up_conv(3, 2, 3, 2)
    y = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    w = layer.weight.detach().double()  # [in=3, out=2, 3, 3]
    ours = F.conv_transpose2d(y, w, stride=2)[:, :, :10, :8]
    x = torch.zeros(1, 2, 10, 8, dtype=torch.float64, requires_grad=True)
    # TF SAME conv 2 -> 3 channels on a 10x8 input: pad bottom/right by 1; weight [o=3, i=2].
    fwd = F.conv2d(F.pad(x, [0, 1, 0, 1]), w, stride=2)
    assert fwd.shape[2:] == y.shape[2:]
    (adj,) = torch.autograd.grad(fwd, x, y)
    assert torch.allclose(ours, adj, atol=1e-12), "transposed conv is not TF SAME"
    shifted = F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)
    assert shifted.shape == ours.shape and not torch.allclose(shifted, adj)
    return True


if __name__ == "__main__":
    check_transposed_conv()
    print("transposed conv: ConvTranspose2d(3, stride 2, padding 0)[:2H, :2W] == adjoint of TF SAME conv")
    for r, b in ((256, 32), (64, 4), (128, 2)):
        m = XSeg(3, b, 1, r)
        print(f"resolution {r} base {b}: {sum(p.numel() for p in m.parameters()):,} parameters")
    assert sum(p.numel() for p in XSeg(3, 32, 1, 256).parameters()) == 17_569_317
