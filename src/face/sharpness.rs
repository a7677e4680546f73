//! Face sharpness scores: CPBD for `dfl sort --by blur`, Laplacian variance for
//! `dfl sort --by motion-blur`.
//!
//! `cpbd_sharpness` reimplements the CPBD metric (Narvekar & Karam, "A No-Reference Image Blur
//! Metric Based on the Cumulative Probability of Blur Detection") as DFL's port does it
//! (DFL: `core/imagelib/estimate_sharpness.py`). It finds edges, measures how wide each is
//! (Marziliano's method), and returns the fraction of edges whose width a viewer would not
//! notice as blur. `laplacian_variance` is DFL's motion-blur score
//! (DFL: `mainscripts/Sorter.py`, `cv2.Laplacian(image, cv2.CV_64F, ksize=11).var()`).
//!
//! # Changes from DFL
//! - **The mask.** DFL multiplies the face by its hull mask before scoring. That draws a sharp
//!   edge along the hull border, and that edge dominates both scores. We compute edges,
//!   gradients and the Laplacian on the unmasked image, and count only pixels "inside": the
//!   mask eroded by 2 px (5×5 rect). Only inside pixels go into the edge counts, the widths,
//!   the Sobel threshold's mean, block contrast and the Laplacian's variance. A block with no
//!   inside pixels is never an edge block. Edge-width walks still run along the unmasked row,
//!   so they measure the real image across the hull border. Two things can still see outside
//!   pixels near the border. The block-classification edges (Canny) see up to about 6 px out,
//!   and the Laplacian sees 5 px out (its kernel is 11 px wide).
//! - **Block-classification edges.** DFL calls skimage's `canny(image)`: σ = 1, hysteresis
//!   thresholds 0.1 and 0.2 on the raw 0..255 scale, so almost any gradient is an edge. We run
//!   the same steps with OpenCV. A 9-tap `f32` Gaussian (skimage's `truncate = 4`) is followed
//!   by an `f32` Sobel. The gradients are scaled by 16 and rounded into the `i16` that
//!   `cv::Canny(dx, dy, …)` takes. With that scale, OpenCV's integer L2 thresholds mean exactly
//!   0.1 and 0.2. Non-maximum suppression is OpenCV's, which does not interpolate the way
//!   skimage's does. These edges only decide which 64×64 blocks count (at least 9 edge pixels),
//!   so a few pixels more or less rarely matter. On the test face, OpenCV finds 3% more edge
//!   pixels than skimage 0.26, and every block is classified the same way.
//! - **Faint edges do not count.** DFL keeps a Sobel edge when strength² beats
//!   2·√mean(strength²), which in a dim, flat face is a gradient of 1–3 gray levels per pixel:
//!   video-codec block seams and noise, 1 px wide, so an out-of-focus face scored as the
//!   sharpest of a faceset (Megamind: 10 blurry background faces ranked 0–38th of 408). An
//!   edge must also reach [`MIN_EDGE_GRADIENT`] gray levels per pixel; those faces then rank
//!   360th–404th.
//! - **Few edges are weak evidence.** The score is sharp edges / (edges +
//!   [`EDGE_COUNT_PRIOR`]), not sharp / edges, so a face with a handful of measurable edges
//!   cannot score 1.0 on them; with the hundreds to thousands of edges of a real face the prior
//!   changes little.
//! - **`np.any(edge_angles)`.** DFL measures no widths at all when every gradient angle is 0.
//!   That only happens on synthetic images with purely horizontal gradients. We drop this quirk.
//!
//! We keep DFL's other quirks, and the comments mark each one. The Sobel threshold compares
//! strength² with 2·√mean(strength²). The Sobel uses zero padding outside the image. An edge
//! pixel with no x-gradient is measured as horizontal. `int(round(p, 2) * 100)` truncates.
//!
//! With a full mask the scores match DFL's algorithm. A throwaway Python transcription with
//! skimage 0.26 and NumPy gave the same CPBD to the last bit on the blur series of the test
//! face and on the synthetic mask-test image. It gave the same Laplacian variance to 1e-14
//! relative.
//!
//! # Speed
//! A 256×256 face, dev profile (opt-level 2), on this 2-core machine while other builds were
//! running: `cpbd_sharpness` ≈ 2 ms, of which OpenCV's Canny is about 1.3 ms, and
//! `laplacian_variance` ≈ 0.2 ms
//! (`cargo test --lib face::sharpness::tests::time_per_256px_face -- --ignored --nocapture`).

use opencv::core::{self, BORDER_DEFAULT, CV_8UC1, CV_16S, CV_32F, CV_64F, Mat, Point, Size};
use opencv::imgproc;
use opencv::prelude::*;

