//! Segmentation data a face file carries for XSeg: the polygons a user drew on the face
//! (labels; DFL's `seg_ie_polys`) and the mask a trained XSeg model predicted for it (DFL's
//! `xseg_mask`).
//!
//! Labels are a list of [`SegPoly`], in aligned-face pixels (the face's `size_px`), applied in
//! order: an include polygon fills its area with 1, an exclude polygon with 0, so a later
//! polygon overrides an earlier one where they overlap. They are checked where they enter
//! ([`validate`], called when a face file is read): finite points, at least
//! [`MIN_POLY_POINTS`] per polygon, within a margin of the face, [`MAX_TOTAL_POINTS`] at most.
//!
//! An applied mask ([`XSegMask`]) is a binarised single-channel PNG, kept in the metadata as
//! base64 with the model and iteration that predicted it.

use opencv::core::{CV_8UC1, Mat, Point, Scalar, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

/// Points a polygon needs at least: fewer enclose no area.
pub const MIN_POLY_POINTS: usize = 3;
/// Points of all polygons of a face at most (a hand-drawn face has a few hundred).
pub const MAX_TOTAL_POINTS: usize = 10_000;
/// The largest applied mask, in pixels per side.
pub const MAX_MASK_PX: u32 = 2048;
/// The longest model name an applied mask records.
const MAX_MODEL_NAME: usize = 256;
/// Fractional bits of the points handed to OpenCV's polygon fill, so scaled points keep their
/// sub-pixel position.
const FILL_SHIFT: i32 = 8;

/// Whether a polygon adds to the mask or cuts from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolyKind {
    /// Its area is face (DFL type 1).
    Include,
    /// Its area is not face (DFL type 0): hair, a hand, glasses.
    Exclude,
}

/// One labelled polygon, in aligned-face pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegPoly {
    /// Include or exclude.
    pub kind: PolyKind,
    /// The corners `[x, y]`, in drawing order; the last joins the first.
    pub points: Vec<[f32; 2]>,
}

/// Errors of labels and applied masks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegError {
    /// A polygon breaks a rule of [`validate`].
    #[error("polygon {index}: {reason}")]
    BadPoly {
        /// Its position in the list, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The polygons have more than [`MAX_TOTAL_POINTS`] points together.
    #[error("{0} label points, {MAX_TOTAL_POINTS} at most")]
    TooManyPoints(usize),
    /// A size is 0 or too large.
    #[error("size {0} px is outside 1–{max} px", max = crate::face::metadata::MAX_FACE_PX)]
    BadSize(u32),
    /// An applied mask is not a usable mask image.
    #[error("applied XSeg mask: {0}")]
    BadMask(String),
    /// OpenCV failed.
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Checks labels of a face of `size_px`: at least [`MIN_POLY_POINTS`] finite points per
/// polygon, every point within `-size_px..=2·size_px` (a polygon may run past the face's edge,
/// not far), at most [`MAX_TOTAL_POINTS`] points in all.
///
/// # Errors
/// `TooManyPoints` or `BadPoly` naming the first polygon that breaks a rule.
pub fn validate(polys: &[SegPoly], size_px: u32) -> Result<(), SegError> {
    let total: usize = polys.iter().map(|p| p.points.len()).sum();
    if total > MAX_TOTAL_POINTS {
        return Err(SegError::TooManyPoints(total));
    }
    let size = size_px as f32;
    let range = -size..=2.0 * size;
    for (index, poly) in polys.iter().enumerate() {
        let bad = |reason: String| SegError::BadPoly { index, reason };
        if poly.points.len() < MIN_POLY_POINTS {
            return Err(bad(format!("{} points, {MIN_POLY_POINTS} at least", poly.points.len())));
        }
        if let Some(p) = poly.points.iter().find(|p| !p[0].is_finite() || !p[1].is_finite()) {
            return Err(bad(format!("point {p:?} is not finite")));
        }
        if let Some(p) =
            poly.points.iter().find(|p| !range.contains(&p[0]) || !range.contains(&p[1]))
        {
            return Err(bad(format!("point {p:?} lies far outside the {size_px}×{size_px} face")));
        }
    }
    Ok(())
}

/// Returns `polys` drawn on a face of `from_px` scaled to a face of `to_px` (the same crop at
/// another resolution).
pub fn scaled(polys: &[SegPoly], from_px: u32, to_px: u32) -> Vec<SegPoly> {
    if from_px == to_px || from_px == 0 {
        return polys.to_vec();
    }
    let k = to_px as f32 / from_px as f32;
    polys
        .iter()
        .map(|p| SegPoly {
            kind: p.kind,
            points: p.points.iter().map(|q| [q[0] * k, q[1] * k]).collect(),
        })
        .collect()
}

/// Draws labels made on a face of `from_px` into a `size`×`size` mask: CV_8UC1, 255 face and 0
/// not face. Starts all 0, then fills each polygon in list order (include 255, exclude 0),
/// without anti-aliasing; points are scaled by `size / from_px`.
///
/// # Errors
/// `BadSize` for a `from_px` or `size` of 0 or over 8192 px, `OpenCv`.
pub fn rasterize(polys: &[SegPoly], from_px: u32, size: u32) -> Result<Mat, SegError> {
    let max = crate::face::metadata::MAX_FACE_PX;
    for s in [from_px, size] {
        if s == 0 || s > max {
            return Err(SegError::BadSize(s));
        }
    }
    let n = size as i32; // ≤ 8192: fits
    let mut mask = Mat::new_rows_cols_with_default(n, n, CV_8UC1, Scalar::all(0.0))?;
    let k = f64::from(size) / f64::from(from_px) * f64::from(1 << FILL_SHIFT);
    for poly in polys {
        // Points are bounded by validate; clamp anyway so a caller's wild point cannot
        // overflow the fixed-point coordinates.
        let limit = f64::from(4 * max) * f64::from(1 << FILL_SHIFT);
        let fixed = |v: f32| (f64::from(v) * k).clamp(-limit, limit).round() as i32;
        let pts: Vector<Point> =
            poly.points.iter().map(|p| Point::new(fixed(p[0]), fixed(p[1]))).collect();
        let mut one = Vector::<Vector<Point>>::new();
        one.push(pts);
        let value = match poly.kind {
            PolyKind::Include => 255.0,
            PolyKind::Exclude => 0.0,
        };
        imgproc::fill_poly(
            &mut mask,
            &one,
            Scalar::all(value),
            imgproc::LINE_8,
            FILL_SHIFT,
            Point::new(0, 0),
        )?;
    }
    Ok(mask)
}

/// How many include and exclude polygons, and points in all.
pub fn counts(polys: &[SegPoly]) -> (usize, usize, usize) {
    let include = polys.iter().filter(|p| p.kind == PolyKind::Include).count();
    let points = polys.iter().map(|p| p.points.len()).sum();
    (include, polys.len() - include, points)
}

/// A mask a trained XSeg model predicted for the face (`dfl xseg apply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XSegMask {
    /// The XSeg model's name.
    pub model: String,
    /// The model's training iteration when it predicted the mask.
    pub iteration: u64,
    /// The mask: a square single-channel PNG, 0 not face and 255 face; base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub png: Vec<u8>,
}

