//! A bilateral filter for 3-channel float images, computed as OpenCV's `bilateralFilter` does
//! for `CV_32FC3` with `d = 0`. SOT regularises its change image with it.
//!
//! Each output pixel is `Σ w·p / Σ w` over the disc of radius `round(1.5·σ_space)` around it
//! (borders mirrored without repeating the edge, OpenCV's `BORDER_REFLECT_101`), with
//! `w = exp(−r²/2σ_space²) · exp(−d²/2σ_color²)`, `r` the pixel distance and `d` the sum of the
//! absolute channel differences. Like OpenCV, the colour factor comes from a table of
//! 4096 entries per channel over the image's value range, interpolated linearly.

use rayon::prelude::*;

/// Window radius in units of σ_space when no diameter is given. OpenCV: `cvRound(sigma_space*1.5)`.
const RADIUS_PER_SIGMA: f64 = 1.5;
/// Colour-weight table entries per channel. OpenCV: `kExpNumBinsPerChannel = 1 << 12`.
const LUT_BINS_PER_CHANNEL: usize = 1 << 12;
/// Channels of the images filtered here.
const CHANNELS: usize = 3;

/// One tap of the spatial kernel: where it reads in the padded image, and its weight.
struct Tap {
    offset: usize,
    weight: f32,
}

/// Bilateral-filters an interleaved 3-channel `width`×`height` image.
pub(crate) fn filter(
    data: &[f32],
    width: usize,
    height: usize,
    sigma_space: f64,
    sigma_color: f64,
) -> Vec<f32> {
    let (lo, hi) =
        data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if data.is_empty() || (hi - lo).abs() < f32::EPSILON {
        return data.to_vec(); // OpenCV returns a flat image unchanged
    }
    let radius = ((RADIUS_PER_SIGMA * sigma_space).round() as usize).max(1);
    let padded_width = width + 2 * radius;
    let padded = pad_reflect_101(data, width, height, radius);
    let taps = spatial_taps(radius, padded_width, sigma_space);
    let range = (hi - lo) * CHANNELS as f32;
    let lut = colour_lut(range, sigma_color);
    let scale = (LUT_BINS_PER_CHANNEL * CHANNELS) as f32 / range;
    let window = Window { padded: &padded, padded_width, radius, taps: &taps, lut: &lut, scale };
    let mut out = vec![0.0f32; data.len()];
    out.par_chunks_mut(width * CHANNELS).enumerate().for_each(|(y, row)| window.row(y, row));
    out
}

/// What every output row reads: the padded image, the taps and the colour table.
struct Window<'a> {
    padded: &'a [f32],
    padded_width: usize,
    radius: usize,
    taps: &'a [Tap],
    lut: &'a [f32],
    scale: f32,
}

impl Window<'_> {
    /// Filters output row `y` into `out`, tap by tap over the whole row (this order lets the
    /// compiler drop bounds checks; each pixel still sums its taps in OpenCV's order).
    fn row(&self, y: usize, out: &mut [f32]) {
        let width = out.len() / CHANNELS;
        let row_len = width * CHANNELS;
        let pw = self.padded_width * CHANNELS;
        let start = (y + self.radius) * pw + self.radius * CHANNELS;
        let centre = &self.padded[start..start + row_len];
        let origin = y * pw; // the window's top-left corner for x = 0
        out.copy_from_slice(centre); // the centre has weight 1
        let mut wsum = vec![1.0f32; width];
        let last = self.lut.len() - 2;
        for tap in self.taps {
            let from = origin + tap.offset;
            let neighbours = &self.padded[from..from + row_len];
            let pixels = out.chunks_exact_mut(CHANNELS).zip(&mut wsum);
            let sources = neighbours.chunks_exact(CHANNELS).zip(centre.chunks_exact(CHANNELS));
            for ((acc, ws), (n, c)) in pixels.zip(sources) {
                let dist = (n[0] - c[0]).abs() + (n[1] - c[1]).abs() + (n[2] - c[2]).abs();
                let alpha = dist * self.scale;
                let idx = (alpha as usize).min(last);
                let frac = alpha - idx as f32;
                let w = tap.weight * (self.lut[idx] + frac * (self.lut[idx + 1] - self.lut[idx]));
                for ch in 0..CHANNELS {
                    acc[ch] += n[ch] * w;
                }
                *ws += w;
            }
        }
        for (px, ws) in out.chunks_exact_mut(CHANNELS).zip(&wsum) {
            px.iter_mut().for_each(|v| *v /= ws);
        }
    }
}

