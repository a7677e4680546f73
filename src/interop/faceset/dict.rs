//! A DeepFaceLab face's metadata dict, read into dfl's terms and written back.
//!
//! DeepFaceLab stores `face_type` by name (`whole_face`), `landmarks` and `source_landmarks` as
//! 68×2 arrays or nested lists, `source_rect` as `(left, top, right, bottom)`,
//! `image_to_face_mat` as a 2×3 float array, `seg_ie_polys` as `{'polys': [{'type', 'pts'}]}`
//! (older files: a list of `(type, pts)` pairs; type 1 include, 0 exclude) and `xseg_mask` as
//! the bytes of a PNG (or JPEG) in a `uint8` array. None-valued keys are left out.

use crate::dfl_format::pickle::{ByteOrder, Dtype, Elem, NdArray, Value};
use crate::face::align::{Affine, FaceType};
use crate::face::landmarks::Landmarks68;
use crate::face::metadata::FaceMetadata;
use crate::face::seg::{PolyKind, SegPoly};

/// What a DeepFaceLab face's dict says, in dfl's types; the frame's size and path are not in
/// it and are found elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DflFace {
    /// How much of the head the crop shows.
    pub face_type: FaceType,
    /// 68 landmarks in the aligned image.
    pub landmarks: Landmarks68,
    /// The frame's file name, e.g. `00017.png`.
    pub source_filename: String,
    /// The detector's box in the frame: `[x, y, w, h]`.
    pub source_rect: [f32; 4],
    /// 68 landmarks in the frame.
    pub source_landmarks: Landmarks68,
    /// Frame → aligned image.
    pub image_to_face_mat: Affine,
    /// XSeg labels in aligned-image pixels.
    pub seg_ie_polys: Vec<SegPoly>,
    /// The encoded bytes (PNG or JPEG) of an applied XSeg mask.
    pub xseg_mask: Option<Vec<u8>>,
    /// DeepFaceLab's `eyebrows_expand_mod` (1.0 unless a user changed it): dfl has no such
    /// setting, so an import reports other values.
    pub eyebrows_expand_mod: f64,
}

/// Face types only DeepFaceLab has: crops without the rotation that every dfl face type has,
/// and files that carry landmarks without an alignment.
const UNSUPPORTED_FACE_TYPES: [&str; 3] = ["full_face_no_align", "head_no_align", "mark_only"];

/// Reads DeepFaceLab's dict.
///
/// # Errors
/// A short reason naming the key that is missing or malformed.
pub(super) fn from_dict(dict: &Value) -> Result<DflFace, String> {
    if !matches!(dict, Value::Dict(_)) {
        return Err(format!("the metadata is a {}, not a dict", dict.type_name()));
    }
    let key = |k: &str| dict.get(k).filter(|v| !matches!(v, Value::None));
    let need = |k: &str| key(k).ok_or_else(|| format!("no {k}"));
    let face_type = match need("face_type")?.as_str() {
        Some(name) => face_type_from_name(name)?,
        None => return Err("face_type is not a name".into()),
    };
    let landmarks68 = |k: &str| {
        let pts = points(need(k)?).ok_or_else(|| format!("{k} is not a list of points"))?;
        Landmarks68::from_points(&pts).map_err(|e| format!("{k}: {e}"))
    };
    let landmarks = landmarks68("landmarks")?;
    let source_landmarks = landmarks68("source_landmarks")?;
    let source_filename = need("source_filename")?
        .as_str()
        .filter(|s| !s.is_empty() && !s.contains(['/', '\\', '\0']))
        .ok_or("source_filename is not a file name")?
        .to_owned();
    let rect = numbers(need("source_rect")?)
        .filter(|v| v.len() == 4)
        .ok_or("source_rect is not 4 numbers")?;
    let source_rect = [rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]].map(|x| x as f32);
    let m = numbers(need("image_to_face_mat")?)
        .filter(|v| v.len() == 6)
        .ok_or("image_to_face_mat is not 2×3 numbers")?;
    let image_to_face_mat = [[m[0], m[1], m[2]], [m[3], m[4], m[5]]];
    let seg_ie_polys = match key("seg_ie_polys") {
        Some(v) => polys(v).map_err(|e| format!("seg_ie_polys: {e}"))?,
        None => Vec::new(),
    };
    let xseg_mask = match key("xseg_mask") {
        Some(Value::NdArray(a)) if a.dtype().elem.size() == 1 => Some(a.data().to_vec()),
        Some(Value::Bytes(b)) => Some(b.clone()),
        Some(other) => {
            return Err(format!("xseg_mask is a {}, not image bytes", other.type_name()));
        }
        None => None,
    };
    let eyebrows_expand_mod = match key("eyebrows_expand_mod") {
        Some(v) => v.as_f64().ok_or("eyebrows_expand_mod is not a number")?,
        None => 1.0,
    };
    Ok(DflFace {
        face_type,
        landmarks,
        source_filename,
        source_rect,
        source_landmarks,
        image_to_face_mat,
        seg_ie_polys,
        xseg_mask,
        eyebrows_expand_mod,
    })
}