/// CPBD's block side in pixels (DFL: `BLOCK_HEIGHT`, `BLOCK_WIDTH`).
const BLOCK_PX: usize = 64;
/// A block is an edge block when more than this fraction of its pixels are Canny edges
/// (DFL: `THRESHOLD`).
const EDGE_BLOCK_FRACTION: f64 = 0.002;
/// Exponent of the blur-detection probability (DFL: `BETA`).
const BETA: f64 = 3.6;
/// Just-noticeable blur width for blocks with contrast ≤ [`LOW_CONTRAST`] (DFL: `WIDTH_JNB`).
const JNB_LOW_CONTRAST: f64 = 5.0;
/// Just-noticeable blur width for higher-contrast blocks (DFL: `WIDTH_JNB`).
const JNB_HIGH_CONTRAST: f64 = 3.0;
/// The largest block contrast (max − min) that counts as low contrast (DFL: `WIDTH_JNB[:51]`).
const LOW_CONTRAST: f64 = 50.0;
/// Histogram buckets below this one are edges whose blur goes unnoticed (DFL: `hist_pblur[:64]`).
const SHARP_BUCKETS: usize = 64;
/// The weakest gradient (gray levels per pixel, the normalised Sobel's unit) that is an edge.
const MIN_EDGE_GRADIENT: f64 = 6.0;
/// Edges added to the denominator of the score (see the module doc).
const EDGE_COUNT_PRIOR: f64 = 50.0;
/// The largest margin each side of Marziliano's width walk (DFL: `range(100 + 1)`).
const MAX_MARGIN: usize = 100;
/// Gaussian σ of skimage's `canny` default.
const CANNY_SIGMA: f64 = 1.0;
/// Gaussian taps for σ = 1 with skimage's `truncate = 4.0`: radius 4.
const CANNY_KSIZE: i32 = 9;
/// skimage `canny`'s default hysteresis thresholds for a float image, on the raw 0..255 scale.
const CANNY_LOW: f64 = 0.1;
/// See [`CANNY_LOW`].
const CANNY_HIGH: f64 = 0.2;
/// Scale of the float Sobel before it is rounded to `i16`. The largest |Sobel| of a 0..255
/// image is 4·255, and 16·1020 fits in `i16`. `dx² + dy²` also fits in OpenCV's `i32`.
/// With this scale, OpenCV's floored squared thresholds (2 and 10) mean exactly
/// magnitude > 0.1 and > 0.2.
const CANNY_SCALE: f64 = 16.0;
/// Aperture of skimage `canny`'s Sobel (`ndi.sobel`, 3×3).
const CANNY_SOBEL_KSIZE: i32 = 3;
/// A bracket around tan 22.5° ≈ 0.4142. At that |gy/gx|, DFL's rounded gradient angle switches
/// between horizontal (0, ±180) and diagonal (±45, ±135).
const TAN_22_5_BRACKET: (f64, f64) = (0.41, 0.42);
/// Pixels this close to the mask border do not count (5×5 rect erosion).
const MASK_ERODE_PX: i32 = 2;
/// Aperture of the motion-blur Laplacian (DFL: `ksize=11`).
const LAPLACIAN_KSIZE: i32 = 11;

/// Scores how sharp a face is with DFL's CPBD port: the fraction of edges whose blur goes
/// unnoticed, in `[0, 1]`. Higher means sharper, and 0 means no edges were measured.
///
/// Only pixels inside `mask` (eroded by 2 px) count, and edges are found on the unmasked
/// image. The module doc lists the changes from DFL.
///
/// # Shapes
/// `gray`: `CV_8UC1`, H×W. `mask`: `CV_8UC1`, H×W, nonzero = face. Only whole 64×64 blocks
/// are scored, so an image under 64 px on either side scores 0.
///
/// # Errors
/// `StsBadArg` when either Mat is not a non-empty 2-D `CV_8UC1` or their sizes differ, and
/// OpenCV's own errors.
pub fn cpbd_sharpness(gray: &Mat, mask: &Mat) -> opencv::Result<f64> {
    let (sharp, total) = edge_counts(gray, mask)?;
    Ok(f64::from(sharp) / (f64::from(total) + EDGE_COUNT_PRIOR))
}

/// The (sharp, all) measured edges of [`cpbd_sharpness`].
fn edge_counts(gray: &Mat, mask: &Mat) -> opencv::Result<(u32, u32)> {
    check_inputs(gray, mask)?;
    let image = Plane::from_u8(gray)?;
    if image.height < BLOCK_PX || image.width < BLOCK_PX {
        return Ok((0, 0));
    }
    let inside = inside_pixels(mask)?;
    if !inside.contains(&true) {
        return Ok((0, 0));
    }
    let canny = canny_edges(gray)?;
    let edges = sobel_edges(&image, &inside);
    let widths = marziliano_widths(&image, &edges);
    Ok(sharpness_metric(&image, &inside, &canny, &widths))
}

