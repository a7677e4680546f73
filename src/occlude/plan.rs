//! The seeded plan of an occlusion clip: which occluders, when, along which path, with which
//! shape and colour. Everything here is drawn from one `ChaCha8Rng` seeded with `--seed`, so a
//! seed and a frame count give the same plan on every machine.
//!
//! Geometry is in frame-independent units: positions are offsets from the frame's centre in
//! units of the frame's shorter side `s`; shapes are polygons in units of the occluder's own
//! `size · s`. Rendering ([`super::render`]) turns them into pixels for each frame's size.

use std::f32::consts::{PI, TAU};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The shapes an occluder can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OccluderKind {
    /// A hand: palm, four fingers, a thumb and a wrist leaving the palm.
    Hand,
    /// A microphone or stick: a long rounded bar with a round head.
    Bar,
    /// A smooth random blob (a star-convex polygon of a few low harmonics).
    Blob,
}

/// One occluder of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Occluder {
    /// Its shape.
    pub kind: OccluderKind,
    /// The first frame (0-based) it is drawn on.
    pub first_frame: usize,
    /// The last frame (0-based, inclusive) it is drawn on.
    pub last_frame: usize,
    /// Start, control and end point of its path (a quadratic Bézier curve): offsets from the
    /// frame's centre in units of the frame's shorter side.
    pub path: [[f32; 2]; 3],
    /// Its scale: one shape unit is `size ×` the frame's shorter side.
    pub size: f32,
    /// Its rotation at the start and at the end of the path, in degrees.
    pub angle_deg: [f32; 2],
    /// The base colour of its texture (BGR).
    pub colour_bgr: [u8; 3],
    /// The seed of its texture's noise.
    pub texture_seed: u64,
    /// The shape's parts, in shape units around the shape's centre: each part is a simple
    /// polygon (convex, or star-convex for a blob) filled on its own; the shape is their union.
    #[serde(skip)]
    pub parts: Vec<Vec<[f32; 2]>>,
}

impl Occluder {
    /// Returns whether it is drawn on frame `index`.
    pub fn active(&self, index: usize) -> bool {
        (self.first_frame..=self.last_frame).contains(&index)
    }

    /// Returns its pose on frame `index`: the centre as an offset from the frame's centre (in
    /// units of the shorter side) and the rotation in radians.
    pub fn pose(&self, index: usize) -> ([f32; 2], f32) {
        let span = (self.last_frame - self.first_frame).max(1) as f32;
        let u = (index.saturating_sub(self.first_frame) as f32 / span).clamp(0.0, 1.0);
        let [s, c, e] = self.path;
        let w = [(1.0 - u) * (1.0 - u), 2.0 * u * (1.0 - u), u * u];
        let at = |k: usize| w[0] * s[k] + w[1] * c[k] + w[2] * e[k];
        let angle = self.angle_deg[0] + u * (self.angle_deg[1] - self.angle_deg[0]);
        ([at(0), at(1)], angle.to_radians())
    }

    /// Returns how far the shape reaches from its centre, in shape units.
    pub fn extent(&self) -> f32 {
        self.parts.iter().flatten().map(|p| p[0].hypot(p[1])).fold(0.0, f32::max)
    }
}

/// Points on each circle or ellipse outline: smooth at any size dfl writes.
const OUTLINE_POINTS: usize = 48;
/// The occluders of a run when `--count` is not given: 2 or 3, by seed.
const DEFAULT_COUNTS: [usize; 2] = [2, 3];
/// Share of its time slot an occluder is on screen: the rest of the slot has no occluder.
const ON_SCREEN_SHARE: std::ops::Range<f32> = 0.6..0.85;
/// Where a path crosses the middle: offsets from the frame's centre (shorter-side units). The
/// talking heads dfl is tested on have the face here, slightly above the centre.
const CROSS_X: std::ops::Range<f32> = -0.2..0.2;
const CROSS_Y: std::ops::Range<f32> = -0.2..0.12;
/// Distance from the crossing point to the path's ends (shorter-side units).
const HALF_PATH: std::ops::Range<f32> = 0.4..0.6;
/// Sideways bend of the path's control point (shorter-side units).
const BEND: std::ops::Range<f32> = -0.3..0.3;
/// Skin tones of hands (BGR).
const SKIN_BGR: [[u8; 3]; 5] =
    [[120, 150, 205], [95, 125, 180], [60, 90, 140], [150, 180, 228], [45, 65, 105]];

