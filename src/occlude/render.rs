//! Drawing the occluders of one frame: each shape is filled hard-edged (no anti-aliasing) into
//! its own mask, its texture is warped along with it, and the texture is copied into the frame
//! exactly where the mask is set. The truth mask is the union of those masks, so it is exactly
//! the set of pixels that were painted over.

use opencv::core::{self, BORDER_REFLECT, CV_8UC1, CV_8UC3, CV_32FC1, Mat, Point, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::plan::{Occluder, OccluderKind};

/// Fractional bits of the polygon points handed to OpenCV (sub-pixel placement, 1/16 px).
const SHIFT_BITS: i32 = 4;
/// Cells across the coarse and the fine noise of a texture.
const COARSE_CELLS: i32 = 5;
const FINE_CELLS: i32 = 14;

/// One frame with its occluders drawn.
#[derive(Debug)]
pub struct Occluded {
    /// The frame with the occluders painted in (BGR u8).
    pub image: Mat,
    /// 255 where an occluder was painted, 0 elsewhere (u8, one channel).
    pub mask: Mat,
    /// Pixels set in `mask`.
    pub covered_px: usize,
}

/// Draws the occluders of `occluders` active on frame `index` over `frame` (BGR u8), in plan
/// order (a later one covers an earlier one).
///
/// # Errors
/// OpenCV's error.
pub fn occlude_frame(
    frame: &Mat,
    occluders: &[Occluder],
    index: usize,
) -> opencv::Result<Occluded> {
    let (w, h) = (frame.cols(), frame.rows());
    let mut image = frame.try_clone()?;
    let mut mask = Mat::zeros(h, w, CV_8UC1)?.to_mat()?;
    for occluder in occluders.iter().filter(|o| o.active(index)) {
        let placed = Placement::of(occluder, index, w, h);
        let own = shape_mask(occluder, &placed, w, h)?;
        if core::count_non_zero(&own)? == 0 {
            continue;
        }
        let texture = placed.warp(&texture(occluder, &placed)?, w, h)?;
        texture.copy_to_masked(&mut image, &own)?;
        let mut union = Mat::default();
        core::bitwise_or_def(&mask, &own, &mut union)?;
        mask = union;
    }
    let covered_px = usize::try_from(core::count_non_zero(&mask)?).unwrap_or(0);
    Ok(Occluded { image, mask, covered_px })
}

/// Where an occluder is on a frame of `w × h`: shape units → frame pixels.
struct Placement {
    /// Pixels per shape unit.
    unit_px: f32,
    /// The shape's centre in the frame, in pixels.
    centre: [f32; 2],
    /// cos and sin of the rotation.
    rotation: [f32; 2],
    /// Side of the texture canvas in pixels (the shape fits in it at any rotation).
    canvas_px: i32,
}

impl Placement {
    fn of(occluder: &Occluder, index: usize, w: i32, h: i32) -> Self {
        let short = w.min(h) as f32;
        let unit_px = occluder.size * short;
        let (offset, angle) = occluder.pose(index);
        let centre = [w as f32 / 2.0 + offset[0] * short, h as f32 / 2.0 + offset[1] * short];
        let canvas_px = (2.0 * occluder.extent() * unit_px).ceil() as i32 + 4;
        Self { unit_px, centre, rotation: [angle.cos(), angle.sin()], canvas_px }
    }

    /// A point in shape units → frame pixels.
    fn to_frame(&self, p: [f32; 2]) -> [f32; 2] {
        let [c, s] = self.rotation;
        let (x, y) = (p[0] * self.unit_px, p[1] * self.unit_px);
        [self.centre[0] + c * x - s * y, self.centre[1] + s * x + c * y]
    }

    /// Warps a texture canvas (shape centre at its middle, one shape unit = `unit_px`) into a
    /// `w × h` frame; outside the canvas the texture is mirrored, so every pixel has one.
    fn warp(&self, canvas: &Mat, w: i32, h: i32) -> opencv::Result<Mat> {
        let [c, s] = self.rotation;
        let mid = self.canvas_px as f32 / 2.0;
        let m = [
            [f64::from(c), f64::from(-s), f64::from(self.centre[0] - (c * mid - s * mid))],
            [f64::from(s), f64::from(c), f64::from(self.centre[1] - (s * mid + c * mid))],
        ];
        let mut out = Mat::default();
        imgproc::warp_affine(
            canvas,
            &mut out,
            &Mat::from_slice_2d(&m)?,
            Size::new(w, h),
            imgproc::INTER_LINEAR,
            BORDER_REFLECT,
            Scalar::all(0.0),
        )?;
        Ok(out)
    }
}

/// The occluder's shape filled with 255 in a `w × h` mask, hard-edged.
fn shape_mask(occluder: &Occluder, placed: &Placement, w: i32, h: i32) -> opencv::Result<Mat> {
    let mut mask = Mat::zeros(h, w, CV_8UC1)?.to_mat()?;
    let scale = (1 << SHIFT_BITS) as f32;
    for part in &occluder.parts {
        let points: core::Vector<Point> = part
            .iter()
            .map(|&p| {
                let [x, y] = placed.to_frame(p);
                Point::new((x * scale).round() as i32, (y * scale).round() as i32)
            })
            .collect();
        let polygons = core::Vector::<core::Vector<Point>>::from_iter([points]);
        imgproc::fill_poly(
            &mut mask,
            &polygons,
            Scalar::all(255.0),
            imgproc::LINE_8,
            SHIFT_BITS,
            Point::new(0, 0),
        )?;
    }
    Ok(mask)
}

/// The occluder's texture on its canvas: its colour modulated by smooth seeded noise (coarse
/// and fine) and a little grain; a bar also gets a highlight stripe along its length.
fn texture(occluder: &Occluder, placed: &Placement) -> opencv::Result<Mat> {
    let side = placed.canvas_px;
    let mut rng = ChaCha8Rng::seed_from_u64(occluder.texture_seed);
    let coarse = smooth_noise(&mut rng, COARSE_CELLS, side, imgproc::INTER_CUBIC)?;
    let fine = smooth_noise(&mut rng, FINE_CELLS, side, imgproc::INTER_LINEAR)?;
    let mut canvas = Mat::new_rows_cols_with_default(side, side, CV_8UC3, Scalar::all(0.0))?;
    let mid = side as f32 / 2.0;
    let bytes = canvas.data_bytes_mut()?;
    for (i, px) in bytes.chunks_exact_mut(3).enumerate() {
        let grain: f32 = rng.random();
        let v = 0.55 * coarse[i].clamp(0.0, 1.0) + 0.3 * fine[i].clamp(0.0, 1.0) + 0.15 * grain;
        let mut factor = 0.6 + 0.8 * v;
        if occluder.kind == OccluderKind::Bar {
            let x = ((i as i32 % side) as f32 - mid) / placed.unit_px;
            if (0.02..0.07).contains(&x) {
                factor += 0.6;
            }
        }
        for (out, &base) in px.iter_mut().zip(&occluder.colour_bgr) {
            *out = (f32::from(base) * factor).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(canvas)
}

/// Values in about [0, 1]: a `cells × cells` grid of uniform noise resized to `side × side`.
fn smooth_noise(
    rng: &mut ChaCha8Rng,
    cells: i32,
    side: i32,
    interpolation: i32,
) -> opencv::Result<Vec<f32>> {
    let mut grid = Mat::new_rows_cols_with_default(cells, cells, CV_32FC1, Scalar::all(0.0))?;
    for v in grid.data_typed_mut::<f32>()? {
        *v = rng.random();
    }
    let mut big = Mat::default();
    imgproc::resize(&grid, &mut big, Size::new(side, side), 0.0, 0.0, interpolation)?;
    Ok(big.data_typed::<f32>()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::occlude::plan::plan;
    use opencv::core::Vec3b;

    fn flat_frame(w: i32, h: i32, bgr: [u8; 3]) -> Mat {
        let colour = Scalar::new(f64::from(bgr[0]), f64::from(bgr[1]), f64::from(bgr[2]), 0.0);
        Mat::new_rows_cols_with_default(h, w, CV_8UC3, colour).unwrap()
    }

    /// A frame whose every pixel differs: a gradient in two channels.
    fn gradient_frame(w: i32, h: i32) -> Mat {
        let mut m = flat_frame(w, h, [0, 0, 0]);
        for y in 0..h {
            for x in 0..w {
                *m.at_2d_mut::<Vec3b>(y, x).unwrap() = Vec3b::from([x as u8, y as u8, 77]);
            }
        }
        m
    }

    #[test]
    fn pixels_change_exactly_where_the_truth_mask_is_set() {
        let (w, h) = (176, 144);
        let occluders = plan(5, Some(3), 60);
        let frame = gradient_frame(w, h);
        let mut covered_frames = 0;
        for index in 0..60 {
            let out = occlude_frame(&frame, &occluders, index).unwrap();
            assert_eq!((out.mask.typ(), out.mask.rows(), out.mask.cols()), (CV_8UC1, h, w));
            covered_frames += usize::from(out.covered_px > 0);
            // Every truth pixel holds the texture, every other pixel the frame: redraw the
            // texture alone and compare pixel by pixel.
            let texture_only = occlude_frame(&flat_frame(w, h, [0, 0, 0]), &occluders, index);
            let texture_only = texture_only.unwrap();
            assert_eq!(texture_only.mask.data_bytes().unwrap(), out.mask.data_bytes().unwrap());
            for y in 0..h {
                for x in 0..w {
                    let m = *out.mask.at_2d::<u8>(y, x).unwrap();
                    let got = *out.image.at_2d::<Vec3b>(y, x).unwrap();
                    let src = *frame.at_2d::<Vec3b>(y, x).unwrap();
                    let tex = *texture_only.image.at_2d::<Vec3b>(y, x).unwrap();
                    match m {
                        0 => assert_eq!(got, src, "outside the mask at {x},{y}"),
                        255 => {
                            assert_eq!(got, tex, "inside the mask at {x},{y}");
                            if tex != src {
                                assert_ne!(got, src);
                            }
                        }
                        v => panic!("mask value {v} at {x},{y}: not binary"),
                    }
                }
            }
        }
        assert!(covered_frames > 20 && covered_frames < 60, "{covered_frames} frames covered");
    }

    #[test]
    fn the_same_plan_draws_the_same_pixels() {
        let occluders = plan(11, None, 40);
        let frame = gradient_frame(120, 100);
        for index in [0, 7, 19, 33] {
            let a = occlude_frame(&frame, &occluders, index).unwrap();
            let b = occlude_frame(&frame, &occluders, index).unwrap();
            assert_eq!(a.image.data_bytes().unwrap(), b.image.data_bytes().unwrap());
            assert_eq!(a.mask.data_bytes().unwrap(), b.mask.data_bytes().unwrap());
        }
    }

    #[test]
    fn a_frame_without_active_occluders_is_unchanged() {
        let occluders = plan(2, Some(1), 100);
        let idle = (0..100).find(|&i| !occluders[0].active(i)).unwrap();
        let frame = gradient_frame(64, 48);
        let out = occlude_frame(&frame, &occluders, idle).unwrap();
        assert_eq!(out.covered_px, 0);
        assert_eq!(out.image.data_bytes().unwrap(), frame.data_bytes().unwrap());
    }
}
