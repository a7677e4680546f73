//! The merge mask in face space: chosen by mask mode, cleaned, brought to 4R and eroded/blurred
//! there (DFL `merger/MergeMasked.py`; `docs/dfl-parity.md`, "Merge").

use opencv::core::{self, BORDER_CONSTANT, CV_32FC1, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::config::MaskMode;
use crate::face::landmarks::Landmarks68;
use crate::face::masks::hull_mask;

/// Mask values below this are noise and become 0 (DFL: 1/255).
pub const MASK_NOISE: f32 = 1.0 / 255.0;
/// The mask is processed at this many times the model resolution (DFL's `mask_subres_size`).
pub const MASK_SUBRES: i32 = 4;

/// The masks a face's prediction brings, at the model resolution R.
///
/// # Shapes
/// Each is `[R, R]` `CV_32FC1` in [0, 1].
pub struct MaskSources<'a> {
    /// The mask the src path predicts for the swap (`learned-prd`).
    pub prd: &'a Mat,
    /// The mask dst's own path predicts (`learned-dst`).
    pub dst: &'a Mat,
    /// The 68 dst landmarks in the R×R crop (for the hull mask).
    pub landmarks: &'a Landmarks68,
    /// XSeg on the swapped face, when the mode needs it.
    pub xseg_prd: Option<&'a Mat>,
    /// The dst face's XSeg mask, when the mode needs it.
    pub xseg_dst: Option<&'a Mat>,
}

/// Returns the working mask of `mode`, R×R `CV_32FC1` in [0, 1].
///
/// # Errors
/// OpenCV's error.
pub fn working_mask(mode: MaskMode, sources: &MaskSources<'_>) -> opencv::Result<Mat> {
    let r = sources.prd.rows();
    let mut out = Mat::default();
    match mode {
        MaskMode::Full => return Mat::new_rows_cols_with_default(r, r, CV_32FC1, Scalar::all(1.0)),
        MaskMode::Dst => return hull_mask(r, sources.landmarks),
        MaskMode::LearnedPrd => return sources.prd.try_clone(),
        MaskMode::LearnedDst => return sources.dst.try_clone(),
        MaskMode::LearnedPrdTimesDst => {
            core::multiply(sources.prd, sources.dst, &mut out, 1.0, -1)?;
        }
        MaskMode::LearnedPrdPlusDst => {
            core::add(sources.prd, sources.dst, &mut out, &core::no_array(), -1)?;
        }
        MaskMode::XsegPrd => return need(sources.xseg_prd, "xseg-prd")?.try_clone(),
        MaskMode::XsegDst => return need(sources.xseg_dst, "xseg-dst")?.try_clone(),
        MaskMode::XsegPrdTimesDst => {
            let (prd, dst) =
                (need(sources.xseg_prd, "xseg-prd")?, need(sources.xseg_dst, "xseg-dst")?);
            core::multiply(prd, dst, &mut out, 1.0, -1)?;
        }
        MaskMode::LearnedTimesXseg => {
            let (prd, dst) =
                (need(sources.xseg_prd, "xseg-prd")?, need(sources.xseg_dst, "xseg-dst")?);
            let (mut learned, mut xseg) = (Mat::default(), Mat::default());
            core::multiply(sources.prd, sources.dst, &mut learned, 1.0, -1)?;
            core::multiply(prd, dst, &mut xseg, 1.0, -1)?;
            core::multiply(&learned, &xseg, &mut out, 1.0, -1)?;
        }
    }
    clip_unit(&out)
}

/// The XSeg mask a mode reads; the run computes every mask its mode needs, so a missing one is
/// a bug, reported rather than replaced.
fn need<'a>(mask: Option<&'a Mat>, name: &str) -> opencv::Result<&'a Mat> {
    mask.ok_or_else(|| {
        opencv::Error::new(core::StsError, format!("the {name} mask was not computed"))
    })
}

