//! dlib's face landmark model (`shape_predictor`, a cascade of regression-tree forests after
//! Kazemi & Sullivan 2014): loads `shape_predictor_68_face_landmarks.dat` and predicts landmarks
//! that round to exactly the points dlib gives.
//!
//! The file layout and the inference steps are in `docs/face-models.md`, "dlib's shape
//! predictor"; this is an independent implementation of that description.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::dlib_serialize::DecodeError;

mod parse;

/// The only `shape_predictor` serialization version dlib writes.
const FORMAT_VERSION: i64 = 1;

/// Errors in the content of a shape predictor file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes are not valid dlib serialization.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The version number is not one this reader knows.
    #[error("shape predictor version {version} is not supported (expected {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        version: i64,
    },
    /// The parts decode but do not fit together (sizes or indices disagree).
    #[error("inconsistent shape predictor at byte {offset}: {detail}")]
    Inconsistent {
        /// Offset of the section where the mismatch was found.
        offset: usize,
        /// What disagrees.
        detail: String,
    },
    /// Bytes follow the end of the model.
    #[error("{len} unexpected byte(s) after the end of the shape predictor at byte {offset}")]
    TrailingBytes {
        /// Offset where the model ends.
        offset: usize,
        /// How many bytes follow.
        len: usize,
    },
}

/// Errors of loading a shape predictor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShapePredictorError {
    /// The file could not be read.
    #[error("cannot read shape predictor {}; run scripts/setup.sh to install it", .path.display())]
    Read {
        /// The model file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid shape predictor.
    #[error(
        "{} is not a valid dlib shape predictor; run scripts/setup.sh to reinstall it",
        .path.display()
    )]
    InvalidFile {
        /// The model file.
        path: PathBuf,
        /// What is wrong with its content.
        #[source]
        source: FormatError,
    },
    /// In-memory bytes are not a valid shape predictor.
    #[error("not a valid dlib shape predictor")]
    Invalid(#[source] FormatError),
}

/// A dlib `rectangle`: pixel bounds with INCLUSIVE `right` and `bottom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DlibRect {
    /// Leftmost column.
    pub left: i64,
    /// Top row.
    pub top: i64,
    /// Rightmost column (inclusive).
    pub right: i64,
    /// Bottom row (inclusive).
    pub bottom: i64,
}

/// A borrowed single-channel intensity image, row-major with no row padding.
#[derive(Debug, Clone, Copy)]
pub struct GrayImage<'a> {
    /// `width * height` intensities, row after row.
    pub data: &'a [u8],
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl GrayImage<'_> {
    /// Returns the intensity at (`x`, `y`), or 0 outside the image (as dlib's feature sampling).
    #[inline]
    fn intensity_at(&self, x: i64, y: i64) -> f32 {
        match (usize::try_from(x), usize::try_from(y)) {
            (Ok(x), Ok(y)) if x < self.width && y < self.height => {
                f32::from(self.data[y * self.width + x])
            }
            _ => 0.0,
        }
    }
}

/// One split node: go left when `feature[idx1] - feature[idx2] > thresh`.
#[derive(Debug, Clone, Copy)]
struct Split {
    idx1: u32,
    idx2: u32,
    thresh: f32,
}

/// One feature pixel of a cascade: an offset from a landmark of the current shape.
#[derive(Debug, Clone, Copy)]
struct FeaturePixel {
    /// Landmark index the offset starts from.
    anchor: u32,
    /// Offset in normalised box coordinates, before the shape's similarity transform.
    delta: [f32; 2],
}

/// One cascade level: its trees (indices into the flat tree arrays) and feature pixels.
#[derive(Debug)]
struct Cascade {
    trees: Range<usize>,
    features: Vec<FeaturePixel>,
}

/// dlib's regression-tree landmark predictor, stored flat: it is read-only after loading and
/// can be shared across threads (`Send + Sync`).
pub struct ShapePredictor {
    /// Mean shape in normalised box coordinates: x0, y0, x1, y1, …
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
    /// Split nodes of every tree, tree after tree, breadth-first within a tree.
    splits: Vec<Split>,
    /// Leaf vectors of every tree, tree after tree; each is `initial_shape.len()` floats.
    leaf_values: Vec<f32>,
    /// Split nodes per tree (`2^depth - 1`); every tree has `splits_per_tree + 1` leaves.
    splits_per_tree: usize,
}

impl fmt::Debug for ShapePredictor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapePredictor")
            .field("num_parts", &self.num_parts())
            .field("num_cascades", &self.num_cascades())
            .field("num_trees", &(self.splits.len() / self.splits_per_tree.max(1)))
            .field("tree_depth", &self.tree_depth())
            .finish_non_exhaustive()
    }
}

