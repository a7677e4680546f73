//! mix-m's hybrid: lightness by lct, chroma by sot (`docs/dfl-parity.md`, "Colour transfer").
//!
//! DFL: `color_transfer_mix` in `core/imagelib/color_transfer.py`. In Lab, the lightness of
//! `src` is matched to the reference's with a one-channel lct. For the chroma, both images
//! get one fixed lightness, go back to BGR (0–255), and `src` is moved toward the reference
//! with sot (10 steps × 5 directions, bilateral σ_color 5 in 0–255 units). The sot result's
//! Lab chroma is combined with the matched lightness and converted back to BGR.
//!
//! DFL does all of this on 8-bit images (8-bit Lab has L = L\*·255/100 and a, b offset by 128);
//! we keep floats and skip the quantisation, but keep DFL's scales: the fixed 8-bit
//! lightness 100 (L\* ≈ 39.2) and sot on the 0–255 range.

use rand::Rng;

use super::{Image, clip_unit, lab, sot};

/// Full scale of DFL's 8-bit images.
const U8_SCALE: f32 = 255.0;
/// Full scale of L\*.
const L_SCALE: f32 = 100.0;
/// The lightness DFL gives both chroma images: 8-bit L = 100, i.e. L\* = 100·100/255.
const FIXED_LIGHTNESS: f32 = 100.0 * L_SCALE / U8_SCALE;
/// The one-channel lct's covariance regulariser. DFL: `linear_color_transfer`'s `eps`.
const LCT_EPS: f64 = super::lct::COVARIANCE_EPS;

/// Recolours `src` toward `reference` (same size, BGR in [0, 1]), drawing sot's directions
/// from `rng`.
pub(crate) fn transfer(src: &Image, reference: &[f32], rng: &mut impl Rng) -> Vec<f32> {
    let src_lab = lab::bgr_to_lab(&clip_unit(src.data.clone()));
    let ref_lab = lab::bgr_to_lab(&clip_unit(reference.to_vec()));
    let lightness = matched_lightness(&src_lab, &ref_lab);
    let src_chroma = Image { data: chroma_bgr(&src_lab), width: src.width, height: src.height };
    let moved = sot::transfer(&src_chroma, &chroma_bgr(&ref_lab), sot::TRAIN_DIRECTIONS, rng);
    let moved: Vec<f32> = moved.iter().map(|v| (v / U8_SCALE).clamp(0.0, 1.0)).collect();
    let mut out = lab::bgr_to_lab(&moved);
    for (px, l) in out.chunks_exact_mut(3).zip(lightness) {
        px[0] = l;
    }
    lab::lab_to_bgr(&out)
}

/// Returns the L\* of `src` matched to `reference`'s by a one-channel lct on L\*/100,
/// clipped to [0, 100].
fn matched_lightness(src_lab: &[f32], ref_lab: &[f32]) -> Vec<f32> {
    let (mu_s, var_s) = lightness_stats(src_lab);
    let (mu_r, var_r) = lightness_stats(ref_lab);
    let scale = ((var_r + LCT_EPS) / (var_s + LCT_EPS)).sqrt();
    src_lab
        .chunks_exact(3)
        .map(|px| {
            let l = f64::from(px[0] / L_SCALE);
            (((l - mu_s) * scale + mu_r) as f32).clamp(0.0, 1.0) * L_SCALE
        })
        .collect()
}

/// Returns the population mean and variance of L\*/100.
fn lightness_stats(lab: &[f32]) -> (f64, f64) {
    let n = (lab.len() / 3).max(1) as f64;
    let ls = || lab.chunks_exact(3).map(|px| f64::from(px[0] / L_SCALE));
    let mean = ls().sum::<f64>() / n;
    (mean, ls().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n)
}

/// Returns the BGR (0–255) image of `lab` with every lightness set to [`FIXED_LIGHTNESS`].
fn chroma_bgr(lab: &[f32]) -> Vec<f32> {
    let mut fixed = lab.to_vec();
    for px in fixed.chunks_exact_mut(3) {
        px[0] = FIXED_LIGHTNESS;
    }
    lab::lab_to_bgr(&fixed).into_iter().map(|v| v * U8_SCALE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightness_is_matched_in_mean_and_spread() {
        let src_lab: Vec<f32> = (0..100).flat_map(|i| [20.0 + i as f32 * 0.2, 5.0, -5.0]).collect();
        let ref_lab: Vec<f32> = (0..50).flat_map(|i| [60.0 + i as f32 * 0.8, 0.0, 0.0]).collect();
        let out = matched_lightness(&src_lab, &ref_lab);
        let out_lab: Vec<f32> = out.iter().flat_map(|&l| [l, 0.0, 0.0]).collect();
        let ((mu_o, var_o), (mu_r, var_r)) = (lightness_stats(&out_lab), lightness_stats(&ref_lab));
        assert!((mu_o - mu_r).abs() < 1e-5, "{mu_o} vs {mu_r}");
        // σ_out² = σ_ref²·σ_src²/(σ_src² + ε): off by the relative size of ε.
        assert!((var_o - var_r).abs() < 0.01 * var_r, "{var_o} vs {var_r}");
    }

    #[test]
    fn fixed_lightness_is_dfl_8_bit_100() {
        let bgr = chroma_bgr(&[70.0, 2.0, -3.0]);
        let lab = lab::bgr_to_lab(&bgr.iter().map(|v| v / U8_SCALE).collect::<Vec<_>>());
        assert!((lab[0] - 39.2157).abs() < 1e-3, "{lab:?}");
    }
}
