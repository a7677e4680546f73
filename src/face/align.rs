//! DeepFaceLab's alignment: a similarity transform from 33 landmarks to its mean face, then the
//! face type's padding and crop (`docs/dfl-parity.md`, "Extraction").
//!
//! DFL: `facelib/LandmarksProcessor.py` (`get_transform_mat`, `landmarks_2D_new`),
//! `core/mathlib/umeyama.py`, `facelib/FaceType.py`.

use serde::{Deserialize, Serialize};

use super::landmarks::Landmarks68;

/// A 2×3 affine matrix `[[a, b, tx], [c, d, ty]]` mapping `(x, y)` to
/// `(a·x + b·y + tx, c·x + d·y + ty)`.
pub type Affine = [[f64; 3]; 2];

/// How much of the head an aligned face shows (DFL's face types).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum FaceType {
    /// Eyebrows to mouth only.
    #[value(alias = "h")]
    Half,
    /// A little more than half.
    #[value(alias = "mf", alias = "mid-full")]
    MidFull,
    /// The whole face, chin to eyebrows.
    #[value(alias = "f")]
    Full,
    /// The full face plus forehead and some hair (DFL's default).
    #[default]
    #[value(alias = "wf", alias = "whole-face")]
    WholeFace,
    /// The whole head.
    Head,
}

impl FaceType {
    /// Returns DFL's padding `p`: the crop side is `s·(1 + 2√2·p)` for a unit square of side `s`.
    ///
    /// DFL: `FaceType_to_padding_remove_align` in `LandmarksProcessor.py`.
    pub fn padding(self) -> f64 {
        match self {
            FaceType::Half => 0.0,
            FaceType::MidFull => 0.0675,
            FaceType::Full => 0.2109375,
            FaceType::WholeFace => 0.40,
            FaceType::Head => 0.70,
        }
    }

    /// Returns the snake_case name stored in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            FaceType::Half => "half",
            FaceType::MidFull => "mid_full",
            FaceType::Full => "full",
            FaceType::WholeFace => "whole_face",
            FaceType::Head => "head",
        }
    }
}

/// The 68-point indices DFL aligns with: eyebrows, nose, eyes (17..=48) and the far mouth
/// corner (54). The jaw and lips are left out: their shape changes with expression.
pub const ALIGN_POINTS: [usize; 33] = [
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 54,
];

/// DFL's mean face for those 33 points, in a unit square spanning eyebrows to mouth (x right,
/// y down). DFL: `landmarks_2D_new` in `LandmarksProcessor.py`.
pub const MEAN_FACE: [[f64; 2]; 33] = [
    [0.000213256, 0.106454],
    [0.0752622, 0.038915],
    [0.18113, 0.0187482],
    [0.29077, 0.0344891],
    [0.393397, 0.0773906],
    [0.586856, 0.0773906],
    [0.689483, 0.0344891],
    [0.799124, 0.0187482],
    [0.904991, 0.038915],
    [0.98004, 0.106454],
    [0.490127, 0.203352],
    [0.490127, 0.307009],
    [0.490127, 0.409805],
    [0.490127, 0.515625],
    [0.36688, 0.587326],
    [0.426036, 0.609345],
    [0.490127, 0.628106],
    [0.554217, 0.609345],
    [0.613373, 0.587326],
    [0.121737, 0.216423],
    [0.187122, 0.178758],
    [0.265825, 0.179852],
    [0.334606, 0.231733],
    [0.260918, 0.245099],
    [0.182743, 0.244077],
    [0.645647, 0.231733],
    [0.714428, 0.179852],
    [0.793132, 0.178758],
    [0.858516, 0.216423],
    [0.79751, 0.244077],
    [0.719335, 0.245099],
    [0.254149, 0.780233],
    [0.726104, 0.780233],
];

/// WHOLE_FACE moves the crop centre up by this share of the unit side, for more forehead.
const WHOLE_FACE_UP: f64 = 0.07;
/// HEAD moves the crop centre up by this share of the unit side.
const HEAD_UP: f64 = 0.5;

