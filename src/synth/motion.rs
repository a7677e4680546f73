//! Where a portrait's landmarks go in each frame: the driver's motion since its reference
//! frame, carried over by a similarity ("relative" motion transfer), plus a small seeded
//! jitter that drifts smoothly rather than shaking.

use crate::face::landmarks::Landmarks68;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::warp::TriangleMesh;
use crate::face::align::{self, Affine};

/// Largest jitter rotation about the face centre, in degrees.
pub const JITTER_MAX_ROTATION_DEG: f64 = 0.5;
/// Largest jitter shift, in output pixels.
pub const JITTER_MAX_SHIFT_PX: f64 = 1.0;
/// Frames between two random jitter keys; frames in between are eased from one to the next.
const JITTER_KEY_INTERVAL: usize = 12;
/// Weights of the centred moving average that calms the driver's landmarks: dlib's points on
/// a 176×144 face wobble by about a pixel, and the similarity scales that up several times.
const DRIVER_SMOOTHING: [f32; 3] = [0.25, 0.5, 0.25];
/// Each round of [`unfolded`] keeps this share of the motion of the points around a folded
/// triangle.
const UNFOLD_KEEP: f32 = 0.75;
/// Rounds of [`unfolded`] before it shortens the whole motion instead (0.75^24 ≈ 1e-3).
const UNFOLD_ROUNDS: usize = 24;
/// Halvings of the search for the share of the motion that folds nothing.
const SHORTEN_STEPS: usize = 12;

/// A small rigid motion: rotation about the face centre, then a shift.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Nudge {
    /// Rotation in radians (positive turns x towards y, i.e. clockwise on screen).
    pub rotation_rad: f64,
    /// Shift in pixels.
    pub shift_px: [f64; 2],
}

/// The seeded jitter of a whole clip: random keys every few frames, eased in between.
#[derive(Debug, Clone)]
pub struct Jitter {
    keys: Vec<Nudge>,
}

impl Jitter {
    /// Draws the jitter of a `frames`-long clip from `seed` (ChaCha8, so the same seed gives
    /// the same jitter on every machine).
    pub fn new(seed: u64, frames: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let max_rad = JITTER_MAX_ROTATION_DEG.to_radians();
        let keys = (0..=frames / JITTER_KEY_INTERVAL + 1)
            .map(|_| {
                let rotation_rad = rng.random_range(-max_rad..=max_rad);
                // Uniform on the disc of radius JITTER_MAX_SHIFT_PX (√ for uniform area).
                let radius = JITTER_MAX_SHIFT_PX * rng.random_range(0.0f64..=1.0).sqrt();
                let angle = rng.random_range(0.0..std::f64::consts::TAU);
                Nudge { rotation_rad, shift_px: [radius * angle.cos(), radius * angle.sin()] }
            })
            .collect();
        Self { keys }
    }

    /// Returns the jitter of frame `index` (0-based): the neighbouring keys, eased with a
    /// cosine, so it stays within the key bounds and has no jumps.
    pub fn at(&self, index: usize) -> Nudge {
        let (k, phase) = (index / JITTER_KEY_INTERVAL, index % JITTER_KEY_INTERVAL);
        let (Some(a), Some(b)) = (self.keys.get(k), self.keys.get(k + 1)) else {
            return self.keys.last().copied().unwrap_or_default();
        };
        let t = phase as f64 / JITTER_KEY_INTERVAL as f64;
        let w = (1.0 - (t * std::f64::consts::PI).cos()) / 2.0;
        let mix = |x: f64, y: f64| x + (y - x) * w;
        Nudge {
            rotation_rad: mix(a.rotation_rad, b.rotation_rad),
            shift_px: [mix(a.shift_px[0], b.shift_px[0]), mix(a.shift_px[1], b.shift_px[1])],
        }
    }
}

/// iBUG 68 landmarks that lie above one another on the face, top to bottom: the lips at their
/// centre and beside it (outer upper, inner upper, inner lower, outer lower) and the eyelids.
/// Relative motion can carry a lower point past an upper one (the driver closes a mouth the
/// portrait already has closed), which would turn the mesh inside out.
const COLUMNS: [&[usize]; 7] = [
    &[50, 61, 67, 58],
    &[51, 62, 66, 57],
    &[52, 63, 65, 56],
    &[37, 41],
    &[38, 40],
    &[43, 47],
    &[44, 46],
];
/// iBUG 68 outer eye corners, whose line sets the face's "across" direction.
const EYE_CORNERS: [usize; 2] = [36, 45];
/// A closing gap in a [`COLUMNS`] pair keeps at least this share of the portrait's own gap.
const MIN_GAP_SHARE: f32 = 0.25;

