"""SAEHD's DF and LIAE, their losses and AdaBelief, in plain PyTorch: the reference that dfl's
Rust (tch) implementation is checked against (scripts/golden/saehd_reference.py) and timed
against (scripts/bench/torch_step.py).

Written from the spec in docs/dfl-parity.md ("SAEHD networks", "Losses", "Optimizer"), independently of the
Rust code. Module attribute names give the same state_dict keys as dfl's checkpoints
(`encoder.down.0.conv.weight`, `decoder_src.upscale.0.conv.weight`, ...).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(c_in, c_out, k, stride=1):
    layer = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def dense(c_in, c_out):
    layer = nn.Linear(c_in, c_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def depth_to_space(x):
    """TensorFlow's DCR order: out[c, 2h+i, 2w+j] = in[(2i+j)*C + c, h, w]."""
    n, c4, h, w = x.shape
    c = c4 // 4
    return x.view(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * 2, w * 2)


class Downscale(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = conv(c_in, c_out, 5, 2)

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.1)


class Upscale(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = conv(c_in, c_out * 4, 3)

    def forward(self, x):
        return depth_to_space(F.leaky_relu(self.conv(x), 0.1))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = conv(c, c, 3)
        self.conv2 = conv(c, c, 3)

    def forward(self, x):
        y = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return F.leaky_relu(x + y, 0.2)


class Encoder(nn.Module):
    def __init__(self, e, opts):
        super().__init__()
        widths = [e, 2 * e, 4 * e, 8 * e] + ([8 * e] if "t" in opts else [])
        self.down = nn.ModuleList(Downscale(ci, co) for ci, co in zip([3] + widths, widths))
        self.res = nn.ModuleList([ResidualBlock(e), ResidualBlock(8 * e)] if "t" in opts else [])
        self.is_u = "u" in opts

    def forward(self, x):
        x = self.down[0](x)
        if len(self.res):
            x = self.res[0](x)
        for d in self.down[1:]:
            x = d(x)
        if len(self.res):
            x = self.res[1](x)
        x = x.flatten(1)
        if self.is_u:
            x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6)
        return x


class Inter(nn.Module):
    def __init__(self, in_len, ae, out_ch, side, opts):
        super().__init__()
        self.dense1 = dense(in_len, ae)
        self.dense2 = dense(ae, side * side * out_ch)
        self.upscale = None if "t" in opts else Upscale(out_ch, out_ch)
        self.out_ch, self.side = out_ch, side

    def forward(self, x):
        x = self.dense2(self.dense1(x)).view(-1, self.out_ch, self.side, self.side)
        return x if self.upscale is None else self.upscale(x)


class Decoder(nn.Module):
    def __init__(self, c_in, d, m, opts):
        super().__init__()
        t, dd = "t" in opts, "d" in opts
        widths = [8 * d, 8 * d, 4 * d, 2 * d] if t else [8 * d, 4 * d, 2 * d]
        self.upscale = nn.ModuleList(Upscale(ci, co) for ci, co in zip([c_in] + widths, widths))
        self.res = nn.ModuleList(ResidualBlock(c) for c in widths)
        self.out_conv = conv(widths[-1], 3, 1)
        self.is_d = dd
        if dd:
            self.out_conv1 = conv(widths[-1], 3, 3)
            self.out_conv2 = conv(widths[-1], 3, 3)
            self.out_conv3 = conv(widths[-1], 3, 3)
        mw = [8 * m, 8 * m, 4 * m, 2 * m] if t else [8 * m, 4 * m, 2 * m]
        if dd:
            mw.append(m)
        self.upscalem = nn.ModuleList(Upscale(ci, co) for ci, co in zip([c_in] + mw, mw))
        self.out_convm = conv(mw[-1], 1, 1)

    def forward(self, z):
        x = z
        for up, res in zip(self.upscale, self.res):
            x = res(up(x))
        if self.is_d:
            heads = [self.out_conv(x), self.out_conv1(x), self.out_conv2(x), self.out_conv3(x)]
            img = depth_to_space(torch.cat(heads, 1))
        else:
            img = self.out_conv(x)
        mk = z
        for up in self.upscalem:
            mk = up(mk)
        return torch.sigmoid(img), torch.sigmoid(self.out_convm(mk))


