//! The inside of a mouth the warp opens wider than the portrait's: stretching a closed mouth
//! smears the lips into a pink band, so the new opening is shaded with a dark tone taken
//! from the portrait's own lips, feathered at the edge.

use opencv::core::{self, CV_8UC1, Mat, Point, Rect, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

/// iBUG 68 indices of the outer lip contour (48–59) and the inner one (60–67).
const OUTER_LIP: std::ops::Range<usize> = 48..60;
const INNER_LIP: std::ops::Range<usize> = 60..68;
/// iBUG 68 indices of the mouth corners.
const MOUTH_CORNERS: [usize; 2] = [48, 54];
/// The mouth interior's colour as a share of the lips' mean colour (a dark red-brown that
/// follows the photo's lighting and white balance).
const INTERIOR_GAIN: f64 = 0.15;
/// Opacity of the shade over an opening the portrait did not have at all.
const MAX_OPACITY: f32 = 0.95;
/// Feather (Gaussian sigma) of the shade's edge, as a share of the mouth width.
const FEATHER_PER_MOUTH_WIDTH: f64 = 0.04;
/// Bits of sub-pixel precision when drawing the opening.
const POLY_SHIFT: i32 = 4;

/// What the shade needs from a portrait: its lip colour and its own mouth opening.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthShade {
    /// The interior colour, BGR.
    color: [f32; 3],
    /// Area of the portrait's inner-lip polygon in square pixels.
    source_area_px2: f64,
}

impl MouthShade {
    /// Measures the lips of the portrait `bgr` with 68 `landmarks` (its pixels).
    ///
    /// # Errors
    /// OpenCV's error (e.g. `bgr` is not 8-bit 3-channel).
    pub fn measure(bgr: &Mat, landmarks: &[[f32; 2]]) -> opencv::Result<Self> {
        if landmarks.len() < INNER_LIP.end {
            // Not an iBUG 68 layout: never shade.
            return Ok(Self { color: [0.0; 3], source_area_px2: f64::INFINITY });
        }
        let mut mask = Mat::new_size_with_default(bgr.size()?, CV_8UC1, Scalar::all(0.0))?;
        fill(&mut mask, &landmarks[OUTER_LIP], [0, 0], 255.0)?;
        fill(&mut mask, &landmarks[INNER_LIP], [0, 0], 0.0)?;
        let lips = core::mean(bgr, &mask)?;
        let color = [0, 1, 2].map(|c| (lips[c] * INTERIOR_GAIN) as f32);
        Ok(Self { color, source_area_px2: polygon_area(&landmarks[INNER_LIP]) })
    }

    /// Shades the inner-lip polygon of `targets` in `bgr` (the warped frame), as strongly as
    /// its area exceeds the portrait's: not at all when the mouth is no wider open.
    ///
    /// # Shapes
    /// `bgr`: `CV_8UC3`, continuous (as the warp returns it); `targets`: 68 points in its
    /// pixels.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn apply(&self, bgr: &mut Mat, targets: &[[f32; 2]]) -> opencv::Result<()> {
        if targets.len() < INNER_LIP.end {
            return Ok(());
        }
        let inner = &targets[INNER_LIP];
        let area = polygon_area(inner);
        if area <= self.source_area_px2 || area < 1.0 {
            return Ok(());
        }
        let opacity = MAX_OPACITY * (1.0 - self.source_area_px2 / area) as f32;
        let [a, b] = MOUTH_CORNERS.map(|i| targets[i]);
        let sigma =
            (FEATHER_PER_MOUTH_WIDTH * f64::from((a[0] - b[0]).hypot(a[1] - b[1]))).max(0.5);
        let roi = padded_bounds(inner, (3.0 * sigma).ceil() as i32, bgr.size()?);
        if roi.width <= 0 || roi.height <= 0 {
            return Ok(());
        }
        let mut mask = Mat::new_size_with_default(roi.size(), CV_8UC1, Scalar::all(0.0))?;
        fill(&mut mask, inner, [roi.x, roi.y], 255.0)?;
        let mut soft = Mat::default();
        imgproc::gaussian_blur(
            &mask,
            &mut soft,
            Size::new(0, 0),
            sigma,
            sigma,
            core::BORDER_CONSTANT,
        )?;
        self.blend(bgr, &soft, roi, opacity)
    }

    /// Mixes the interior colour into `bgr` inside `roi`, weighted by `soft` (0–255) ·
    /// `opacity`.
    fn blend(&self, bgr: &mut Mat, soft: &Mat, roi: Rect, opacity: f32) -> opencv::Result<()> {
        let width = bgr.cols() as usize;
        let weights = soft.data_bytes()?;
        let pixels = bgr.data_bytes_mut()?;
        let (rw, rh) = (roi.width as usize, roi.height as usize);
        for y in 0..rh {
            for x in 0..rw {
                let w = f32::from(weights[y * rw + x]) / 255.0 * opacity;
                if w <= 0.0 {
                    continue;
                }
                let at = ((roi.y as usize + y) * width + roi.x as usize + x) * 3;
                for (c, px) in pixels[at..at + 3].iter_mut().enumerate() {
                    *px = (f32::from(*px) * (1.0 - w) + self.color[c] * w).round() as u8;
                }
            }
        }
        Ok(())
    }
}

