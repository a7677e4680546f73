//! Head pose from the 68 landmarks: DFL's `estimate_pitch_yaw_roll`.
//!
//! The landmarks of an aligned face are matched to a 68-point 3-D mean head by `solvePnP`
//! (camera focal = the image side, principal point at its centre, no distortion), and the
//! rotation is read as Euler angles. DFL uses the jaw and brows (0–26) and the lower nose
//! (30–35); eyes and mouth move with expression and are left out.

use opencv::calib3d;
use opencv::core::{Mat, Point2f, Point3f, Vector};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use super::landmarks::Landmarks68;

/// The 68-point 3-D mean head (iBUG order; x to the image right, y down, z away from the
/// camera, so the nose tip has the smallest z). Arbitrary mm-like units.
#[allow(clippy::excessive_precision)] // verbatim from the published mean head
const MEAN_HEAD_3D: [[f32; 3]; 68] = [
    [-73.393523, -29.801432, 47.667532],
    [-72.775014, -10.949766, 45.909403],
    [-70.533638, 7.929818, 44.842580],
    [-66.850058, 26.074280, 43.141114],
    [-59.790187, 42.564390, 38.635298],
    [-48.368973, 56.481080, 30.750622],
    [-34.121101, 67.246992, 18.456453],
    [-17.875411, 75.056892, 3.609035],
    [0.098749, 77.061286, -0.881698],
    [17.477031, 74.758448, 5.181201],
    [32.648966, 66.929021, 19.176563],
    [46.372358, 56.311389, 30.770570],
    [57.343480, 42.419126, 37.628629],
    [64.388482, 25.455880, 40.886309],
    [68.212038, 6.990805, 42.281449],
    [70.486405, -11.666193, 44.142567],
    [71.375822, -30.365191, 47.140426],
    [-61.119406, -49.361602, 14.254422],
    [-51.287588, -58.769795, 7.268147],
    [-37.804800, -61.996155, 0.442051],
    [-24.022754, -61.033399, -6.606501],
    [-11.635713, -56.686759, -11.967398],
    [12.056636, -57.391033, -12.051204],
    [25.106256, -61.902186, -7.315098],
    [38.338588, -62.777713, -1.022953],
    [51.191007, -59.302347, 5.349435],
    [60.053851, -50.190255, 11.615746],
    [0.653940, -42.193790, -13.380835],
    [0.804809, -30.993721, -21.150853],
    [0.992204, -19.944596, -29.284036],
    [1.226783, -8.414541, -36.948060],
    [-14.772472, 2.598255, -20.132003],
    [-7.180239, 4.751589, -23.536684],
    [0.555920, 6.562900, -25.944448],
    [8.272499, 4.661005, -23.695741],
    [15.214351, 2.643046, -20.858157],
    [-46.047290, -37.471411, 7.037989],
    [-37.674688, -42.730510, 3.021217],
    [-27.883856, -42.711517, 1.353629],
    [-19.648268, -36.754742, -0.111088],
    [-28.272965, -35.134493, -0.147273],
    [-38.082418, -34.919043, 1.476612],
    [19.265868, -37.032306, -0.665746],
    [27.894191, -43.342445, 0.247660],
    [37.437529, -43.110822, 1.696435],
    [45.170805, -38.086515, 4.894163],
    [38.196454, -35.532024, 0.282961],
    [28.764989, -35.484289, -1.172675],
    [-28.916267, 28.612716, -2.240310],
    [-17.533194, 22.172187, -15.934335],
    [-6.684590, 19.029051, -22.611355],
    [0.381001, 20.721118, -23.748437],
    [8.375443, 19.035460, -22.721995],
    [18.876618, 22.394109, -15.610679],
    [28.794412, 28.079924, -3.217393],
    [19.057574, 36.298248, -14.987997],
    [8.956375, 39.634575, -22.554245],
    [0.381549, 40.395647, -23.591626],
    [-7.428895, 39.836405, -22.406106],
    [-18.160634, 36.677899, -15.121907],
    [-24.377490, 28.677771, -4.785684],
    [-6.897633, 25.475976, -20.893742],
    [0.340663, 26.014269, -22.220479],
    [8.444722, 25.326198, -21.025520],
    [24.474473, 28.323008, -5.712776],
    [8.449166, 30.596216, -20.671489],
    [0.205322, 31.408738, -21.903670],
    [-7.198266, 30.844876, -20.328022],
];