/// Returns the variance of the Laplacian (ksize 11, `CV_64F`) over the pixels inside `mask`
/// (eroded by 2 px). Higher means sharper. DFL uses this to sort by motion blur.
///
/// The Laplacian is taken on the unmasked image. The result is 0 when fewer than 2 pixels are
/// inside. DFL takes it of the masked BGR face. We take it of the gray face the caller passes.
///
/// # Shapes
/// `gray`: `CV_8UC1`, H×W. `mask`: `CV_8UC1`, H×W, nonzero = face.
///
/// # Errors
/// `StsBadArg` when either Mat is not a non-empty 2-D `CV_8UC1` or their sizes differ, and
/// OpenCV's own errors.
pub fn laplacian_variance(gray: &Mat, mask: &Mat) -> opencv::Result<f64> {
    check_inputs(gray, mask)?;
    let inside = inside_pixels(mask)?;
    let count = inside.iter().filter(|&&i| i).count();
    if count < 2 {
        return Ok(0.0);
    }
    let mut laplacian = Mat::default();
    imgproc::laplacian(gray, &mut laplacian, CV_64F, LAPLACIAN_KSIZE, 1.0, 0.0, BORDER_DEFAULT)?;
    let values = Plane::from_f64(&laplacian)?.px;
    let inside_values = || values.iter().zip(&inside).filter(|&(_, &i)| i).map(|(&v, _)| v);
    let n = count as f64;
    let mean = inside_values().sum::<f64>() / n;
    Ok(inside_values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n)
}

/// A row-major H×W image of `f64`.
struct Plane {
    width: usize,
    height: usize,
    px: Vec<f64>,
}

impl Plane {
    /// Copies a `CV_8UC1` Mat (continuous or not) to `f64`.
    fn from_u8(mat: &Mat) -> opencv::Result<Self> {
        let mut px = Vec::with_capacity(mat.total());
        for r in 0..mat.rows() {
            px.extend(mat.at_row::<u8>(r)?.iter().map(|&v| f64::from(v)));
        }
        Ok(Self { width: mat.cols() as usize, height: mat.rows() as usize, px })
    }

    /// Copies a `CV_64FC1` Mat (continuous or not).
    fn from_f64(mat: &Mat) -> opencv::Result<Self> {
        let mut px = Vec::with_capacity(mat.total());
        for r in 0..mat.rows() {
            px.extend_from_slice(mat.at_row::<f64>(r)?);
        }
        Ok(Self { width: mat.cols() as usize, height: mat.rows() as usize, px })
    }

    /// Returns row `r`.
    fn row(&self, r: usize) -> &[f64] {
        &self.px[r * self.width..(r + 1) * self.width]
    }

    /// Returns a copy with a 1-px border of zeros: (H+2)×(W+2).
    fn zero_padded(&self) -> Self {
        let (width, height) = (self.width + 2, self.height + 2);
        let mut px = vec![0.0; width * height];
        for r in 0..self.height {
            px[(r + 1) * width + 1..][..self.width].copy_from_slice(self.row(r));
        }
        Self { width, height, px }
    }
}

/// Checks that `gray` and `mask` are non-empty 2-D `CV_8UC1` Mats of one size.
fn check_inputs(gray: &Mat, mask: &Mat) -> opencv::Result<()> {
    for (name, mat) in [("gray", gray), ("mask", mask)] {
        if mat.dims() != 2 || mat.empty() || mat.typ() != CV_8UC1 {
            let typ = core::type_to_string(mat.typ())?;
            let msg = format!(
                "sharpness: {name} must be a non-empty 2-D CV_8UC1 image, got {typ} with {} dims \
                 and {} elements",
                mat.dims(),
                mat.total()
            );
            return Err(opencv::Error::new(core::StsBadArg, msg));
        }
    }
    if gray.size()? != mask.size()? {
        let (g, m) = (gray.size()?, mask.size()?);
        let msg = format!(
            "sharpness: mask is {}x{} but gray is {}x{}; pass the face's own hull mask",
            m.width, m.height, g.width, g.height
        );
        return Err(opencv::Error::new(core::StsBadArg, msg));
    }
    Ok(())
}

/// Returns which pixels count: nonzero in `mask` eroded by [`MASK_ERODE_PX`]. The image
/// border does not erode the mask.
fn inside_pixels(mask: &Mat) -> opencv::Result<Vec<bool>> {
    let side = 2 * MASK_ERODE_PX + 1;
    let kernel = imgproc::get_structuring_element(
        imgproc::MORPH_RECT,
        Size::new(side, side),
        Point::new(-1, -1),
    )?;
    let mut eroded = Mat::default();
    let border_value = imgproc::morphology_default_border_value()?;
    let anchor = Point::new(-1, -1);
    imgproc::erode(mask, &mut eroded, &kernel, anchor, 1, core::BORDER_CONSTANT, border_value)?;
    let mut inside = Vec::with_capacity(eroded.total());
    for r in 0..eroded.rows() {
        inside.extend(eroded.at_row::<u8>(r)?.iter().map(|&v| v != 0));
    }
    Ok(inside)
}