/// Draws the polygon `points` (shifted by `-origin`) into `mask` with `value`, anti-aliased.
fn fill(mask: &mut Mat, points: &[[f32; 2]], origin: [i32; 2], value: f64) -> opencv::Result<()> {
    let scale = f32::from(1u8 << POLY_SHIFT);
    let poly: Vector<Point> = points
        .iter()
        .map(|p| {
            let x = ((p[0] - origin[0] as f32) * scale).round() as i32;
            let y = ((p[1] - origin[1] as f32) * scale).round() as i32;
            Point::new(x, y)
        })
        .collect();
    let polys: Vector<Vector<Point>> = std::iter::once(poly).collect();
    imgproc::fill_poly(
        mask,
        &polys,
        Scalar::all(value),
        imgproc::LINE_AA,
        POLY_SHIFT,
        Point::new(0, 0),
    )
}

/// Returns the bounding box of `points` grown by `pad` pixels, clipped to `size`.
fn padded_bounds(points: &[[f32; 2]], pad: i32, size: Size) -> Rect {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let x0 = (lo[0].floor() as i32 - pad).max(0);
    let y0 = (lo[1].floor() as i32 - pad).max(0);
    let x1 = (hi[0].ceil() as i32 + pad + 1).min(size.width);
    let y1 = (hi[1].ceil() as i32 + pad + 1).min(size.height);
    Rect::new(x0, y0, x1 - x0, y1 - y0)
}

/// Returns the area of a simple polygon (shoelace), in square pixels.
fn polygon_area(points: &[[f32; 2]]) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            f64::from(a[0]) * f64::from(b[1]) - f64::from(b[0]) * f64::from(a[1])
        })
        .sum();
    twice.abs() / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_8UC3;

    /// 68 points with the lips of a mouth centred at (50, 50); `gap` opens the inner lips.
    fn mouth(gap: f32) -> Vec<[f32; 2]> {
        let mut pts = vec![[10.0, 10.0]; 68];
        for (k, i) in OUTER_LIP.enumerate() {
            let a = k as f32 / 12.0 * std::f32::consts::TAU;
            pts[i] = [50.0 - 20.0 * a.cos(), 50.0 + (8.0 + gap / 2.0) * a.sin()];
        }
        for (k, i) in INNER_LIP.enumerate() {
            let a = k as f32 / 8.0 * std::f32::consts::TAU;
            pts[i] = [50.0 - 14.0 * a.cos(), 50.0 + (0.5 + gap / 2.0) * a.sin()];
        }
        pts
    }

    #[test]
    fn a_wider_mouth_gets_a_dark_inside_and_a_closed_one_nothing() {
        let lips = Scalar::new(90.0, 80.0, 160.0, 0.0);
        let portrait = Mat::new_rows_cols_with_default(100, 100, CV_8UC3, lips).expect("mat");
        let shade = MouthShade::measure(&portrait, &mouth(0.0)).expect("measure");
        assert!((shade.color[2] - 24.0).abs() < 1.0, "{shade:?}");

        let mut same = portrait.clone();
        shade.apply(&mut same, &mouth(0.0)).expect("apply");
        assert_eq!(same.data_bytes().expect("u8"), portrait.data_bytes().expect("u8"));

        let mut open = portrait.clone();
        shade.apply(&mut open, &mouth(16.0)).expect("apply");
        let centre = *open.at_2d::<core::Vec3b>(50, 50).expect("px");
        assert!(centre[2] < 70, "the inside is dark: {centre:?}");
        let corner = *open.at_2d::<core::Vec3b>(5, 5).expect("px");
        assert_eq!(corner[2], 160, "outside the mouth nothing changes");
    }
}