/// DeepFaceLab's dict for a dfl face: keys in the order DeepFaceLab's extractor sets them,
/// arrays where it writes arrays (`landmarks` float32, `image_to_face_mat` float64, label
/// points float32, the mask's bytes uint8 `(N, 1)`), nested lists for `source_landmarks`.
/// Labels and the mask are left out when the face has none, as DeepFaceLab drops None keys.
pub(super) fn to_dict(meta: &FaceMetadata, source_filename: &str) -> Value {
    let s = |k: &str| Value::Str(k.to_owned());
    let f32_array = |pts: &[[f32; 2]]| {
        let flat: Vec<f32> = pts.iter().flatten().copied().collect();
        Value::NdArray(NdArray::from_f32(vec![pts.len(), 2], &flat).expect("invariant: N×2"))
    };
    let [x, y, w, h] = meta.source_rect;
    let rect = [x, y, x + w, y + h].map(|v| {
        if v.fract() == 0.0 && v.abs() < 1e9 {
            Value::Int(v as i64)
        } else {
            Value::Float(f64::from(v))
        }
    });
    let source_landmarks = meta
        .source_landmarks
        .points()
        .iter()
        .map(|p| Value::List(vec![Value::Float(f64::from(p[0])), Value::Float(f64::from(p[1]))]))
        .collect();
    let mat: Vec<u8> =
        meta.image_to_face_mat.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let f64_dtype = Dtype { elem: Elem::F64, order: ByteOrder::Little };
    let mut items = vec![
        (s("face_type"), s(face_type_name(meta.face_type))),
        (s("landmarks"), f32_array(meta.landmarks.points())),
        (s("source_filename"), s(source_filename)),
        (s("source_rect"), Value::Tuple(rect.to_vec())),
        (s("source_landmarks"), Value::List(source_landmarks)),
        (
            s("image_to_face_mat"),
            Value::NdArray(NdArray::from_raw(f64_dtype, vec![2, 3], mat).expect("invariant: 2×3")),
        ),
    ];
    if !meta.seg_ie_polys.is_empty() {
        let polys = meta
            .seg_ie_polys
            .iter()
            .map(|p| {
                let kind = match p.kind {
                    PolyKind::Include => 1,
                    PolyKind::Exclude => 0,
                };
                Value::Dict(vec![(s("type"), Value::Int(kind)), (s("pts"), f32_array(&p.points))])
            })
            .collect();
        items.push((s("seg_ie_polys"), Value::Dict(vec![(s("polys"), Value::List(polys))])));
    }
    if let Some(mask) = &meta.xseg_mask {
        let u8_dtype = Dtype { elem: Elem::U8, order: ByteOrder::Little };
        let bytes = NdArray::from_raw(u8_dtype, vec![mask.png.len(), 1], mask.png.clone())
            .expect("invariant: N×1 bytes");
        items.push((s("xseg_mask"), Value::NdArray(bytes)));
    }
    Value::Dict(items)
}

/// DeepFaceLab's name of a face type.
pub(super) fn face_type_name(face_type: FaceType) -> &'static str {
    match face_type {
        FaceType::Half => "half_face",
        FaceType::MidFull => "midfull_face",
        FaceType::Full => "full_face",
        FaceType::WholeFace => "whole_face",
        FaceType::Head => "head",
    }
}

fn face_type_from_name(name: &str) -> Result<FaceType, String> {
    let all =
        [FaceType::Half, FaceType::MidFull, FaceType::Full, FaceType::WholeFace, FaceType::Head];
    if let Some(t) = all.into_iter().find(|&t| face_type_name(t) == name.to_ascii_lowercase()) {
        return Ok(t);
    }
    if UNSUPPORTED_FACE_TYPES.contains(&name) {
        return Err(format!("face type {name} has no dfl equivalent (re-extract these faces)"));
    }
    Err(format!("unknown face type {name:?}"))
}