/// Finds the block-classification edges of skimage's `canny(image)` (σ 1, thresholds 0.1 and
/// 0.2). The 1-px image border is never an edge, as in skimage.
fn canny_edges(gray: &Mat) -> opencv::Result<Vec<bool>> {
    let mut image = Mat::default();
    gray.convert_to(&mut image, CV_32F, 1.0, 0.0)?;
    let mut smoothed = Mat::default();
    let ksize = Size::new(CANNY_KSIZE, CANNY_KSIZE);
    imgproc::gaussian_blur(&image, &mut smoothed, ksize, CANNY_SIGMA, CANNY_SIGMA, BORDER_DEFAULT)?;
    let mut derivatives = [Mat::default(), Mat::default()];
    for (d, (dx, dy)) in derivatives.iter_mut().zip([(1, 0), (0, 1)]) {
        let mut float = Mat::default();
        let k = CANNY_SOBEL_KSIZE;
        imgproc::sobel(&smoothed, &mut float, CV_32F, dx, dy, k, 1.0, 0.0, BORDER_DEFAULT)?;
        float.convert_to(d, CV_16S, CANNY_SCALE, 0.0)?;
    }
    let mut edges = Mat::default();
    let (low, high) = (CANNY_LOW * CANNY_SCALE, CANNY_HIGH * CANNY_SCALE);
    let [dx, dy] = &derivatives;
    imgproc::canny_derivative(dx, dy, &mut edges, low, high, true)?;
    let (h, w) = (edges.rows() as usize, edges.cols() as usize);
    let mut out = vec![false; h * w];
    for r in 1..h.saturating_sub(1) {
        let row = edges.at_row::<u8>(r as i32)?;
        for c in 1..w.saturating_sub(1) {
            out[r * w + c] = row[c] != 0;
        }
    }
    Ok(out)
}

/// Returns the squared x-Sobel response (DFL: `sobel`). It is `convolve2d(image, h1.T)` with
/// `h1 = [[1,2,1],[0,0,0],[-1,-2,-1]] / 8` and zeros outside the image, as in DFL.
fn sobel_strength2(image: &Plane) -> Plane {
    let padded = image.zero_padded();
    let mut px = Vec::with_capacity(image.px.len());
    for r in 0..image.height {
        let [up, mid, down] = [r, r + 1, r + 2].map(|pr| padded.row(pr));
        // Padded column c is image column c − 1, and c + 2 is c + 1.
        px.extend((0..image.width).map(|c| {
            let s = (up[c + 2] - up[c] + 2.0 * (mid[c + 2] - mid[c]) + down[c + 2] - down[c]) / 8.0;
            s * s
        }));
    }
    Plane { px, ..*image }
}

/// Finds the width-measurement edges inside the mask (DFL: `sobel` + `_simple_thinning`).
///
/// Strength² at or below 2·√mean(strength²) is zeroed. DFL compares strength² with a value in
/// units of strength, and we keep that quirk. The mean runs over inside pixels only; DFL's runs
/// over the whole masked image. A pixel is an edge when its strength² beats both horizontal or
/// both vertical neighbours (0 outside the image).
fn sobel_edges(image: &Plane, inside: &[bool]) -> Vec<bool> {
    let mut strength2 = sobel_strength2(image);
    let (sum, n) = strength2
        .px
        .iter()
        .zip(inside)
        .filter(|&(_, &i)| i)
        .fold((0.0, 0usize), |(sum, n), (&s2, _)| (sum + s2, n + 1));
    // DFL's relative threshold (strength² against an RMS strength), plus our absolute floor.
    let thresh2 = (2.0 * (sum / n.max(1) as f64).sqrt()).max(MIN_EDGE_GRADIENT * MIN_EDGE_GRADIENT);
    strength2.px.iter_mut().for_each(|s2| *s2 = if *s2 > thresh2 { *s2 } else { 0.0 });
    let padded = strength2.zero_padded();
    let mut edges = Vec::with_capacity(inside.len());
    for (r, inside) in inside.chunks_exact(image.width).enumerate() {
        let [up, mid, down] = [r, r + 1, r + 2].map(|pr| padded.row(pr));
        edges.extend(inside.iter().enumerate().map(|(c, &inside)| {
            // Padded column c + 1 is image column c.
            let s2 = mid[c + 1];
            // `&` and `|`, not `&&` and `||`: no branches to mispredict.
            let across = (s2 > mid[c]) & (s2 > mid[c + 2]);
            let along = (s2 > up[c + 1]) & (s2 > down[c + 1]);
            inside & (across | along)
        }));
    }
    edges
}

/// Measures each edge's width along its row (DFL: `marziliano_method`). The result is 0 where
/// nothing was measured, and otherwise in 2..=202.
///
/// The gradient comes from central differences (DFL: `np.gradient`). Its angle in degrees is
/// rounded to a multiple of 45° (half to even, as `np.round` does). A pixel with no x-gradient
/// gets angle 0, as in DFL. Only angles 0 (intensity rising to the right) and ±180 (falling)
/// are measured. Pixels on the 1-px image border are not measured.
fn marziliano_widths(image: &Plane, edges: &[bool]) -> Vec<u8> {
    let (w, h) = (image.width, image.height);
    let mut widths = vec![0; w * h];
    for r in 1..h.saturating_sub(1) {
        let (above, row, below) = (image.row(r - 1), image.row(r), image.row(r + 1));
        for c in 1..w.saturating_sub(1) {
            if !edges[r * w + c] {
                continue;
            }
            let gx = (row[c + 1] - row[c - 1]) / 2.0;
            let gy = (below[c] - above[c]) / 2.0;
            let Some(rising) = horizontal_direction(gx, gy) else { continue };
            widths[r * w + c] =
                walk_width(row, c, rising, false) + walk_width(row, c, rising, true);
        }
    }
    widths
}