/// Returns the least-squares similarity (rotation, uniform scale, translation; no reflection)
/// mapping `src` points onto `dst` points (Umeyama 1991, closed form in 2-D).
///
/// Degenerate input (all `src` points equal) gives a zero-scale matrix, which does not invert.
pub fn umeyama(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Affine {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len().max(1) as f64;
    let mean = |pts: &[[f64; 2]]| {
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        [sx / n, sy / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut p, mut q, mut norm) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (ax, ay) = (s[0] - ms[0], s[1] - ms[1]);
        let (bx, by) = (d[0] - md[0], d[1] - md[1]);
        p += ax * bx + ay * by;
        q += ax * by - ay * bx;
        norm += ax * ax + ay * ay;
    }
    let (a, b) = if norm > 0.0 { (p / norm, q / norm) } else { (0.0, 0.0) };
    // [[a, -b], [b, a]] is scale·rotation; the translation maps the centroids onto each other.
    let tx = md[0] - (a * ms[0] - b * ms[1]);
    let ty = md[1] - (b * ms[0] + a * ms[1]);
    [[a, -b, tx], [b, a, ty]]
}

/// Applies `m` to one point.
pub fn apply(m: &Affine, p: [f64; 2]) -> [f64; 2] {
    [m[0][0] * p[0] + m[0][1] * p[1] + m[0][2], m[1][0] * p[0] + m[1][1] * p[1] + m[1][2]]
}

/// Applies `m` to every point.
pub fn transform_points(m: &Affine, pts: &[[f32; 2]]) -> Vec<[f32; 2]> {
    pts.iter()
        .map(|p| {
            let q = apply(m, [f64::from(p[0]), f64::from(p[1])]);
            [q[0] as f32, q[1] as f32]
        })
        .collect()
}

/// Returns the inverse of `m`, or `None` when it is singular.
pub fn invert(m: &Affine) -> Option<Affine> {
    let [[a, b, tx], [c, d, ty]] = *m;
    let det = a * d - b * c;
    if det.abs() < 1e-12 {
        return None;
    }
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
    Some([[ia, ib, -(ia * tx + ib * ty)], [ic, id, -(ic * tx + id * ty)]])
}

/// Returns the affine map taking the three points `from` onto `to` (`cv2.getAffineTransform`).
fn affine_from_3_points(from: [[f64; 2]; 3], to: [[f64; 2]; 3]) -> Option<Affine> {
    // The map from the unit triangle (0,0), (1,0), (0,1) to a triangle is read off its points.
    let basis = |t: [[f64; 2]; 3]| -> Affine {
        [
            [t[1][0] - t[0][0], t[2][0] - t[0][0], t[0][0]],
            [t[1][1] - t[0][1], t[2][1] - t[0][1], t[0][1]],
        ]
    };
    Some(compose(&basis(to), &invert(&basis(from))?))
}

/// Returns `outer ∘ inner`: first `inner`, then `outer`.
pub fn compose(outer: &Affine, inner: &Affine) -> Affine {
    let mut m = [[0.0; 3]; 2];
    for r in 0..2 {
        for c in 0..3 {
            m[r][c] = outer[r][0] * inner[0][c] + outer[r][1] * inner[1][c];
        }
        m[r][2] += outer[r][2];
    }
    m
}

/// Returns the similarity from 68 frame landmarks to DFL's unit square (the 33-point Umeyama
/// fit to [`MEAN_FACE`]); `None` for degenerate points.
pub fn to_unit_square(landmarks: &Landmarks68) -> Option<Affine> {
    let src: Vec<[f64; 2]> = ALIGN_POINTS
        .iter()
        .map(|&i| [f64::from(landmarks[i][0]), f64::from(landmarks[i][1])])
        .collect();
    let to_unit = umeyama(&src, &MEAN_FACE);
    invert(&to_unit).map(|_| to_unit)
}

/// Returns the frame → aligned-face matrix for an output of `size_px`² pixels: DFL's
/// `get_transform_mat(landmarks, size, face_type)` with scale 1.
///
/// `landmarks` are the 68 iBUG points in frame pixels. `None` when they are degenerate.
pub fn transform_mat(landmarks: &Landmarks68, size_px: u32, face_type: FaceType) -> Option<Affine> {
    transform_mat_scaled(landmarks, size_px, face_type, 1.0)
}

/// [`transform_mat`] with DFL's `scale`: the face fills `scale` times as much of the output
/// (the crop around the same centre shrinks by `1/scale`). The merger's `output_face_scale`.
pub fn transform_mat_scaled(
    landmarks: &Landmarks68,
    size_px: u32,
    face_type: FaceType,
    scale: f64,
) -> Option<Affine> {
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let to_unit = to_unit_square(landmarks)?;
    let from_unit = invert(&to_unit)?;
    // Unit-square corners (tl, tr, br, bl) and centre, in the frame.
    let g = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]].map(|p| apply(&from_unit, p));
    let mut centre = apply(&from_unit, [0.5, 0.5]);
    let sub = |a: [f64; 2], b: [f64; 2]| [a[0] - b[0], a[1] - b[1]];
    let len = |v: [f64; 2]| v[0].hypot(v[1]);
    let unit = |v: [f64; 2]| [v[0] / len(v), v[1] / len(v)];
    let tb = unit(sub(g[2], g[0]));
    let bt = unit(sub(g[1], g[3]));
    let half_diag =
        len(sub(g[0], g[2])) * (std::f64::consts::SQRT_2 * face_type.padding() + 0.5) / scale;
    let up = sub(g[0], g[3]); // one unit side, towards the top of the face
    match face_type {
        FaceType::WholeFace => {
            centre = [centre[0] + up[0] * WHOLE_FACE_UP, centre[1] + up[1] * WHOLE_FACE_UP]
        }
        FaceType::Head => {
            let yaw = damped_yaw(&landmarks.transformed(&to_unit));
            let right = sub(g[1], g[0]); // one unit side, towards the image's right
            centre = [
                centre[0] + right[0] * yaw / 2.0 + up[0] * HEAD_UP,
                centre[1] + right[1] * yaw / 2.0 + up[1] * HEAD_UP,
            ];
        }
        FaceType::Half | FaceType::MidFull | FaceType::Full => {}
    }
    let at = |dir: [f64; 2], k: f64| [centre[0] + dir[0] * k, centre[1] + dir[1] * k];
    let crop = [at(tb, -half_diag), at(bt, half_diag), at(tb, half_diag)];
    let s = f64::from(size_px);
    affine_from_3_points(crop, [[0.0, 0.0], [s, 0.0], [s, s]])
}

