//! rct: Reinhard colour transfer in Lab (`docs/dfl-parity.md`, "Colour transfer").
//!
//! DFL: `reinhard_color_transfer` in `core/imagelib/color_transfer.py`. Each Lab channel is
//! moved as `(x − μ_x)·σ_ref/σ_x + μ_ref` (DFL's "reciprocal" variant), clipped to L ∈ [0, 100]
//! and a, b ∈ [−127, 127], and converted back to BGR. The Lab conversion is OpenCV's float one
//! (see [`super::lab`]).

use super::lab::{bgr_to_lab, lab_to_bgr};
use super::stats::{mean, std_dev};

/// Lower clip of L, a, b. DFL: `np.clip` calls in `reinhard_color_transfer`.
const LAB_MIN: [f32; 3] = [0.0, -127.0, -127.0];
/// Upper clip of L, a, b.
const LAB_MAX: [f32; 3] = [100.0, 127.0, 127.0];

/// Smallest standard deviation we divide by. DFL divides by σ_x unguarded (a constant image
/// gives NaN); ours maps a constant image onto the reference mean instead.
const MIN_STD: f64 = 1e-6;

/// Recolours `src` toward `reference` (interleaved BGR pixels).
///
/// With `area`, the statistics of both images are taken after zeroing (in Lab) every pixel
/// outside the area, as DFL's merger does with `mask_cutoff` 0.5 on the binarised mask. ⚠ The
/// zeroed pixels still count in the mean and standard deviation: kept for parity with DFL
/// (`docs/dfl-parity.md`, "Colour transfer" and "Quirks"). The transform itself applies to every pixel of `src`.
pub(crate) fn transfer(src: &[f32], reference: &[f32], area: Option<&[bool]>) -> Vec<f32> {
    let src_lab = bgr_to_lab(src);
    let ref_lab = bgr_to_lab(reference);
    let (mu_s, sd_s) = lab_stats(&src_lab, area);
    let (mu_r, sd_r) = lab_stats(&ref_lab, area);
    let scale = [0, 1, 2].map(|c| sd_r[c] / sd_s[c].max(MIN_STD));
    let mut out = src_lab;
    for px in out.chunks_exact_mut(3) {
        for c in 0..3 {
            let v = (f64::from(px[c]) - mu_s[c]) * scale[c] + mu_r[c];
            px[c] = (v as f32).clamp(LAB_MIN[c], LAB_MAX[c]);
        }
    }
    lab_to_bgr(&out)
}

/// Returns the per-channel mean and standard deviation, over all pixels, of `lab` with the
/// pixels outside `area` set to zero.
fn lab_stats(lab: &[f32], area: Option<&[bool]>) -> ([f64; 3], [f64; 3]) {
    let zeroed;
    let data = match area {
        Some(area) => {
            zeroed = zero_outside(lab, area);
            &zeroed
        }
        None => lab,
    };
    let mu = mean(data);
    (mu, std_dev(data, mu))
}

fn zero_outside(data: &[f32], area: &[bool]) -> Vec<f32> {
    let mut out = data.to_vec();
    for (px, &inside) in out.chunks_exact_mut(3).zip(area) {
        if !inside {
            px.fill(0.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n * 3).map(|_| rng.random_range(lo..hi)).collect()
    }

    #[test]
    fn lab_means_and_stds_match_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let src = random(1024, 0.3, 0.7, &mut rng);
        let reference = random(2048, 0.2, 0.6, &mut rng);
        let out_lab = bgr_to_lab(&transfer(&src, &reference, None));
        let (mu_o, sd_o) = lab_stats(&out_lab, None);
        let (mu_r, sd_r) = lab_stats(&bgr_to_lab(&reference), None);
        for c in 0..3 {
            assert!((mu_o[c] - mu_r[c]).abs() < 1e-3, "mean {c}: {} vs {}", mu_o[c], mu_r[c]);
            assert!((sd_o[c] - sd_r[c]).abs() < 1e-3, "std {c}: {} vs {}", sd_o[c], sd_r[c]);
        }
    }

    #[test]
    fn masked_statistics_count_the_zeroed_pixels() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let src = random(400, 0.2, 0.8, &mut rng);
        let reference = random(400, 0.1, 0.5, &mut rng);
        let area: Vec<bool> = (0..400).map(|i| i % 3 != 0).collect();
        let out = transfer(&src, &reference, Some(&area));
        // Expected: plain Reinhard with the statistics of the zeroed Lab images.
        let (mu_s, sd_s) = lab_stats(&zero_outside(&bgr_to_lab(&src), &area), None);
        let (mu_r, sd_r) = lab_stats(&zero_outside(&bgr_to_lab(&reference), &area), None);
        let lab: Vec<f32> = bgr_to_lab(&src)
            .chunks_exact(3)
            .flat_map(|px| {
                (0..3).map(move |c| {
                    let v = (f64::from(px[c]) - mu_s[c]) * sd_r[c] / sd_s[c] + mu_r[c];
                    (v as f32).clamp(LAB_MIN[c], LAB_MAX[c])
                })
            })
            .collect();
        assert_eq!(out, lab_to_bgr(&lab));
    }
}
