//! The 68 iBUG landmarks of one face: the points every stage aligns, masks, poses and
//! compares faces by. The count is part of the type, checked once where points enter the
//! program (a face file's metadata, a landmark predictor), so nothing downstream re-checks it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::align::{Affine, apply};

/// How many points a face has (the iBUG 300-W scheme, dlib's 68-point predictor).
pub const LANDMARK_COUNT: usize = 68;
/// The 17 jaw-line points (iBUG 0–16): the face's outline, which belongs to the identity.
pub const JAW: std::ops::Range<usize> = 0..17;
/// The 51 inner points (iBUG 17–67: brows, nose, eyes, mouth), which carry the expression.
pub const INNER: std::ops::Range<usize> = 17..LANDMARK_COUNT;

/// The subject's right eye (image-left).
const RIGHT_EYE: std::ops::Range<usize> = 36..42;
/// The subject's left eye (image-right).
const LEFT_EYE: std::ops::Range<usize> = 42..48;
/// The nose tip.
const NOSE_TIP: usize = 30;
/// The subject's right and left mouth corners (image-left, image-right).
const MOUTH_CORNERS: [usize; 2] = [48, 54];

/// 68 landmarks in pixels of some image (which one is the holder's to say), in iBUG order.
///
/// Dereferences to the slice of points, so `lm[36]`, `lm.iter()` and functions over any
/// point set (`&[[f32; 2]]`) take it as it is.
#[derive(Clone, Copy, PartialEq)]
pub struct Landmarks68([[f32; 2]; LANDMARK_COUNT]);

/// Points that are not 68 finite landmarks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LandmarksError {
    /// Another number of points.
    #[error("{0} landmarks, 68 expected")]
    Count(usize),
    /// A coordinate is NaN or infinite.
    #[error("landmarks are not finite")]
    NotFinite,
}

impl Landmarks68 {
    /// Wraps 68 points.
    pub fn new(points: [[f32; 2]; LANDMARK_COUNT]) -> Self {
        Self(points)
    }

    /// Checks and copies a point list from outside the program.
    ///
    /// # Errors
    /// `Count` unless there are 68 points, `NotFinite` when a coordinate is NaN or infinite.
    pub fn from_points(points: &[[f32; 2]]) -> Result<Self, LandmarksError> {
        let array: [[f32; 2]; LANDMARK_COUNT] =
            points.try_into().map_err(|_| LandmarksError::Count(points.len()))?;
        if array.iter().flatten().any(|v| !v.is_finite()) {
            return Err(LandmarksError::NotFinite);
        }
        Ok(Self(array))
    }

    /// Returns the points.
    pub fn points(&self) -> &[[f32; 2]; LANDMARK_COUNT] {
        &self.0
    }

    /// Returns the points mapped through the affine `m` (e.g. frame → aligned face).
    pub fn transformed(&self, m: &Affine) -> Self {
        Self(self.0.map(|p| {
            let q = apply(m, [f64::from(p[0]), f64::from(p[1])]);
            [q[0] as f32, q[1] as f32]
        }))
    }

    /// Returns the points with `f` applied to each.
    pub fn map(&self, f: impl FnMut([f32; 2]) -> [f32; 2]) -> Self {
        Self(self.0.map(f))
    }

    /// Returns the 5 points face recognizers align by, in the detector's keypoint order: the
    /// right and left eye centres (means of 36–41 and 42–47), the nose tip (30) and the right
    /// and left mouth corners (48, 54).
    pub fn five_points(&self) -> [[f32; 2]; 5] {
        let centre = |range: std::ops::Range<usize>| {
            let n = range.len() as f32;
            let (sx, sy) = self.0[range].iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
            [sx / n, sy / n]
        };
        [
            centre(RIGHT_EYE),
            centre(LEFT_EYE),
            self.0[NOSE_TIP],
            self.0[MOUTH_CORNERS[0]],
            self.0[MOUTH_CORNERS[1]],
        ]
    }
}

impl std::ops::Deref for Landmarks68 {
    type Target = [[f32; 2]];

    fn deref(&self) -> &[[f32; 2]] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Landmarks68 {
    type Item = &'a [f32; 2];
    type IntoIter = std::slice::Iter<'a, [f32; 2]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for Landmarks68 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl TryFrom<Vec<[f32; 2]>> for Landmarks68 {
    type Error = LandmarksError;

    fn try_from(points: Vec<[f32; 2]>) -> Result<Self, LandmarksError> {
        Self::from_points(&points)
    }
}

/// Written as a list of `[x, y]` pairs.
impl Serialize for Landmarks68 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

/// Read from a list of `[x, y]` pairs; another count or a non-finite value is an error.
impl<'de> Deserialize<'de> for Landmarks68 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let points = Vec::<[f32; 2]>::deserialize(deserializer)?;
        Self::from_points(&points).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 68 distinct points on a slanted grid (for tests that need any valid landmarks).
    pub(crate) fn grid(origin: [f32; 2], step: f32) -> Landmarks68 {
        Landmarks68::new(std::array::from_fn(|i| {
            [origin[0] + (i % 9) as f32 * step, origin[1] + (i / 9) as f32 * step + i as f32 * 0.01]
        }))
    }

    #[test]
    fn the_count_and_finiteness_are_checked_where_points_come_in() {
        let ok = grid([0.0, 0.0], 1.0);
        assert_eq!(Landmarks68::from_points(&ok).unwrap(), ok);
        assert_eq!(Landmarks68::from_points(&ok[..67]), Err(LandmarksError::Count(67)));
        let mut bad = ok.points().to_vec();
        bad[5][1] = f32::NAN;
        assert_eq!(Landmarks68::from_points(&bad), Err(LandmarksError::NotFinite));
    }

    #[test]
    fn json_is_a_list_of_pairs_and_a_wrong_count_is_refused() {
        let lm = grid([1.5, 2.0], 3.0);
        let json = serde_json::to_string(&lm).unwrap();
        assert!(json.starts_with("[[1.5,2.0],[4.5,"), "{json}");
        assert_eq!(serde_json::from_str::<Landmarks68>(&json).unwrap(), lm);
        let err = serde_json::from_str::<Landmarks68>("[[1.0,2.0]]").unwrap_err().to_string();
        assert!(err.contains("1 landmarks, 68 expected"), "{err}");
    }

    /// 68 points with distinct, known positions: point `i` at `(i, 2i)`.
    fn numbered_68() -> Vec<[f32; 2]> {
        (0..68).map(|i| [i as f32, 2.0 * i as f32]).collect()
    }

    #[test]
    fn five_points_come_from_eye_centres_nose_and_mouth_corners() {
        let five = Landmarks68::from_points(&numbered_68()).expect("68 points").five_points();
        // Means of 36..=41 and 42..=47 are 38.5 and 44.5.
        assert_eq!(five, [[38.5, 77.0], [44.5, 89.0], [30.0, 60.0], [48.0, 96.0], [54.0, 108.0]]);
        assert!(Landmarks68::from_points(&numbered_68()[..67]).is_err());
        for len in [0, 5, 67, 69] {
            assert!(Landmarks68::from_points(&vec![[1.0, 1.0]; len]).is_err(), "{len} points");
        }
    }
}
