//! Per-sample geometry: fitting a face to the model's face type and resolution, DFL's random
//! warp grid, the random affine and the flip (`docs/dfl-parity.md`, "Training samples").
//!
//! DFL: `samplelib/SampleProcessor.py`, `core/imagelib/warp.py` (`gen_warp_params`,
//! `warp_by_params`). One [`WarpParams`] is drawn per sample and applied to all its outputs, so
//! input, target and masks share the geometry; only the network input gets the grid warp.

use opencv::core::{self, BORDER_CONSTANT, BORDER_REPLICATE, CV_32F, Mat, Scalar, Size, Vec3f};
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::face::align::{Affine, FaceType, transform_mat};
use crate::face::landmarks::Landmarks68;

/// Random rotation range in degrees, ±. DFL: `gen_warp_params` `rotation_range=[-10, 10]`.
const ROTATION_DEG: f64 = 10.0;
/// SAEHD's `scale_range=[-0.15, 0.15]`; the scale is drawn from U(1/(1 + s), 1 + s).
const SCALE_SPREAD: f64 = 0.15;
/// Random shift as a share of the side, ±. DFL: `tx_range`, `ty_range` `[-0.05, 0.05]`.
const SHIFT_SHARE: f64 = 0.05;
/// Probability of a horizontal flip when flips are on. DFL: `gen_warp_params` (`< 0.4`).
const FLIP_PROBABILITY: f64 = 0.4;
/// Grid displacement per unit `z`, as a share of the cell. DFL: `cell_size*0.24`.
const GRID_SHIFT_SHARE: f64 = 0.24;
/// The grid's normal draws are truncated to ±this, then divided by it, so `z` ∈ [−1, 1]
/// (`docs/dfl-parity.md`, "Training samples").
const GRID_NORMAL_CLIP: f64 = 2.5;
/// Warps below this resolution are computed at it and resized back. DFL: `if w < 64`.
const MIN_WARP_PX: i32 = 64;

/// Whether a layer is a BGR image or a mask: they differ in interpolation and border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// BGR image: cubic, borders replicated.
    Image,
    /// Single-channel mask: linear, zero outside.
    Mask,
}

impl Layer {
    fn interpolation(self) -> i32 {
        match self {
            Layer::Image => imgproc::INTER_CUBIC,
            Layer::Mask => imgproc::INTER_LINEAR,
        }
    }

    fn border(self) -> i32 {
        match self {
            Layer::Image => BORDER_REPLICATE,
            Layer::Mask => BORDER_CONSTANT,
        }
    }
}

/// The ranges of the random affine: rotation ±`rotation_deg`, scale in
/// U(1/(1 + `scale_spread`), 1 + `scale_spread`), shift ±`shift_share` of the side, and the
/// probability of a flip when flips are on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarpRanges {
    /// Rotation in degrees, ±.
    pub rotation_deg: f64,
    /// Scale spread `s`.
    pub scale_spread: f64,
    /// Shift as a share of the side, ±.
    pub shift_share: f64,
    /// Probability of a horizontal flip.
    pub flip_probability: f64,
}

impl WarpRanges {
    /// SAEHD's training samples.
    pub const SAEHD: WarpRanges = WarpRanges {
        rotation_deg: ROTATION_DEG,
        scale_spread: SCALE_SPREAD,
        shift_share: SHIFT_SHARE,
        flip_probability: FLIP_PROBABILITY,
    };
}

/// The random geometry of one sample, shared by all its outputs.
#[derive(Debug)]
pub struct WarpParams {
    /// The random-warp sampling maps `(map_x, map_y)`, `[W, W]` f32 each; `None` when random
    /// warp is off.
    pub grid: Option<(Mat, Mat)>,
    /// Rotation, scale and shift about the centre, in pixels of a `W`² image.
    pub affine: Affine,
    /// Mirror left-right after the affine.
    pub flip: bool,
    /// `W`: the side the warps are computed at, `max(R, 64)`.
    pub work_px: i32,
}