/// Returns `targets` with every [`COLUMNS`] column back in top-to-bottom order: where a
/// point would pass the one above it, the two (or more) are moved along the face's vertical
/// to their common mean, keeping a quarter of the portrait's gap between them. A closed
/// mouth or eye therefore stays closed instead of folding.
///
pub fn in_order(targets: &Landmarks68, portrait: &Landmarks68) -> Landmarks68 {
    let mut out = *targets.points();
    let (down, down_p) = (face_down(targets), face_down(portrait));
    let along = |p: [f32; 2], d: [f32; 2]| p[0] * d[0] + p[1] * d[1];
    for column in COLUMNS {
        // Gaps the column must keep, then positions with those gaps taken out.
        let mut offset = vec![0.0f32; column.len()];
        for k in 1..column.len() {
            let own = along(portrait[column[k]], down_p) - along(portrait[column[k - 1]], down_p);
            offset[k] = offset[k - 1] + MIN_GAP_SHARE * own.max(0.0);
        }
        let u: Vec<f32> =
            column.iter().zip(&offset).map(|(&i, o)| along(targets[i], down) - o).collect();
        let fitted = non_decreasing(&u);
        for (k, &i) in column.iter().enumerate() {
            let shift = fitted[k] - u[k];
            out[i] = [out[i][0] + shift * down[0], out[i][1] + shift * down[1]];
        }
    }
    Landmarks68::new(out)
}

/// Returns the unit vector pointing down the face (the eye line turned a quarter).
fn face_down(points: &[[f32; 2]]) -> [f32; 2] {
    let [a, b] = EYE_CORNERS.map(|i| points[i]);
    let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
    let len = ex.hypot(ey);
    if len > f32::EPSILON { [-ey / len, ex / len] } else { [0.0, 1.0] }
}

/// Returns the least-squares non-decreasing fit to `values` (pool adjacent violators).
fn non_decreasing(values: &[f32]) -> Vec<f32> {
    // Blocks of (mean, count), merged while a block's mean is below the one before.
    let mut blocks: Vec<(f32, usize)> = Vec::with_capacity(values.len());
    for &v in values {
        blocks.push((v, 1));
        while let [.., (m0, n0), (m1, n1)] = blocks[..] {
            if m0 <= m1 {
                break;
            }
            let n = n0 + n1;
            blocks.truncate(blocks.len() - 2);
            blocks.push(((m0 * n0 as f32 + m1 * n1 as f32) / n as f32, n));
        }
    }
    blocks.into_iter().flat_map(|(m, n)| std::iter::repeat_n(m, n)).collect()
}

/// Largest shift of the face's centre, in inter-ocular distances of the portrait. The
/// driver's head wanders (a hand-held phone in a car), and carried over at the portrait's
/// scale that would push a close-up out of its frame; larger shifts are eased towards this.
const MAX_SHIFT_PER_EYE_DISTANCE: f32 = 0.4;

/// Returns `targets` shifted so that their centre moves at most about
/// [`MAX_SHIFT_PER_EYE_DISTANCE`] eye distances from the `portrait`'s (a smooth limit: small
/// shifts pass almost unchanged, large ones approach the limit). Shape and turn are kept.
///
pub fn shift_limited(targets: &Landmarks68, portrait: &Landmarks68) -> Landmarks68 {
    let [a, b] = EYE_CORNERS.map(|i| portrait[i]);
    let limit = MAX_SHIFT_PER_EYE_DISTANCE * (a[0] - b[0]).hypot(a[1] - b[1]);
    let centre = |pts: &[[f32; 2]]| {
        let (x, y) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        [x / pts.len() as f32, y / pts.len() as f32]
    };
    let (c, c0) = (centre(targets), centre(portrait));
    let d = [c[0] - c0[0], c[1] - c0[1]];
    let len = d[0].hypot(d[1]);
    if len <= f32::EPSILON || limit <= f32::EPSILON {
        return *targets;
    }
    let eased = limit * (len / limit).tanh();
    let back = [d[0] * (eased / len - 1.0), d[1] * (eased / len - 1.0)];
    targets.map(|p| [p[0] + back[0], p[1] + back[1]])
}