/// DFL steps 9–10: zeroes noise, resizes the R×R working mask to 4R (cubic) and, unless
/// `raw`, erodes (`erode > 0`) or dilates (`erode < 0`) it by `|erode|` pixels, keeps it
/// `blur/2` pixels inside the square and blurs it with a `blur`-pixel Gaussian, all in 4R
/// pixels. Returns the 4R×4R mask (clipped to [0, 1] unless `raw`).
///
/// The zero border of `blur/2` makes the blurred fade reach 0 inside the predicted square, so
/// no hard square edge shows in the frame.
///
/// # Errors
/// OpenCV's error.
pub fn refine(working: &Mat, erode: i32, blur: i32, raw: bool) -> opencv::Result<Mat> {
    let r = working.rows();
    let mut clean = Mat::default();
    imgproc::threshold(working, &mut clean, f64::from(MASK_NOISE), 0.0, imgproc::THRESH_TOZERO)?;
    let side = r * MASK_SUBRES;
    let mut big = Mat::default();
    imgproc::resize(&clean, &mut big, Size::new(side, side), 0.0, 0.0, imgproc::INTER_CUBIC)?;
    if raw {
        return Ok(big);
    }
    if erode == 0 && blur == 0 {
        // Padding by R and zeroing R pixels of border would remove exactly the padding.
        return clip_unit(&big);
    }
    let mut padded = Mat::default();
    core::copy_make_border(&big, &mut padded, r, r, r, r, BORDER_CONSTANT, Scalar::all(0.0))?;
    if erode != 0 {
        let k = erode.abs();
        let kernel = imgproc::get_structuring_element(
            imgproc::MORPH_ELLIPSE,
            Size::new(k, k),
            Point::new(-1, -1),
        )?;
        let mut out = Mat::default();
        let (anchor, border) = (Point::new(-1, -1), imgproc::morphology_default_border_value()?);
        if erode > 0 {
            imgproc::erode(&padded, &mut out, &kernel, anchor, 1, BORDER_CONSTANT, border)?;
        } else {
            imgproc::dilate(&padded, &mut out, &kernel, anchor, 1, BORDER_CONSTANT, border)?;
        }
        padded = out;
    }
    zero_border(&mut padded, r + blur / 2)?;
    if blur > 0 {
        let k = blur + (1 - blur % 2);
        let mut out = Mat::default();
        imgproc::gaussian_blur_def(&padded, &mut out, Size::new(k, k), 0.0)?;
        padded = out;
    }
    let inner = Mat::roi(&padded, Rect::new(r, r, side, side))?.try_clone()?;
    clip_unit(&inner)
}

/// Sets a border of `width` pixels on every side to 0 (everything when it meets in the middle).
fn zero_border(mask: &mut Mat, width: i32) -> opencv::Result<()> {
    let (rows, cols) = (mask.rows(), mask.cols());
    let w = width.clamp(0, rows.max(cols));
    let strips = [
        Rect::new(0, 0, cols, w.min(rows)),
        Rect::new(0, (rows - w).max(0), cols, w.min(rows)),
        Rect::new(0, 0, w.min(cols), rows),
        Rect::new((cols - w).max(0), 0, w.min(cols), rows),
    ];
    for strip in strips {
        if strip.width > 0 && strip.height > 0 {
            Mat::roi_mut(mask, strip)?.set_to(&Scalar::all(0.0), &core::no_array())?;
        }
    }
    Ok(())
}