impl WarpParams {
    /// Draws the geometry for an `resolution_px`² sample with SAEHD's ranges: the grid (when
    /// `random_warp`), the affine, and the flip (when `random_flip`), in that order from `rng`.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn draw(
        rng: &mut impl Rng,
        resolution_px: i32,
        random_warp: bool,
        random_flip: bool,
    ) -> opencv::Result<Self> {
        Self::draw_in(rng, resolution_px, random_warp, random_flip, &WarpRanges::SAEHD)
    }

    /// As [`WarpParams::draw`], with the affine's ranges and the flip's probability from
    /// `ranges`.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn draw_in(
        rng: &mut impl Rng,
        resolution_px: i32,
        random_warp: bool,
        random_flip: bool,
        ranges: &WarpRanges,
    ) -> opencv::Result<Self> {
        let work_px = resolution_px.max(MIN_WARP_PX);
        let grid = if random_warp { Some(warp_grid(rng, work_px)?) } else { None };
        let rotation_deg = rng.random_range(-ranges.rotation_deg..=ranges.rotation_deg);
        let s = ranges.scale_spread;
        let scale = rng.random_range(1.0 / (1.0 + s)..=1.0 + s);
        let shift = [
            rng.random_range(-ranges.shift_share..=ranges.shift_share),
            rng.random_range(-ranges.shift_share..=ranges.shift_share),
        ];
        let affine = centred_affine(work_px, rotation_deg, scale, shift);
        let flip = random_flip && rng.random_bool(ranges.flip_probability);
        Ok(Self { grid, affine, flip, work_px })
    }

    /// Returns the geometry that changes nothing: no grid, identity affine, no flip.
    pub fn identity(resolution_px: i32) -> Self {
        let affine = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        Self { grid: None, affine, flip: false, work_px: resolution_px.max(MIN_WARP_PX) }
    }
}

/// Returns OpenCV's `getRotationMatrix2D((W//2, W//2), rotation, scale)` with the centre
/// moved by `shift`·W, as DFL builds `rmat`.
fn centred_affine(work_px: i32, rotation_deg: f64, scale: f64, shift: [f64; 2]) -> Affine {
    let c = f64::from(work_px / 2);
    let (sin, cos) = rotation_deg.to_radians().sin_cos();
    let (a, b) = (scale * cos, scale * sin);
    let w = f64::from(work_px);
    [[a, b, (1.0 - a) * c - b * c + shift[0] * w], [-b, a, b * c + (1.0 - a) * c + shift[1] * w]]
}

/// Draws DFL's random-warp maps for a `w`² image: a grid of cell `w/2`,
/// `w/4` or `w/8` whose interior points move by `cell·0.24·z`, upsampled bilinearly to
/// `(w + cell)`² and cropped by `cell/2` per side.
fn warp_grid(rng: &mut impl Rng, w: i32) -> opencv::Result<(Mat, Mat)> {
    let cell = w / (2 << rng.random_range(0..3));
    let count = (w / cell + 1) as usize;
    let line = |k: usize| (f64::from(w) * k as f64 / (count - 1) as f64) as f32;
    let mut map_x = vec![vec![0.0f32; count]; count];
    let mut map_y = map_x.clone();
    for r in 0..count {
        for c in 0..count {
            map_x[r][c] = line(c);
            map_y[r][c] = line(r);
        }
    }
    let spread = f64::from(cell) * GRID_SHIFT_SHARE;
    for r in 1..count - 1 {
        for c in 1..count - 1 {
            map_x[r][c] += (spread * truncated_normal(rng)) as f32;
            map_y[r][c] += (spread * truncated_normal(rng)) as f32;
        }
    }
    Ok((upsample_map(&map_x, w, cell)?, upsample_map(&map_y, w, cell)?))
}

/// Resizes a control grid to `(w + cell)`² bilinearly and crops `cell/2` from each side.
fn upsample_map(grid: &[Vec<f32>], w: i32, cell: i32) -> opencv::Result<Mat> {
    let small = Mat::from_slice_2d(grid)?;
    let mut big = Mat::default();
    let side = w + cell;
    imgproc::resize(&small, &mut big, Size::new(side, side), 0.0, 0.0, imgproc::INTER_LINEAR)?;
    let half = cell / 2;
    big.roi(core::Rect::new(half, half, w, w))?.try_clone()
}

/// Draws a standard normal, redrawn until |z| ≤ 2.5, divided by 2.5: z ∈ [−1, 1].
fn truncated_normal(rng: &mut impl Rng) -> f64 {
    loop {
        let z: f64 = rng.sample(StandardNormal);
        if z.abs() <= GRID_NORMAL_CLIP {
            return z / GRID_NORMAL_CLIP;
        }
    }
}