/// Returns the driver's landmark tracks smoothed over time with a short centred average
/// ([`DRIVER_SMOOTHING`]); the first and last frames, which have a neighbour on one side
/// only, stay as they are (a one-sided average would pull a steady motion back).
///
/// # Shapes
/// `frames[t][i]`: landmark `i` of frame `t`.
pub fn smoothed(frames: &[Landmarks68]) -> Vec<Landmarks68> {
    let [before, weight, after] = DRIVER_SMOOTHING;
    (0..frames.len())
        .map(|t| match (t.checked_sub(1).map(|p| &frames[p]), frames.get(t + 1)) {
            (Some(prev), Some(next)) => Landmarks68::new(std::array::from_fn(|i| {
                let (a, p, b) = (prev[i], frames[t][i], next[i]);
                [0, 1].map(|k| before * a[k] + weight * p[k] + after * b[k])
            })),
            _ => frames[t],
        })
        .collect()
}

/// Returns targets for the points of `mesh` (built on `from`) that fold no triangle, and the
/// least share of its motion any point kept (1 when nothing folded).
///
/// `calm` is where each point goes with the head's rigid motion only (no expression), and
/// `moved` where the driver takes it. Only the corners of folded triangles give up some of
/// their expression, a little more each round, so one crossing pair of points (a jaw point
/// passing a mouth corner) neither freezes the face nor tears it from its neighbours. If that
/// is not enough (the head moves so far that even `calm` folds), the whole motion is
/// shortened.
pub fn unfolded(
    mesh: &TriangleMesh,
    from: &[[f32; 2]],
    calm: &[[f32; 2]],
    moved: &[[f32; 2]],
) -> (Vec<[f32; 2]>, f32) {
    let mut share = vec![1.0f32; moved.len()];
    let mut targets = moved.to_vec();
    for _ in 0..UNFOLD_ROUNDS {
        let folded = mesh.folded_points(&targets);
        if folded.is_empty() {
            return (targets, share.iter().copied().fold(1.0, f32::min));
        }
        for i in folded {
            if let Some(s) = share.get_mut(i) {
                *s *= UNFOLD_KEEP;
            }
        }
        targets = calm.iter().zip(moved).zip(&share).map(|((c, m), &s)| lerp(*c, *m, s)).collect();
    }
    shortened(mesh, from, &targets)
}

/// Returns the largest share of the way from `from` to `moved` that folds nothing (found by
/// bisection), and that share.
fn shortened(mesh: &TriangleMesh, from: &[[f32; 2]], moved: &[[f32; 2]]) -> (Vec<[f32; 2]>, f32) {
    let towards = |s: f32| -> Vec<[f32; 2]> {
        from.iter().zip(moved).map(|(p, m)| lerp(*p, *m, s)).collect()
    };
    let (mut ok, mut bad) = (0.0f32, 1.0f32);
    for _ in 0..SHORTEN_STEPS {
        let mid = (ok + bad) / 2.0;
        if mesh.folded_points(&towards(mid)).is_empty() { ok = mid } else { bad = mid }
    }
    (towards(ok), ok)
}

/// Returns the similarity (the head's turn, scale and shift) that best takes the
/// `portrait` landmarks onto `moved`.
pub fn head_motion(portrait: &[[f32; 2]], moved: &[[f32; 2]]) -> Affine {
    align::umeyama(&wide(portrait), &wide(moved))
}

/// Returns `a + s·(b − a)`.
fn lerp(a: [f32; 2], b: [f32; 2], s: f32) -> [f32; 2] {
    [a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1])]
}

/// Returns the points in f64, as [`align::umeyama`] takes them.
fn wide(pts: &[[f32; 2]]) -> Vec<[f64; 2]> {
    pts.iter().map(|p| [f64::from(p[0]), f64::from(p[1])]).collect()
}