/// Clips a single-channel float mask to [0, 1] (NaN-free input assumed).
pub fn clip_unit(mask: &Mat) -> opencv::Result<Mat> {
    let (mut low, mut out) = (Mat::default(), Mat::default());
    imgproc::threshold(mask, &mut low, 1.0, 1.0, imgproc::THRESH_TRUNC)?;
    imgproc::threshold(&low, &mut out, 0.0, 0.0, imgproc::THRESH_TOZERO)?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn disc(r: i32, radius: f64) -> Mat {
        let mut m = Mat::zeros(r, r, CV_32FC1).unwrap().to_mat().unwrap();
        let c = f64::from(r) / 2.0;
        for y in 0..r {
            for x in 0..r {
                let d = (f64::from(x) + 0.5 - c).hypot(f64::from(y) + 0.5 - c);
                *m.at_2d_mut::<f32>(y, x).unwrap() = if d < radius { 1.0 } else { 0.0 };
            }
        }
        m
    }

    fn sum(m: &Mat) -> f64 {
        core::sum_elems(m).unwrap()[0]
    }

    fn at(m: &Mat, y: i32, x: i32) -> f32 {
        *m.at_2d::<f32>(y, x).unwrap()
    }

    #[test]
    fn each_mode_picks_its_mask() {
        let prd = Mat::new_rows_cols_with_default(16, 16, CV_32FC1, Scalar::all(0.5)).unwrap();
        let dst = disc(16, 5.0);
        let landmarks = Landmarks68::new([[8.0f32, 8.0]; 68]);
        let xseg_prd = Mat::new_rows_cols_with_default(16, 16, CV_32FC1, Scalar::all(0.8)).unwrap();
        let xseg_dst = disc(16, 3.0);
        let s = MaskSources {
            prd: &prd,
            dst: &dst,
            landmarks: &landmarks,
            xseg_prd: Some(&xseg_prd),
            xseg_dst: Some(&xseg_dst),
        };
        let value = |mode, y, x| at(&working_mask(mode, &s).unwrap(), y, x);
        assert_eq!(value(MaskMode::Full, 0, 0), 1.0);
        assert_eq!(value(MaskMode::LearnedPrd, 0, 0), 0.5);
        assert_eq!(value(MaskMode::LearnedDst, 0, 0), 0.0);
        assert_eq!(value(MaskMode::LearnedDst, 8, 8), 1.0);
        assert_eq!(value(MaskMode::LearnedPrdTimesDst, 8, 8), 0.5);
        assert_eq!(value(MaskMode::LearnedPrdTimesDst, 0, 0), 0.0);
        assert_eq!(value(MaskMode::LearnedPrdPlusDst, 8, 8), 1.0);
        assert_eq!(value(MaskMode::LearnedPrdPlusDst, 0, 0), 0.5);
        assert_eq!(value(MaskMode::XsegPrd, 0, 0), 0.8);
        assert_eq!(value(MaskMode::XsegDst, 8, 8), 1.0);
        assert_eq!(value(MaskMode::XsegDst, 8, 12), 0.0, "outside the smaller xseg disc");
        assert_eq!(value(MaskMode::XsegPrdTimesDst, 8, 8), 0.8);
        assert_eq!(value(MaskMode::LearnedTimesXseg, 8, 8), 0.5 * 0.8);
        assert_eq!(value(MaskMode::LearnedTimesXseg, 8, 12), 0.0);
        let without = MaskSources { xseg_prd: None, xseg_dst: None, ..s };
        assert!(working_mask(MaskMode::XsegDst, &without).is_err(), "never a silent stand-in");
    }

    /// 68 points laid out like a frontal face of "radius" `r` centred at (cx, cy): jaw from
    /// temple to temple under the centre, brows, nose, eyes and mouth in their iBUG slots.
    pub(crate) fn synthetic_landmarks(cx: f32, cy: f32, r: f32) -> Landmarks68 {
        let mut p = Vec::with_capacity(68);
        let ring = |p: &mut Vec<[f32; 2]>, n: usize, x: f32, y: f32, rx: f32, ry: f32| {
            for i in 0..n {
                let a = i as f32 / n as f32 * std::f32::consts::TAU;
                p.push([x + rx * a.cos(), y + ry * a.sin()]);
            }
        };
        for i in 0..17 {
            let a = std::f32::consts::PI * (1.0 - i as f32 / 16.0);
            p.push([cx + r * a.cos(), cy + r * a.sin()]);
        }
        for i in 0..10 {
            let x = if i < 5 { -0.8 + 0.15 * i as f32 } else { 0.2 + 0.15 * (i - 5) as f32 };
            p.push([cx + r * x, cy - 0.5 * r]);
        }
        for i in 0..4 {
            p.push([cx, cy + r * (-0.4 + 0.15 * i as f32)]);
        }
        for i in 0..5 {
            p.push([cx + r * (-0.2 + 0.1 * i as f32), cy + 0.2 * r]);
        }
        ring(&mut p, 6, cx - 0.4 * r, cy - 0.3 * r, 0.12 * r, 0.06 * r);
        ring(&mut p, 6, cx + 0.4 * r, cy - 0.3 * r, 0.12 * r, 0.06 * r);
        ring(&mut p, 12, cx, cy + 0.55 * r, 0.3 * r, 0.1 * r);
        ring(&mut p, 8, cx, cy + 0.55 * r, 0.2 * r, 0.05 * r);
        Landmarks68::from_points(&p).expect("68 finite points")
    }

    #[test]
    fn the_dst_mode_is_the_landmark_hull() {
        let landmarks = synthetic_landmarks(32.0, 32.0, 20.0);
        assert_eq!(landmarks.len(), 68);
        let zero = Mat::zeros(64, 64, CV_32FC1).unwrap().to_mat().unwrap();
        let s = MaskSources {
            prd: &zero,
            dst: &zero,
            landmarks: &landmarks,
            xseg_prd: None,
            xseg_dst: None,
        };
        let m = working_mask(MaskMode::Dst, &s).unwrap();
        assert_eq!(at(&m, 32, 32), 1.0, "the face centre");
        assert_eq!(at(&m, 32 + 18, 32), 1.0, "the chin");
        assert_eq!(at(&m, 32 - 12, 32), 1.0, "the forehead between the brows");
        assert_eq!(at(&m, 32, 32 + 24), 0.0, "beside the face");
        assert_eq!(at(&m, 2, 2), 0.0);
    }

    #[test]
    fn erode_shrinks_dilate_grows_and_blur_fades_inside_the_square() {
        let base = disc(32, 10.0);
        let plain = refine(&base, 0, 0, false).unwrap();
        assert_eq!(plain.rows(), 128);
        let eroded = refine(&base, 20, 0, false).unwrap();
        let dilated = refine(&base, -20, 0, false).unwrap();
        assert!(sum(&eroded) < sum(&plain) * 0.8, "{} vs {}", sum(&eroded), sum(&plain));
        assert!(sum(&dilated) > sum(&plain) * 1.2);
        // Radius 40 px at 4R: eroding by a 20-px kernel takes ~10 px off the radius.
        assert!(at(&eroded, 64, 64 + 28) > 0.95);
        assert_eq!(at(&eroded, 64, 64 + 33), 0.0);

        let blurred = refine(&base, 0, 41, false).unwrap();
        let edge = at(&blurred, 64, 64 + 40);
        assert!(edge > 0.2 && edge < 0.8, "the edge is soft: {edge}");
        // A full mask blurred fades to exactly 0 at the square's border.
        let full = Mat::new_rows_cols_with_default(32, 32, CV_32FC1, Scalar::all(1.0)).unwrap();
        let faded = refine(&full, 0, 41, false).unwrap();
        assert!(at(&faded, 0, 64) < 1e-3 && at(&faded, 64, 127) < 1e-3);
        assert!(at(&faded, 64, 64) > 0.99);
    }

    #[test]
    fn noise_below_one_level_is_removed() {
        let faint = Mat::new_rows_cols_with_default(8, 8, CV_32FC1, Scalar::all(0.002)).unwrap();
        assert_eq!(sum(&refine(&faint, 0, 0, false).unwrap()), 0.0);
    }
}
