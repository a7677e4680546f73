//! Synthetic whole-face files for tests: DFL's mean face with a drawn jaw and lips, aligned
//! like `dfl extract` aligns, on a gradient background.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use opencv::core::{CV_8UC3, Mat, Point, Scalar, Vec3b, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::align::{ALIGN_POINTS, FaceType, MEAN_FACE, transform_mat};
use super::landmarks::Landmarks68;
use super::metadata::{FaceMetadata, ImageFormat, METADATA_VERSION, write_face};

/// 68 landmarks in the mean face's unit square; the jaw is moved right by `yaw / 2`, which makes
/// the averaged yaw `yaw`.
fn unit_landmarks(yaw: f64) -> Vec<[f64; 2]> {
    let mut lm = vec![[0.0; 2]; 68];
    for (k, &i) in ALIGN_POINTS.iter().enumerate() {
        lm[i] = MEAN_FACE[k];
    }
    let ellipse = |t: f64, c: [f64; 2], r: [f64; 2]| [c[0] + r[0] * t.cos(), c[1] + r[1] * t.sin()];
    for (k, p) in lm.iter_mut().take(17).enumerate() {
        let jaw = ellipse(PI - PI * k as f64 / 16.0, [0.49, 0.25], [0.55, 0.7]);
        *p = [jaw[0] + yaw / 2.0, jaw[1]];
    }
    // Outer lips 48..60 and inner lips 60..68, clockwise from the image-left corner.
    for k in 1..12 {
        if k != 6 {
            lm[48 + k] = ellipse(PI + PI * k as f64 / 6.0, [0.49, 0.78], [0.236, 0.08]);
        }
    }
    for k in 0..8 {
        lm[60 + k] = ellipse(PI + PI * k as f64 / 4.0, [0.49, 0.78], [0.15, 0.04]);
    }
    lm
}

/// Returns the landmarks of a synthetic whole-face crop of `size_px`² with the given yaw.
pub fn synthetic_landmarks(size_px: u32, yaw: f64) -> Landmarks68 {
    let side = 100.0;
    let unit = unit_landmarks(yaw);
    let frame = Landmarks68::new(std::array::from_fn(|i| {
        [(200.0 + unit[i][0] * side) as f32, (150.0 + unit[i][1] * side) as f32]
    }));
    let m = transform_mat(&frame, size_px, FaceType::WholeFace).expect("invariant: a mean face");
    frame.transformed(&m)
}

/// Draws a face: a gradient background, a skin-coloured jaw hull, dark eyes and mouth.
fn synthetic_image(size_px: u32, lm: &Landmarks68) -> Mat {
    let n = size_px as i32;
    let mut img = Mat::new_rows_cols_with_default(n, n, CV_8UC3, Scalar::all(0.0)).unwrap();
    for y in 0..n {
        for x in 0..n {
            let px = img.at_2d_mut::<Vec3b>(y, x).unwrap();
            *px = Vec3b::from([(x * 255 / n) as u8, (y * 255 / n) as u8, 90]);
        }
    }
    let poly = |r: std::ops::Range<usize>| -> Vector<Point> {
        lm[r].iter().map(|p| Point::new(p[0] as i32, p[1] as i32)).collect()
    };
    let mut face: Vec<Point> = poly(0..17).to_vec();
    face.extend(poly(17..27).iter().rev());
    let fill = |img: &mut Mat, pts: &Vector<Point>, colour: [f64; 3]| {
        let colour = Scalar::new(colour[0], colour[1], colour[2], 0.0);
        imgproc::fill_convex_poly(img, pts, colour, imgproc::LINE_8, 0).unwrap();
    };
    let mut hull = Vector::<Point>::new();
    imgproc::convex_hull(&Vector::<Point>::from(face), &mut hull, false, true).unwrap();
    fill(&mut img, &hull, [150.0, 170.0, 210.0]);
    for r in [36..42, 42..48, 48..60] {
        fill(&mut img, &poly(r), [40.0, 30.0, 60.0]);
    }
    img
}

/// Writes `n` synthetic PNG face files `face_000.png`… of `size_px`² into `dir`, face `i` with
/// yaw `yaw(i)`, and returns their paths.
pub fn write_faceset(
    dir: &Path,
    n: usize,
    size_px: u32,
    yaw: impl Fn(usize) -> f64,
) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let lm = synthetic_landmarks(size_px, yaw(i));
            let path = dir.join(format!("face_{i:03}.png"));
            write_face(
                &path,
                &synthetic_image(size_px, &lm),
                &meta(size_px, lm),
                ImageFormat::Png,
                95,
            )
            .unwrap();
            path
        })
        .collect()
}

fn meta(size_px: u32, landmarks: Landmarks68) -> FaceMetadata {
    FaceMetadata {
        version: METADATA_VERSION,
        source_filename: "00001".into(),
        source_path: "synthetic".into(),
        source_size: [400, 400],
        face_index: 0,
        face_type: FaceType::WholeFace,
        size_px,
        source_landmarks: landmarks,
        landmarks,
        image_to_face_mat: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        source_rect: [0.0, 0.0, 1.0, 1.0],
        detector_score: 1.0,
        seg_ie_polys: Vec::new(),
        xseg_mask: None,
    }
}
