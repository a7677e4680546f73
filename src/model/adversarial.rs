//! The adversarial loss terms of SAEHD's two discriminators ([`super::discriminator`]), on their
//! logits: what the generator adds to its objective, and what each discriminator minimises
//! (`docs/dfl-parity.md`, "Losses").
//!
//! - **True face**: the code discriminator learns to call dst codes real and src codes fake; the
//!   generator is rewarded when src codes pass as real, which pulls them toward the codes the
//!   swap is decoded from.
//! - **GAN**: the patch discriminator learns to tell the src target from its src→src
//!   reconstruction, per patch and per pixel; the generator is rewarded when the reconstruction
//!   passes. With masked training two small stabilisers keep the background from drifting.
//!
//! Every term returns one value per sample, `[N]` (the mean over the logit map), as the
//! reconstruction losses do.

use tch::{Kind, Reduction, Tensor};

use super::discriminator::PatchLogits;
use super::loss::{loss_mask, per_sample_mean};

/// Weight of the total-variation stabiliser. DFL: `0.000001*nn.total_variation_mse(...)`.
pub const GAN_TV_WEIGHT: f64 = 1e-6;
/// Weight of the background-reconstruction stabiliser. DFL: `0.02*tf.reduce_mean(...)`.
pub const GAN_BACKGROUND_WEIGHT: f64 = 0.02;

/// Sigmoid cross-entropy of `logits` against a constant label, averaged per sample: `[N]`.
///
/// # Shapes
/// `logits`: `[N, C, H, W]`.
pub fn bce_with_logits(logits: &Tensor, label: f64) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let labels = logits.full_like(label);
    let map =
        logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, Reduction::None);
    per_sample_mean(&map)
}

/// Sum of squared differences between neighbouring pixels, down and across: `[N]`.
///
/// # Shapes
/// `xs`: `[N, C, H, W]`.
pub fn total_variation_mse(xs: &Tensor) -> Tensor {
    let (h, w) = (xs.size()[2], xs.size()[3]);
    let down = xs.narrow(2, 1, h - 1) - xs.narrow(2, 0, h - 1);
    let across = xs.narrow(3, 1, w - 1) - xs.narrow(3, 0, w - 1);
    let sum = |t: Tensor| t.square().sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float);
    sum(down) + sum(across)
}

/// The generator's true-face term: `power`·BCE(D(src code) → real).
///
/// # Shapes
/// `src_code_logits`: the code discriminator's `[N, 1, l, l]`; returns `[N]`.
pub fn true_face_generator_loss(src_code_logits: &Tensor, power: f64) -> Tensor {
    bce_with_logits(src_code_logits, 1.0) * power
}

/// The code discriminator's loss: ½·[BCE(D(dst code) → real) + BCE(D(src code) → fake)].
///
/// # Shapes
/// Both `[N, 1, l, l]`; returns `[N]`.
pub fn code_discriminator_loss(dst_code_logits: &Tensor, src_code_logits: &Tensor) -> Tensor {
    (bce_with_logits(dst_code_logits, 1.0) + bce_with_logits(src_code_logits, 0.0)) * 0.5
}

/// The generator's GAN term on the discriminator's view of src→src:
/// `power`·[BCE(center → real) + BCE(pixel → real)].
pub fn gan_generator_loss(src_src: &PatchLogits, power: f64) -> Tensor {
    (bce_with_logits(&src_src.center, 1.0) + bce_with_logits(&src_src.pixel, 1.0)) * power
}

/// The GAN's stabilisers, used only with masked training (whose image losses ignore the
/// background): 1e-6·TV(p_ss) + 0.02·mean((p_ss·(1−M) − t_s·(1−M))²), M the target's loss mask.
///
/// # Shapes
/// `src_src` (raw p_ss), `target_src` (t_s): `[N, 3, R, R]`; `target_src_mask`: `[N, 1, R, R]`;
/// returns `[N]`.
pub fn gan_stabilisers(
    src_src: &Tensor,
    target_src: &Tensor,
    target_src_mask: &Tensor,
    resolution: i64,
) -> Tensor {
    let anti = 1.0 - loss_mask(target_src_mask, resolution);
    let background = per_sample_mean(&(src_src * &anti - target_src * &anti).square());
    total_variation_mse(src_src) * GAN_TV_WEIGHT + background * GAN_BACKGROUND_WEIGHT
}