/// Returns the portrait's landmarks moved as the driver moved from `driver_ref` to
/// `driver_now`: `P + S·(D_t − D_0)`, with `S` the linear part (rotation and scale) of the
/// least-squares similarity taking `driver_ref` onto `portrait`.
///
/// # Shapes
/// Each set of landmarks in its own image's pixels; the result is in the portrait's pixels.
pub fn relative_targets(
    portrait: &Landmarks68,
    driver_ref: &Landmarks68,
    driver_now: &Landmarks68,
) -> Landmarks68 {
    let s = align::umeyama(&wide(driver_ref), &wide(portrait));
    Landmarks68::new(std::array::from_fn(|i| {
        let (p, d0, dt) = (portrait[i], driver_ref[i], driver_now[i]);
        let (dx, dy) = (f64::from(dt[0] - d0[0]), f64::from(dt[1] - d0[1]));
        let mx = s[0][0] * dx + s[0][1] * dy;
        let my = s[1][0] * dx + s[1][1] * dy;
        [p[0] + mx as f32, p[1] + my as f32]
    }))
}

/// Returns `points` turned and shifted by `nudge` about their centroid.
pub fn nudged(points: &[[f32; 2]], nudge: Nudge) -> Vec<[f32; 2]> {
    let n = points.len().max(1) as f64;
    let (sx, sy) =
        points.iter().fold((0.0, 0.0), |(x, y), p| (x + f64::from(p[0]), y + f64::from(p[1])));
    let c = [sx / n, sy / n];
    let (sin, cos) = nudge.rotation_rad.sin_cos();
    points
        .iter()
        .map(|p| {
            let (x, y) = (f64::from(p[0]) - c[0], f64::from(p[1]) - c[1]);
            [
                (c[0] + cos * x - sin * y + nudge.shift_px[0]) as f32,
                (c[1] + sin * x + cos * y + nudge.shift_px[1]) as f32,
            ]
        })
        .collect()
}