/// The landmarks DFL fits: jaw and brows (0–26) and the lower nose (30–35).
fn pose_points() -> impl Iterator<Item = usize> {
    (0..27).chain(30..36)
}

/// A head pose in radians, each angle clipped to ±π/2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// Positive when the face looks up (the nose moves up in the image).
    pub pitch: f64,
    /// Positive when the face turns toward the image's left (the nose moves left).
    pub yaw: f64,
    /// Rotation in the image plane.
    pub roll: f64,
}

/// Returns the pose of the face whose 68 `landmarks` are in pixels of a `size_px`² image, or
/// `None` for an empty image or when the fit fails.
///
/// DFL: `LandmarksProcessor.estimate_pitch_yaw_roll` (which returns `(-pitch, yaw, roll)`; the
/// sign flip is folded into [`Pose::pitch`]). On aligned faces the practical yaw range is
/// about ±1.2.
pub fn estimate_pitch_yaw_roll(landmarks: &Landmarks68, size_px: u32) -> Option<Pose> {
    if size_px == 0 {
        return None;
    }
    let object: Vector<Point3f> = pose_points()
        .map(|i| Point3f::new(MEAN_HEAD_3D[i][0], MEAN_HEAD_3D[i][1], MEAN_HEAD_3D[i][2]))
        .collect();
    let image: Vector<Point2f> =
        pose_points().map(|i| Point2f::new(landmarks[i][0], landmarks[i][1])).collect();
    let rotation = solve_rotation(&object, &image, f64::from(size_px)).ok()?;
    let [x, y, z] = euler_angles(&rotation);
    let clip = |a: f64| a.clamp(-std::f64::consts::FRAC_PI_2, std::f64::consts::FRAC_PI_2);
    Some(Pose { pitch: -clip(x), yaw: clip(y), roll: clip(z) })
}

/// `solvePnP` (iterative) with DFL's pinhole camera, returning the 3×3 rotation row by row.
fn solve_rotation(
    object: &Vector<Point3f>,
    image: &Vector<Point2f>,
    size: f64,
) -> opencv::Result<[[f64; 3]; 3]> {
    let camera =
        Mat::from_slice_2d(&[[size, 0.0, size / 2.0], [0.0, size, size / 2.0], [0.0, 0.0, 1.0]])?;
    let no_distortion = Mat::zeros(4, 1, opencv::core::CV_64FC1)?.to_mat()?;
    let (mut rvec, mut tvec, mut rmat) = (Mat::default(), Mat::default(), Mat::default());
    let solved = calib3d::solve_pnp(
        object,
        image,
        &camera,
        &no_distortion,
        &mut rvec,
        &mut tvec,
        false,
        calib3d::SOLVEPNP_ITERATIVE,
    )?;
    if !solved {
        return Err(opencv::Error::new(opencv::core::StsError, "solvePnP found no pose"));
    }
    calib3d::rodrigues(&rvec, &mut rmat, &mut opencv::core::no_array())?;
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = *rmat.at_2d::<f64>(i as i32, j as i32)?;
        }
    }
    Ok(r)
}

