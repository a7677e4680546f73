//! Delaunay triangulation (Bowyer–Watson) for the synth mesh: quadratic time, plenty for
//! the ~100 points of a face, its halo and the border anchors.

use super::warp::{MIN_TRIANGLE_AREA_PX2, signed_area, sub};

/// The super triangle extends this many point-cloud extents beyond the points, far enough
/// that it cannot cut off hull triangles.
const SUPER_TRIANGLE_REACH: f64 = 100.0;

/// A triangle during Bowyer–Watson, with its circumcircle.
#[derive(Debug, Clone, Copy)]
struct Circumscribed {
    v: [usize; 3],
    centre: [f64; 2],
    radius_sq: f64,
}

impl Circumscribed {
    fn new(v: [usize; 3], pts: &[[f64; 2]]) -> Self {
        let [a, b, c] = v.map(|i| pts[i]);
        let d = 2.0 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]));
        let sq = |p: [f64; 2]| p[0] * p[0] + p[1] * p[1];
        let (ux, uy) = if d.abs() < f64::EPSILON {
            (f64::INFINITY, f64::INFINITY) // collinear: contains everything, removed at once
        } else {
            (
                (sq(a) * (b[1] - c[1]) + sq(b) * (c[1] - a[1]) + sq(c) * (a[1] - b[1])) / d,
                (sq(a) * (c[0] - b[0]) + sq(b) * (a[0] - c[0]) + sq(c) * (b[0] - a[0])) / d,
            )
        };
        let radius_sq = if ux.is_finite() { sq(sub(a, [ux, uy])) } else { f64::INFINITY };
        Self { v, centre: [ux, uy], radius_sq }
    }

    fn contains(&self, p: [f64; 2]) -> bool {
        if !self.radius_sq.is_finite() {
            return true;
        }
        let d = sub(p, self.centre);
        d[0] * d[0] + d[1] * d[1] < self.radius_sq * (1.0 + 1e-12)
    }
}

/// Returns the Delaunay triangles of `points`, each with positive [`signed_area`]
/// (collapsed ones, from collinear points, are left out).
pub fn delaunay(points: &[[f64; 2]]) -> Vec<[usize; 3]> {
    let n = points.len();
    if n < 3 {
        return Vec::new();
    }
    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
    for p in points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let reach = SUPER_TRIANGLE_REACH * (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1.0);
    let mid = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let mut pts = points.to_vec();
    pts.extend([
        [mid[0] - reach, mid[1] - reach],
        [mid[0] + reach, mid[1] - reach],
        [mid[0], mid[1] + reach],
    ]);
    let mut tris = vec![Circumscribed::new([n, n + 1, n + 2], &pts)];
    for (i, &p) in points.iter().enumerate() {
        let (bad, good): (Vec<_>, Vec<_>) = tris.into_iter().partition(|t| t.contains(p));
        tris = good;
        for edge in cavity_boundary(&bad) {
            tris.push(Circumscribed::new([edge[0], edge[1], i], &pts));
        }
    }
    tris.into_iter()
        .filter(|t| t.v.iter().all(|&i| i < n))
        .map(|t| {
            let [a, b, c] = t.v;
            if signed_area([a, b, c].map(|i| points[i])) < 0.0 { [a, c, b] } else { [a, b, c] }
        })
        .filter(|t| signed_area(t.map(|i| points[i])) >= MIN_TRIANGLE_AREA_PX2)
        .collect()
}

/// Returns the edges of the cavity the `bad` triangles leave: those only one of them has.
fn cavity_boundary(bad: &[Circumscribed]) -> Vec<[usize; 2]> {
    let edges = |t: &Circumscribed| {
        let [a, b, c] = t.v;
        [[a, b], [b, c], [c, a]]
    };
    let same = |e: [usize; 2], f: [usize; 2]| e == f || e == [f[1], f[0]];
    let mut boundary = Vec::new();
    for (i, t) in bad.iter().enumerate() {
        for e in edges(t) {
            let shared =
                bad.iter().enumerate().any(|(j, u)| j != i && edges(u).iter().any(|&f| same(e, f)));
            if !shared {
                boundary.push(e);
            }
        }
    }
    boundary
}