class Saehd(nn.Module):
    """DF or LIAE; `archi` like 'df', 'liae-ud'."""

    def __init__(self, archi, resolution, ae, e, d, m):
        super().__init__()
        kind, _, opts = archi.partition("-")
        self.kind = kind
        side = resolution // (32 if "d" in opts else 16)
        enc_side = resolution // (32 if "t" in opts else 16)
        in_len = 8 * e * enc_side * enc_side
        self.encoder = Encoder(e, opts)
        if kind == "df":
            self.inter = Inter(in_len, ae, ae, side, opts)
            self.decoder_src = Decoder(ae, d, m, opts)
            self.decoder_dst = Decoder(ae, d, m, opts)
        else:
            self.inter_ab = Inter(in_len, ae, 2 * ae, side, opts)
            self.inter_b = Inter(in_len, ae, 2 * ae, side, opts)
            self.decoder = Decoder(4 * ae, d, m, opts)

    def src_src(self, x):
        if self.kind == "df":
            return self.decoder_src(self.inter(self.encoder(x)))
        ab = self.inter_ab(self.encoder(x))
        return self.decoder(torch.cat([ab, ab], 1))

    def dst_dst(self, x):
        if self.kind == "df":
            return self.decoder_dst(self.inter(self.encoder(x)))
        e = self.encoder(x)
        return self.decoder(torch.cat([self.inter_b(e), self.inter_ab(e)], 1))

    def swap(self, x):
        if self.kind == "df":
            return self.decoder_src(self.inter(self.encoder(x)))
        ab = self.inter_ab(self.encoder(x))
        return self.decoder(torch.cat([ab, ab], 1))