impl XSegMask {
    /// Binarises `mask` (CV_32FC1 in 0..1: face where ≥ 0.5; or CV_8UC1: face where ≥ 128)
    /// and encodes it as PNG.
    ///
    /// # Errors
    /// `BadMask` for a mask that is not square, is larger than [`MAX_MASK_PX`], or of another
    /// type; `BadMask` for a model name longer than 256 bytes; `OpenCv`.
    pub fn encode(model: &str, iteration: u64, mask: &Mat) -> Result<XSegMask, SegError> {
        if model.len() > MAX_MODEL_NAME {
            return Err(SegError::BadMask(format!("model name over {MAX_MODEL_NAME} bytes")));
        }
        check_square(mask.cols(), mask.rows())?;
        let threshold = match mask.typ() {
            opencv::core::CV_32FC1 => 0.5,
            CV_8UC1 => 127.5,
            other => {
                return Err(SegError::BadMask(format!(
                    "type {} is neither CV_32FC1 nor CV_8UC1",
                    opencv::core::type_to_string(other)?
                )));
            }
        };
        let binary = binarize(mask, threshold)?;
        let mut png = Vector::<u8>::new();
        let params = Vector::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, 1]);
        imgcodecs::imencode(".png", &binary, &mut png, &params)?;
        Ok(XSegMask { model: model.to_owned(), iteration, png: png.to_vec() })
    }

    /// The mask's side in pixels, from the PNG header (without decoding).
    ///
    /// # Errors
    /// `BadMask` when the bytes are not a PNG of a square at most [`MAX_MASK_PX`] wide.
    pub fn size(&self) -> Result<u32, SegError> {
        let bad = |why: &str| SegError::BadMask(why.to_owned());
        // Signature (8), IHDR length (4) and type (4), width (4), height (4).
        let header = self.png.get(..24).ok_or_else(|| bad("not a PNG image"))?;
        if &header[..8] != b"\x89PNG\r\n\x1a\n" || &header[12..16] != b"IHDR" {
            return Err(bad("not a PNG image"));
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let (w, h) = (be(&header[16..20]), be(&header[20..24]));
        check_square(i32::try_from(w).unwrap_or(i32::MAX), i32::try_from(h).unwrap_or(i32::MAX))?;
        Ok(w)
    }

    /// Decodes the mask: CV_8UC1, 0 not face and 255 face (grey values are binarised).
    ///
    /// # Errors
    /// `BadMask` when the PNG does not decode or is not a square at most [`MAX_MASK_PX`] wide
    /// (checked on the header before decoding).
    pub fn decode(&self) -> Result<Mat, SegError> {
        let side = self.size()?;
        let decoded =
            imgcodecs::imdecode(&Vector::from_slice(&self.png), imgcodecs::IMREAD_GRAYSCALE)
                .map_err(|e| SegError::BadMask(format!("the PNG does not decode: {e}")))?;
        if decoded.empty() || decoded.rows() != decoded.cols() || decoded.cols() as u32 != side {
            return Err(SegError::BadMask("the PNG does not decode to its header's size".into()));
        }
        binarize(&decoded, 127.5)
    }
}