/// The numbers of a flat or nested list/tuple or a numeric array, flattened in C order.
fn numbers(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::NdArray(a) => array_numbers(a),
        Value::List(items) | Value::Tuple(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::List(_) | Value::Tuple(_) | Value::NdArray(_) => {
                        out.extend(numbers(item)?);
                    }
                    _ => out.push(item.as_f64()?),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

fn array_numbers(a: &NdArray) -> Option<Vec<f64>> {
    a.to_f64_vec().or_else(|| Some(a.to_i64_vec()?.into_iter().map(|n| n as f64).collect()))
}

/// Points `[x, y]` from an N×2 array or a list of pairs; every value finite.
fn points(v: &Value) -> Option<Vec<[f32; 2]>> {
    let shape_ok = match v {
        Value::NdArray(a) => a.shape().len() == 2 && a.shape()[1] == 2,
        Value::List(items) | Value::Tuple(items) => {
            items.iter().all(|p| p.as_seq().is_some_and(|xy| xy.len() == 2) || is_pair_array(p))
        }
        _ => false,
    };
    let flat = numbers(v).filter(|_| shape_ok)?;
    if flat.iter().any(|x| !x.is_finite()) {
        return None;
    }
    Some(flat.chunks_exact(2).map(|p| [p[0] as f32, p[1] as f32]).collect())
}

fn is_pair_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.shape() == [2])
}

