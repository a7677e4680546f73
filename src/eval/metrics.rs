//! The measures `dfl eval` puts on a swap: landmark error, temporal jitter, summary statistics.
//!
//! Landmark distances are normalised by the inter-ocular distance (outer eye corners, iBUG 36
//! and 45), the convention of 300-W's NME, so they do not depend on the face's size.

pub use crate::face::align::inter_ocular;
use crate::face::landmarks::{INNER, LANDMARK_COUNT, Landmarks68};

fn distance(a: [f32; 2], b: [f32; 2]) -> f64 {
    f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1]))
}

/// Normalised mean error: the mean distance between corresponding points of `found` and
/// `reference`, over the inter-ocular distance of `reference`. `None` unless the eyes are apart.
pub fn nme(found: &Landmarks68, reference: &Landmarks68) -> Option<f64> {
    nme_over(found, reference, 0..LANDMARK_COUNT)
}

/// [`nme`] over the 51 inner points only (brows, eyes, nose, mouth): the expression without the
/// jaw line, which follows the identity (a bearded or broader-chinned src moves it in a good
/// swap).
pub fn nme_inner(found: &Landmarks68, reference: &Landmarks68) -> Option<f64> {
    nme_over(found, reference, INNER)
}

fn nme_over(
    found: &Landmarks68,
    reference: &Landmarks68,
    points: std::ops::Range<usize>,
) -> Option<f64> {
    let iod = Some(inter_ocular(reference)).filter(|&d| d > 1e-6)?;
    let n = points.len();
    let (found, reference) = (&found.points()[points.clone()], &reference.points()[points]);
    let sum: f64 = found.iter().zip(reference).map(|(&a, &b)| distance(a, b)).sum();
    Some(sum / n as f64 / iod)
}

/// Landmark jitter of a track (consecutive frames of one face): the mean over frames and
/// points of the second difference `|p(t+1) − 2·p(t) + p(t−1)|`, over the inter-ocular
/// distance at `t`. Smooth motion, even fast, has a small second difference; shaking does
/// not. `None` for fewer than 3 frames.
pub fn landmark_jitter(track: &[&Landmarks68]) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for w in track.windows(3) {
        let Some(iod) = Some(inter_ocular(w[1])).filter(|&d| d > 1e-6) else { continue };
        for ((a, b), c) in w[0].iter().zip(w[1].iter()).zip(w[2].iter()) {
            let d = [c[0] - 2.0 * b[0] + a[0], c[1] - 2.0 * b[1] + a[1]];
            sum += f64::from(d[0]).hypot(f64::from(d[1])) / iod;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Pixel jitter of a track of equally sized gray crops (u8 values as f32): the mean absolute
/// second difference `|A(t+1) − 2·A(t) + A(t−1)|` per pixel, in gray levels. `None` for fewer
/// than 3 crops or mismatched sizes.
pub fn pixel_jitter(crops: &[&[f32]]) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for w in crops.windows(3) {
        if w[0].len() != w[1].len() || w[1].len() != w[2].len() {
            return None;
        }
        for ((a, b), c) in w[0].iter().zip(w[1]).zip(w[2]) {
            sum += f64::from((c - 2.0 * b + a).abs());
        }
        n += w[1].len();
    }
    (n > 0).then(|| sum / n as f64)
}

/// Mean, median and 90th percentile of some values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their median.
    pub median: f64,
    /// Their 90th percentile (nearest rank).
    pub p90: f64,
}

impl Summary {
    /// Summarises the finite values of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some(Summary {
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            median,
            p90: rank(0.9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 68 points on a line with the eye corners 36 and 45 `iod` apart.
    fn face(shift: [f32; 2], iod: f32) -> Landmarks68 {
        let mut pts: [[f32; 2]; 68] = std::array::from_fn(|i| [i as f32 + shift[0], shift[1]]);
        pts[36] = [shift[0], shift[1]];
        pts[45] = [shift[0] + iod, shift[1]];
        Landmarks68::new(pts)
    }

    #[test]
    fn nme_is_the_mean_distance_over_the_eye_distance() {
        let a = face([0.0, 0.0], 50.0);
        assert_eq!(nme(&a, &a), Some(0.0));
        let b = face([0.0, 5.0], 50.0);
        assert!((nme(&b, &a).unwrap() - 0.1).abs() < 1e-12, "5 px off at an eye distance of 50");
        // (Point sets of another size no longer reach `nme`: `Landmarks68` holds 68.)
        assert_eq!(nme(&a, &face([0.0, 0.0], 0.0)), None, "no eye distance to divide by");
    }

    #[test]
    fn the_inner_nme_ignores_the_jaw_line() {
        let a = face([0.0, 0.0], 50.0);
        // A chin 10 px lower (the 17 jaw points): the 68-point NME blames it, the inner one not.
        let mut chin = *a.points();
        for p in &mut chin[0..17] {
            p[1] += 10.0;
        }
        let b = Landmarks68::new(chin);
        assert!((nme(&b, &a).unwrap() - 17.0 * 10.0 / 68.0 / 50.0).abs() < 1e-12);
        assert_eq!(nme_inner(&b, &a), Some(0.0));
        // A mouth 5 px off (20 of the 51 inner points) counts in both.
        let mut mouth = *a.points();
        for p in &mut mouth[48..68] {
            p[1] += 5.0;
        }
        let c = Landmarks68::new(mouth);
        assert!((nme_inner(&c, &a).unwrap() - 20.0 * 5.0 / 51.0 / 50.0).abs() < 1e-12);
    }

    #[test]
    fn steady_motion_has_no_jitter_and_shaking_has() {
        let steady: Vec<Landmarks68> = (0..6).map(|t| face([3.0 * t as f32, 0.0], 50.0)).collect();
        let refs: Vec<&Landmarks68> = steady.iter().collect();
        assert_eq!(landmark_jitter(&refs), Some(0.0));
        let shaken: Vec<Landmarks68> =
            (0..6).map(|t| face([if t % 2 == 0 { 0.0 } else { 5.0 }, 0.0], 50.0)).collect();
        let refs: Vec<&Landmarks68> = shaken.iter().collect();
        // Second differences of ±10 px every frame at an eye distance of 50.
        assert!((landmark_jitter(&refs).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(landmark_jitter(&refs[..2]), None);
    }

    #[test]
    fn pixel_jitter_sees_flicker_not_fades() {
        let fade: Vec<Vec<f32>> = (0..5).map(|t| vec![10.0 * t as f32; 16]).collect();
        let fade: Vec<&[f32]> = fade.iter().map(Vec::as_slice).collect();
        assert_eq!(pixel_jitter(&fade), Some(0.0));
        let flicker: Vec<Vec<f32>> =
            (0..5).map(|t| vec![if t % 2 == 0 { 0.0 } else { 4.0 }; 16]).collect();
        let flicker: Vec<&[f32]> = flicker.iter().map(Vec::as_slice).collect();
        assert_eq!(pixel_jitter(&flicker), Some(8.0));
    }

    #[test]
    fn summaries_are_the_usual_statistics() {
        let s = Summary::of((1..=10).map(f64::from)).unwrap();
        assert_eq!((s.n, s.mean, s.median, s.p90), (10, 5.5, 5.5, 9.0));
        assert_eq!(Summary::of([f64::NAN]), None);
    }
}