/// Returns the occluders of a clip of `frames` frames for `seed`: `count` of them (2 or 3,
/// by seed, when `None`), one per equal time slot, each on screen for part of its slot so
/// frames without an occluder remain between them.
pub fn plan(seed: u64, count: Option<usize>, frames: usize) -> Vec<Occluder> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count = count.unwrap_or(DEFAULT_COUNTS[rng.random_range(0..DEFAULT_COUNTS.len())]);
    let mut kinds = [OccluderKind::Hand, OccluderKind::Bar, OccluderKind::Blob];
    let turn = rng.random_range(0..kinds.len());
    kinds.rotate_left(turn);
    if count == 0 || frames == 0 {
        return Vec::new();
    }
    (0..count)
        .filter_map(|k| {
            let slot = (k * frames / count)..((k + 1) * frames / count);
            if slot.is_empty() {
                return None;
            }
            Some(occluder(&mut rng, kinds[k % kinds.len()], slot))
        })
        .collect()
}

fn occluder(rng: &mut ChaCha8Rng, kind: OccluderKind, slot: std::ops::Range<usize>) -> Occluder {
    let len = slot.len();
    let on = ((len as f32 * rng.random_range(ON_SCREEN_SHARE)).round() as usize).clamp(1, len);
    let first_frame = slot.start + rng.random_range(0..=len - on);
    let cross = [rng.random_range(CROSS_X), rng.random_range(CROSS_Y)];
    let heading = rng.random_range(0.0..TAU);
    let dir = [heading.cos(), heading.sin()];
    let half = rng.random_range(HALF_PATH);
    let bend = rng.random_range(BEND);
    let path = [
        [cross[0] - half * dir[0], cross[1] - half * dir[1]],
        // The curve passes `bend / 2` beside the crossing point at its middle.
        [cross[0] - bend * dir[1], cross[1] + bend * dir[0]],
        [cross[0] + half * dir[0], cross[1] + half * dir[1]],
    ];
    let spin = rng.random_range(-25.0..25.0);
    let (size, start_angle, colour_bgr, parts) = match kind {
        OccluderKind::Hand => {
            let tone = SKIN_BGR[rng.random_range(0..SKIN_BGR.len())];
            let colour = tone.map(|c| c.saturating_add(rng.random_range(0..16)));
            (rng.random_range(0.14..0.17), rng.random_range(-50.0..50.0), colour, hand(rng))
        }
        OccluderKind::Bar => {
            let grey: u8 = rng.random_range(25..70);
            let colour = [grey, grey, grey.saturating_add(rng.random_range(0..20))];
            (rng.random_range(0.16..0.2), rng.random_range(-60.0..60.0), colour, bar(rng))
        }
        OccluderKind::Blob => {
            let mut colour = [0u8; 3];
            let (hi, lo) = (rng.random_range(0..3), rng.random_range(0..2));
            for (c, v) in colour.iter_mut().enumerate() {
                *v = rng.random_range(60..140);
                if c == hi {
                    *v = rng.random_range(170..250);
                }
            }
            colour[(hi + 1 + lo) % 3] = rng.random_range(10..60);
            (rng.random_range(0.15..0.19), rng.random_range(0.0..360.0), colour, blob(rng))
        }
    };
    Occluder {
        kind,
        first_frame,
        last_frame: first_frame + on - 1,
        path,
        size,
        angle_deg: [start_angle, start_angle + spin],
        colour_bgr,
        texture_seed: rng.random(),
        parts,
    }
}

/// An ellipse outline.
fn ellipse(centre: [f32; 2], radii: [f32; 2]) -> Vec<[f32; 2]> {
    (0..OUTLINE_POINTS)
        .map(|i| {
            let t = TAU * i as f32 / OUTLINE_POINTS as f32;
            [centre[0] + radii[0] * t.cos(), centre[1] + radii[1] * t.sin()]
        })
        .collect()
}

/// A capsule (a segment from `a` to `b` thickened by `radius`, round ends): convex.
fn capsule(a: [f32; 2], b: [f32; 2], radius: f32) -> Vec<[f32; 2]> {
    let along = (b[1] - a[1]).atan2(b[0] - a[0]);
    let half = OUTLINE_POINTS / 2;
    let arc = |c: [f32; 2], from: f32| {
        (0..=half).map(move |i| {
            let t = from + PI * i as f32 / half as f32;
            [c[0] + radius * t.cos(), c[1] + radius * t.sin()]
        })
    };
    arc(b, along - PI / 2.0).chain(arc(a, along + PI / 2.0)).collect()
}