/// XSeg labels: `{'polys': [{'type': 0|1, 'pts': N×2}]}`, or the older list of `(type, pts)`.
fn polys(v: &Value) -> Result<Vec<SegPoly>, String> {
    let list = match v {
        Value::Dict(_) => v.get("polys").and_then(Value::as_seq).ok_or("no polys list")?,
        Value::List(items) | Value::Tuple(items) => items,
        other => return Err(format!("a {}, not labels", other.type_name())),
    };
    list.iter()
        .enumerate()
        .map(|(i, poly)| {
            let (kind, pts) = match poly {
                Value::Dict(_) => (poly.get("type"), poly.get("pts")),
                _ => match poly.as_seq() {
                    Some([kind, pts]) => (Some(kind), Some(pts)),
                    _ => (None, None),
                },
            };
            let kind = match kind.and_then(Value::as_i64) {
                Some(1) => PolyKind::Include,
                Some(0) => PolyKind::Exclude,
                _ => return Err(format!("polygon {i} has no type 0 or 1")),
            };
            let points = pts.and_then(points).ok_or(format!("polygon {i} has no points"))?;
            Ok(SegPoly { kind, points })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    fn pair(x: f64, y: f64) -> Value {
        Value::List(vec![Value::Float(x), Value::Float(y)])
    }

    /// A dict as DeepFaceLab writes it, with lists where it may also write arrays.
    fn dict(extra: Vec<(Value, Value)>) -> Value {
        let lm: Vec<Value> =
            (0..68).map(|i| pair(10.0 + f64::from(i), 20.0 + f64::from(i % 7))).collect();
        let mut items = vec![
            (s("face_type"), s("whole_face")),
            (s("landmarks"), Value::List(lm.clone())),
            (s("source_filename"), s("00017.png")),
            (s("source_rect"), Value::Tuple([412, 96, 688, 372].map(Value::Int).to_vec())),
            (s("source_landmarks"), Value::List(lm)),
            (
                s("image_to_face_mat"),
                Value::List(vec![
                    Value::List([0.5, 0.1, -3.0].map(Value::Float).to_vec()),
                    Value::List([-0.1, 0.5, 7.0].map(Value::Float).to_vec()),
                ]),
            ),
        ];
        items.extend(extra);
        Value::Dict(items)
    }

    #[test]
    fn the_rect_becomes_x_y_w_h_and_the_matrix_keeps_its_rows() {
        let face = from_dict(&dict(vec![])).expect("a face");
        assert_eq!(face.source_rect, [412.0, 96.0, 276.0, 276.0]);
        assert_eq!(face.image_to_face_mat, [[0.5, 0.1, -3.0], [-0.1, 0.5, 7.0]]);
        assert_eq!(face.face_type, FaceType::WholeFace);
        assert_eq!(face.landmarks.points()[67], [77.0, 24.0]);
        assert!(face.seg_ie_polys.is_empty() && face.xseg_mask.is_none());
        assert_eq!(face.eyebrows_expand_mod, 1.0);
    }

    #[test]
    fn both_label_layouts_read_the_same() {
        let tri = || Value::List(vec![pair(1.0, 1.0), pair(9.0, 1.0), pair(5.0, 8.0)]);
        let new = Value::Dict(vec![(
            s("polys"),
            Value::List(vec![
                Value::Dict(vec![(s("type"), Value::Int(1)), (s("pts"), tri())]),
                Value::Dict(vec![(s("type"), Value::Int(0)), (s("pts"), tri())]),
            ]),
        )]);
        let old = Value::List(vec![
            Value::Tuple(vec![Value::Int(1), tri()]),
            Value::Tuple(vec![Value::Int(0), tri()]),
        ]);
        let a = from_dict(&dict(vec![(s("seg_ie_polys"), new)])).expect("new layout");
        let b = from_dict(&dict(vec![(s("seg_ie_polys"), old)])).expect("old layout");
        assert_eq!(a.seg_ie_polys, b.seg_ie_polys);
        let kinds: Vec<_> = a.seg_ie_polys.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [PolyKind::Include, PolyKind::Exclude]);
        assert_eq!(a.seg_ie_polys[0].points, [[1.0, 1.0], [9.0, 1.0], [5.0, 8.0]]);
    }

    #[test]
    fn a_dfl_face_goes_out_and_comes_back_the_same() {
        use crate::face::metadata::METADATA_VERSION;
        use crate::face::testutil::synthetic_landmarks;
        let landmarks = synthetic_landmarks(128, 0.2);
        let meta = FaceMetadata {
            version: METADATA_VERSION,
            source_filename: "00042".into(),
            source_path: "/clips/data_dst.mp4".into(),
            source_size: [640, 360],
            face_index: 1,
            face_type: FaceType::Head,
            size_px: 128,
            source_landmarks: landmarks.map(|p| [p[0] * 1.5 + 200.25, p[1] * 1.5 + 10.5]),
            landmarks,
            image_to_face_mat: [[0.6666, 0.01, -133.5], [-0.01, 0.6666, -7.0]],
            source_rect: [200.0, 10.5, 190.0, 191.25],
            detector_score: 0.9,
            seg_ie_polys: vec![SegPoly {
                kind: PolyKind::Exclude,
                points: vec![[1.5, 2.0], [100.0, 3.25], [50.0, 90.0]],
            }],
            xseg_mask: Some(crate::face::seg::XSegMask {
                model: "x".into(),
                iteration: 3,
                png: b"\x89PNG not decoded here".to_vec(),
            }),
        };
        let dict = to_dict(&meta, "00042.png");
        let back = from_dict(
            &crate::dfl_format::pickle::loads(&crate::dfl_format::pickle::dumps(&dict))
                .expect("reads back"),
        )
        .expect("a face");
        assert_eq!(back.face_type, meta.face_type);
        assert_eq!(back.landmarks, meta.landmarks);
        assert_eq!(back.source_landmarks, meta.source_landmarks);
        assert_eq!(back.source_rect, meta.source_rect);
        assert_eq!(back.image_to_face_mat, meta.image_to_face_mat);
        assert_eq!(back.seg_ie_polys, meta.seg_ie_polys);
        assert_eq!(back.source_filename, "00042.png");
        assert_eq!(back.xseg_mask.as_deref(), meta.xseg_mask.as_ref().map(|m| m.png.as_slice()));
        let keys: Vec<_> = match &dict {
            Value::Dict(items) => items.iter().filter_map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        };
        assert_eq!(
            keys,
            [
                "face_type",
                "landmarks",
                "source_filename",
                "source_rect",
                "source_landmarks",
                "image_to_face_mat",
                "seg_ie_polys",
                "xseg_mask"
            ]
        );
    }

    #[test]
    fn what_dfl_cannot_use_is_named() {
        let cases = [
            (vec![(s("face_type"), s("mark_only"))], "mark_only"),
            (vec![(s("face_type"), s("full_face_no_align"))], "no dfl equivalent"),
            (vec![(s("face_type"), s("torso"))], "unknown face type"),
            (vec![(s("landmarks"), Value::List(vec![pair(1.0, 2.0)]))], "landmarks"),
            (vec![(s("landmarks"), Value::Int(3))], "landmarks"),
            (vec![(s("source_rect"), Value::List(vec![Value::Int(1)]))], "source_rect"),
            (vec![(s("image_to_face_mat"), Value::None)], "no image_to_face_mat"),
            (vec![(s("source_filename"), s("../x.png"))], "source_filename"),
            (vec![(s("xseg_mask"), Value::Int(1))], "xseg_mask"),
            (vec![(s("seg_ie_polys"), Value::Int(1))], "seg_ie_polys"),
        ];
        for (extra, want) in cases {
            let err = from_dict(&dict(extra)).expect_err(want);
            assert!(err.contains(want), "{err} does not name {want}");
        }
        let mut lm: Vec<Value> = (0..68).map(|i| pair(f64::from(i), 1.0)).collect();
        lm[3] = pair(f64::NAN, 1.0);
        let err = from_dict(&dict(vec![(s("landmarks"), Value::List(lm))])).expect_err("NaN");
        assert!(err.contains("landmarks"), "{err}");
        assert!(from_dict(&Value::Int(1)).expect_err("not a dict").contains("not a dict"));
    }
}
