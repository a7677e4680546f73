//! A ring of extra mesh points around the face, between its landmarks and the fixed image
//! border. The ring follows the head's rigid motion (turn, scale, shift, without the
//! expression), so the hair, ears and neck move with the head, the background between the
//! ring and the border bends instead, and the mesh has no long slivers from the face to the
//! corners (which a small head turn would fold).

use crate::face::align::{self, Affine};
use crate::face::landmarks::Landmarks68;

/// iBUG 68 landmarks on the face outline: the jaw (0–16) and the brows (17–26).
const OUTLINE: std::ops::Range<usize> = 0..27;
/// Ring points sit this many times farther from the face centre than the outline point they
/// come from (1.8 puts the brow points' ring on the top of the head).
const RING_SCALE: f32 = 1.8;
/// Share of the head's motion the ring follows.
const FOLLOW: f32 = 1.0;
/// Ring points closer to the border than this share of the image's shorter side are left
/// out: moving with the head they would run into the fixed border (and fold the mesh).
const BORDER_CLEARANCE_SHARE: f32 = 0.15;

/// The ring points of one portrait.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Halo {
    points: Vec<[f32; 2]>,
}

impl Halo {
    /// Places the ring around the 68 `landmarks` of a `width`×`height` portrait; ring points
    /// within [`BORDER_CLEARANCE_SHARE`] of the shorter side (or `margin_px`) of the border,
    /// or outside the image, are left out.
    pub fn around(landmarks: &Landmarks68, width: usize, height: usize, margin_px: f32) -> Self {
        let n = landmarks.len() as f32;
        let (sx, sy) = landmarks.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        let centre = [sx / n, sy / n];
        let (w, h) = (width as f32 - 1.0, height as f32 - 1.0);
        let clearance_px = (BORDER_CLEARANCE_SHARE * w.min(h)).max(margin_px);
        let mut halo = Self::default();
        for p in &landmarks[OUTLINE] {
            let q = [0, 1].map(|k| centre[k] + RING_SCALE * (p[k] - centre[k]));
            let border_px = q[0].min(q[1]).min(w - q[0]).min(h - q[1]);
            if border_px > clearance_px {
                halo.points.push(q);
            }
        }
        halo
    }

    /// Returns the ring points in the portrait.
    pub fn points(&self) -> &[[f32; 2]] {
        &self.points
    }

    /// Returns where the ring points go when the head moves by the similarity `head`.
    pub fn targets(&self, head: &Affine) -> Vec<[f32; 2]> {
        let moved = align::transform_points(head, &self.points);
        self.points
            .iter()
            .zip(&moved)
            .map(|(p, m)| [p[0] + FOLLOW * (m[0] - p[0]), p[1] + FOLLOW * (m[1] - p[1])])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_surrounds_the_face_and_follows_the_head() {
        let landmarks = Landmarks68::new(std::array::from_fn(|i| {
            let a = i as f32 / 68.0 * std::f32::consts::TAU;
            [200.0 + 40.0 * a.cos(), 200.0 + 40.0 * a.sin()]
        }));
        let halo = Halo::around(&landmarks, 400, 400, 2.0);
        assert_eq!(halo.points().len(), 27);
        let r = (halo.points()[0][0] - 200.0).hypot(halo.points()[0][1] - 200.0);
        assert!((r - 72.0).abs() < 1e-3, "{r}");
        let shift = [[1.0, 0.0, 10.0], [0.0, 1.0, 0.0]];
        let t = halo.targets(&shift);
        assert!((t[0][0] - halo.points()[0][0] - 10.0 * FOLLOW).abs() < 1e-4, "{t:?}");

        let near_edge = Halo::around(&landmarks, 260, 400, 2.0);
        assert!(near_edge.points().len() < 27, "points near the border are left out");
        let clearance = BORDER_CLEARANCE_SHARE * 259.0;
        assert!(near_edge.points().iter().all(|p| p[0] < 259.0 - clearance));
    }
}
