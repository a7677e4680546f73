//! `--debug` images: each frame with the detector's box, the 68 landmarks and the outline of
//! every aligned crop drawn on it (DFL's `aligned_debug`).

use opencv::core::{Mat, Point, Rect, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::face::align::{self, Affine};

/// The detector's box: green (BGR).
const BOX_COLOUR: Scalar = Scalar::new(0.0, 255.0, 0.0, 0.0);
/// Landmarks: yellow.
const LANDMARK_COLOUR: Scalar = Scalar::new(0.0, 255.0, 255.0, 0.0);
/// The aligned crop's outline: blue, with its top edge red so an upside-down crop shows.
const CROP_COLOUR: Scalar = Scalar::new(255.0, 64.0, 0.0, 0.0);
/// The crop's top edge.
const CROP_TOP_COLOUR: Scalar = Scalar::new(0.0, 0.0, 255.0, 0.0);
/// DFL writes debug frames as JPEG quality 50.
pub const DEBUG_JPEG_QUALITY: u8 = 50;

/// One face to draw.
pub struct DebugFace<'a> {
    /// The detector's box `[x, y, w, h]`.
    pub rect: [f32; 4],
    /// 68 landmarks in the frame.
    pub landmarks: &'a [[f32; 2]],
    /// Frame → aligned crop.
    pub to_face: &'a Affine,
    /// The crop's side in pixels.
    pub size_px: u32,
}

/// Returns a copy of `frame` with `faces` drawn on it.
///
/// # Errors
/// OpenCV's error when drawing fails.
pub fn draw(frame: &Mat, faces: &[DebugFace<'_>]) -> opencv::Result<Mat> {
    let mut out = frame.try_clone()?;
    let thickness = (frame.cols().max(frame.rows()) / 400).max(1);
    let to_point = |p: [f64; 2]| Point::new(p[0].round() as i32, p[1].round() as i32);
    for face in faces {
        let [x, y, w, h] = face.rect.map(|v| v.round() as i32);
        imgproc::rectangle(
            &mut out,
            Rect::new(x, y, w, h),
            BOX_COLOUR,
            thickness,
            imgproc::LINE_AA,
            0,
        )?;
        for p in face.landmarks {
            let centre = to_point([f64::from(p[0]), f64::from(p[1])]);
            imgproc::circle(&mut out, centre, thickness, LANDMARK_COLOUR, -1, imgproc::LINE_AA, 0)?;
        }
        let Some(from_face) = align::invert(face.to_face) else { continue };
        let s = f64::from(face.size_px);
        let corners: Vector<Point> = [[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]]
            .iter()
            .map(|&c| to_point(align::apply(&from_face, c)))
            .collect();
        let outline = Vector::<Vector<Point>>::from_iter([corners.clone()]);
        imgproc::polylines(&mut out, &outline, true, CROP_COLOUR, thickness, imgproc::LINE_AA, 0)?;
        imgproc::line(
            &mut out,
            corners.get(0)?,
            corners.get(1)?,
            CROP_TOP_COLOUR,
            thickness,
            imgproc::LINE_AA,
            0,
        )?;
    }
    Ok(out)
}