impl ShapePredictor {
    /// Loads a dlib shape predictor file (such as `shape_predictor_68_face_landmarks.dat`).
    ///
    /// # Errors
    /// `Read` when the file cannot be read, `InvalidFile` when its content is not a valid
    /// shape predictor; both name the path.
    pub fn load(path: &Path) -> Result<Self, ShapePredictorError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ShapePredictorError::Read { path: path.to_owned(), source })?;
        parse::parse(&bytes)
            .map_err(|source| ShapePredictorError::InvalidFile { path: path.to_owned(), source })
    }

    /// Parses a shape predictor from the bytes of a whole file.
    ///
    /// # Errors
    /// `Invalid` when the bytes are not one complete, consistent shape predictor (including
    /// when bytes are left over).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShapePredictorError> {
        parse::parse(bytes).map_err(ShapePredictorError::Invalid)
    }

    /// Returns the number of landmarks predicted (68 for the 68-point model).
    pub fn num_parts(&self) -> usize {
        self.initial_shape.len() / 2
    }

    /// Returns the number of cascade levels.
    pub fn num_cascades(&self) -> usize {
        self.cascades.len()
    }

    /// Returns the number of trees in cascade level `cascade`, or `None` past the last level.
    pub fn num_trees(&self, cascade: usize) -> Option<usize> {
        self.cascades.get(cascade).map(|c| c.trees.len())
    }

    /// Returns the number of feature pixels of cascade level `cascade`, or `None` past the last.
    pub fn feature_pool_size(&self, cascade: usize) -> Option<usize> {
        self.cascades.get(cascade).map(|c| c.features.len())
    }

    /// Returns the depth of every tree (number of splits on the path to a leaf).
    pub fn tree_depth(&self) -> usize {
        (self.splits_per_tree + 1).ilog2() as usize
    }

    /// Returns the mean shape the cascade starts from, in normalised box coordinates
    /// ((0, 0) = box top-left, (1, 1) = box bottom-right).
    pub fn initial_shape(&self) -> Vec<[f32; 2]> {
        self.initial_shape.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
    }

    /// Predicts the landmarks of the face in `rect`, as dlib's `shape_predictor::operator()`.
    ///
    /// `gray` is the intensity image (see [`intensity_from_bgr`]); `rect` is the face box with
    /// inclusive right/bottom, as dlib's detector returns it. Returns [`Self::num_parts`]
    /// unrounded positions in image pixels; [`round_like_dlib`] turns each into the exact
    /// integer point dlib returns (each value is the nearest `f32` that still rounds the same
    /// way as dlib's `f64`).
    ///
    /// # Panics
    /// When `gray.data` holds fewer than `width * height` pixels.
    pub fn predict(&self, gray: &GrayImage<'_>, rect: DlibRect) -> Vec<[f32; 2]> {
        assert!(
            gray.data.len() >= gray.width.saturating_mul(gray.height),
            "GrayImage invariant: data holds width * height pixels"
        );
        let to_image = BoxToImage::new(rect);
        let mut shape = self.initial_shape.clone();
        let pool = self.cascades.iter().map(|c| c.features.len()).max().unwrap_or(0);
        let mut features = Vec::with_capacity(pool);
        for cascade in &self.cascades {
            let transform = similarity_2x2(&self.initial_shape, &shape);
            sample_features(cascade, &transform, &shape, gray, &to_image, &mut features);
            self.add_tree_outputs(cascade.trees.clone(), &features, &mut shape);
        }
        shape.chunks_exact(2).map(|p| to_image.apply_narrowed(p[0], p[1])).collect()
    }

    /// Adds the leaf vector each tree in `trees` selects, in tree order, to `shape`.
    fn add_tree_outputs(&self, trees: Range<usize>, features: &[f32], shape: &mut [f32]) {
        let splits_per_tree = self.splits_per_tree;
        let leaf_len = shape.len();
        for tree in trees {
            let splits = &self.splits[tree * splits_per_tree..(tree + 1) * splits_per_tree];
            let leaf = tree * (splits_per_tree + 1) + leaf_index(splits, features);
            let values = &self.leaf_values[leaf * leaf_len..(leaf + 1) * leaf_len];
            for (s, v) in shape.iter_mut().zip(values) {
                *s += v;
            }
        }
    }
}