/// Refuses masks that are not square or are larger than [`MAX_MASK_PX`].
fn check_square(w: i32, h: i32) -> Result<(), SegError> {
    if w != h || w < 1 || w > MAX_MASK_PX as i32 {
        return Err(SegError::BadMask(format!(
            "{w}×{h} px; a square of 1–{MAX_MASK_PX} px is expected"
        )));
    }
    Ok(())
}

/// 255 where `mask` ≥ `threshold`, else 0, as CV_8UC1.
fn binarize(mask: &Mat, threshold: f64) -> Result<Mat, SegError> {
    let mut out = Mat::default();
    // THRESH_BINARY sets values above the threshold: step just under it to include equality.
    let below = if mask.typ() == CV_8UC1 { threshold.floor() } else { threshold - 1e-6 };
    imgproc::threshold(mask, &mut out, below, 255.0, imgproc::THRESH_BINARY)?;
    let mut u8_mask = Mat::default();
    out.convert_to(&mut u8_mask, CV_8UC1, 1.0, 0.0)?;
    Ok(u8_mask)
}

/// Bytes as a standard base64 string in JSON.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::CV_32FC1;

    fn poly(kind: PolyKind, points: &[[f32; 2]]) -> SegPoly {
        SegPoly { kind, points: points.to_vec() }
    }

    fn square(kind: PolyKind, x0: f32, y0: f32, x1: f32, y1: f32) -> SegPoly {
        poly(kind, &[[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    }

    fn at(mask: &Mat, x: i32, y: i32) -> u8 {
        *mask.at_2d::<u8>(y, x).unwrap()
    }

    #[test]
    fn polygons_overlay_in_order_include_then_exclude() {
        let labels = [
            square(PolyKind::Include, 8.0, 8.0, 56.0, 56.0),
            square(PolyKind::Exclude, 24.0, 24.0, 40.0, 40.0),
            square(PolyKind::Include, 30.0, 30.0, 34.0, 34.0),
        ];
        let mask = rasterize(&labels, 64, 64).unwrap();
        assert_eq!((mask.rows(), mask.cols(), mask.typ()), (64, 64, CV_8UC1));
        assert_eq!(at(&mask, 2, 2), 0, "outside every polygon");
        assert_eq!(at(&mask, 12, 12), 255, "included");
        assert_eq!(at(&mask, 26, 26), 0, "excluded after being included");
        assert_eq!(at(&mask, 32, 32), 255, "included again by a later polygon");
        // Reversed order: the big include covers everything drawn before it.
        let reversed: Vec<SegPoly> = labels.iter().rev().cloned().collect();
        let mask = rasterize(&reversed, 64, 64).unwrap();
        assert_eq!((at(&mask, 26, 26), at(&mask, 32, 32)), (255, 255));
        let values: Vec<u8> = mask.data_bytes().unwrap().to_vec();
        assert!(values.iter().all(|&v| v == 0 || v == 255), "no anti-aliasing");
    }

    #[test]
    fn labels_scale_with_the_face() {
        let labels = [square(PolyKind::Include, 16.0, 16.0, 48.0, 48.0)];
        let small = rasterize(&labels, 64, 64).unwrap();
        let large = rasterize(&labels, 64, 256).unwrap();
        let count = |m: &Mat| opencv::core::count_non_zero(m).unwrap() as f64;
        let (fs, fl) = (count(&small) / 64.0_f64.powi(2), count(&large) / 256.0_f64.powi(2));
        assert!((fs - 0.25).abs() < 0.03 && (fl - 0.25).abs() < 0.01, "{fs} {fl}");
        assert_eq!((at(&large, 70, 70), at(&large, 60, 60)), (255, 0));
        let moved = scaled(&labels, 64, 256);
        assert_eq!(moved[0].points[2], [192.0, 192.0]);
        assert_eq!(
            rasterize(&moved, 256, 256).unwrap().data_bytes().unwrap(),
            large.data_bytes().unwrap()
        );
        assert!(matches!(rasterize(&labels, 0, 64), Err(SegError::BadSize(0))));
    }

    #[test]
    fn hostile_labels_are_refused() {
        let ok = square(PolyKind::Include, -10.0, 0.0, 120.0, 64.0);
        assert!(validate(std::slice::from_ref(&ok), 64).is_ok());
        let two = poly(PolyKind::Include, &[[0.0, 0.0], [1.0, 1.0]]);
        let nan = poly(PolyKind::Exclude, &[[0.0, 0.0], [f32::NAN, 1.0], [2.0, 0.0]]);
        let far = poly(PolyKind::Exclude, &[[0.0, 0.0], [1e9, 1.0], [2.0, 0.0]]);
        for (bad, words) in [(two, "3 at least"), (nan, "not finite"), (far, "far outside")] {
            let err = validate(&[ok.clone(), bad], 64).unwrap_err().to_string();
            assert!(err.starts_with("polygon 1:") && err.contains(words), "{err}");
        }
        let many = vec![poly(PolyKind::Include, &[[1.0, 1.0]; 5001]); 2];
        assert!(matches!(validate(&many, 64), Err(SegError::TooManyPoints(10_002))));
        // Serde refuses unknown kinds and fields.
        let json = r#"[{"kind":"maybe","points":[[0,0],[1,0],[1,1]]}]"#;
        assert!(serde_json::from_str::<Vec<SegPoly>>(json).is_err());
        let json = r#"[{"kind":"include","points":[[0,0],[1,0],[1,1]],"x":1}]"#;
        assert!(serde_json::from_str::<Vec<SegPoly>>(json).is_err());
        let json = r#"[{"kind":"include","points":[[0,0],[1,0],[1,1]]}]"#;
        assert_eq!(serde_json::from_str::<Vec<SegPoly>>(json).unwrap()[0].kind, PolyKind::Include);
    }

    #[test]
    fn an_applied_mask_is_binarised_and_round_trips_through_json() {
        let mut soft = Mat::new_rows_cols_with_default(32, 32, CV_32FC1, Scalar::all(0.2)).unwrap();
        for y in 8..24 {
            for x in 8..24 {
                *soft.at_2d_mut::<f32>(y, x).unwrap() = if x < 16 { 0.5 } else { 0.9 };
            }
        }
        let mask = XSegMask::encode("xseg_generic", 12_000, &soft).unwrap();
        assert_eq!(mask.size().unwrap(), 32);
        let json = serde_json::to_string(&mask).unwrap();
        assert!(json.contains(r#""png":"iVBORw0KGgo"#), "base64 PNG: {json}");
        let back: XSegMask = serde_json::from_str(&json).unwrap();
        assert_eq!(back, mask);
        let hard = back.decode().unwrap();
        assert_eq!((hard.rows(), hard.cols(), hard.typ()), (32, 32, CV_8UC1));
        assert_eq!((at(&hard, 2, 2), at(&hard, 10, 10), at(&hard, 20, 20)), (0, 255, 255));
        // The same from a u8 mask.
        let mut u8_soft = Mat::default();
        soft.convert_to(&mut u8_soft, CV_8UC1, 255.0, 0.0).unwrap();
        let from_u8 = XSegMask::encode("xseg_generic", 12_000, &u8_soft).unwrap();
        assert_eq!(from_u8.decode().unwrap().data_bytes().unwrap(), hard.data_bytes().unwrap());
    }

    #[test]
    fn bad_applied_masks_are_errors_not_panics() {
        let wide = Mat::new_rows_cols_with_default(16, 32, CV_8UC1, Scalar::all(0.0)).unwrap();
        assert!(matches!(XSegMask::encode("m", 1, &wide), Err(SegError::BadMask(_))));
        let colour =
            Mat::new_rows_cols_with_default(16, 16, opencv::core::CV_8UC3, Scalar::all(0.0))
                .unwrap();
        assert!(matches!(XSegMask::encode("m", 1, &colour), Err(SegError::BadMask(_))));
        let ok = XSegMask::encode(
            "m",
            1,
            &Mat::new_rows_cols_with_default(16, 16, CV_8UC1, Scalar::all(0.0)).unwrap(),
        )
        .unwrap();
        // Junk, a PNG cut short, a PNG whose header claims a huge size.
        for png in [b"junk".to_vec(), ok.png[..40].to_vec(), {
            let mut huge = ok.png.clone();
            huge[16..24].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]);
            huge
        }] {
            let bad = XSegMask { png, ..ok.clone() };
            assert!(matches!(bad.decode(), Err(SegError::BadMask(_))), "{bad:?}");
        }
        assert!(
            serde_json::from_str::<XSegMask>(r#"{"model":"m","iteration":1,"png":"%%"}"#).is_err()
        );
    }
}
