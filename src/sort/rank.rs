//! From measurements to an order: each method's ranking, then the filters every method shares
//! (`--min-score`, `--max-score`, `--keep`).

use std::collections::BTreeMap;

use super::best::{self, Candidate};
use super::hist;
use super::identity;
use super::method::Method;
use crate::face::identity::Embedding;
use crate::faceset::Face;

/// Everything measured about the faces that a ranking may use (indexed like the faceset).
#[derive(Debug, Default)]
pub struct Measured {
    /// Per face: the method's scalar from the cache (blur, brightness, …).
    pub scalar: Vec<Option<f64>>,
    /// Per face: the histogram feature, when the method needs one.
    pub histogram: Vec<Option<Vec<f32>>>,
    /// Per face: the identity embedding; filled only for `identity`.
    pub embedding: Vec<Embedding>,
    /// Per face: (yaw, pitch) in radians; filled only for methods that use it
    /// ([`Method::uses_pose`]).
    pub pose: Vec<(f64, f64)>,
    /// Reference embeddings from `--keep-like`.
    pub references: Vec<Embedding>,
}

/// The result of ranking: who stays in which order, who goes to the trash and why.
#[derive(Debug, Default)]
pub struct Ranking {
    /// Kept faces, in the new order.
    pub order: Vec<usize>,
    /// Rejected faces with the reason.
    pub trash: Vec<(usize, String)>,
    /// Per face: its score by the method (`None` when it has none).
    pub score: Vec<Option<f64>>,
    /// Per face: extra text for the contact sheet (identity group).
    pub note: Vec<String>,
    /// Whether kept faces get order-prefixed names (`oneface` only rejects).
    pub rename: bool,
}

/// The shared filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Keep at most this many (the target of `best`).
    pub keep: Option<usize>,
    /// Reject faces scoring below.
    pub min_score: Option<f64>,
    /// Reject faces scoring above.
    pub max_score: Option<f64>,
}

/// Ranks `faces` by `method`.
pub fn rank(method: Method, faces: &[Face], m: &Measured, filters: &Filters) -> Ranking {
    let n = faces.len();
    let mut origin: Vec<usize> = (0..n).collect();
    origin.sort_by(|&a, &b| Face::origin_order(&faces[a], &faces[b]));
    let mut r = Ranking {
        score: vec![None; n],
        note: vec![String::new(); n],
        rename: true,
        ..Ranking::default()
    };
    let descending = |r: &mut Ranking, scores: Vec<Option<f64>>, desc: bool| {
        r.score = scores;
        let mut order = origin.clone();
        let key = |i: usize| r.score[i].unwrap_or(f64::NEG_INFINITY);
        order.sort_by(
            |&a, &b| if desc { key(b).total_cmp(&key(a)) } else { key(a).total_cmp(&key(b)) },
        );
        r.order = order;
    };
    match method {
        Method::Blur | Method::MotionBlur | Method::Brightness | Method::Hue => {
            descending(&mut r, m.scalar.clone(), true);
        }
        Method::Black => descending(&mut r, m.scalar.clone(), false),
        Method::FaceYaw => {
            descending(&mut r, m.pose.iter().map(|p| Some(p.0.to_degrees())).collect(), true)
        }
        Method::FacePitch => {
            descending(&mut r, m.pose.iter().map(|p| Some(p.1.to_degrees())).collect(), true);
        }
        Method::SourceSize => {
            let area = faces
                .iter()
                .map(|f| Some(f64::from(f.meta.source_rect[2] * f.meta.source_rect[3])));
            descending(&mut r, area.collect(), true);
        }
        Method::HistDissim => {
            let features = features(&m.histogram, &origin);
            let dissim = hist::dissimilarity(&features);
            let mut scores = vec![None; n];
            for (k, &i) in origin.iter().enumerate() {
                scores[i] = Some(dissim[k]);
            }
            descending(&mut r, scores, true);
        }
        Method::Hist => {
            let features = features(&m.histogram, &origin);
            for (k, d) in hist::similarity_chain(&features) {
                r.order.push(origin[k]);
                r.score[origin[k]] = Some(d);
            }
        }
        Method::Origname => r.order = origin,
        Method::Oneface => oneface(&mut r, faces, origin),
        Method::Best => {
            let candidates: Vec<Candidate> = (0..n)
                .map(|i| Candidate {
                    yaw: m.pose[i].0,
                    pitch: m.pose[i].1,
                    sharpness: m.scalar[i].unwrap_or(0.0),
                    histogram: m.histogram[i].as_deref().unwrap_or_default(),
                })
                .collect();
            let sel = best::select(&candidates, filters.keep.unwrap_or(DEFAULT_BEST));
            r.score = m.scalar.clone();
            r.order = sel.kept;
            r.trash = sel.rejected;
        }
        Method::Identity => identity_rank(&mut r, m, &origin),
    }
    apply_filters(&mut r, method, filters);
    r
}