/// Returns a BGR u8 face as f32 in [0, 1].
///
/// # Errors
/// OpenCV's error.
pub fn to_unit_float(bgr: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    bgr.convert_to(&mut out, CV_32F, 1.0 / 255.0, 0.0)?;
    Ok(out)
}

/// How a face maps onto the model's input.
#[derive(Debug, Clone, Copy)]
pub struct Fit<'a> {
    /// The face's landmarks in its aligned image.
    pub landmarks: &'a Landmarks68,
    /// The face's own face type.
    pub face_type: FaceType,
    /// The model's face type.
    pub model_face_type: FaceType,
    /// The model's resolution `R`.
    pub resolution_px: i32,
}

/// Fits an aligned image or mask to the model: re-crops with
/// `transform_mat(landmarks, R, model face type)` when the face types differ, else resizes to
/// `R` (skipped when already `R`). DFL: `SampleProcessor.process`.
///
/// Returns `None` when the landmarks are degenerate.
///
/// # Errors
/// OpenCV's error.
pub fn fit_to_model(img: &Mat, fit: &Fit<'_>, layer: Layer) -> opencv::Result<Option<Mat>> {
    let r = fit.resolution_px;
    let mut out = Mat::default();
    if fit.face_type != fit.model_face_type {
        let Some(m) = transform_mat(fit.landmarks, r as u32, fit.model_face_type) else {
            return Ok(None);
        };
        let m = Mat::from_slice_2d(&m)?;
        let (size, interp) = (Size::new(r, r), layer.interpolation());
        imgproc::warp_affine(img, &mut out, &m, size, interp, layer.border(), Scalar::all(0.0))?;
    } else if img.rows() != r || img.cols() != r {
        imgproc::resize(img, &mut out, Size::new(r, r), 0.0, 0.0, layer.interpolation())?;
    } else {
        out = img.try_clone()?;
    }
    Ok(Some(out))
}

/// Applies `params` to one layer (DFL's `warp_by_params`): the grid warp when `with_grid`,
/// then the affine, then the flip. The result has `img`'s size.
///
/// # Errors
/// OpenCV's error.
pub fn apply_warp(
    img: &Mat,
    params: &WarpParams,
    with_grid: bool,
    layer: Layer,
) -> opencv::Result<Mat> {
    let (side, interp) = (img.rows(), layer.interpolation());
    let w = params.work_px;
    let mut cur = img.try_clone()?;
    if side != w {
        cur = resized(&cur, w, interp)?;
    }
    if let (true, Some((map_x, map_y))) = (with_grid, &params.grid) {
        let mut out = Mat::default();
        let zero = Scalar::all(0.0);
        imgproc::remap(&cur, &mut out, map_x, map_y, interp, BORDER_CONSTANT, zero)?;
        cur = out;
    }
    let m = Mat::from_slice_2d(&params.affine)?;
    let mut out = Mat::default();
    let size = Size::new(w, w);
    imgproc::warp_affine(&cur, &mut out, &m, size, interp, layer.border(), Scalar::all(0.0))?;
    cur = out;
    if side != w {
        cur = resized(&cur, side, interp)?;
    }
    if params.flip {
        let mut out = Mat::default();
        core::flip(&cur, &mut out, 1)?;
        cur = out;
    }
    Ok(cur)
}

fn resized(img: &Mat, side: i32, interp: i32) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    imgproc::resize(img, &mut out, Size::new(side, side), 0.0, 0.0, interp)?;
    Ok(out)
}