/// Walks one tree from the root; returns the index of the leaf reached (0-based).
#[inline]
fn leaf_index(splits: &[Split], features: &[f32]) -> usize {
    let mut node = 0;
    while let Some(split) = splits.get(node) {
        let diff = features[split.idx1 as usize] - features[split.idx2 as usize];
        node = if diff > split.thresh { 2 * node + 1 } else { 2 * node + 2 };
    }
    node - splits.len()
}

/// Reads the intensity under every feature pixel of `cascade`, placed relative to `shape`.
fn sample_features(
    cascade: &Cascade,
    transform: &[[f32; 2]; 2],
    shape: &[f32],
    gray: &GrayImage<'_>,
    to_image: &BoxToImage,
    out: &mut Vec<f32>,
) {
    let [[a, b], [c, d]] = *transform;
    out.clear();
    out.extend(cascade.features.iter().map(|f| {
        let anchor = 2 * f.anchor as usize;
        let [dx, dy] = f.delta;
        // f32 like dlib's `matrix<float,2,2> * vector<float,2> + location`.
        let u = (a * dx + b * dy) + shape[anchor];
        let v = (c * dx + d * dy) + shape[anchor + 1];
        let [x, y] = to_image.apply(u, v);
        gray.intensity_at(round_half_up(x), round_half_up(y))
    }));
}

/// The similarity (scale · rotation, no translation) that best maps `from` onto `to`, as dlib's
/// `find_similarity_transform`: computed in `f64`, returned as `f32`.
///
/// For 2-D points Umeyama's SVD solution has the closed form `[[p, -q], [q, p]] / n` over the
/// centred points a (from) and b (to): `p = Σ a·b`, `q = Σ a×b`, `n = Σ |a|²`.
fn similarity_2x2(from: &[f32], to: &[f32]) -> [[f32; 2]; 2] {
    let count = from.len() / 2;
    let ([fx, fy], [tx, ty]) = (mean_point(from), mean_point(to));
    let (mut p, mut q, mut n) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (a, b) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        let (ax, ay) = (f64::from(a[0]) - fx, f64::from(a[1]) - fy);
        let (bx, by) = (f64::from(b[0]) - tx, f64::from(b[1]) - ty);
        p += ax * bx + ay * by;
        q += ax * by - ay * bx;
        n += ax * ax + ay * ay;
    }
    if count < 2 || n == 0.0 {
        // dlib: identity for one landmark, and scale 1 when `from` has no spread.
        return [[1.0, 0.0], [0.0, 1.0]];
    }
    let (cos, sin) = ((p / n) as f32, (q / n) as f32);
    [[cos, -sin], [sin, cos]]
}

/// Returns the mean of interleaved points `x0, y0, x1, y1, …`, summed in `f64` like dlib.
fn mean_point(points: &[f32]) -> [f64; 2] {
    let mut sum = [0.0_f64; 2];
    for p in points.chunks_exact(2) {
        sum[0] += f64::from(p[0]);
        sum[1] += f64::from(p[1]);
    }
    let count = (points.len() / 2).max(1) as f64;
    [sum[0] / count, sum[1] / count]
}

/// Maps normalised box coordinates to image pixels, as dlib's `unnormalizing_tform`:
/// (0, 0) → top-left corner, (1, 1) → bottom-right corner, computed in `f64`.
#[derive(Debug, Clone, Copy)]
struct BoxToImage {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl BoxToImage {
    fn new(rect: DlibRect) -> Self {
        // dlib passes the corners through `vector<float,2>` before fitting the transform.
        let corner = |v: i64| f64::from(v as f32);
        let (left, top) = (corner(rect.left), corner(rect.top));
        Self { left, top, width: corner(rect.right) - left, height: corner(rect.bottom) - top }
    }

    #[inline]
    fn apply(&self, u: f32, v: f32) -> [f64; 2] {
        [f64::from(u) * self.width + self.left, f64::from(v) * self.height + self.top]
    }