/// `best` keeps this many faces unless `--keep` says otherwise (DFL's default target).
pub const DEFAULT_BEST: usize = 2000;

fn features<'a>(histograms: &'a [Option<Vec<f32>>], order: &[usize]) -> Vec<&'a [f32]> {
    order.iter().map(|&i| histograms[i].as_deref().unwrap_or_default()).collect()
}

/// DFL's `oneface`: every face of a frame that has more than one face goes to the trash.
fn oneface(r: &mut Ranking, faces: &[Face], origin: Vec<usize>) {
    let mut per_frame: BTreeMap<&str, usize> = BTreeMap::new();
    for f in faces {
        *per_frame.entry(f.meta.source_filename.as_str()).or_default() += 1;
    }
    r.rename = false;
    for i in origin {
        let frame = faces[i].meta.source_filename.as_str();
        match per_frame[frame] {
            1 => r.order.push(i),
            count => r.trash.push((i, format!("oneface: frame {frame} has {count} faces"))),
        }
    }
}

/// `identity`: by likeness to the references, or grouped by person.
fn identity_rank(r: &mut Ranking, m: &Measured, origin: &[usize]) {
    let embeddings: Vec<Embedding> = origin.iter().map(|&i| m.embedding[i].clone()).collect();
    if !m.references.is_empty() {
        for (&i, s) in origin.iter().zip(identity::likeness(&embeddings, &m.references)) {
            r.score[i] = Some(s);
        }
        let mut order = origin.to_vec();
        order.sort_by(|&a, &b| r.score[b].unwrap_or(-1.0).total_cmp(&r.score[a].unwrap_or(-1.0)));
        r.order = order;
        return;
    }
    let g = identity::group(&embeddings, identity::SAME_PERSON);
    let mut keyed: Vec<(usize, f64, usize)> = Vec::with_capacity(origin.len());
    for (k, &i) in origin.iter().enumerate() {
        r.score[i] = Some(g.score[k]);
        r.note[i] = format!("group {}", g.group[k]);
        keyed.push((g.group[k], g.own[k], i));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    r.order = keyed.into_iter().map(|(_, _, i)| i).collect();
}

/// `--min-score`, `--max-score`, then `--keep` (which for `best` was the target already).
fn apply_filters(r: &mut Ranking, method: Method, f: &Filters) {
    let name = method.name();
    let order = std::mem::take(&mut r.order);
    for i in order {
        let s = r.score[i];
        match (s, f.min_score, f.max_score) {
            (Some(s), Some(min), _) if s < min => {
                r.trash.push((i, format!("{name} {s:.4} < --min-score {min}")));
            }
            (Some(s), _, Some(max)) if s > max => {
                r.trash.push((i, format!("{name} {s:.4} > --max-score {max}")));
            }
            _ => r.order.push(i),
        }
    }
    if let Some(keep) = f.keep.filter(|_| method != Method::Best) {
        for (rank, i) in r.order.split_off(keep.min(r.order.len())).into_iter().enumerate() {
            r.trash.push((i, format!("beyond --keep {keep} by {name} (rank {})", keep + rank + 1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::align::FaceType;
    use crate::face::metadata::{FaceMetadata, METADATA_VERSION};

    fn face(frame: &str, index: usize) -> Face {
        let meta = FaceMetadata {
            version: METADATA_VERSION,
            source_filename: frame.into(),
            source_path: "v.mp4".into(),
            source_size: [64, 64],
            face_index: index,
            face_type: FaceType::WholeFace,
            size_px: 64,
            landmarks: crate::face::landmarks::Landmarks68::new([[0.0; 2]; 68]),
            source_landmarks: crate::face::landmarks::Landmarks68::new([[0.0; 2]; 68]),
            image_to_face_mat: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            source_rect: [0.0, 0.0, 10.0, 10.0],
            detector_score: 0.9,
            seg_ie_polys: Vec::new(),
            xseg_mask: None,
        };
        Face { name: format!("{frame}_{index}.jpg"), meta, key: String::new() }
    }

    fn scalar(values: &[f64]) -> Measured {
        Measured { scalar: values.iter().map(|&v| Some(v)).collect(), ..Measured::default() }
    }

    #[test]
    fn higher_scores_come_first_and_filters_trash_with_a_reason() {
        let faces: Vec<Face> = (1..=4).map(|i| face(&format!("{i:05}"), 0)).collect();
        let m = scalar(&[0.2, 0.9, 0.5, 0.1]);
        let all = rank(Method::Blur, &faces, &m, &Filters::default());
        assert_eq!(all.order, [1, 2, 0, 3]);
        assert!(all.trash.is_empty());

        let f = Filters { keep: Some(2), min_score: Some(0.15), ..Filters::default() };
        let r = rank(Method::Blur, &faces, &m, &f);
        assert_eq!(r.order, [1, 2]);
        let reasons: Vec<&str> = r.trash.iter().map(|(_, why)| why.as_str()).collect();
        assert_eq!(reasons, ["blur 0.1000 < --min-score 0.15", "beyond --keep 2 by blur (rank 3)"]);
    }

    #[test]
    fn source_size_puts_the_largest_detection_first() {
        let mut faces: Vec<Face> = (1..=3).map(|i| face(&format!("{i:05}"), 0)).collect();
        for (f, side) in faces.iter_mut().zip([20.0, 60.0, 40.0]) {
            f.meta.source_rect = [0.0, 0.0, side, side];
        }
        let r = rank(Method::SourceSize, &faces, &Measured::default(), &Filters::default());
        assert_eq!(r.order, [1, 2, 0]);
        assert_eq!(r.score[1], Some(3600.0));
    }

    #[test]
    fn black_is_ascending() {
        let faces: Vec<Face> = (1..=3).map(|i| face(&format!("{i:05}"), 0)).collect();
        assert_eq!(
            rank(Method::Black, &faces, &scalar(&[0.3, 0.0, 0.1]), &Filters::default()).order,
            [1, 2, 0]
        );
    }

    #[test]
    fn origname_restores_frame_order_by_number() {
        let faces = vec![face("frame10", 0), face("frame9", 1), face("frame9", 0)];
        let r = rank(Method::Origname, &faces, &Measured::default(), &Filters::default());
        assert_eq!(r.order, [2, 1, 0]);
    }

    #[test]
    fn oneface_trashes_every_face_of_a_crowded_frame() {
        let faces = vec![face("00001", 0), face("00002", 0), face("00002", 1), face("00003", 0)];
        let r = rank(Method::Oneface, &faces, &Measured::default(), &Filters::default());
        assert_eq!(r.order, [0, 3]);
        assert_eq!(r.trash.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.trash[0].1, "oneface: frame 00002 has 2 faces");
        assert!(!r.rename);
    }
}