/// Appends an f32 image (1 or 3 channels, HWC) to `out` as CHW, clipped to [0, 1].
///
/// # Errors
/// OpenCV's error (e.g. a Mat that is not f32 with 1 or 3 channels).
pub fn push_chw(img: &Mat, out: &mut Vec<f32>) -> opencv::Result<()> {
    let contiguous;
    let img = if img.is_continuous() {
        img
    } else {
        contiguous = img.try_clone()?;
        &contiguous
    };
    let clip = |v: f32| v.clamp(0.0, 1.0);
    match img.channels() {
        1 => out.extend(img.data_typed::<f32>()?.iter().map(|&v| clip(v))),
        3 => {
            let px = img.data_typed::<Vec3f>()?;
            for c in 0..3 {
                out.extend(px.iter().map(|p| clip(p[c])));
            }
        }
        n => {
            let msg = format!("expected 1 or 3 channels, got {n}");
            return Err(opencv::Error::new(core::StsBadArg, msg));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(side: i32) -> Mat {
        let rows: Vec<Vec<f32>> =
            (0..side).map(|y| (0..side).map(|x| (x + 2 * y) as f32 / 300.0).collect()).collect();
        Mat::from_slice_2d(&rows).unwrap()
    }

    fn max_abs_diff(a: &Mat, b: &Mat) -> f64 {
        let mut diff = Mat::default();
        core::absdiff(a, b, &mut diff).unwrap();
        let mut max = 0.0;
        core::min_max_loc(&diff, None, Some(&mut max), None, None, &core::no_array()).unwrap();
        max
    }

    #[test]
    fn the_affine_matches_opencv_and_keeps_the_centre() {
        let m = centred_affine(128, 7.0, 1.1, [0.0, 0.0]);
        let cv = imgproc::get_rotation_matrix_2d(core::Point2f::new(64.0, 64.0), 7.0, 1.1).unwrap();
        for (r, row) in m.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let want = *cv.at_2d::<f64>(r as i32, c as i32).unwrap();
                assert!((v - want).abs() < 1e-9, "{m:?}");
            }
        }
        let shifted = centred_affine(128, 0.0, 1.0, [0.05, -0.05]);
        assert_eq!([shifted[0][2], shifted[1][2]], [6.4, -6.4]);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut flips = 0;
        for _ in 0..200 {
            let p = WarpParams::draw(&mut rng, 64, false, true).unwrap();
            let scale = p.affine[0][0].hypot(p.affine[0][1]);
            assert!((1.0 / 1.15 - 1e-9..=1.15 + 1e-9).contains(&scale), "{scale}");
            let angle = p.affine[0][1].atan2(p.affine[0][0]).to_degrees();
            assert!(angle.abs() <= 10.0 + 1e-9, "{angle}");
            flips += usize::from(p.flip);
            assert!(truncated_normal(&mut rng).abs() <= 1.0);
        }
        assert!((50..110).contains(&flips), "{flips} flips in 200 at p = 0.4");
    }

    #[test]
    fn the_grid_moves_only_the_inside_and_by_at_most_an_eighth() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..10 {
            let (mx, _) = warp_grid(&mut rng, 64).unwrap();
            assert_eq!((mx.rows(), mx.cols()), (64, 64));
            let mut max_shift = 0.0f32;
            for y in 0..64 {
                for x in 0..64 {
                    max_shift = max_shift.max((mx.at_2d::<f32>(y, x).unwrap() - x as f32).abs());
                }
            }
            assert!(max_shift <= 64.0 * 0.12 + 1.0, "shift {max_shift}");
        }
    }

    #[test]
    fn identity_params_change_nothing_and_a_flip_mirrors() {
        let img = ramp(64);
        let out = apply_warp(&img, &WarpParams::identity(64), true, Layer::Mask).unwrap();
        assert!(max_abs_diff(&img, &out) < 1e-6);
        let flip = WarpParams { flip: true, ..WarpParams::identity(64) };
        let out = apply_warp(&img, &flip, true, Layer::Mask).unwrap();
        assert_eq!(out.at_2d::<f32>(10, 0).unwrap(), img.at_2d::<f32>(10, 63).unwrap());
    }

    #[test]
    fn small_resolutions_warp_at_64_and_come_back() {
        let img = ramp(32);
        let out = apply_warp(&img, &WarpParams::identity(32), true, Layer::Mask).unwrap();
        assert_eq!((out.rows(), out.cols()), (32, 32));
        assert!(max_abs_diff(&img, &out) < 0.02);
    }

    #[test]
    fn chw_is_channel_major_and_clipped() {
        let mut img =
            Mat::new_rows_cols_with_default(1, 2, core::CV_32FC3, Scalar::all(0.0)).unwrap();
        *img.at_2d_mut::<Vec3f>(0, 0).unwrap() = Vec3f::from([0.1, 0.2, 1.5]);
        *img.at_2d_mut::<Vec3f>(0, 1).unwrap() = Vec3f::from([0.4, -0.5, 0.6]);
        let mut out = Vec::new();
        push_chw(&img, &mut out).unwrap();
        assert_eq!(out, [0.1, 0.4, 0.2, 0.0, 1.0, 0.6]);
    }
}