/// Returns `Some(true)` for a rising edge (DFL's quantised angle 0), `Some(false)` for a falling
/// one (±180), and `None` for the other angles, which DFL does not measure.
///
/// DFL computes `45 * np.round(degrees(atan2(gy, gx)) / 45)`, with angle 0 when gx = 0. The
/// boundary is |gy/gx| = tan 22.5° ≈ 0.4142. Away from it a division decides, and near it we
/// ask `atan2` as DFL does, so ties round the same way.
fn horizontal_direction(gx: f64, gy: f64) -> Option<bool> {
    if gx == 0.0 {
        return Some(true);
    }
    let slope = gy.abs() / gx.abs();
    let (below, above) = TAN_22_5_BRACKET;
    let horizontal = if slope < below {
        true
    } else if slope > above {
        false
    } else {
        let quantized = 45.0 * (gy.atan2(gx).to_degrees() / 45.0).round_ties_even();
        quantized == 0.0 || quantized.abs() == 180.0
    };
    horizontal.then_some(gx > 0.0)
}

/// Walks away from the edge at `col` for as long as the row keeps its slope: values keep
/// falling away from the high side, or rising away from the low side. Returns margin + 1,
/// in 1..=101. This is DFL's inner/outer border loop.
fn walk_width(row: &[f64], col: usize, rising: bool, to_right: bool) -> u8 {
    // Walking right along a rising edge (or left along a falling one), values keep going up.
    let goes_up = rising == to_right;
    let keeps_slope = |(inner, outer): (&f64, &f64)| {
        if goes_up { outer - inner > 0.0 } else { outer - inner < 0.0 }
    };
    let steps = if to_right {
        let away = &row[col + 1..];
        away.iter().zip(&away[1..]).take(MAX_MARGIN).take_while(|&p| keeps_slope(p)).count()
    } else {
        let away = row[..col].iter().rev();
        away.clone().zip(away.skip(1)).take(MAX_MARGIN).take_while(|&p| keeps_slope(p)).count()
    };
    // MAX_MARGIN + 1 fits in u8.
    steps as u8 + 1
}

/// Counts the widths in edge blocks whose blur-detection probability buckets below
/// [`SHARP_BUCKETS`], and all widths in edge blocks (DFL: `_calculate_sharpness_metric`).
fn sharpness_metric(image: &Plane, inside: &[bool], canny: &[bool], widths: &[u8]) -> (u32, u32) {
    let min_edges = EDGE_BLOCK_FRACTION * (BLOCK_PX * BLOCK_PX) as f64;
    let widest_sharp = [JNB_LOW_CONTRAST, JNB_HIGH_CONTRAST].map(widest_sharp_width);
    let (mut sharp, mut total) = (0u32, 0u32);
    for by in 0..image.height / BLOCK_PX {
        for bx in 0..image.width / BLOCK_PX {
            let block = Block::gather(image, inside, canny, widths, by, bx);
            let Some(contrast) = block.contrast else { continue };
            if (block.canny_edges as f64) <= min_edges {
                continue;
            }
            let widest = widest_sharp[usize::from(contrast > LOW_CONTRAST)];
            sharp += block.width_counts[..=usize::from(widest)].iter().sum::<u32>();
            total += block.width_counts.iter().sum::<u32>();
        }
    }
    (sharp, total)
}

/// Returns the widest edge whose blur goes unnoticed at just-noticeable width `jnb`.
///
/// DFL buckets each width's p = 1 − exp(−|w/jnb|^β) and counts buckets below
/// [`SHARP_BUCKETS`]. p rises with w, so the sharp widths are 1..=this (3 for JNB 3, 5 for 5).
fn widest_sharp_width(jnb: f64) -> u8 {
    let p_blur = |width: u8| 1.0 - (-(f64::from(width) / jnb).abs().powf(BETA)).exp();
    let sharp = (1..=u8::MAX).take_while(|&w| pblur_bucket(p_blur(w)) < SHARP_BUCKETS).count();
    u8::try_from(sharp).unwrap_or(u8::MAX)
}

/// Returns DFL's histogram bucket `int(round(p, 2) * 100)`. The round trip truncates as DFL
/// does: 0.57 goes to bucket 56.
fn pblur_bucket(p_blur: f64) -> usize {
    ((p_blur * 100.0).round_ties_even() / 100.0 * 100.0) as usize
}

/// What CPBD needs from one 64×64 block, over its inside pixels.
struct Block {
    /// max − min of the inside pixels (DFL: `get_block_contrast`), or `None` when none are
    /// inside.
    contrast: Option<f64>,
    /// Canny edge pixels inside.
    canny_edges: usize,
    /// How many inside edges have each width; index 0 (not measured) stays 0.
    width_counts: [u32; 256],
}