/// The patch discriminator's loss: for the center and the pixel logits each,
/// ½·[BCE(D(t_s) → real) + BCE(D(p_ss) → fake)], summed.
pub fn patch_discriminator_loss(target: &PatchLogits, src_src: &PatchLogits) -> Tensor {
    let half = |real: &Tensor, fake: &Tensor| {
        (bce_with_logits(real, 1.0) + bce_with_logits(fake, 0.0)) * 0.5
    };
    half(&target.center, &src_src.center) + half(&target.pixel, &src_src.pixel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    #[test]
    fn bce_matches_the_closed_form() {
        // −[z·log σ(x) + (1−z)·log(1−σ(x))] for x = 0, 2 and z = 1, 0.
        let logits = Tensor::from_slice(&[0.0f32, 2.0]).view([1, 1, 1, 2]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let real = bce_with_logits(&logits, 1.0).double_value(&[0]);
        let want_real = (-(sigmoid(0.0)).ln() - sigmoid(2.0).ln()) / 2.0;
        assert!((real - want_real).abs() < 1e-6, "{real} vs {want_real}");
        let fake = bce_with_logits(&logits, 0.0).double_value(&[0]);
        let want_fake = (-(1.0 - sigmoid(0.0)).ln() - (1.0 - sigmoid(2.0)).ln()) / 2.0;
        assert!((fake - want_fake).abs() < 1e-6, "{fake} vs {want_fake}");
    }

    #[test]
    fn total_variation_counts_squared_steps_both_ways() {
        // A 2×3 plane 0 1 3 / 1 1 1: across (1, 4, 0, 0) = 5, down (1, 0, 4) = 5.
        let xs = Tensor::from_slice(&[0.0f32, 1.0, 3.0, 1.0, 1.0, 1.0]).view([1, 1, 2, 3]);
        assert_eq!(total_variation_mse(&xs).double_value(&[0]), 10.0);
        assert_eq!(
            total_variation_mse(&Tensor::ones([2, 3, 4, 4], CPU))
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn a_confident_discriminator_has_a_small_loss_and_the_generator_a_large_one() {
        let n = 2;
        let real = |v: f64| PatchLogits {
            center: Tensor::full([n, 1, 4, 4], v, CPU),
            pixel: Tensor::full([n, 1, 16, 16], v, CPU),
        };
        let (target, fooled) = (real(8.0), real(-8.0));
        let d = patch_discriminator_loss(&target, &fooled);
        assert!(d.max().double_value(&[]) < 1e-3, "{d}");
        let g = gan_generator_loss(&fooled, 0.1);
        assert!((g.double_value(&[0]) - 0.1 * 2.0 * 8.0).abs() < 1e-2, "{g}");
        let code = code_discriminator_loss(
            &Tensor::full([n, 1, 2, 2], 8.0, CPU),
            &Tensor::full([n, 1, 2, 2], -8.0, CPU),
        );
        assert!(code.max().double_value(&[]) < 1e-3);
    }

    #[test]
    fn the_stabilisers_see_only_the_background_and_roughness() {
        let r = 32;
        let mask = Tensor::zeros([1, 1, r, r], CPU);
        let _ = mask.narrow(2, 8, 16).narrow(3, 8, 16).fill_(1.0);
        let target = Tensor::full([1, 3, r, r], 0.5, CPU);
        assert!(gan_stabilisers(&target, &target, &mask, r).double_value(&[0]).abs() < 1e-9);
        // A change deep inside the mask costs only its edges' total variation.
        let inside = Tensor::zeros([1, 1, r, r], CPU);
        let _ = inside.narrow(2, 12, 8).narrow(3, 12, 8).fill_(1.0);
        let pred = &target + &inside * 0.1;
        let cost = gan_stabilisers(&pred, &target, &mask, r).double_value(&[0]);
        let tv = GAN_TV_WEIGHT * 3.0 * 32.0 * 0.01; // 3 channels, 32 unit steps of 0.1
        assert!((cost - tv).abs() < 1e-9, "{cost} vs {tv}");
        // A 6×6 change in a corner, far from the mask, costs the 0.02 MSE too: 3·36 pixels of
        // 0.1² over 3·32² values, plus its 12 unit steps per channel.
        let corner = Tensor::zeros([1, 1, r, r], CPU);
        let _ = corner.narrow(2, 0, 6).narrow(3, 0, 6).fill_(1.0);
        let pred = &target + &corner * 0.1;
        let cost = gan_stabilisers(&pred, &target, &mask, r).double_value(&[0]);
        let tv = GAN_TV_WEIGHT * 3.0 * 12.0 * 0.01;
        let mse = GAN_BACKGROUND_WEIGHT * 36.0 * 0.01 / 1024.0;
        assert!((cost - tv - mse).abs() < 1e-9, "{cost} vs {}", tv + mse);
    }
}
