//! One face merged into its frame: DFL's `MergeMaskedFace` (`docs/dfl-parity.md`, "Merge").
//!
//! Everything happens in two spaces: the R×R face crop the network sees, and the frame. Only
//! the frame rectangle the crop covers is touched (a few pixels of margin for the cubic
//! kernel): pixels outside it are never read into floats or written back, so they stay
//! byte-identical, and a 720p frame costs what its face costs.

use opencv::core::{self, BORDER_CONSTANT, CV_32FC1, CV_32FC3, Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;

use super::blend::{blursharpen, color_hist_match, seamless_clone, seamless_mask};
use super::config::{BlendMode, MergeConfig, SharpenMode};
use super::mask::{MASK_NOISE, MASK_SUBRES, MaskSources, clip_unit, refine, working_mask};
use crate::color::{ColorError, Image, MergeColorTransfer, transfer_masked};
use crate::face::align::{Affine, apply, compose, invert};
use crate::face::landmarks::Landmarks68;
use crate::img::{bgr_f32_from_mat, mat_from_bgr_f32};

/// Pixels of margin around the pasted square, for the cubic kernel's reach.
const MARGIN_PX: i32 = 3;
/// DFL merges only when the mask's ≥ 0.1 region spans at least this many pixels each way.
const MIN_REGION_PX: i32 = 4;

/// What the network predicted for one dst face.
///
/// # Shapes
/// `face`: `[R, R]` `CV_32FC3` BGR in [0, 1]; `prd_mask`, `dst_mask`: `[R, R]` `CV_32FC1`.
#[derive(Debug)]
pub struct FacePrediction {
    /// The src face decoded from the dst code: the swap.
    pub face: Mat,
    /// The swap's mask (`learned-prd`).
    pub prd_mask: Mat,
    /// dst's own mask (`learned-dst`).
    pub dst_mask: Mat,
    /// XSeg on the swap (`xseg-prd`), when the mask mode needs it.
    pub xseg_prd: Option<Mat>,
    /// The dst face's XSeg mask in the crop (`xseg-dst`), when the mask mode needs it.
    pub xseg_dst: Option<Mat>,
}

/// A dst face ready to merge.
#[derive(Debug)]
pub struct DstFace {
    /// Frame → the R×R crop the network sees (model face type).
    pub face_mat: Affine,
    /// Frame → the R×R crop the prediction is pasted from (at the output face scale).
    pub output_mat: Affine,
    /// The frame through `face_mat`: `[R, R]` `CV_32FC3` in [0, 1].
    pub crop: Mat,
    /// The 68 dst landmarks in the crop.
    pub landmarks: Landmarks68,
    /// The mask `dfl xseg apply` wrote into the dst face file, brought into the crop
    /// (`[R, R]` `CV_32FC1`), when the mask mode needs it and the face has one.
    pub applied_xseg: Option<Mat>,
}

/// Where a merged face shows in its frame.
#[derive(Debug)]
pub struct MaskPatch {
    /// The frame rectangle the face touched.
    pub rect: Rect,
    /// The blend mask over `rect`: `CV_32FC1` in [0, 1].
    pub mask: Mat,
}

/// Errors of merging one face.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeFaceError {
    /// An OpenCV operation failed.
    #[error("image operation failed: {0}")]
    Cv(#[from] opencv::Error),
    /// Colour transfer refused its inputs.
    #[error(transparent)]
    Color(#[from] ColorError),
}

/// Merges `pred` into `frame` (`CV_8UC3`, changed in place) with `cfg`; `rng` drives the
/// random colour transfers (idt, sot). Returns the mask where the face went, or `None` when
/// the face is outside the frame or its mask is (nearly) empty, leaving the frame unchanged.
///
/// `cfg.mode` must not be [`BlendMode::RawPredict`], which replaces the frame (the caller's
/// job); [`BlendMode::Original`] computes the mask and leaves the pixels alone.
///
/// # Errors
/// OpenCV's error or a colour-transfer error.
pub fn merge_face(
    frame: &mut Mat,
    face: &DstFace,
    pred: &FacePrediction,
    cfg: &MergeConfig,
    rng: &mut impl Rng,
) -> Result<Option<MaskPatch>, MergeFaceError> {
    let r = pred.face.rows();
    let sources = MaskSources {
        prd: &pred.prd_mask,
        dst: &pred.dst_mask,
        landmarks: &face.landmarks,
        xseg_prd: pred.xseg_prd.as_ref(),
        xseg_dst: pred.xseg_dst.as_ref(),
    };
    let working = working_mask(cfg.mask_mode, &sources)?;
    let big = refine(&working, cfg.erode, cfg.blur, cfg.mode.is_raw())?;
    let Some(rect) = paste_rect(frame.size()?, &[face.face_mat, face.output_mat], r) else {
        return Ok(None);
    };
    let mask_mat = scaled(&face.output_mat, f64::from(MASK_SUBRES));
    let mut frame_mask = Mat::default();
    imgproc::threshold(
        &clip_unit(&warp_into(&big, &mask_mat, rect)?)?,
        &mut frame_mask,
        f64::from(MASK_NOISE),
        0.0,
        imgproc::THRESH_TOZERO,
    )?;
    let mut working_r = Mat::default();
    imgproc::resize(&big, &mut working_r, Size::new(r, r), 0.0, 0.0, imgproc::INTER_CUBIC)?;

    let mut bg = Mat::default();
    Mat::roi(frame, rect)?.convert_to(&mut bg, CV_32FC3, 1.0 / 255.0, 0.0)?;
    let out = match cfg.mode {
        BlendMode::Original | BlendMode::RawPredict => None,
        BlendMode::RawRgb => {
            let paste = warp_into(&pred.face, &face.output_mat, rect)?;
            let ones = Mat::new_rows_cols_with_default(r, r, CV_32FC1, Scalar::all(1.0))?;
            let square = clip_unit(&warp_into(&ones, &face.output_mat, rect)?)?;
            Some(alpha_blend(&bg, &paste, &square)?)
        }
        BlendMode::Overlay
        | BlendMode::HistMatch
        | BlendMode::Seamless
        | BlendMode::SeamlessHistMatch => {
            if !region_is_big_enough(&frame_mask)? {
                return Ok(None);
            }
            Some(blend_masked(&bg, face, pred, &working_r, &frame_mask, rect, cfg, rng)?)
        }
    };
    if let Some(out) = out {
        let mut bytes = Mat::default();
        out.convert_to(&mut bytes, core::CV_8UC3, 255.0, 0.0)?;
        bytes.copy_to(&mut Mat::roi_mut(frame, rect)?)?;
    }
    Ok(Some(MaskPatch { rect, mask: frame_mask }))
}

/// DFL steps 12.1–12.8 for the masked modes: colour transfer, histogram match, paste,
/// seamless clone, alpha blend, and the optional second pass in face space.
#[allow(clippy::too_many_arguments)]
fn blend_masked(
    bg: &Mat,
    face: &DstFace,
    pred: &FacePrediction,
    working: &Mat,
    frame_mask: &Mat,
    rect: Rect,
    cfg: &MergeConfig,
    rng: &mut impl Rng,
) -> Result<Mat, MergeFaceError> {
    let mask_values = mask_values(working)?;
    let ct = cfg.color_transfer;
    let mut prd = pred.face.try_clone()?;
    if !cfg.mode.is_seamless() && ct != MergeColorTransfer::None {
        prd = recolour(ct, &prd, &face.crop, &mask_values, rng)?;
    }
    if cfg.mode == BlendMode::HistMatch {
        // Outside the face area both images are white, so only the face is matched.
        let area = if cfg.masked_hist_match { Some(mask_values.as_slice()) } else { None };
        prd = color_hist_match(
            &whiten(&prd, area)?,
            &whiten(&face.crop, area)?,
            cfg.hist_match_threshold,
        )?;
    }
    let mut out = clip_unit3(&warp_into(&prd, &face.output_mat, rect)?)?;
    if cfg.mode.is_seamless()
        && let Some(clone_mask) = seamless_mask(frame_mask)?
    {
        match seamless_clone(&out, bg, &clone_mask) {
            Ok(cloned) => out = cloned,
            // DFL prints and skips a failed clone; the overlay below still happens.
            Err(e) => log::debug!("seamless clone skipped: {e}"),
        }
    }
    let mut out = alpha_blend(bg, &out, frame_mask)?;

    let sharpen =
        cfg.sharpen_amount < 0 || (cfg.sharpen_amount > 0 && cfg.sharpen_mode != SharpenMode::None);
    let seamless_ct = cfg.mode.is_seamless() && ct != MergeColorTransfer::None;
    if seamless_ct || cfg.mode == BlendMode::SeamlessHistMatch || sharpen {
        let r = pred.face.rows();
        let mut out_face = warp_from(&out, &face.face_mat, rect, r)?;
        if seamless_ct {
            out_face = recolour(ct, &out_face, &face.crop, &mask_values, rng)?;
        }
        if cfg.mode == BlendMode::SeamlessHistMatch {
            out_face = color_hist_match(&out_face, &face.crop, cfg.hist_match_threshold)?;
        }
        if sharpen {
            out_face = blursharpen(&out_face, cfg.sharpen_mode, cfg.sharpen_amount)?;
        }
        let back = clip_unit3(&warp_into(&out_face, &face.face_mat, rect)?)?;
        out = alpha_blend(bg, &back, frame_mask)?;
    }
    Ok(out)
}

/// Colour transfer between two R×R crops through [`transfer_masked`].
fn recolour(
    mode: MergeColorTransfer,
    prd: &Mat,
    dst: &Mat,
    mask: &[f32],
    rng: &mut impl Rng,
) -> Result<Mat, MergeFaceError> {
    let (w, h) = (prd.cols() as usize, prd.rows() as usize);
    let p = Image::new(w, h, bgr_f32_from_mat(prd)?)?;
    let d = Image::new(w, h, bgr_f32_from_mat(dst)?)?;
    let out = transfer_masked(mode, &p, &d, mask, rng)?;
    Ok(mat_from_bgr_f32(&out.data, w, h)?)
}

/// Returns `image` with every pixel outside `area` (mask value 0) set to white.
fn whiten(image: &Mat, area: Option<&[f32]>) -> opencv::Result<Mat> {
    let Some(area) = area else { return image.try_clone() };
    let mut data = bgr_f32_from_mat(image)?;
    for (px, &m) in data.chunks_exact_mut(3).zip(area) {
        if m <= 0.0 {
            px.fill(1.0);
        }
    }
    mat_from_bgr_f32(&data, image.cols() as usize, image.rows() as usize)
}

/// Returns a single-channel float mask's values, row by row.
fn mask_values(mask: &Mat) -> opencv::Result<Vec<f32>> {
    let continuous = if mask.is_continuous() { mask.clone() } else { mask.try_clone()? };
    Ok(continuous.data_typed::<f32>()?.to_vec())
}

/// `bg·(1 − m) + face·m`, per pixel (where `m` is 0, exactly `bg`).
///
/// # Shapes
/// `bg`, `face`: `CV_32FC3`; `mask`: `CV_32FC1`; all the same size.
fn alpha_blend(bg: &Mat, face: &Mat, mask: &Mat) -> opencv::Result<Mat> {
    let mut m3 = Mat::default();
    imgproc::cvt_color_def(mask, &mut m3, imgproc::COLOR_GRAY2BGR)?;
    let (mut diff, mut weighted, mut out) = (Mat::default(), Mat::default(), Mat::default());
    core::subtract_def(face, bg, &mut diff)?;
    core::multiply_def(&diff, &m3, &mut weighted)?;
    core::add_def(bg, &weighted, &mut out)?;
    Ok(out)
}

/// Clips a 3-channel float image to [0, 1].
fn clip_unit3(image: &Mat) -> opencv::Result<Mat> {
    let (mut low, mut out) = (Mat::default(), Mat::default());
    core::min(image, &Scalar::all(1.0), &mut low)?;
    core::max(&low, &Scalar::all(0.0), &mut out)?;
    Ok(out)
}

/// Whether the mask's ≥ 0.1 region is at least [`MIN_REGION_PX`] wide and tall.
fn region_is_big_enough(mask: &Mat) -> opencv::Result<bool> {
    let mut binary = Mat::default();
    imgproc::threshold(mask, &mut binary, 0.1 - 1e-6, 255.0, imgproc::THRESH_BINARY)?;
    let mut bytes = Mat::default();
    binary.convert_to_def(&mut bytes, core::CV_8U)?;
    let bbox = imgproc::bounding_rect(&bytes)?;
    Ok(bbox.width.min(bbox.height) > MIN_REGION_PX)
}

/// The frame rectangle covering the R×R crops of every matrix in `mats` (plus margin),
/// clipped to the frame; `None` when it is empty or a matrix does not invert.
fn paste_rect(frame: Size, mats: &[Affine], r: i32) -> Option<Rect> {
    let s = f64::from(r);
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for m in mats {
        let to_frame = invert(m)?;
        for corner in [[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]] {
            let [x, y] = apply(&to_frame, corner);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let margin = f64::from(MARGIN_PX);
    let clamp = |v: f64, hi: i32| v.clamp(0.0, f64::from(hi)) as i32;
    let (left, top) =
        (clamp((x0 - margin).floor(), frame.width), clamp((y0 - margin).floor(), frame.height));
    let (right, bottom) =
        (clamp((x1 + margin).ceil(), frame.width), clamp((y1 + margin).ceil(), frame.height));
    (right > left && bottom > top).then(|| Rect::new(left, top, right - left, bottom - top))
}

/// Returns `m` followed by a uniform scale of its output by `k`.
fn scaled(m: &Affine, k: f64) -> Affine {
    m.map(|row| row.map(|v| v * k))
}

/// `to_crop` (frame → crop) as a map from `rect`'s pixels to the crop.
fn from_rect(to_crop: &Affine, rect: Rect) -> Affine {
    compose(to_crop, &[[1.0, 0.0, f64::from(rect.x)], [0.0, 1.0, f64::from(rect.y)]])
}

/// Warps a crop back into `rect` of the frame (`to_crop`: frame → crop), cubic.
///
/// Masks are 0 outside the crop. Face images repeat their edge pixels instead: with black
/// outside, the cubic kernel would draw a dark line along the crop's edge wherever the mask
/// still reaches it (DFL pastes onto the frame itself, which leaves a fainter seam).
fn warp_into(crop: &Mat, to_crop: &Affine, rect: Rect) -> opencv::Result<Mat> {
    let border = if crop.channels() == 1 { BORDER_CONSTANT } else { core::BORDER_REPLICATE };
    cubic_warp(crop, &from_rect(to_crop, rect), rect.size(), true, border)
}

/// Warps `rect` of the frame (given as its own image) to the R×R crop, cubic.
fn warp_from(patch: &Mat, to_crop: &Affine, rect: Rect, r: i32) -> opencv::Result<Mat> {
    clip_unit3(&cubic_warp(
        patch,
        &from_rect(to_crop, rect),
        Size::new(r, r),
        false,
        BORDER_CONSTANT,
    )?)
}

/// Warps a `CV_8UC3` frame to the R×R crop of `to_crop` as `CV_32FC3` in [0, 1] (cubic).
///
/// # Errors
/// OpenCV's error.
pub fn crop_face(frame: &Mat, to_crop: &Affine, r: i32) -> opencv::Result<Mat> {
    let bytes = cubic_warp(frame, to_crop, Size::new(r, r), false, BORDER_CONSTANT)?;
    let mut out = Mat::default();
    bytes.convert_to(&mut out, CV_32FC3, 1.0 / 255.0, 0.0)?;
    Ok(out)
}

/// `warpAffine` with bicubic interpolation; `inverse`: `m` maps output to input pixels.
fn cubic_warp(
    src: &Mat,
    m: &Affine,
    size: Size,
    inverse: bool,
    border: i32,
) -> opencv::Result<Mat> {
    let flags = imgproc::INTER_CUBIC | if inverse { imgproc::WARP_INVERSE_MAP } else { 0 };
    let mut out = Mat::default();
    imgproc::warp_affine(
        src,
        &mut out,
        &Mat::from_slice_2d(m)?,
        size,
        flags,
        border,
        Scalar::all(0.0),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use opencv::core::{Vec3b, Vec3f};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::merge::config::MaskMode;

    const R: i32 = 32;
    /// The crop's top-left corner in the 96×96 frame.
    const AT: f64 = 32.0;

    /// A textured blue-grey frame.
    fn frame() -> Mat {
        let mut m =
            Mat::new_rows_cols_with_default(96, 96, core::CV_8UC3, Scalar::all(0.0)).unwrap();
        for y in 0..96 {
            for x in 0..96 {
                let t = ((x * 7 + y * 13) % 23) as u8;
                *m.at_2d_mut::<Vec3b>(y, x).unwrap() = Vec3b::from([150 + t, 110 + t, 90 + t]);
            }
        }
        m
    }

    fn disc(radius: f32) -> Mat {
        let mut m = Mat::zeros(R, R, CV_32FC1).unwrap().to_mat().unwrap();
        for y in 0..R {
            for x in 0..R {
                let d = (x as f32 + 0.5 - 16.0).hypot(y as f32 + 0.5 - 16.0);
                *m.at_2d_mut::<f32>(y, x).unwrap() = if d < radius { 1.0 } else { 0.0 };
            }
        }
        m
    }

    /// An orange face with a gradient and a fine checker (so sharpening has edges to work on).
    fn prediction() -> FacePrediction {
        let mut face = Mat::new_rows_cols_with_default(R, R, CV_32FC3, Scalar::all(0.0)).unwrap();
        for y in 0..R {
            for x in 0..R {
                let c = if (x / 2 + y / 2) % 2 == 0 { 0.04 } else { -0.04 };
                let v = [
                    0.25 + x as f32 / 200.0 + c,
                    0.5 + (x + y) as f32 / 400.0 + c,
                    0.8 - y as f32 / 200.0 + c,
                ];
                *face.at_2d_mut::<Vec3f>(y, x).unwrap() = Vec3f::from(v);
            }
        }
        FacePrediction {
            face,
            prd_mask: disc(12.0),
            dst_mask: disc(6.0),
            xseg_prd: None,
            xseg_dst: None,
        }
    }

    fn dst_face(frame: &Mat, scale: f64) -> DstFace {
        let face_mat = [[1.0, 0.0, -AT], [0.0, 1.0, -AT]];
        // Scale about the crop centre (16, 16), as transform_mat_scaled does.
        let c = 16.0 * (1.0 - scale);
        let output_mat = [[scale, 0.0, -AT * scale + c], [0.0, scale, -AT * scale + c]];
        let landmarks = crate::merge::mask::tests::synthetic_landmarks(16.0, 16.0, 9.0);
        DstFace {
            face_mat,
            output_mat,
            crop: crop_face(frame, &face_mat, R).unwrap(),
            landmarks,
            applied_xseg: None,
        }
    }

    fn cfg(mode: BlendMode, mask_mode: MaskMode) -> MergeConfig {
        MergeConfig {
            mode,
            mask_mode,
            color_transfer: MergeColorTransfer::None,
            ..MergeConfig::default()
        }
    }

    /// Merges the test face into a fresh frame; returns (original, merged, mask patch).
    fn merged(cfg: &MergeConfig) -> (Mat, Mat, Option<MaskPatch>) {
        let original = frame();
        let mut out = original.try_clone().unwrap();
        let face = dst_face(&original, cfg.output_scale());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let patch = merge_face(&mut out, &face, &prediction(), cfg, &mut rng).unwrap();
        (original, out, patch)
    }

    fn px(m: &Mat, x: i32, y: i32) -> [u8; 3] {
        m.at_2d::<Vec3b>(y, x).unwrap().0
    }

    fn changed(a: &Mat, b: &Mat, x: i32, y: i32) -> bool {
        px(a, x, y) != px(b, x, y)
    }

    /// The frame-space mask value at frame pixel (x, y) (0 outside the patch).
    fn mask_at(patch: &MaskPatch, x: i32, y: i32) -> f32 {
        let r = patch.rect;
        if x < r.x || y < r.y || x >= r.x + r.width || y >= r.y + r.height {
            return 0.0;
        }
        *patch.mask.at_2d::<f32>(y - r.y, x - r.x).unwrap()
    }

    /// Every pixel where the mask is 0 is byte-identical to the source frame.
    fn assert_untouched_outside_mask(original: &Mat, out: &Mat, patch: &MaskPatch) {
        for y in 0..96 {
            for x in 0..96 {
                if mask_at(patch, x, y) == 0.0 {
                    assert_eq!(
                        px(original, x, y),
                        px(out, x, y),
                        "pixel ({x}, {y}) outside the mask changed"
                    );
                }
            }
        }
    }

    /// Mean and standard deviation per channel of the frame's 16×16 centre region, in [0, 1].
    fn centre_stats(m: &Mat, lab: bool) -> [(f64, f64); 3] {
        let roi = Mat::roi(m, Rect::new(40, 40, 16, 16)).unwrap().try_clone().unwrap();
        let mut f = Mat::default();
        roi.convert_to(
            &mut f,
            CV_32FC3,
            if roi.depth() == core::CV_8U { 1.0 / 255.0 } else { 1.0 },
            0.0,
        )
        .unwrap();
        if lab {
            let mut l = Mat::default();
            imgproc::cvt_color_def(&f, &mut l, imgproc::COLOR_BGR2Lab).unwrap();
            f = l;
        }
        let (mut mean, mut std) = (Scalar::default(), Scalar::default());
        core::mean_std_dev(&f, &mut mean, &mut std, &core::no_array()).unwrap();
        [0, 1, 2].map(|c| (mean[c], std[c]))
    }

    #[test]
    fn overlay_with_a_full_mask_pastes_the_prediction_and_nothing_else() {
        let (original, out, patch) = merged(&cfg(BlendMode::Overlay, MaskMode::Full));
        let patch = patch.expect("merged");
        let want =
            prediction().face.at_2d::<Vec3f>(16, 16).unwrap().0.map(|v| (v * 255.0).round() as u8);
        assert_eq!(px(&out, 48, 48), want);
        assert_untouched_outside_mask(&original, &out, &patch);
        assert!(changed(&original, &out, 33, 33), "the full mask reaches the square's edge");
        assert!(!changed(&original, &out, 30, 30) && !changed(&original, &out, 66, 48));
    }

    #[test]
    fn each_mask_mode_limits_the_change_to_its_mask() {
        // Offsets from the face centre (48, 48): prd mask radius 12, dst mask 6, hull 9.
        let cases = [
            (MaskMode::Full, [true, true, true]),
            (MaskMode::Dst, [true, false, false]),
            (MaskMode::LearnedPrd, [true, true, false]),
            (MaskMode::LearnedDst, [false, false, false]),
            (MaskMode::LearnedPrdTimesDst, [false, false, false]),
            (MaskMode::LearnedPrdPlusDst, [true, true, false]),
        ];
        for (mode, want) in cases {
            let (original, out, patch) = merged(&cfg(BlendMode::Overlay, mode));
            let patch = patch.expect("merged");
            assert!(changed(&original, &out, 48, 48), "{mode:?}: the centre changes");
            let got = [8, 11, 14].map(|d| changed(&original, &out, 48 + d, 48));
            assert_eq!(got, want, "{mode:?}: changed at +8, +11, +14 px");
            assert_untouched_outside_mask(&original, &out, &patch);
        }
    }

    #[test]
    fn erode_shrinks_and_blur_softens_the_frame_mask() {
        let base = cfg(BlendMode::Overlay, MaskMode::LearnedPrd);
        let (.., plain) = merged(&base);
        let (.., eroded) = merged(&MergeConfig { erode: 16, ..base.clone() });
        let (.., blurred) = merged(&MergeConfig { blur: 24, ..base.clone() });
        let (plain, eroded, blurred) = (plain.unwrap(), eroded.unwrap(), blurred.unwrap());
        // The disc edge is at radius 12 px; eroding by 16 px of the 4× mask takes ~2 px off.
        assert!(mask_at(&plain, 48 + 11, 48) > 0.9);
        assert_eq!(mask_at(&eroded, 48 + 11, 48), 0.0);
        assert!(mask_at(&eroded, 48 + 8, 48) > 0.9);
        let edge = mask_at(&blurred, 48 + 11, 48);
        assert!(edge > 0.2 && edge < 0.9, "blurred edge {edge}");
    }

    #[test]
    fn every_colour_transfer_moves_the_face_toward_the_dst_colours() {
        let dist = |a: [(f64, f64); 3], b: [(f64, f64); 3]| {
            (0..3).map(|c| (a[c].0 - b[c].0).powi(2)).sum::<f64>().sqrt()
        };
        let original = frame();
        let target = centre_stats(&original, false);
        let (_, plain, _) = merged(&cfg(BlendMode::Overlay, MaskMode::Full));
        let before = dist(centre_stats(&plain, false), target);
        let modes = <MergeColorTransfer as clap::ValueEnum>::value_variants();
        for &ct in modes.iter().filter(|&&ct| ct != MergeColorTransfer::None) {
            let c = MergeConfig { color_transfer: ct, ..cfg(BlendMode::Overlay, MaskMode::Full) };
            let (_, out, _) = merged(&c);
            let after = dist(centre_stats(&out, false), target);
            assert!(after < before * 0.5, "{ct:?}: mean colour distance {before:.3} → {after:.3}");
        }
    }

    #[test]
    fn rct_gives_the_face_the_dst_lab_mean_and_spread() {
        // With the full mask, rct's statistics cover the whole square: an exact Lab match there.
        let c = MergeConfig {
            color_transfer: MergeColorTransfer::Rct,
            ..cfg(BlendMode::Overlay, MaskMode::Full)
        };
        let (original, out, _) = merged(&c);
        let face = dst_face(&original, 1.0);
        let prd = recolour(
            MergeColorTransfer::Rct,
            &prediction().face,
            &face.crop,
            &[1.0; (R * R) as usize],
            &mut ChaCha8Rng::seed_from_u64(1),
        )
        .unwrap();
        let lab = |m: &Mat| {
            let mut whole = Mat::default();
            imgproc::cvt_color_def(m, &mut whole, imgproc::COLOR_BGR2Lab).unwrap();
            let (mut mean, mut std) = (Scalar::default(), Scalar::default());
            core::mean_std_dev(&whole, &mut mean, &mut std, &core::no_array()).unwrap();
            [0, 1, 2].map(|c| (mean[c], std[c]))
        };
        let (got, want) = (lab(&prd), lab(&face.crop));
        for c in 0..3 {
            assert!((got[c].0 - want[c].0).abs() < 0.5, "channel {c} mean {got:?} vs {want:?}");
            assert!((got[c].1 - want[c].1).abs() < 0.5, "channel {c} std {got:?} vs {want:?}");
        }
        // And it is what lands in the frame.
        let pasted = centre_stats(&out, true);
        let before = centre_stats(&merged(&cfg(BlendMode::Overlay, MaskMode::Full)).1, true);
        let target = centre_stats(&original, true);
        assert!((pasted[0].0 - target[0].0).abs() < (before[0].0 - target[0].0).abs() * 0.2);
    }

    /// Sorted values of channel `c` of the frame's face square (all but its 1-px edge).
    fn sorted_square(m: &Mat, c: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (33..63)
            .flat_map(|y| (33..63).map(move |x| (x, y)))
            .map(|(x, y)| px(m, x, y)[c])
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn hist_match_gives_the_face_the_dst_histogram() {
        let c = MergeConfig {
            masked_hist_match: false,
            hist_match_threshold: 255,
            ..cfg(BlendMode::HistMatch, MaskMode::Full)
        };
        let (original, out, _) = merged(&c);
        for ch in 0..3 {
            let (a, b) = (sorted_square(&out, ch), sorted_square(&original, ch));
            let median_gap = (i32::from(a[a.len() / 2]) - i32::from(b[b.len() / 2])).abs();
            assert!(
                median_gap <= 3,
                "channel {ch}: median {} vs {}",
                a[a.len() / 2],
                b[b.len() / 2]
            );
            let gap = |i: usize| (i32::from(a[i]) - i32::from(b[i])).abs();
            assert!(gap(45) <= 4 && gap(855) <= 4, "channel {ch}: 5th/95th percentiles");
        }
    }

    #[test]
    fn seamless_takes_the_surrounding_level_and_keeps_the_face_detail() {
        let (original, out, patch) = merged(&cfg(BlendMode::Seamless, MaskMode::LearnedPrd));
        let patch = patch.expect("merged");
        // The orange prediction is cloned by its gradients: the level follows the blue frame.
        let (o, s) = (centre_stats(&original, false), centre_stats(&out, false));
        let (_, plain, _) = merged(&cfg(BlendMode::Overlay, MaskMode::LearnedPrd));
        let p = centre_stats(&plain, false);
        assert!(
            (s[0].0 - o[0].0).abs() < (p[0].0 - o[0].0).abs() * 0.3,
            "blue level {s:?} vs frame {o:?}"
        );
        // The checker survives: the region is not flat.
        assert!(s[1].1 > 0.02, "{s:?}");
        assert_untouched_outside_mask(&original, &out, &patch);
    }

    #[test]
    fn seamless_hist_match_ends_with_the_dst_histogram() {
        let c = MergeConfig {
            hist_match_threshold: 255,
            ..cfg(BlendMode::SeamlessHistMatch, MaskMode::Full)
        };
        let (original, out, _) = merged(&c);
        for ch in 0..3 {
            let (a, b) = (sorted_square(&out, ch), sorted_square(&original, ch));
            let median_gap = (i32::from(a[a.len() / 2]) - i32::from(b[b.len() / 2])).abs();
            assert!(median_gap <= 3, "channel {ch}");
        }
    }

    #[test]
    fn raw_rgb_pastes_the_whole_square_with_a_hard_edge() {
        let (original, out, _) = merged(&cfg(BlendMode::RawRgb, MaskMode::LearnedDst));
        let want =
            prediction().face.at_2d::<Vec3f>(2, 2).unwrap().0.map(|v| (v * 255.0).round() as u8);
        assert_eq!(px(&out, 34, 34), want, "a corner of the square, far outside every mask");
        assert!(!changed(&original, &out, 30, 30));
    }

    #[test]
    fn original_mode_changes_nothing_but_reports_the_mask() {
        let (original, out, patch) = merged(&cfg(BlendMode::Original, MaskMode::Full));
        assert!(mask_at(&patch.expect("mask"), 48, 48) > 0.99);
        assert_eq!(bgr_bytes_of(&original), bgr_bytes_of(&out));
    }

    fn bgr_bytes_of(m: &Mat) -> Vec<u8> {
        m.data_bytes().unwrap().to_vec()
    }

    #[test]
    fn face_scale_grows_the_pasted_face() {
        let count = |face_scale| {
            let c = MergeConfig { face_scale, ..cfg(BlendMode::Overlay, MaskMode::LearnedPrd) };
            let (original, out, _) = merged(&c);
            (0..96)
                .flat_map(|y| (0..96).map(move |x| (x, y)))
                .filter(|&(x, y)| changed(&original, &out, x, y))
                .count()
        };
        let (small, normal, big) = (count(-20), count(0), count(20));
        assert!(small < normal && normal < big, "{small} {normal} {big}");
        // Area grows with the square of the scale.
        assert!((big as f64 / normal as f64 - 1.44).abs() < 0.2, "{big} / {normal}");
    }

    #[test]
    fn sharpening_adds_detail_to_the_face() {
        let energy = |m: &Mat| {
            let (mut f, mut lap, mut sq) = (Mat::default(), Mat::default(), Mat::default());
            Mat::roi(m, Rect::new(40, 40, 16, 16))
                .unwrap()
                .convert_to(&mut f, CV_32FC3, 1.0, 0.0)
                .unwrap();
            imgproc::laplacian_def(&f, &mut lap, core::CV_32F).unwrap();
            core::multiply_def(&lap, &lap, &mut sq).unwrap();
            core::sum_elems(&sq).unwrap()[0]
        };
        let base = cfg(BlendMode::Overlay, MaskMode::Full);
        let (_, plain, _) = merged(&base);
        let (_, sharp, _) = merged(&MergeConfig {
            sharpen_mode: SharpenMode::Gaussian,
            sharpen_amount: 2,
            ..base.clone()
        });
        let (_, soft, _) = merged(&MergeConfig { sharpen_amount: -20, ..base });
        assert!(energy(&sharp) > energy(&plain) * 1.3);
        assert!(energy(&soft) < energy(&plain) * 0.7);
    }

    #[test]
    fn a_face_outside_the_frame_is_skipped() {
        let original = frame();
        let mut out = original.try_clone().unwrap();
        let mut face = dst_face(&original, 1.0);
        face.face_mat = [[1.0, 0.0, 500.0], [0.0, 1.0, 500.0]];
        face.output_mat = face.face_mat;
        let c = cfg(BlendMode::Overlay, MaskMode::Full);
        let got = merge_face(&mut out, &face, &prediction(), &c, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert!(got.is_none());
        assert_eq!(bgr_bytes_of(&original), bgr_bytes_of(&out));
    }
}