    /// Maps a point and narrows it to `f32` without changing how it rounds.
    fn apply_narrowed(&self, u: f32, v: f32) -> [f32; 2] {
        self.apply(u, v).map(narrow_keeping_rounding)
    }
}

/// Casts to `f32`, stepping one ulp down when the cast alone would land on a rounding boundary
/// (k + 0.5) that `x` lies below, so that [`round_like_dlib`] agrees with dlib's `f64` rounding.
fn narrow_keeping_rounding(x: f64) -> f32 {
    let narrow = x as f32;
    if round_half_up(f64::from(narrow)) == round_half_up(x) { narrow } else { narrow.next_down() }
}

/// dlib's float → integer point conversion: `floor(x + 0.5)`.
#[inline]
fn round_half_up(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

/// Rounds a predicted position to a pixel exactly as dlib converts it to a `point`
/// (`floor(x + 0.5)` on each coordinate).
pub fn round_like_dlib(p: [f32; 2]) -> [i64; 2] {
    p.map(|v| round_half_up(f64::from(v)))
}

/// Converts packed BGR pixels to dlib's intensity: `(r + g + b) / 3` with integer division, as
/// dlib's `get_pixel_intensity` for `rgb_pixel`.
///
/// # Panics
/// When `bgr` holds fewer than `3 * width * height` bytes.
pub fn intensity_from_bgr(bgr: &[u8], width: usize, height: usize) -> Vec<u8> {
    /// Channels of a BGR pixel.
    const CHANNELS: usize = 3;
    let pixels = width * height;
    assert!(bgr.len() >= CHANNELS * pixels, "intensity_from_bgr: bgr holds width * height pixels");
    bgr.chunks_exact(CHANNELS)
        .take(pixels)
        .map(|p| ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::dlib_serialize::encode;

    /// Landmarks of the tiny model, in normalised box coordinates.
    const TINY_SHAPE: [f32; 6] = [0.25, 0.25, 0.75, 0.25, 0.5, 0.75];
    /// The tiny model's box: 16 px wide and high, so landmark coordinates are whole pixels.
    const TINY_RECT: DlibRect = DlibRect { left: 0, top: 0, right: 16, bottom: 16 };

    /// A leaf vector that moves landmark `part` by (`dx`, `dy`).
    fn leaf(part: usize, dx: f32, dy: f32) -> [f32; 6] {
        let mut values = [0.0; 6];
        values[2 * part] = dx;
        values[2 * part + 1] = dy;
        values
    }

    /// Encodes one depth-1 tree: `feature[0] - feature[1] > 10` picks `left`, else `right`.
    fn tree(out: &mut Vec<u8>, split_idx: [i64; 2], left: [f32; 6], right: [f32; 6]) {
        encode::int(out, 1);
        encode::int(out, split_idx[0]);
        encode::int(out, split_idx[1]);
        encode::float(out, 10.0);
        encode::int(out, 2);
        encode::column(out, &left);
        encode::column(out, &right);
    }

    /// A 3-landmark model: 2 cascades of 2 depth-1 trees; both cascades sample the pixels
    /// under landmarks 0 and 2. `split_idx` is the feature pair of the last tree.
    fn tiny_model(version: i64, split_idx: [i64; 2]) -> Vec<u8> {
        let mut out = Vec::new();
        encode::int(&mut out, version);
        encode::column(&mut out, &TINY_SHAPE);
        encode::int(&mut out, 2);
        encode::int(&mut out, 2);
        let all = |dx, dy| [dx, dy, dx, dy, dx, dy];
        tree(&mut out, [0, 1], all(0.125, 0.0), [0.0; 6]);
        tree(&mut out, [0, 1], all(0.0, 0.0625), [0.0; 6]);
        encode::int(&mut out, 2);
        tree(&mut out, [0, 1], all(-1.0, 0.0), [0.0; 6]);
        tree(&mut out, split_idx, [0.0; 6], leaf(1, 0.25, 0.0));
        encode::int(&mut out, 2); // anchor_idx: per cascade, features under landmarks 0 and 2
        for _ in 0..2 {
            [2, 0, 2].iter().for_each(|&v| encode::int(&mut out, v));
        }
        encode::int(&mut out, 2); // deltas: per cascade, two zero offsets
        for _ in 0..2 {
            encode::int(&mut out, 2);
            (0..4).for_each(|_| encode::float(&mut out, 0.0));
        }
        out
    }

    fn predict_rounded(model: &ShapePredictor, pixels: &[u8], rect: DlibRect) -> Vec<[i64; 2]> {
        let gray = GrayImage { data: pixels, width: 20, height: 20 };
        model.predict(&gray, rect).into_iter().map(round_like_dlib).collect()
    }

    #[test]
    fn tiny_model_parses() {
        let model = ShapePredictor::from_bytes(&tiny_model(1, [0, 1])).unwrap();
        assert_eq!((model.num_parts(), model.num_cascades(), model.tree_depth()), (3, 2, 1));
        assert_eq!((model.num_trees(1), model.num_trees(2)), (Some(2), None));
        assert_eq!(model.feature_pool_size(0), Some(2));
        assert_eq!(model.initial_shape()[2], [0.5, 0.75]);
    }

    #[test]
    fn tiny_model_predicts_by_hand() {
        let model = ShapePredictor::from_bytes(&tiny_model(1, [0, 1])).unwrap();
        let mut pixels = vec![0u8; 20 * 20];
        pixels[4 * 20 + 4] = 200; // under landmark 0 at the start
        // Cascade 0: 200 - 0 > 10, both trees go left: all points move by (+2, +1) px.
        // Cascade 1: landmark 0 is now on a dark pixel, so both trees go right: landmark 1
        // moves by +4 px.
        let got = predict_rounded(&model, &pixels, TINY_RECT);
        assert_eq!(got, [[6, 5], [18, 5], [10, 13]]);
        // Shifted left by 10 px, both features fall outside the image and read 0.
        let shifted = DlibRect { left: -10, top: 0, right: 6, bottom: 16 };
        assert_eq!(predict_rounded(&model, &pixels, shifted), [[-6, 4], [6, 4], [-2, 12]]);
    }

    #[test]
    fn truncated_or_padded_models_are_errors() {
        let bytes = tiny_model(1, [0, 1]);
        for end in 0..bytes.len() {
            assert!(ShapePredictor::from_bytes(&bytes[..end]).is_err(), "prefix of {end} bytes");
        }
        let padded = [bytes.as_slice(), &[0x01, 0x00]].concat();
        let err = ShapePredictor::from_bytes(&padded).unwrap_err();
        let expected = FormatError::TrailingBytes { offset: bytes.len(), len: 2 };
        assert_eq!(format!("{:?}", err), format!("{:?}", ShapePredictorError::Invalid(expected)));
    }

    #[test]
    fn inconsistent_models_are_errors() {
        let err = ShapePredictor::from_bytes(&tiny_model(2, [0, 1])).unwrap_err();
        assert!(matches!(
            err,
            ShapePredictorError::Invalid(FormatError::UnsupportedVersion { version: 2 })
        ));
        let err = ShapePredictor::from_bytes(&tiny_model(1, [0, 2])).unwrap_err();
        let ShapePredictorError::Invalid(FormatError::Inconsistent { detail, .. }) = err else {
            panic!("expected Inconsistent, got {err:?}");
        };
        assert!(detail.contains("feature pixels 0 and 2"), "{detail}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = Path::new("/nonexistent/shape_predictor.dat");
        let err = ShapePredictor::load(path).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/shape_predictor.dat"), "{err}");
    }

    #[test]
    fn similarity_recovers_rotation_and_scale() {
        let from = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        // Rotate by 90°, scale by 2, translate by (5, -3).
        let to: Vec<f32> =
            from.chunks_exact(2).flat_map(|p| [5.0 - 2.0 * p[1], -3.0 + 2.0 * p[0]]).collect();
        assert_eq!(similarity_2x2(&from, &to), [[0.0, -2.0], [2.0, 0.0]]);
        assert_eq!(similarity_2x2(&from, &from), [[1.0, 0.0], [0.0, 1.0]]);
        assert_eq!(similarity_2x2(&[0.5, 0.5], &[0.7, 0.1]), [[1.0, 0.0], [0.0, 1.0]]);
    }

    #[test]
    fn leaves_are_found_breadth_first() {
        let split = |idx1, idx2| Split { idx1, idx2, thresh: 0.0 };
        // Root: f0 - f1 > 0 → node 1 (f1 - f0 > 0 → leaf 0 else leaf 1), else node 2.
        let splits = [split(0, 1), split(1, 0), split(0, 0)];
        assert_eq!(leaf_index(&splits, &[5.0, 1.0]), 1);
        assert_eq!(leaf_index(&splits, &[1.0, 5.0]), 3);
        assert_eq!(leaf_index(&[], &[]), 0);
    }

    #[test]
    fn rounding_matches_dlib() {
        assert_eq!(round_like_dlib([2.5, -0.5]), [3, 0]);
        assert_eq!(round_like_dlib([-0.6, 2.49]), [-1, 2]);
        // Just below 100.5: a plain cast to f32 gives 100.5, which would round up.
        let below = 100.5 - 1e-9;
        assert_eq!(below as f32, 100.5);
        assert_eq!(round_like_dlib([narrow_keeping_rounding(below), 0.0]), [100, 0]);
        assert_eq!(narrow_keeping_rounding(100.5), 100.5);
        assert_eq!(narrow_keeping_rounding(-3.5 - 1e-9), (-3.5_f32).next_down());
    }

    #[test]
    fn intensity_is_the_integer_mean() {
        let bgr = [10, 20, 31, 255, 255, 255, 0, 0, 2, 9];
        assert_eq!(intensity_from_bgr(&bgr, 3, 1), [20, 255, 0]);
    }

    #[test]
    fn predictor_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ShapePredictor>();
    }
}