/// Euler angles `[x, y, z]` of a rotation matrix (x-y-z convention, as DFL's
/// `mathlib.rotationMatrixToEulerAngles`).
fn euler_angles(r: &[[f64; 3]; 3]) -> [f64; 3] {
    let sy = r[0][0].hypot(r[1][0]);
    if sy > 1e-6 {
        [r[2][1].atan2(r[2][2]), (-r[2][0]).atan2(sy), r[1][0].atan2(r[0][0])]
    } else {
        [(-r[1][2]).atan2(r[1][1]), (-r[2][0]).atan2(sy), 0.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Projects the mean head rotated by pitch (about x) then yaw (about y), 400 units in front
    /// of a `size`-px camera, to 68 image points.
    fn project_head(yaw: f64, pitch: f64, size: f64) -> Landmarks68 {
        let (sy, cy) = yaw.sin_cos();
        let (sp, cp) = pitch.sin_cos();
        Landmarks68::new(MEAN_HEAD_3D.map(|p| {
            let [x, y, z] = p.map(f64::from);
            // R = Ry(yaw) · Rx(pitch): the order whose Euler angles are (pitch, yaw, 0).
            let (y1, z1) = (cp * y - sp * z, sp * y + cp * z);
            let (x2, z2) = (cy * x + sy * z1, -sy * x + cy * z1);
            let depth = z2 + 400.0;
            [(size * x2 / depth + size / 2.0) as f32, (size * y1 / depth + size / 2.0) as f32]
        }))
    }

    #[test]
    fn recovers_a_known_rotation() {
        for (yaw, pitch) in [(0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (0.0, 0.3), (0.3, -0.2)] {
            let pose = estimate_pitch_yaw_roll(&project_head(yaw, pitch, 256.0), 256).unwrap();
            // The object rotation by +pitch about x moves the nose down: DFL reports −pitch.
            assert!((pose.yaw - yaw).abs() < 0.01, "yaw {yaw}: got {pose:?}");
            assert!((pose.pitch + pitch).abs() < 0.01, "pitch {pitch}: got {pose:?}");
            assert!(pose.roll.abs() < 0.05, "roll: got {pose:?}");
        }
    }

    #[test]
    fn the_sign_follows_where_the_nose_points() {
        let left = project_head(0.4, 0.0, 256.0);
        assert!(left[30][0] < 128.0, "positive yaw moves the nose to the image's left");
        assert!(estimate_pitch_yaw_roll(&left, 256).unwrap().yaw > 0.3);

        let up = project_head(0.0, -0.3, 256.0);
        assert!(up[30][1] < project_head(0.0, 0.0, 256.0)[30][1], "this tilt moves the nose up");
        assert!(estimate_pitch_yaw_roll(&up, 256).unwrap().pitch > 0.2, "looking up is positive");
    }

    /// The iBUG point that `i` becomes in a mirrored face.
    fn mirror_68(i: usize) -> usize {
        let pairs: [(usize, usize); 29] = [
            (0, 16),
            (1, 15),
            (2, 14),
            (3, 13),
            (4, 12),
            (5, 11),
            (6, 10),
            (7, 9),
            (17, 26),
            (18, 25),
            (19, 24),
            (20, 23),
            (21, 22),
            (31, 35),
            (32, 34),
            (36, 45),
            (37, 44),
            (38, 43),
            (39, 42),
            (40, 47),
            (41, 46),
            (48, 54),
            (49, 53),
            (50, 52),
            (55, 59),
            (56, 58),
            (60, 64),
            (61, 63),
            (65, 67),
        ];
        pairs
            .iter()
            .find_map(|&(a, b)| (i == a).then_some(b).or((i == b).then_some(a)))
            .unwrap_or(i)
    }

    #[test]
    fn a_mirrored_face_has_the_opposite_yaw() {
        let face = project_head(0.35, 0.1, 256.0);
        // Mirror x and swap the iBUG left/right points: the same face turned the other way.
        let mirrored = Landmarks68::new(std::array::from_fn(|i| {
            let p = face[mirror_68(i)];
            [256.0 - p[0], p[1]]
        }));
        let a = estimate_pitch_yaw_roll(&face, 256).unwrap();
        let b = estimate_pitch_yaw_roll(&mirrored, 256).unwrap();
        // The mean head is not exactly symmetric (its nose sits 1 unit right of the chin).
        assert!((a.yaw + b.yaw).abs() < 0.05, "{a:?} vs {b:?}");
        assert!((a.pitch - b.pitch).abs() < 0.05, "{a:?} vs {b:?}");
    }

    /// (Another point count no longer reaches this function: `Landmarks68` holds 68.)
    #[test]
    fn refuses_an_empty_image() {
        assert_eq!(estimate_pitch_yaw_roll(&project_head(0.0, 0.0, 256.0), 0), None);
    }
}