impl Block {
    /// Collects block (`by`, `bx`), counting only inside pixels.
    fn gather(
        image: &Plane,
        inside: &[bool],
        canny: &[bool],
        widths: &[u8],
        by: usize,
        bx: usize,
    ) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut block = Block { contrast: None, canny_edges: 0, width_counts: [0; 256] };
        for r in by * BLOCK_PX..(by + 1) * BLOCK_PX {
            let cols = r * image.width + bx * BLOCK_PX..r * image.width + (bx + 1) * BLOCK_PX;
            for i in cols.filter(|&i| inside[i]) {
                (lo, hi) = (lo.min(image.px[i]), hi.max(image.px[i]));
                block.canny_edges += usize::from(canny[i]);
                block.width_counts[usize::from(widths[i])] += 1;
            }
        }
        block.width_counts[0] = 0;
        // Pixels are whole numbers, so DFL's int(max − min) is exact here.
        block.contrast = (lo <= hi).then_some(hi - lo);
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC3, Rect, Scalar};
    use opencv::imgcodecs;

    /// Side of the test faces, as DFL's common aligned size.
    const FACE_PX: i32 = 256;
    /// The face in `obama.jpg` (910×1137): a square around the head, forehead to chin.
    const OBAMA_FACE: Rect = Rect { x: 330, y: 70, width: 320, height: 320 };

    fn full_mask(size: i32) -> Mat {
        Mat::new_rows_cols_with_default(size, size, CV_8UC1, Scalar::all(255.0)).unwrap()
    }

    /// Builds a `CV_8UC1` image from a pixel function of (row, col).
    fn synthetic(size: i32, f: impl Fn(i32, i32) -> u8) -> Mat {
        let mut mat =
            Mat::new_rows_cols_with_default(size, size, CV_8UC1, Scalar::all(0.0)).unwrap();
        for r in 0..size {
            for (c, px) in mat.at_row_mut::<u8>(r).unwrap().iter_mut().enumerate() {
                *px = f(r, c as i32);
            }
        }
        mat
    }

    /// The obama face as a 256×256 gray crop. Panics with setup's message when the sample is
    /// missing.
    fn obama_face() -> Mat {
        let path = match crate::assets::Assets::from_env().sample("obama.jpg") {
            Ok(path) => path,
            Err(e) => panic!("the sharpness test needs its sample photo: {e}"),
        };
        let path = path.to_str().expect("DFL_HOME is UTF-8 in tests");
        let image = imgcodecs::imread(path, imgcodecs::IMREAD_GRAYSCALE).unwrap();
        assert!(image.cols() >= 650 && image.rows() >= 390, "obama.jpg is not the expected photo");
        let crop = Mat::roi(&image, OBAMA_FACE).unwrap();
        let mut face = Mat::default();
        let size = Size::new(FACE_PX, FACE_PX);
        imgproc::resize(&crop, &mut face, size, 0.0, 0.0, imgproc::INTER_AREA).unwrap();
        face
    }

    fn blurred(image: &Mat, sigma: f64) -> Mat {
        if sigma == 0.0 {
            return image.clone();
        }
        let mut out = Mat::default();
        imgproc::gaussian_blur(image, &mut out, Size::new(0, 0), sigma, sigma, BORDER_DEFAULT)
            .unwrap();
        out
    }

    #[test]
    fn both_scores_fall_as_a_real_face_is_blurred() {
        let face = obama_face();
        let mask = full_mask(FACE_PX);
        let sigmas = [0.0, 1.0, 2.0, 4.0];
        let faces: Vec<Mat> = sigmas.iter().map(|&s| blurred(&face, s)).collect();
        let cpbd: Vec<f64> = faces.iter().map(|f| cpbd_sharpness(f, &mask).unwrap()).collect();
        let lap: Vec<f64> = faces.iter().map(|f| laplacian_variance(f, &mask).unwrap()).collect();
        eprintln!("sigma {sigmas:?}\ncpbd {cpbd:?}\nlaplacian variance {lap:?}");
        // Falling with blur; CPBD reaches 0 once no edge is steep enough to count.
        for scores in [&cpbd, &lap] {
            assert!(
                scores.windows(2).all(|w| w[0] > w[1] || w == [0.0, 0.0]),
                "not falling with blur: {scores:?}"
            );
        }
        assert!(cpbd[1] > 0.0, "a σ 1 blur still has edges: {cpbd:?}");
        assert!(cpbd.iter().all(|s| (0.0..=1.0).contains(s)), "cpbd out of [0, 1]: {cpbd:?}");
    }

    #[test]
    fn a_uniform_image_scores_zero() {
        let flat = synthetic(FACE_PX, |_, _| 128);
        let mask = full_mask(FACE_PX);
        assert_eq!(cpbd_sharpness(&flat, &mask).unwrap(), 0.0);
        assert_eq!(laplacian_variance(&flat, &mask).unwrap(), 0.0);
    }

    /// −1, 0 or 1: which half of an 8-px checker period `x` is in, 0 on the 1-px seam. The seam
    /// is mid-gray, so each checker edge has one strongest pixel and survives DFL's thinning. A
    /// hard 0/255 step would tie its two pixels, and thinning would drop it.
    fn checker_phase(x: i32) -> i32 {
        match (x % 8, (x / 8) % 2) {
            (7, _) => 0,
            (_, 0) => -1,
            _ => 1,
        }
    }

    /// The square [40, 216)², which does not line up with the 64-px blocks.
    fn in_test_mask(r: i32, c: i32) -> bool {
        (40..216).contains(&r) && (40..216).contains(&c)
    }

    /// 256×256. `outside(row, col)` fills everything outside [`in_test_mask`]. Inside, each row
    /// runs from 60 up to 200 through three edges, one per block column:
    /// - block 1: a 3-px step 60 → 90 → 120 at x = 96. Its width is 2 and its block contrast
    ///   is 60 (JNB 3), so it is sharp.
    /// - block 2: a low-contrast 5-px step 120 → 160 at x = 150..=154. Its width is 4 and its
    ///   block contrast is 40 (JNB 5), so it is sharp. With JNB 3 it would be blurry.
    /// - block 3: a 10-px step 160 → 200 at x = 196..=206. Its width is 10, so it is blurry.
    ///   Its strength² peaks at 49: over the threshold of the inside pixels (≈ 7), under that
    ///   of the whole checkered image.
    fn three_steps(outside: impl Fn(i32, i32) -> u8) -> Mat {
        const SOFT: [u8; 5] = [120, 125, 140, 155, 160];
        const WIDE: [u8; 11] = [160, 161, 163, 167, 173, 180, 187, 193, 197, 199, 200];
        synthetic(FACE_PX, |r, c| match c {
            _ if !in_test_mask(r, c) => outside(r, c),
            ..96 => 60,
            96 => 90,
            97..150 => 120,
            150..155 => SOFT[(c - 150) as usize],
            155..196 => 160,
            196..207 => WIDE[(c - 196) as usize],
            _ => 200,
        })
    }

    #[test]
    fn pixels_outside_the_mask_do_not_change_the_cpbd_score() {
        let checker = three_steps(|r, c| (128 + 127 * checker_phase(r) * checker_phase(c)) as u8);
        let gray = three_steps(|_, _| 128);
        let mask = synthetic(FACE_PX, |r, c| if in_test_mask(r, c) { 255 } else { 0 });
        let (sharp, total) = edge_counts(&checker, &mask).unwrap();
        // Each inside row has two sharp edges and one blurry edge.
        assert_eq!(3 * sharp, 2 * total, "{sharp} of {total}");
        assert_eq!((sharp, total), edge_counts(&gray, &mask).unwrap());
        // Without the mask the checker counts, so the test would notice a mask that was ignored.
        let full = full_mask(FACE_PX);
        let (checker_full, gray_full) =
            (cpbd_sharpness(&checker, &full).unwrap(), cpbd_sharpness(&gray, &full).unwrap());
        assert!(checker_full > gray_full + 0.1, "{checker_full} vs {gray_full}");
    }

    #[test]
    fn laplacian_variance_ignores_detail_beyond_the_kernel_outside_the_mask() {
        // Flat in [64, 192)², checker elsewhere. The mask [72, 184)² erodes to [74, 182)², and
        // the 11-px Laplacian there reaches [69, 187)²: flat, so the variance is exactly 0.
        let flat_in = |r: i32, c: i32| (64..192).contains(&r) && (64..192).contains(&c);
        let image = synthetic(FACE_PX, |r, c| {
            if flat_in(r, c) {
                128
            } else {
                (128 + 127 * checker_phase(r) * checker_phase(c)) as u8
            }
        });
        let mask = synthetic(FACE_PX, |r, c| {
            if (72..184).contains(&r) && (72..184).contains(&c) { 255 } else { 0 }
        });
        assert_eq!(laplacian_variance(&image, &mask).unwrap(), 0.0);
        assert!(laplacian_variance(&image, &full_mask(FACE_PX)).unwrap() > 0.0);
    }

    /// A 5-row plane whose every row is `f(col)`.
    fn rows_of(width: usize, f: impl Fn(usize) -> f64) -> Plane {
        let row: Vec<f64> = (0..width).map(f).collect();
        Plane { width, height: 5, px: row.repeat(5) }
    }

    /// The edge mask with `cols` marked on the inner rows 1..4.
    fn edges_at(plane: &Plane, cols: &[usize]) -> Vec<bool> {
        let mut edges = vec![false; plane.px.len()];
        for r in 1..4 {
            cols.iter().for_each(|&c| edges[r * plane.width + c] = true);
        }
        edges
    }

    #[test]
    fn edge_widths_follow_the_walk_rule_on_a_ramp() {
        // 0 for x < 100; 40, 80, 120, 160 at x = 100..=103; 200 for x >= 104. Every pixel has
        // gy = 0. On the ramp gx = 40 > 0, so the angle is 0: a rising edge. From an edge at c
        // in 100..=103:
        // - Left walk: margin m compares outer c−2−m with inner c−1−m. It goes on while outer <
        //   inner, which holds down to the pair (99, 98) = (0, 0). So it stops at
        //   m = c − 100, and width_left = c − 99.
        // - Right walk: it goes on while outer > inner, up to the pair (104, 105) = (200, 200).
        //   So it stops at m = 103 − c, and width_right = 104 − c.
        // The width is 5 at each of the four pixels, the number of 40-steps from 99 to 104.
        let ramp = |x: usize| match x {
            ..100 => 0.0,
            100..104 => 40.0 * (x - 99) as f64,
            _ => 200.0,
        };
        let cols = [100, 101, 102, 103];
        for plane in [rows_of(256, ramp), rows_of(256, |x| 200.0 - ramp(x))] {
            // The second plane is the mirror image: it falls, the angle is 180, and the width is the same.
            let widths = marziliano_widths(&plane, &edges_at(&plane, &cols));
            for r in 0..5 {
                for c in 0..256 {
                    let want = if (1..4).contains(&r) && cols.contains(&c) { 5 } else { 0 };
                    assert_eq!(widths[r * 256 + c], want, "row {r} col {c}");
                }
            }
        }
    }

    #[test]
    fn edge_width_walks_stop_at_the_image_or_after_101_px() {
        // Rising everywhere. From col 128, both walks run 100 margins without a break: 101 + 101.
        // From col 10, the left walk runs out of image at margin 9 (outer = −1): 10 + 101.
        let plane = rows_of(256, |x| x as f64);
        let widths = marziliano_widths(&plane, &edges_at(&plane, &[10, 128]));
        assert_eq!((widths[256 + 10], widths[256 + 128]), (111, 202));
        // A diagonal gradient (45°) is not measured.
        let diagonal =
            Plane { width: 8, height: 8, px: (0..64).map(|i| f64::from(i / 8 + i % 8)).collect() };
        let all = vec![true; 64];
        assert!(marziliano_widths(&diagonal, &all).iter().all(|&w| w == 0));
    }

    #[test]
    fn horizontal_direction_matches_dfls_rounded_atan2() {
        // np.gradient of whole-number pixels gives multiples of 0.5.
        let halves = || (-400..=400).map(|i| f64::from(i) / 2.0);
        for gx in halves() {
            for gy in halves() {
                let angle = if gx != 0.0 { gy.atan2(gx).to_degrees() } else { 0.0 };
                let quantized = 45.0 * (angle / 45.0).round_ties_even();
                let want = if quantized == 0.0 {
                    Some(true)
                } else if quantized.abs() == 180.0 {
                    Some(false)
                } else {
                    None
                };
                assert_eq!(horizontal_direction(gx, gy), want, "gx {gx} gy {gy}");
            }
        }
    }

    #[test]
    fn blur_buckets_truncate_like_dfl() {
        assert_eq!(pblur_bucket(0.57), 56); // int(0.57 * 100) = int(56.99999999999999)
        assert_eq!(pblur_bucket(0.634), 63);
        assert_eq!(pblur_bucket(0.636), 64);
        // JNB 3: width 3 is p = 1 − e⁻¹ = 0.632 (bucket 63, sharp), width 4 is p = 0.94.
        assert_eq!(widest_sharp_width(JNB_HIGH_CONTRAST), 3);
        // JNB 5: width 5 is p = 0.632 again, width 6 is p = 0.85.
        assert_eq!(widest_sharp_width(JNB_LOW_CONTRAST), 5);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let gray = synthetic(FACE_PX, |r, c| (r ^ c) as u8);
        let mask = full_mask(FACE_PX);
        let color =
            Mat::new_rows_cols_with_default(FACE_PX, FACE_PX, CV_8UC3, Scalar::all(9.0)).unwrap();
        let small_mask = full_mask(FACE_PX / 2);
        let mut float_mask = Mat::default();
        mask.convert_to(&mut float_mask, CV_64F, 1.0, 0.0).unwrap();
        let empty = Mat::default();
        let bad = [
            (&color, &mask),
            (&gray, &small_mask),
            (&gray, &float_mask),
            (&empty, &empty),
            (&gray, &empty),
        ];
        for (i, (g, m)) in bad.into_iter().enumerate() {
            assert!(cpbd_sharpness(g, m).is_err(), "cpbd case {i}");
            assert!(laplacian_variance(g, m).is_err(), "laplacian case {i}");
        }
        let err = cpbd_sharpness(&gray, &small_mask).unwrap_err();
        assert_eq!(err.code, core::StsBadArg);
        assert!(err.message.contains("128x128"), "{}", err.message);
    }

    #[test]
    fn a_face_under_one_block_scores_zero() {
        let small = synthetic(63, |r, c| ((r * 4) ^ (c * 4)) as u8);
        assert_eq!(cpbd_sharpness(&small, &full_mask(63)).unwrap(), 0.0);
        assert!(laplacian_variance(&small, &full_mask(63)).unwrap() > 0.0);
    }

    #[test]
    #[ignore = "timing; run with --ignored --nocapture"]
    fn time_per_256px_face() {
        let (face, mask) = (obama_face(), full_mask(FACE_PX));
        // The best of 20 batches of 20 calls: other work on the machine only adds time.
        let best_ms = |f: &dyn Fn() -> f64| {
            let batch = |_| {
                let start = std::time::Instant::now();
                (0..20).for_each(|_| assert!(f() >= 0.0));
                start.elapsed().as_secs_f64() * 1e3 / 20.0
            };
            (0..20).map(batch).fold(f64::INFINITY, f64::min)
        };
        let cpbd = best_ms(&|| cpbd_sharpness(&face, &mask).unwrap());
        let lap = best_ms(&|| laplacian_variance(&face, &mask).unwrap());
        eprintln!("per 256x256 face: cpbd_sharpness {cpbd:.2} ms, laplacian_variance {lap:.2} ms");
    }
}