/// A hand, fingers up (−y), palm around the origin, the wrist leaving downwards.
fn hand(rng: &mut ChaCha8Rng) -> Vec<Vec<[f32; 2]>> {
    let mirror = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let mut parts = vec![ellipse([0.0, 0.1], [0.38, 0.45]), capsule([0.0, 0.4], [0.0, 1.1], 0.26)];
    let finger_x = [-0.27, -0.09, 0.09, 0.27];
    let finger_len = [0.5, 0.62, 0.6, 0.48];
    let spread = rng.random_range(0.0..0.12);
    for (k, (&x, &len)) in finger_x.iter().zip(&finger_len).enumerate() {
        let tilt = (k as f32 - 1.5) * spread + rng.random_range(-0.05..0.05);
        let len = len * rng.random_range(0.9..1.1);
        let base = [x * mirror, -0.22];
        let tip = [base[0] + len * tilt.sin() * mirror, base[1] - len * tilt.cos()];
        parts.push(capsule(base, tip, 0.085));
    }
    let thumb: f32 = rng.random_range(0.6..1.1);
    let base = [0.3 * mirror, 0.2];
    let tip = [base[0] + 0.45 * thumb.sin() * mirror, base[1] - 0.45 * thumb.cos()];
    parts.push(capsule(base, tip, 0.1));
    parts
}

/// A microphone or stick: a long bar along y with a round head at the top.
fn bar(rng: &mut ChaCha8Rng) -> Vec<Vec<[f32; 2]>> {
    let half_len = rng.random_range(1.3..1.7);
    let width = rng.random_range(0.14..0.2);
    let mut parts = vec![capsule([0.0, -half_len], [0.0, half_len], width)];
    if rng.random_bool(0.6) {
        parts.push(ellipse([0.0, -half_len], [0.3, 0.3]));
    }
    parts
}

/// A smooth star-convex blob: radius `r(t) = r0 · (1 + Σ a_k cos(k t + p_k))`, k = 2…4.
fn blob(rng: &mut ChaCha8Rng) -> Vec<Vec<[f32; 2]>> {
    let harmonics: Vec<(f32, f32, f32)> = (2..=4)
        .map(|k| (k as f32, rng.random_range(0.04..0.16), rng.random_range(0.0..TAU)))
        .collect();
    let r0 = 0.6;
    let points = (0..2 * OUTLINE_POINTS)
        .map(|i| {
            let t = TAU * i as f32 / (2 * OUTLINE_POINTS) as f32;
            let wobble: f32 = harmonics.iter().map(|(k, a, p)| a * (k * t + p).cos()).sum();
            let r = r0 * (1.0 + wobble);
            [r * t.cos(), r * t.sin()]
        })
        .collect();
    vec![points]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_same_for_a_seed_and_differs_for_another() {
        let a = serde_json::to_string(&plan(7, None, 120)).unwrap();
        let b = serde_json::to_string(&plan(7, None, 120)).unwrap();
        let c = serde_json::to_string(&plan(8, None, 120)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn occluders_take_turns_and_leave_frames_free() {
        for seed in 0..20 {
            let occluders = plan(seed, Some(3), 120);
            assert_eq!(occluders.len(), 3);
            let busy = (0..120).filter(|&i| occluders.iter().any(|o| o.active(i))).count();
            assert!((60..120).contains(&busy), "seed {seed}: {busy} busy frames");
            for pair in occluders.windows(2) {
                assert!(pair[0].last_frame < pair[1].first_frame, "seed {seed}: overlap");
            }
            let kinds: std::collections::HashSet<_> = occluders.iter().map(|o| o.kind).collect();
            assert_eq!(kinds.len(), 3, "seed {seed}: three kinds");
        }
        let default = plan(3, None, 120).len();
        assert!(DEFAULT_COUNTS.contains(&default));
        assert!(plan(3, Some(4), 0).is_empty());
    }

    #[test]
    fn paths_cross_the_middle_of_the_frame() {
        for seed in 0..20 {
            for o in plan(seed, None, 90) {
                let mid = (o.first_frame + o.last_frame) / 2;
                let (centre, _) = o.pose(mid);
                assert!(centre[0].abs() < 0.4 && centre[1].abs() < 0.4, "{centre:?}");
                let ((start, _), (end, _)) = (o.pose(o.first_frame), o.pose(o.last_frame));
                let travel = (start[0] - end[0]).hypot(start[1] - end[1]);
                assert!(travel > 0.6, "it crosses, {travel:.2} shorter sides");
            }
        }
    }
}