/// Returns the taps of the disc of `radius` (centre excluded), with offsets measured from
/// the window's top-left corner in a padded image `padded_width` pixels wide.
fn spatial_taps(radius: usize, padded_width: usize, sigma_space: f64) -> Vec<Tap> {
    let coeff = -0.5 / (sigma_space * sigma_space);
    let mut taps = Vec::new();
    for dy in 0..=2 * radius {
        for dx in 0..=2 * radius {
            let (ry, rx) = (dy as f64 - radius as f64, dx as f64 - radius as f64);
            let r2 = ry * ry + rx * rx;
            if r2.sqrt() > radius as f64 || r2 == 0.0 {
                continue;
            }
            let offset = (dy * padded_width + dx) * CHANNELS;
            taps.push(Tap { offset, weight: (r2 * coeff).exp() as f32 });
        }
    }
    taps
}

/// Returns `exp(−d²/2σ²)` sampled at `d = i·range/bins`, with two spare entries for the
/// interpolation at the top.
fn colour_lut(range: f32, sigma_color: f64) -> Vec<f32> {
    let bins = LUT_BINS_PER_CHANNEL * CHANNELS;
    let step = f64::from(range) / bins as f64;
    let coeff = -0.5 / (sigma_color * sigma_color);
    (0..bins + 2)
        .map(|i| {
            let d = i as f64 * step;
            (d * d * coeff).exp() as f32
        })
        .collect()
}

/// Returns the image with `pad` pixels mirrored onto every side (`dcb|abcd|cba`).
fn pad_reflect_101(data: &[f32], width: usize, height: usize, pad: usize) -> Vec<f32> {
    let padded_width = width + 2 * pad;
    let mut out = Vec::with_capacity(padded_width * (height + 2 * pad) * CHANNELS);
    for py in 0..height + 2 * pad {
        let y = reflect_101(py as isize - pad as isize, height);
        for px in 0..padded_width {
            let x = reflect_101(px as isize - pad as isize, width);
            let i = (y * width + x) * CHANNELS;
            out.extend_from_slice(&data[i..i + CHANNELS]);
        }
    }
    out
}

/// Returns the in-range index that `p` mirrors to (OpenCV's `borderInterpolate`).
fn reflect_101(mut p: isize, len: usize) -> usize {
    let len = len as isize;
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * (len - 1) - p };
    }
    p as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{BORDER_DEFAULT, Mat};
    use opencv::imgproc;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn reflection_mirrors_without_repeating_the_edge() {
        let mapped: Vec<usize> = (-3..7).map(|p| reflect_101(p, 4)).collect();
        assert_eq!(mapped, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect_101(-30, 2), 0);
        assert_eq!(reflect_101(5, 1), 0);
    }

    fn opencv_bilateral(data: &[f32], w: usize, h: usize, sc: f64, ss: f64) -> Vec<f32> {
        let src = crate::img::mat_from_bgr_f32(data, w, h).expect("a test Mat");
        let mut dst = Mat::default();
        imgproc::bilateral_filter(&src, &mut dst, 0, sc, ss, BORDER_DEFAULT)
            .expect("bilateralFilter on a CV_32FC3 Mat");
        crate::img::bgr_f32_from_mat(&dst).expect("CV_32FC3 out")
    }

    #[test]
    fn matches_opencv_bilateral_filter() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (w, h) = (37, 29);
        // Value range 0..20 with σ_color 5 exercises the edge-preserving colour weight.
        let data: Vec<f32> = (0..w * h * 3).map(|_| rng.random_range(0.0..20.0)).collect();
        for (sigma_space, sigma_color) in [(16.0, 5.0), (2.0, 3.0)] {
            let ours = filter(&data, w, h, sigma_space, sigma_color);
            let theirs = opencv_bilateral(&data, w, h, sigma_color, sigma_space);
            let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "σ {sigma_space}/{sigma_color}: worst difference {worst}");
        }
    }

    #[test]
    fn flat_and_tiny_images_pass_through() {
        assert_eq!(filter(&[0.25; 12], 2, 2, 16.0, 5.0), vec![0.25; 12]);
        let one = filter(&[0.1, 0.2, 0.3], 1, 1, 16.0, 5.0);
        assert!(one.iter().zip([0.1, 0.2, 0.3]).all(|(a, b)| (a - b).abs() < 1e-6), "{one:?}");
    }
}