/// The distance between the outer eye corners (iBUG 36 and 45), the usual unit of landmark
/// error (300-W's NME).
pub fn inter_ocular(landmarks: &Landmarks68) -> f64 {
    let (a, b) = (landmarks[36], landmarks[45]);
    f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1]))
}

/// DFL's yaw estimate on unit-square landmarks, damped near zero (HEAD's centre shift).
fn damped_yaw(unit_landmarks: &Landmarks68) -> f64 {
    let yaw = averaged_yaw(unit_landmarks);
    yaw * (2.0 * yaw).tanh().abs()
}

/// Returns DFL's `estimate_averaged_yaw`: how much wider the image-right half of the face is
/// than the image-left half, from the jaw (0–2, 14–16) and the nose bridge (27–29).
///
/// The value is in the units of `landmarks`' x; on unit-square landmarks (see [`umeyama`] to
/// [`MEAN_FACE`]) it is dimensionless, 0 for a frontal face.
pub fn averaged_yaw(landmarks: &Landmarks68) -> f64 {
    let x = |i: usize| f64::from(landmarks[i][0]);
    let left = (0..3).map(|k| x(27 + k) - x(k)).sum::<f64>() / 3.0;
    let right = (0..3).map(|k| x(16 - k) - x(27 + k)).sum::<f64>() / 3.0;
    right - left
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 68 landmarks whose 33 alignment points are the mean face placed at `origin` with side
    /// `side`, rotated by `angle_rad`; the other points mirror symmetrically around the nose.
    fn mean_face_landmarks(origin: [f64; 2], side: f64, angle_rad: f64) -> Landmarks68 {
        let mut unit = vec![[0.490127, 0.5]; 68];
        for (k, &i) in ALIGN_POINTS.iter().enumerate() {
            unit[i] = MEAN_FACE[k];
        }
        for k in 0..=8 {
            // A symmetric jaw, so the HEAD yaw estimate is zero.
            let y = 0.2 + 0.1 * k as f64;
            let dx = 0.5 - 0.05 * k as f64;
            unit[k] = [0.490127 - dx, y];
            unit[16 - k] = [0.490127 + dx, y];
        }
        let (sin, cos) = angle_rad.sin_cos();
        Landmarks68::new(std::array::from_fn(|i| {
            let (x, y) = (unit[i][0] * side, unit[i][1] * side);
            [(origin[0] + x * cos - y * sin) as f32, (origin[1] + x * sin + y * cos) as f32]
        }))
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn umeyama_recovers_a_known_similarity() {
        let src: Vec<[f64; 2]> =
            (0..10).map(|i| [i as f64 * 1.7 - 3.0, (i * i) as f64 * 0.3]).collect();
        let (s, th, t) = (2.5, 0.7f64, [12.0, -4.0]);
        let truth = [[s * th.cos(), -s * th.sin(), t[0]], [s * th.sin(), s * th.cos(), t[1]]];
        let dst: Vec<[f64; 2]> = src.iter().map(|&p| apply(&truth, p)).collect();
        let m = umeyama(&src, &dst);
        for r in 0..2 {
            for c in 0..3 {
                assert!(close(m[r][c], truth[r][c], 1e-9), "{m:?} vs {truth:?}");
            }
        }
    }

    #[test]
    fn umeyama_never_reflects() {
        let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let mirrored = [[0.0, 0.0], [-1.0, 0.0], [0.0, 1.0]];
        let m = umeyama(&src, &mirrored);
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        assert!(det >= 0.0, "a reflection slipped in: {m:?}");
    }

    #[test]
    fn invert_and_compose_round_trip() {
        let m = [[1.5, -0.4, 7.0], [0.4, 1.5, -2.0]];
        let id = compose(&m, &invert(&m).unwrap());
        for (r, row) in id.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!(close(*v, want, 1e-12), "{id:?}");
            }
        }
    }

    /// Where the unit square lands in the crop, per face type: its side as a share of the crop
    /// (the face-type table in `docs/dfl-parity.md`, "Extraction") and its centre's offset.
    #[test]
    fn each_face_type_crops_the_documented_share() {
        let size = 256u32;
        let cases = [
            (FaceType::Half, 1.000, 0.0),
            (FaceType::MidFull, 0.840, 0.0),
            (FaceType::Full, 0.626, 0.0),
            (FaceType::WholeFace, 0.469, WHOLE_FACE_UP),
            (FaceType::Head, 0.336, HEAD_UP),
        ];
        let lm = mean_face_landmarks([100.0, 50.0], 80.0, 0.0);
        for (face_type, share, up) in cases {
            let m = transform_mat(&lm, size, face_type).unwrap();
            let to_crop = |u: [f64; 2]| apply(&m, [100.0 + u[0] * 80.0, 50.0 + u[1] * 80.0]);
            let (tl, br) = (to_crop([0.0, 0.0]), to_crop([1.0, 1.0]));
            let side = (br[0] - tl[0]) / f64::from(size);
            assert!(close(side, share, 0.0015), "{face_type:?}: unit square is {side} of the crop");
            assert!(close(br[1] - tl[1], br[0] - tl[0], 1e-6), "{face_type:?} is not square");
            let centre = to_crop([0.5, 0.5]);
            let half = f64::from(size) / 2.0;
            let exact_share = 1.0 / (1.0 + 2.0 * std::f64::consts::SQRT_2 * face_type.padding());
            let expect_y = half + up * exact_share * f64::from(size);
            assert!(close(centre[0], half, 0.02), "{face_type:?} centre x {}", centre[0]);
            assert!(
                close(centre[1], expect_y, 0.05),
                "{face_type:?} centre y {} vs {expect_y}",
                centre[1]
            );
        }
    }

    #[test]
    fn a_rotated_face_comes_out_upright() {
        let upright =
            transform_mat(&mean_face_landmarks([200.0, 100.0], 60.0, 0.0), 128, FaceType::Full)
                .unwrap();
        let tilted_lm = mean_face_landmarks([200.0, 100.0], 60.0, 0.5);
        let tilted = transform_mat(&tilted_lm, 128, FaceType::Full).unwrap();
        let aligned = transform_points(&tilted, &tilted_lm);
        let expect = transform_points(&upright, &mean_face_landmarks([200.0, 100.0], 60.0, 0.0));
        for (a, e) in aligned.iter().zip(&expect) {
            assert!(close(f64::from(a[0]), f64::from(e[0]), 1e-3), "{a:?} vs {e:?}");
            assert!(close(f64::from(a[1]), f64::from(e[1]), 1e-3), "{a:?} vs {e:?}");
        }
        // Eyes level: outer eye corners 36 and 45 share their y.
        assert!(close(f64::from(aligned[36][1]), f64::from(aligned[45][1]), 1e-3));
    }

    /// (Another point count no longer reaches `transform_mat`: `Landmarks68` holds 68.)
    #[test]
    fn degenerate_landmarks_are_refused() {
        assert!(
            transform_mat(&Landmarks68::new([[3.0, 3.0]; 68]), 256, FaceType::Full).is_none(),
            "all points equal"
        );
    }
}