/// Returns `points` clamped into a `width`×`height` image, `margin_px` from its border.
pub fn clamped(points: &[[f32; 2]], width: usize, height: usize, margin_px: f32) -> Vec<[f32; 2]> {
    let max_x = (width as f32 - 1.0 - margin_px).max(margin_px);
    let max_y = (height as f32 - 1.0 - margin_px).max(margin_px);
    points.iter().map(|p| [p[0].clamp(margin_px, max_x), p[1].clamp(margin_px, max_y)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_motion_is_rotated_and_scaled_into_the_portrait() {
        // The portrait is the driver turned 90° and scaled ×2, so a driver step right is a
        // portrait step of 2 px down.
        let d0 = Landmarks68::new(std::array::from_fn(|i| {
            [(i % 9) as f32 * 10.0, (i / 9) as f32 * 10.0]
        }));
        let p = d0.map(|q| [100.0 - 2.0 * q[1], 50.0 + 2.0 * q[0]]);
        let mut moved = *d0.points();
        moved[3][0] += 1.0;
        let l = relative_targets(&p, &d0, &Landmarks68::new(moved));
        for i in 0..3 {
            assert!((l[i][0] - p[i][0]).abs() < 1e-4 && (l[i][1] - p[i][1]).abs() < 1e-4);
        }
        assert!((l[3][0] - p[3][0]).abs() < 1e-4, "{l:?}");
        assert!((l[3][1] - (p[3][1] + 2.0)).abs() < 1e-4, "{l:?}");
    }

    #[test]
    fn jitter_is_small_smooth_and_seeded() {
        let (a, b) = (Jitter::new(7, 120), Jitter::new(8, 120));
        assert_eq!(a.at(33), Jitter::new(7, 120).at(33));
        assert_ne!(a.at(33), b.at(33));
        let max_rad = JITTER_MAX_ROTATION_DEG.to_radians();
        for i in 0..120 {
            let (now, next) = (a.at(i), a.at(i + 1));
            assert!(now.rotation_rad.abs() <= max_rad + 1e-12);
            assert!(now.shift_px[0].hypot(now.shift_px[1]) <= JITTER_MAX_SHIFT_PX + 1e-12);
            let step =
                (next.shift_px[0] - now.shift_px[0]).hypot(next.shift_px[1] - now.shift_px[1]);
            assert!(step < 0.4, "frame {i}: the jitter jumps {step} px");
        }
    }

    #[test]
    fn smoothing_keeps_a_steady_track_and_calms_a_wobble() {
        let track: Vec<Landmarks68> = (0..6)
            .map(|t| Landmarks68::new([[t as f32, if t == 3 { 4.0 } else { 0.0 }]; 68]))
            .collect();
        let s = smoothed(&track);
        assert_eq!(s.len(), 6);
        for (t, f) in s.iter().enumerate() {
            assert!((f[0][0] - t as f32).abs() < 1e-6, "a steady motion stays: {s:?}");
        }
        assert_eq!(s[3][0][1], 2.0);
        assert_eq!(s[2][0][1], 1.0);
    }

    #[test]
    fn only_the_points_of_a_folded_triangle_are_held_back() {
        let from: Vec<[f32; 2]> =
            (0..25).map(|i| [20.0 + (i % 5) as f32 * 15.0, 20.0 + (i / 5) as f32 * 15.0]).collect();
        let mesh = TriangleMesh::new(&from, 120, 120);
        let mut moved: Vec<[f32; 2]> = from.iter().map(|p| [p[0] + 2.0, p[1]]).collect();
        moved[12][0] += 40.0; // the centre point jumps over its right neighbour
        assert!(!mesh.folded_points(&moved).is_empty());
        let calm: Vec<[f32; 2]> = from.iter().map(|p| [p[0] + 2.0, p[1]]).collect();
        let (targets, least) = unfolded(&mesh, &from, &calm, &moved);
        assert!(mesh.folded_points(&targets).is_empty());
        assert!(least < 1.0);
        assert_eq!(targets[0], moved[0], "a point far from the fold keeps its motion");
    }

    #[test]
    fn pooling_gives_the_nearest_ordered_sequence() {
        assert_eq!(non_decreasing(&[1.0, 3.0, 2.0, 4.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(non_decreasing(&[3.0, 2.0, 1.0]), vec![2.0, 2.0, 2.0]);
        assert_eq!(non_decreasing(&[0.0, 1.0]), vec![0.0, 1.0]);
    }

    #[test]
    fn crossed_lips_are_put_back_in_order_with_a_sliver_of_gap() {
        let mut points = [[0.0f32, 0.0]; 68];
        points[36] = [-30.0, -40.0];
        points[45] = [30.0, -40.0];
        for (k, &i) in [51usize, 62, 66, 57].iter().enumerate() {
            points[i] = [0.0, [0.0, 6.0, 8.0, 14.0][k]];
        }
        let portrait = Landmarks68::new(points);
        points[62][1] = 9.0; // the inner upper lip passes the inner lower one (at 8)
        let targets = Landmarks68::new(points);
        let fixed = in_order(&targets, &portrait);
        let gap = fixed[66][1] - fixed[62][1];
        assert!((gap - 0.5).abs() < 1e-4, "a quarter of the 2 px gap is kept: {gap}");
        assert!(((fixed[62][1] + fixed[66][1]) / 2.0 - 8.5).abs() < 1e-4, "about their mean");
        assert_eq!(fixed[51], targets[51]);
        assert_eq!(in_order(&portrait, &portrait), portrait, "ordered points stay");
    }

    #[test]
    fn a_long_shift_is_eased_and_a_short_one_kept() {
        let portrait = Landmarks68::new(std::array::from_fn(|i| {
            [(i % 9) as f32 * 10.0, (i / 9) as f32 * 10.0]
        }));
        let eye = (portrait[36][0] - portrait[45][0]).hypot(portrait[36][1] - portrait[45][1]);
        let shifted = |dx: f32| portrait.map(|p| [p[0] + dx, p[1]]);
        let small = shift_limited(&shifted(0.5), &portrait);
        assert!((small[0][0] - 0.5).abs() < 0.01, "{:?}", small[0]);
        let large = shift_limited(&shifted(10.0 * eye), &portrait);
        let moved = large[0][0] - portrait[0][0];
        assert!(moved > 0.0 && moved <= MAX_SHIFT_PER_EYE_DISTANCE * eye + 1e-3, "{moved}");
        assert_eq!(large[5][0] - large[4][0], 10.0, "the shape is kept");
    }

    #[test]
    fn clamping_keeps_points_inside() {
        let pts = clamped(&[[-5.0, 3.0], [500.0, 99.5]], 100, 100, 1.0);
        assert_eq!(pts, vec![[1.0, 3.0], [98.0, 98.0]]);
    }
}