def gaussian_blur(x, sigma):
    """DFL's nn.gaussian_blur: kernel max(3, int(4 sigma)) made odd, zero padding, depthwise."""
    k = max(3, int(4 * sigma))
    if k % 2 == 0:
        k += 1
    mean = math.floor(0.5 * k)
    g = torch.tensor([math.exp(-((i - mean) ** 2) / (2 * sigma**2)) for i in range(k)], dtype=torch.float64)
    kernel = torch.outer(g, g)
    kernel = (kernel / kernel.sum()).float()
    c = x.shape[1]
    return F.conv2d(x, kernel.expand(c, 1, k, k).contiguous(), padding=k // 2, groups=c)


def dssim(a, b, k):
    """DFL's nn.dssim: [N, C] of (1 - SSIM) / 2, Gaussian window sigma 1.5, VALID."""
    coords = torch.arange(k, dtype=torch.float64) - (k - 1) / 2.0
    g = coords.square() * (-0.5 / 1.5**2)
    w = torch.softmax((g[None, :] + g[:, None]).reshape(-1), 0).reshape(k, k).float()
    c = a.shape[1]
    kern = w.expand(c, 1, k, k).contiguous()

    def reduce(x):
        return F.conv2d(x, kern, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mean0, mean1 = reduce(a), reduce(b)
    num0 = mean0 * mean1 * 2.0
    den0 = mean0.square() + mean1.square()
    lum = (num0 + c1) / (den0 + c1)
    num1 = reduce(a * b) * 2.0
    den1 = reduce(a.square() + b.square())
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return (1.0 - (lum * cs).mean(dim=(2, 3))) / 2.0


def side_loss(target, mask, em, pred, pred_mask, resolution, eyes_mouth_prio=True):
    """One person's SAEHD loss per sample [N] (masked training on)."""
    blur = torch.clamp(gaussian_blur(mask, max(1, resolution // 32)), 0.0, 0.5) * 2.0
    t, p = target * blur, pred * blur
    if resolution < 256:
        loss = (10 * dssim(t, p, int(resolution / 11.6))).mean(1)
    else:
        loss = (5 * dssim(t, p, int(resolution / 11.6))).mean(1)
        loss = loss + (5 * dssim(t, p, int(resolution / 23.2))).mean(1)
    loss = loss + (10 * (t - p).square()).mean((1, 2, 3))
    if eyes_mouth_prio:
        loss = loss + (300 * (target * em - pred * em).abs()).mean((1, 2, 3))
    return loss + (10 * (mask - pred_mask).square()).mean((1, 2, 3))


class AdaBelief:
    """DFL's AdaBelief: no bias correction, epsilon outside the square root."""

    def __init__(self, params, lr=5e-5, b1=0.9, b2=0.999, eps=1e-6):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).add_((g - m).square(), alpha=1 - self.b2)
            p.sub_(self.lr * m / (v.sqrt() + self.eps))


# --- The discriminators, the style and adversarial terms, and the other optimizers -------------


def up_conv(c_in, c_out, k, stride):
    """A transposed conv with TensorFlow's SAME output size (H * stride): stride 1 pads k//2
    on each side; stride 2 pads nothing and drops the last row and column."""
    layer = nn.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=k // 2 if stride == 1 else 0)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class CodeDiscriminator(nn.Module):
    """True face: 1 + code_res // 8 stride-2 convs (4x4 then 3x3) of base * min(2^i, 8)
    channels (base 256 in SAEHD), LeakyReLU 0.1, then a 1x1 conv to one logit per position."""

    def __init__(self, in_ch, code_res, base=256):
        super().__init__()
        chans = [base * min(2**i, 8) for i in range(1 + code_res // 8)]
        ins = [in_ch] + chans[:-1]
        self.convs = nn.ModuleList(conv(a, b, 4 if i == 0 else 3, 2) for i, (a, b) in enumerate(zip(ins, chans)))
        self.out_conv = conv(chans[-1], 1, 1)

    def forward(self, x):
        for c in self.convs:
            x = F.leaky_relu(c(x), 0.1)
        return self.out_conv(x)


def find_archi(patch_size, max_layers=9):
    """The patch discriminator's encoder: for every stack of 3x3 layers (first stride 2, the
    rest 1 or 2), keep per receptive field the fewest layers, then the most striding; take the
    receptive field nearest patch_size (the smaller on a tie)."""
    best = {}
    for count in range(1, max_layers + 1):
        for val in range(2 ** (count - 1) - 1, -1, -1):
            layers = [(3, 2)] + [(3, 1 + ((val >> i) & 1)) for i in range(count - 1)]
            rf, ts = 0, 1
            for i, (k, s) in enumerate(layers):
                rf = k if i == 0 else rf + (k - 1) * ts
                ts *= s
            strides = sum(s for _, s in layers)
            if rf not in best or count < best[rf][0] or (count == best[rf][0] and strides > best[rf][1]):
                best[rf] = (count, strides, layers)
    rf = min(best, key=lambda r: (abs(r - patch_size), r))
    return best[rf][2]


class UNetPatchDiscriminator(nn.Module):
    """GAN: a U-Net whose bottleneck gives one logit per patch (center) and whose full-size
    head gives one per pixel. Level i has min(base * 2^(i+1), 512) channels, the 1x1 in_conv
    min(base, 512); LeakyReLU 0.2; skips concatenated before the decoder output."""

    def __init__(self, patch_size, in_ch, base):
        super().__init__()
        layers = find_archi(patch_size)
        ch = lambda i: min(base * 2 ** (i + 1), 512)  # noqa: E731
        n = len(layers)
        self.in_conv = conv(in_ch, ch(-1), 1)
        self.convs = nn.ModuleList(conv(ch(i - 1), ch(i), k, s) for i, (k, s) in enumerate(layers))
        self.upconvs = nn.ModuleList(
            up_conv(ch(i) * (1 if i == n - 1 else 2), ch(i - 1), k, s) for i, (k, s) in enumerate(layers)
        )
        self.center_out = conv(ch(n - 1), 1, 1)
        self.center_conv = conv(ch(n - 1), ch(n - 1), 1)
        self.out_conv = conv(ch(-1) * 2, 1, 1)

    def forward(self, x):
        x = F.leaky_relu(self.in_conv(x), 0.2)
        skips = []
        for c in self.convs:
            skips.append(x)
            x = F.leaky_relu(c(x), 0.2)
        center = self.center_out(x)
        x = F.leaky_relu(self.center_conv(x), 0.2)
        for up, skip in zip(reversed(self.upconvs), reversed(skips)):
            y = up(x)[:, :, : skip.shape[2], : skip.shape[3]]
            x = torch.cat([skip, F.leaky_relu(y, 0.2)], 1)
        return center, self.out_conv(x)


def loss_mask(mask, resolution):
    return torch.clamp(gaussian_blur(mask, max(1, resolution // 32)), 0.0, 0.5) * 2.0


def style_loss(a, b, sigma, weight):
    """nn.style_loss: blur both, then per channel (mean diff)^2 + (std diff)^2, std with
    +1e-5 inside the root, population statistics; summed over channels, times weight / C."""
    if sigma > 0:
        a, b = gaussian_blur(a, sigma), gaussian_blur(b, sigma)
    am, bm = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
    av = (a - am).square().mean((2, 3), keepdim=True)
    bv = (b - bm).square().mean((2, 3), keepdim=True)
    sd = ((am - bm).square().sum((1, 2, 3)) + ((av + 1e-5).sqrt() - (bv + 1e-5).sqrt()).square().sum((1, 2, 3)))
    return sd * (weight / a.shape[1])


def bg_style_loss(swap, target_dst, src_mask, resolution, power):
    """Background style with DFL's mask: the src target's loss mask, applied to dst images."""
    anti = 1.0 - torch.clamp(loss_mask(src_mask, resolution), 0.0, 1.0).detach()
    p, t = swap * anti, target_dst * anti
    return (dssim(p, t, int(resolution / 11.6)).mean(1) + (p - t).square().mean((1, 2, 3))) * (power / 10.0)


def blur_out_mask(target, mask, resolution):
    sigma = resolution / 128
    anti = 1.0 - mask
    x = gaussian_blur(target * anti, sigma)
    y = 1.0 - gaussian_blur(mask, sigma)
    y = torch.where(y == 0, torch.ones_like(y), y)
    return target * mask + (x / y) * anti


def bce(logits, label):
    """Mean sigmoid cross-entropy against a constant label, per sample."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label), reduction="none").mean((1, 2, 3))


def total_variation_mse(x):
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).square().sum((1, 2, 3)) + (x[:, :, :, 1:] - x[:, :, :, :-1]).square().sum((1, 2, 3))


class Adam:
    """torch.optim.Adam's update (bias-corrected), epsilon outside the root."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-6):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).add_(g.square(), alpha=1 - self.b2)
            p.sub_((self.lr / c1) * m / (v.sqrt() / math.sqrt(c2) + self.eps))


class RmsProp:
    """DFL's RMSprop: a <- rho a + (1 - rho) g^2; p <- p - lr g / (sqrt(a) + eps)."""

    def __init__(self, params, lr, rho=0.9, eps=1e-6):
        self.params = list(params)
        self.lr, self.rho, self.eps = lr, rho, eps
        self.a = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, a in zip(self.params, self.a):
            g = p.grad
            a.mul_(self.rho).add_(g.square(), alpha=1 - self.rho)
            p.sub_(self.lr * g / (a.sqrt() + self.eps))


@torch.no_grad()
def clip_global_norm(params, max_norm):
    """Scales every gradient by max_norm / max(norm over all of them, max_norm)."""
    grads = [p.grad for p in params]
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    scale = max_norm / torch.clamp(norm, min=max_norm)
    for g in grads:
        g.mul_(scale)
