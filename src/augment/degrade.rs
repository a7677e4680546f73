//! Random image degradations for XSeg's training samples (`docs/xseg.md`, "Training"): colour
//! levels and HSV jitter, sharpening, motion and Gaussian blur, down-and-up resizing, JPEG
//! artefacts and flares. Each one is applied inside a random soft circle, so one face gets
//! several kinds of damage at once, as footage does. DFL: `core/imagelib/filters.py`,
//! `core/imagelib/blursharpen.py`, `core/imagelib/sd/draw.py`.
//!
//! Images are BGR `CV_32FC3` in `[0, 1]`; masks `CV_32FC1` in `[0, 1]`.

use opencv::core::{self, Mat, Scalar, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;

/// Blends `changed` into `img` where `mask` is 1: `img·(1 − m) + changed·m`.
///
/// # Errors
/// OpenCV's error.
pub fn blend_masked(img: &Mat, changed: &Mat, mask: &Mat) -> opencv::Result<Mat> {
    let m = to_channels(mask, img.channels())?;
    let mut inv = Mat::default();
    core::subtract(&Scalar::all(1.0), &m, &mut inv, &core::no_array(), -1)?;
    let (mut a, mut b, mut out) = (Mat::default(), Mat::default(), Mat::default());
    core::multiply(img, &inv, &mut a, 1.0, -1)?;
    core::multiply(changed, &m, &mut b, 1.0, -1)?;
    core::add(&a, &b, &mut out, &core::no_array(), -1)?;
    Ok(out)
}

/// Repeats a one-channel mask to `channels` channels.
///
/// # Errors
/// OpenCV's error.
pub fn to_channels(mask: &Mat, channels: i32) -> opencv::Result<Mat> {
    if mask.channels() == channels {
        return mask.try_clone();
    }
    let mut planes = Vector::<Mat>::new();
    for _ in 0..channels {
        planes.push(mask.try_clone()?);
    }
    let mut out = Mat::default();
    core::merge(&planes, &mut out)?;
    Ok(out)
}

/// A random soft circle on a `side`² canvas: 1 inside radius `a`, fading linearly to 0 over a
/// further `b` pixels, with the centre, `a` and `b` drawn uniformly.
///
/// # Errors
/// OpenCV's error.
pub fn random_circle_faded(rng: &mut impl Rng, side: i32) -> opencv::Result<Mat> {
    let fade_start = rng.random_range(0..side);
    let fade_len = rng.random_range(0..(side - fade_start).max(1)).max(1);
    let (cy, cx) = (rng.random_range(0..side), rng.random_range(0..side));
    let mut out = Mat::new_rows_cols_with_default(side, side, core::CV_32FC1, Scalar::all(0.0))?;
    for y in 0..side {
        let row = out.at_row_mut::<f32>(y)?;
        for (x, v) in row.iter_mut().enumerate() {
            let d = f64::from((x as i32 - cx).pow(2) + (y - cy).pow(2)).sqrt();
            *v = (1.0 - (d - f64::from(fade_start)) / f64::from(fade_len)).clamp(0.0, 1.0) as f32;
        }
    }
    Ok(out)
}

/// Random per-channel levels: input black/white points, gamma, output black/white points.
///
/// # Errors
/// OpenCV's error.
pub fn random_rgb_levels(rng: &mut impl Rng, img: &Mat, mask: Option<&Mat>) -> opencv::Result<Mat> {
    let mut draw =
        |f: &dyn Fn(f64) -> f64| -> [f64; 3] { std::array::from_fn(|_| f(rng.random::<f64>())) };
    let in_black = draw(&|r| r * 0.25);
    let in_white = draw(&|r| 1.0 - r * 0.25);
    let gamma = draw(&|r| 0.5 + r);
    let out_black = draw(&|r| r * 0.25);
    let out_white = draw(&|r| 1.0 - r * 0.25);
    let mut result = img.try_clone()?;
    for px in result.data_typed_mut::<core::Vec3f>()? {
        for (c, v) in px.0.iter_mut().enumerate() {
            let x = ((f64::from(*v) - in_black[c]) / (in_white[c] - in_black[c])).clamp(0.0, 1.0);
            let x = x.powf(1.0 / gamma[c]) * (out_white[c] - out_black[c]) + out_black[c];
            *v = x.clamp(0.0, 1.0) as f32;
        }
    }
    masked(img, result, mask)
}

/// A random full HSV shift: hue turned by 0–359°, saturation and value moved by ±0.5.
///
/// # Errors
/// OpenCV's error.
pub fn random_hsv_shift(rng: &mut impl Rng, img: &Mat, mask: Option<&Mat>) -> opencv::Result<Mat> {
    let hue = f64::from(rng.random_range(0..360));
    let sat = rng.random::<f64>() - 0.5;
    let val = rng.random::<f64>() - 0.5;
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(img, &mut hsv, imgproc::COLOR_BGR2HSV)?;
    for px in hsv.data_typed_mut::<core::Vec3f>()? {
        px.0[0] = ((f64::from(px.0[0]) + hue) % 360.0) as f32;
        px.0[1] = (f64::from(px.0[1]) + sat).clamp(0.0, 1.0) as f32;
        px.0[2] = (f64::from(px.0[2]) + val).clamp(0.0, 1.0) as f32;
    }
    let mut result = Mat::default();
    imgproc::cvt_color_def(&hsv, &mut result, imgproc::COLOR_HSV2BGR)?;
    masked(img, clip_unit(&result)?, mask)
}

/// With `chance` percent: sharpens with a box (amount 0–9) or Gaussian (amount 0–49) unsharp
/// kernel of 1–`max_kernel` taps (made odd).
///
/// # Errors
/// OpenCV's error.
pub fn random_sharpen(
    rng: &mut impl Rng,
    img: &Mat,
    chance: u32,
    max_kernel: i32,
    mask: Option<&Mat>,
) -> opencv::Result<Mat> {
    let kernel = rng.random_range(0..max_kernel) + 1;
    if rng.random_range(0..100) >= chance {
        return img.try_clone();
    }
    let k = kernel | 1;
    let result = if rng.random_range(0..2) == 0 {
        let amount = f64::from(rng.random_range(0..10));
        // δ + (δ − box)·amount
        let n = f64::from(k * k);
        let mut kern =
            Mat::new_rows_cols_with_default(k, k, core::CV_32FC1, Scalar::all(-amount / n))?;
        *kern.at_2d_mut::<f32>(k / 2, k / 2)? += (1.0 + amount) as f32;
        let mut out = Mat::default();
        imgproc::filter_2d_def(img, &mut out, -1, &kern)?;
        out
    } else {
        let amount = f64::from(rng.random_range(0..50));
        let mut blur = Mat::default();
        imgproc::gaussian_blur_def(img, &mut blur, Size::new(k, k), 0.0)?;
        let mut out = Mat::default();
        core::add_weighted_def(img, 1.0 + 0.5 * amount, &blur, -0.5 * amount, 0.0, &mut out)?;
        out
    };
    masked(img, result, mask)
}

/// With `chance` percent: a linear motion blur of 1–`max_size` pixels at a random angle.
///
/// # Errors
/// OpenCV's error.
pub fn random_motion_blur(
    rng: &mut impl Rng,
    img: &Mat,
    chance: u32,
    max_size: i32,
    mask: Option<&Mat>,
) -> opencv::Result<Mat> {
    let size = rng.random_range(0..max_size) + 1;
    let angle = f64::from(rng.random_range(0..360));
    if rng.random_range(0..100) >= chance {
        return img.try_clone();
    }
    let mut line = Mat::new_rows_cols_with_default(size, size, core::CV_32FC1, Scalar::all(0.0))?;
    for x in 0..size {
        *line.at_2d_mut::<f32>((size - 1) / 2, x)? = 1.0;
    }
    let c = f64::from(size) / 2.0 - 0.5;
    let rot = imgproc::get_rotation_matrix_2d(core::Point2f::new(c as f32, c as f32), angle, 1.0)?;
    let mut kern = Mat::default();
    imgproc::warp_affine_def(&line, &mut kern, &rot, Size::new(size, size))?;
    let sum = core::sum_elems(&kern)?[0];
    if sum <= 0.0 {
        return img.try_clone();
    }
    let mut normalised = Mat::default();
    kern.convert_to(&mut normalised, core::CV_32F, 1.0 / sum, 0.0)?;
    let mut out = Mat::default();
    imgproc::filter_2d_def(img, &mut out, -1, &normalised)?;
    masked(img, out, mask)
}

/// With `chance` percent: a Gaussian blur of kernel 1, 3, … `2·max_kernel − 1`.
///
/// # Errors
/// OpenCV's error.
pub fn random_gaussian_blur(
    rng: &mut impl Rng,
    img: &Mat,
    chance: u32,
    max_kernel: i32,
    mask: Option<&Mat>,
) -> opencv::Result<Mat> {
    if rng.random_range(0..100) >= chance {
        return img.try_clone();
    }
    let k = rng.random_range(0..max_kernel) * 2 + 1;
    let mut out = Mat::default();
    imgproc::gaussian_blur_def(img, &mut out, Size::new(k, k), 0.0)?;
    masked(img, out, mask)
}

/// With `chance` percent: shrinks by up to `max_percent` % and scales back with
/// `interpolation` (nearest or linear), losing detail as low-resolution footage does.
///
/// # Errors
/// OpenCV's error.
pub fn random_resize(
    rng: &mut impl Rng,
    img: &Mat,
    chance: u32,
    max_percent: u32,
    interpolation: i32,
    mask: Option<&Mat>,
) -> opencv::Result<Mat> {
    if rng.random_range(0..100) >= chance {
        return img.try_clone();
    }
    let t = rng.random::<f64>();
    let shrink =
        |side: i32| (side - (t * f64::from(side * max_percent as i32 / 100)) as i32).max(1);
    let (w, h) = (img.cols(), img.rows());
    let (mut small, mut out) = (Mat::default(), Mat::default());
    imgproc::resize(img, &mut small, Size::new(shrink(w), shrink(h)), 0.0, 0.0, interpolation)?;
    imgproc::resize(&small, &mut out, Size::new(w, h), 0.0, 0.0, interpolation)?;
    masked(img, out, mask)
}

/// With `chance` percent: a JPEG round trip at quality 10–100.
///
/// # Errors
/// OpenCV's error.
pub fn random_jpeg(
    rng: &mut impl Rng,
    img: &Mat,
    chance: u32,
    mask: Option<&Mat>,
) -> opencv::Result<Mat> {
    if rng.random_range(0..100) >= chance {
        return img.try_clone();
    }
    let quality = rng.random_range(10..=100);
    let mut bytes8 = Mat::default();
    img.convert_to(&mut bytes8, core::CV_8U, 255.0, 0.0)?;
    let mut encoded = Vector::<u8>::new();
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
    imgcodecs::imencode(".jpg", &bytes8, &mut encoded, &params)?;
    let decoded = imgcodecs::imdecode(&encoded, imgcodecs::IMREAD_UNCHANGED)?;
    let mut out = Mat::default();
    decoded.convert_to(&mut out, core::CV_32F, 1.0 / 255.0, 0.0)?;
    masked(img, out, mask)
}

/// Adds a wide Gaussian glow of the part of `img` under `region`: `img + G_k(img·region)`,
/// `k` odd in `[side/4, side)`. Light spilling over the face or from the background.
///
/// # Errors
/// OpenCV's error.
pub fn random_flare(rng: &mut impl Rng, img: &Mat, region: &Mat) -> opencv::Result<Mat> {
    let side = img.rows();
    let k = rng.random_range(side / 4..side.max(side / 4 + 1));
    let k = k - k % 2 + 1;
    let (mut lit, mut glow, mut out) = (Mat::default(), Mat::default(), Mat::default());
    core::multiply(img, &to_channels(region, img.channels())?, &mut lit, 1.0, -1)?;
    imgproc::gaussian_blur_def(&lit, &mut glow, Size::new(k, k), 0.0)?;
    core::add(img, &glow, &mut out, &core::no_array(), -1)?;
    Ok(out)
}

/// Clips to `[0, 1]`.
///
/// # Errors
/// OpenCV's error.
pub fn clip_unit(img: &Mat) -> opencv::Result<Mat> {
    let (mut low, mut out) = (Mat::default(), Mat::default());
    core::max(img, &Scalar::all(0.0), &mut low)?;
    core::min(&low, &Scalar::all(1.0), &mut out)?;
    Ok(out)
}

fn masked(img: &Mat, result: Mat, mask: Option<&Mat>) -> opencv::Result<Mat> {
    match mask {
        Some(m) => blend_masked(img, &result, m),
        None => Ok(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn grey(side: i32, v: f64) -> Mat {
        Mat::new_rows_cols_with_default(side, side, core::CV_32FC3, Scalar::all(v)).unwrap()
    }

    fn max_abs_diff(a: &Mat, b: &Mat) -> f64 {
        let mut d = Mat::default();
        core::absdiff(a, b, &mut d).unwrap();
        let mut max = 0.0;
        core::min_max_loc(
            &d.reshape(1, 0).unwrap(),
            None,
            Some(&mut max),
            None,
            None,
            &core::no_array(),
        )
        .unwrap();
        max
    }

    #[test]
    fn a_zero_mask_changes_nothing_and_a_full_mask_everything() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let img = grey(32, 0.4);
        let zero =
            Mat::new_rows_cols_with_default(32, 32, core::CV_32FC1, Scalar::all(0.0)).unwrap();
        let one =
            Mat::new_rows_cols_with_default(32, 32, core::CV_32FC1, Scalar::all(1.0)).unwrap();
        for _ in 0..5 {
            let untouched = random_hsv_shift(&mut rng, &img, Some(&zero)).unwrap();
            assert_eq!(max_abs_diff(&untouched, &img), 0.0);
            let levels = random_rgb_levels(&mut rng, &img, Some(&one)).unwrap();
            let plain = levels.at_2d::<core::Vec3f>(5, 5).unwrap();
            assert!(plain.0.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn soft_circles_stay_in_the_unit_range_and_have_a_full_core() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let c = random_circle_faded(&mut rng, 24).unwrap();
            let (mut lo, mut hi) = (0.0, 0.0);
            core::min_max_loc(&c, Some(&mut lo), Some(&mut hi), None, None, &core::no_array())
                .unwrap();
            assert!(lo >= 0.0 && hi <= 1.0 && hi > 0.0, "{lo} {hi}");
        }
    }

    #[test]
    fn degradations_keep_the_size_and_range_and_change_a_textured_image() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut img = grey(48, 0.0);
        core::randu(&mut img, &Scalar::all(0.0), &Scalar::all(1.0)).unwrap();
        let lin = imgproc::INTER_LINEAR;
        let outs = [
            random_sharpen(&mut rng, &img, 100, 5, None).unwrap(),
            random_motion_blur(&mut rng, &img, 100, 5, None).unwrap(),
            random_gaussian_blur(&mut rng, &img, 100, 5, None).unwrap(),
            random_resize(&mut rng, &img, 100, 75, lin, None).unwrap(),
            random_jpeg(&mut rng, &img, 100, None).unwrap(),
        ];
        for out in &outs {
            assert_eq!((out.rows(), out.cols(), out.typ()), (48, 48, core::CV_32FC3));
        }
        assert!(outs.iter().filter(|o| max_abs_diff(o, &img) > 0.01).count() >= 4);
        let never = random_jpeg(&mut rng, &img, 0, None).unwrap();
        assert_eq!(max_abs_diff(&never, &img), 0.0, "chance 0 never degrades");
    }
}
