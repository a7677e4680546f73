//! The merger's image operations on face crops: histogram matching, blur/sharpen and the
//! seamless-clone mask (DFL `core/imagelib/color_transfer.py` `color_hist_match`,
//! `core/imagelib/blursharpen.py`, `merger/MergeMasked.py`).

use opencv::core::{self, CV_32F, Mat, Point, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::config::SharpenMode;
use crate::img::{bgr_f32_from_mat, mat_from_bgr_f32};

/// Matches each BGR channel of `src` to the histogram of the same channel of `template`
/// (DFL's `color_hist_match`): a value at quantile q of src becomes template's value at
/// quantile `q·threshold/255`, interpolated. `threshold` 255 is an exact match; lower values
/// map src onto template's darker part.
///
/// # Shapes
/// `src`, `template`: `CV_32FC3` of any sizes. Output: like `src`.
///
/// # Errors
/// OpenCV's error (e.g. another Mat type).
pub fn color_hist_match(src: &Mat, template: &Mat, threshold: u8) -> opencv::Result<Mat> {
    let s = bgr_f32_from_mat(src)?;
    let t = bgr_f32_from_mat(template)?;
    let mut out = vec![0.0f32; s.len()];
    for c in 0..3 {
        let sc: Vec<f32> = s.iter().skip(c).step_by(3).copied().collect();
        let tc: Vec<f32> = t.iter().skip(c).step_by(3).copied().collect();
        let matched = channel_hist_match(&sc, &tc, f64::from(threshold));
        for (o, v) in out.iter_mut().skip(c).step_by(3).zip(matched) {
            *o = v;
        }
    }
    mat_from_bgr_f32(&out, src.cols() as usize, src.rows() as usize)
}

/// Distinct values of `data` in ascending order, the cumulative count up to each, and for
/// every element the index of its value (numpy's `unique` with inverse and counts, cumsummed).
fn unique_cumulative(data: &[f32]) -> (Vec<f32>, Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_unstable_by(|&a, &b| data[a].total_cmp(&data[b]));
    let (mut values, mut cumulative, mut inverse) = (Vec::new(), Vec::new(), vec![0; data.len()]);
    for (n, &i) in order.iter().enumerate() {
        if values.last() != Some(&data[i]) {
            values.push(data[i]);
            cumulative.push(0.0);
        }
        let last = values.len() - 1;
        cumulative[last] = (n + 1) as f64;
        inverse[i] = last;
    }
    (values, cumulative, inverse)
}

/// One channel of [`color_hist_match`].
fn channel_hist_match(src: &[f32], template: &[f32], threshold: f64) -> Vec<f32> {
    if src.is_empty() || template.is_empty() {
        return src.to_vec();
    }
    let (_, s_cum, s_inverse) = unique_cumulative(src);
    let (t_values, t_cum, _) = unique_cumulative(template);
    let (s_total, t_total) = (src.len() as f64, template.len() as f64);
    let t_quantiles: Vec<f64> = t_cum.iter().map(|c| 255.0 * c / t_total).collect();
    let mapped: Vec<f32> = s_cum
        .iter()
        .map(|c| interp(threshold * c / s_total, &t_quantiles, &t_values) as f32)
        .collect();
    s_inverse.into_iter().map(|i| mapped[i]).collect()
}

/// numpy's `interp`: piecewise-linear through `(xp, fp)`, constant beyond the ends.
fn interp(x: f64, xp: &[f64], fp: &[f32]) -> f64 {
    let upper = xp.partition_point(|&p| p < x);
    if upper == 0 {
        return f64::from(fp[0]);
    }
    if upper == xp.len() {
        return f64::from(fp[fp.len() - 1]);
    }
    let (x0, x1) = (xp[upper - 1], xp[upper]);
    let (y0, y1) = (f64::from(fp[upper - 1]), f64::from(fp[upper]));
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

/// Sharpens (`amount > 0`, with `mode`'s 3×3 filter) or median-blurs (`amount < 0`, one 5×5
/// pass per 10 units, the remainder blended) a float image: DFL's `blursharpen`.
///
/// # Errors
/// OpenCV's error.
pub fn blursharpen(image: &Mat, mode: SharpenMode, amount: i32) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    let amount_f = f64::from(amount);
    match (mode, amount) {
        (_, 0) | (SharpenMode::None, 1..) => return image.try_clone(),
        (SharpenMode::Box, 1..) => {
            // δ + (δ − box)·amount
            let mut kernel = Mat::new_rows_cols_with_default(3, 3, CV_32F, Scalar::all(0.0))?;
            for y in 0..3 {
                for x in 0..3 {
                    let delta = if (x, y) == (1, 1) { 1.0 } else { 0.0 };
                    *kernel.at_2d_mut::<f32>(y, x)? =
                        (delta + (delta - 1.0 / 9.0) * amount_f) as f32;
                }
            }
            imgproc::filter_2d_def(image, &mut out, -1, &kernel)?;
        }
        (SharpenMode::Gaussian, 1..) => {
            let mut blur = Mat::default();
            imgproc::gaussian_blur_def(image, &mut blur, Size::new(3, 3), 0.0)?;
            core::add_weighted_def(
                image,
                1.0 + 0.5 * amount_f,
                &blur,
                -0.5 * amount_f,
                0.0,
                &mut out,
            )?;
        }
        (_, _) => {
            out = image.try_clone()?;
            let mut n = -amount;
            while n > 0 {
                let mut blurred = Mat::default();
                imgproc::median_blur(&out, &mut blurred, 5)?;
                if n / 10 != 0 {
                    out = blurred;
                } else {
                    let power = f64::from(n % 10) / 10.0;
                    let mut mixed = Mat::default();
                    core::add_weighted_def(&out, 1.0 - power, &blurred, power, 0.0, &mut mixed)?;
                    out = mixed;
                }
                n = (n - 10).max(0);
            }
        }
    }
    Ok(out)
}

/// The binary mask DFL gives `seamlessClone`: pixels of the soft mask above the lowest level
/// i/10 (i = 1…9) that any pixel exceeds become 255, the rest 0. `None` for an empty mask.
///
/// # Shapes
/// `mask`: `CV_32FC1`. Output: `CV_8UC1`, same size.
///
/// # Errors
/// OpenCV's error.
pub fn seamless_mask(mask: &Mat) -> opencv::Result<Option<Mat>> {
    let mut max = 0.0;
    core::min_max_loc(mask, None, Some(&mut max), None, None, &core::no_array())?;
    let Some(level) = (1..10).map(|i| f64::from(i) / 10.0).find(|&l| max > l) else {
        return Ok(None);
    };
    let (mut binary, mut out) = (Mat::default(), Mat::default());
    imgproc::threshold(mask, &mut binary, level, 255.0, imgproc::THRESH_BINARY)?;
    binary.convert_to_def(&mut out, core::CV_8U)?;
    Ok(Some(out))
}

/// Poisson-clones `face` into `background` where `mask` (u8) is set, centred where the mask's
/// bounding box is (`cv2.seamlessClone(..., NORMAL_CLONE)` on 8-bit images, as DFL does).
///
/// # Shapes
/// `face`, `background`: `CV_32FC3` in [0, 1], same size; `mask`: `CV_8UC1`, same size.
///
/// # Errors
/// OpenCV's error (seamlessClone refuses masks that touch the image border).
pub fn seamless_clone(face: &Mat, background: &Mat, mask: &Mat) -> opencv::Result<Mat> {
    let to_u8 = |m: &Mat| -> opencv::Result<Mat> {
        let mut out = Mat::default();
        m.convert_to(&mut out, core::CV_8U, 255.0, 0.0)?;
        Ok(out)
    };
    let bbox = imgproc::bounding_rect(mask)?;
    let centre = Point::new(bbox.x + bbox.width / 2, bbox.y + bbox.height / 2);
    let mut cloned = Mat::default();
    opencv::photo::seamless_clone(
        &to_u8(face)?,
        &to_u8(background)?,
        mask,
        centre,
        &mut cloned,
        opencv::photo::NORMAL_CLONE,
    )?;
    let mut out = Mat::default();
    cloned.convert_to(&mut out, CV_32F, 1.0 / 255.0, 0.0)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f32) -> Mat {
        let data: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| (0..3).map(move |c| (x, y, c))))
            .map(|(x, y, c)| f(x, y, c))
            .collect();
        mat_from_bgr_f32(&data, w, h).unwrap()
    }

    fn sorted_channel(m: &Mat, c: usize) -> Vec<f32> {
        let mut v: Vec<f32> = bgr_f32_from_mat(m).unwrap().into_iter().skip(c).step_by(3).collect();
        v.sort_by(f32::total_cmp);
        v
    }

    #[test]
    fn hist_match_at_255_gives_the_template_histogram_and_keeps_the_order() {
        // src: a horizontal ramp; template: a different distribution per channel.
        let src = image(16, 16, |x, y, _| (x * 16 + y) as f32 / 256.0);
        let template =
            image(16, 16, |x, y, c| ((x * 16 + y) as f32 / 256.0).powi(c as i32 + 2) * 0.5 + 0.2);
        let out = color_hist_match(&src, &template, 255).unwrap();
        for c in 0..3 {
            let (a, b) = (sorted_channel(&out, c), sorted_channel(&template, c));
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "channel {c}: {worst}");
        }
        // Monotone: the brightest src pixel is the brightest output pixel.
        let o = bgr_f32_from_mat(&out).unwrap();
        assert!(o[255 * 3] > o[0]);
    }

    #[test]
    fn a_lower_threshold_maps_onto_darker_template_values() {
        let src = image(8, 8, |x, y, _| (x * 8 + y) as f32 / 64.0);
        let template = image(8, 8, |x, y, _| (y * 8 + x) as f32 / 64.0);
        let mean = |m: &Mat| core::mean_def(m).unwrap()[0];
        let full = color_hist_match(&src, &template, 255).unwrap();
        let low = color_hist_match(&src, &template, 200).unwrap();
        assert!(mean(&low) < mean(&full) - 0.05, "{} vs {}", mean(&low), mean(&full));
    }

    fn laplacian_energy(m: &Mat) -> f64 {
        let mut lap = Mat::default();
        imgproc::laplacian_def(m, &mut lap, CV_32F).unwrap();
        let mut sq = Mat::default();
        core::multiply_def(&lap, &lap, &mut sq).unwrap();
        core::sum_elems(&sq).unwrap()[0]
    }

    #[test]
    fn sharpening_adds_edge_energy_and_negative_amounts_blur() {
        let img = image(32, 32, |x, y, c| if (x / 4 + y / 4 + c) % 2 == 0 { 0.3 } else { 0.6 });
        let base = laplacian_energy(&img);
        for mode in [SharpenMode::Box, SharpenMode::Gaussian] {
            let sharp = blursharpen(&img, mode, 2).unwrap();
            assert!(laplacian_energy(&sharp) > base * 1.5, "{mode:?}");
        }
        // Median passes remove single-pixel detail.
        let fine = image(32, 32, |x, y, c| ((x * 7919 + y * 104_729 + c * 31) % 97) as f32 / 97.0);
        let blurred = blursharpen(&fine, SharpenMode::None, -25).unwrap();
        assert!(laplacian_energy(&blurred) < laplacian_energy(&fine) * 0.2);
        assert_eq!(laplacian_energy(&blursharpen(&img, SharpenMode::Box, 0).unwrap()), base);
        assert_eq!(laplacian_energy(&blursharpen(&img, SharpenMode::None, 30).unwrap()), base);
    }

    #[test]
    fn seamless_clone_keeps_the_face_detail_but_takes_the_background_level() {
        // The face is the background brightened by 0.3 with a dark dot; the clone keeps the dot
        // (a gradient) and drops the offset (matched to the boundary).
        let bg = image(48, 48, |_, _, _| 0.4);
        let face = image(48, 48, |x, y, _| if (x, y) == (24, 24) { 0.2 } else { 0.7 });
        let mut soft =
            Mat::new_rows_cols_with_default(48, 48, core::CV_32FC1, Scalar::all(0.0)).unwrap();
        Mat::roi_mut(&mut soft, core::Rect::new(12, 12, 24, 24))
            .unwrap()
            .set_to(&Scalar::all(1.0), &core::no_array())
            .unwrap();
        let mask = seamless_mask(&soft).unwrap().expect("a mask");
        let out = seamless_clone(&face, &bg, &mask).unwrap();
        let px = |x, y| out.at_2d::<core::Vec3f>(y, x).unwrap()[1];
        assert!(
            (px(20, 20) - 0.4).abs() < 0.03,
            "inside takes the background level: {}",
            px(20, 20)
        );
        assert!(px(24, 24) < px(20, 20) - 0.2, "the dot stays darker");
        assert!((px(2, 2) - 0.4).abs() < 1e-6, "outside is the background");
        assert!(
            seamless_mask(&Mat::zeros(4, 4, core::CV_32FC1).unwrap().to_mat().unwrap())
                .unwrap()
                .is_none()
        );
    }
}
