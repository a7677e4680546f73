//! Identity embeddings: SFace 2021dec (OpenCV zoo) over OpenCV's DNN module. A face is aligned
//! by its 5 points to the 112×112 ArcFace crop and mapped to a unit-length 128-d vector;
//! the cosine of two vectors scores "same person" (`docs/face-models.md`, "SFace").
//!
//! Preprocessing follows OpenCV 4.6's `FaceRecognizerSF` (`alignCrop` + `feature`): a
//! least-squares similarity onto the ArcFace template, a bilinear warp, and an **RGB**
//! 0..255 float blob (the network normalises inside the graph).

use std::path::{Path, PathBuf};

use opencv::core::{
    self, BORDER_CONSTANT, CV_8UC3, CV_32F, Mat, MatTraitConst, Scalar, Size, Vector,
};
use opencv::dnn::{self, Net, NetTrait};
use opencv::imgproc::{self, INTER_LINEAR};
use opencv::prelude::MatTraitConstManual;
use serde::{Deserialize, Serialize};

use crate::face::align::{self, Affine};
use crate::onnx::OnnxFile;

/// Side of SFace's square input crop, in pixels (its ONNX input is N×3×112×112).
pub const CROP_PX: i32 = 112;
/// Values in one embedding (SFace's `fc1` output width).
pub const EMBEDDING_LEN: usize = 128;
/// OpenCV's cosine threshold for "same person" with SFace (`FaceRecognizerSF`, OpenCV zoo's
/// `sface.py`: `_threshold_cosine = 0.363`).
pub const SAME_PERSON_COSINE: f64 = 0.363;
/// Where the 5 points go in the 112×112 crop: the ArcFace template `alignCrop` uses, in
/// [`Detection::landmarks`](crate::detect::Detection) order (subject's right eye = image-left,
/// left eye, nose tip, right mouth corner = image-left, left mouth corner).
pub const ARCFACE_TEMPLATE: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];
/// Crops per forward pass in [`SFace::embed_crops`]; longer lists run in several passes so the
/// blob and activations stay small (32 crops = 4.8 MB of input). On the CPU, batching does not
/// raise the rate (`examples/sface_rate.rs`: ≈ 100 embeddings/s at batch 1, 16 and 32).
pub const MAX_BATCH: usize = 32;

/// A similarity whose squared scale is below this maps the points onto (almost) one pixel.
const MIN_SCALE_SQ: f64 = 1e-12;

/// Errors of loading or running the identity model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The model file could not be read.
    #[error("reading identity model {}: {source}; run scripts/setup.sh", path.display())]
    ReadModel {
        /// The model file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The model file was read but OpenCV could not build a network from it.
    #[error(
        "loading identity model {}: {source}; run scripts/setup.sh to recreate it",
        path.display()
    )]
    LoadModel {
        /// The model file.
        path: PathBuf,
        /// OpenCV's complaint.
        #[source]
        source: opencv::Error,
    },
    /// An input image is empty, not 8-bit 3-channel, or (for a crop) not 112×112.
    #[error(
        "image {index}: expected a non-empty 8-bit 3-channel BGR image{}, got {cols}x{rows} with \
         OpenCV type {typ}; convert it with imgproc::cvt_color (or align it with align_crop) \
         first",
        if *.is_crop { " of 112x112" } else { "" }
    )]
    BadImage {
        /// Position of the image in the input list (0 for a single image).
        index: usize,
        /// Whether a 112×112 aligned crop was expected.
        is_crop: bool,
        /// Image height.
        rows: i32,
        /// Image width.
        cols: i32,
        /// OpenCV type code (`CV_8UC3` = 16).
        typ: i32,
    },
    /// The 5 points are not finite or collapse onto one point, so no alignment exists.
    #[error(
        "the 5 face points {points:?} are not finite or all coincide; check the face's landmarks"
    )]
    BadPoints {
        /// The points given.
        points: [[f32; 2]; 5],
    },
    /// The network returned the wrong number of values.
    #[error(
        "identity model returned {got} values for {crops} crops, expected {expected}; is the \
         model file the right one? run scripts/setup.sh"
    )]
    OutputShape {
        /// Crops in the batch.
        crops: usize,
        /// Expected number of f32 values (`crops × 128`).
        expected: usize,
        /// Number of values returned.
        got: usize,
    },
    /// The network returned an all-zero or non-finite vector, which has no direction.
    #[error(
        "identity model returned a zero or non-finite embedding for crop {index}; is the crop \
         blank?"
    )]
    DegenerateOutput {
        /// Position of the crop in the input list.
        index: usize,
    },
    /// An OpenCV call failed while aligning or running the model.
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// A face's identity: 128 values of unit L2 length. Compare two with [`Embedding::cosine`].
///
/// Deserialising checks the length and normalises, as [`Embedding::from_vec`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f32>", into = "Vec<f32>")]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `v` to unit length; `None` unless it has 128 finite values, not all zero.
    pub fn from_vec(mut v: Vec<f32>) -> Option<Self> {
        if v.len() != EMBEDDING_LEN || !v.iter().all(|x| x.is_finite()) {
            return None;
        }
        let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if !norm.is_normal() {
            return None;
        }
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
        Some(Self(v))
    }

    /// Returns the cosine similarity in `[-1, 1]`; above [`SAME_PERSON_COSINE`] means the
    /// same person by OpenCV's measure.
    pub fn cosine(&self, other: &Embedding) -> f64 {
        let dot: f64 =
            self.0.iter().zip(&other.0).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        dot.clamp(-1.0, 1.0)
    }

    /// Returns the unit-length mean of `embeddings`: the identity a faceset stands for. `None`
    /// when there are none, or they cancel out.
    pub fn mean(embeddings: &[Embedding]) -> Option<Embedding> {
        let mut sum = vec![0.0f64; EMBEDDING_LEN];
        for e in embeddings {
            for (s, v) in sum.iter_mut().zip(&e.0) {
                *s += f64::from(*v);
            }
        }
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
        norm.is_normal().then(|| Self(sum.iter().map(|v| (v / norm) as f32).collect()))
    }

    /// Returns the 128 values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// The reason a vector is not an [`Embedding`] (for deserialisation).
#[derive(Debug, thiserror::Error)]
#[error(
    "an identity embedding needs {EMBEDDING_LEN} finite values, not all zero; got {len} values; \
     recompute it with `dfl sort --by identity`"
)]
pub struct InvalidEmbedding {
    /// Number of values found.
    pub len: usize,
}

impl TryFrom<Vec<f32>> for Embedding {
    type Error = InvalidEmbedding;

    fn try_from(v: Vec<f32>) -> Result<Self, Self::Error> {
        let len = v.len();
        Self::from_vec(v).ok_or(InvalidEmbedding { len })
    }
}

impl From<Embedding> for Vec<f32> {
    fn from(e: Embedding) -> Self {
        e.0
    }
}

/// Returns the similarity mapping `five` onto [`ARCFACE_TEMPLATE`], or `None` when the points
/// are not finite or coincide.
pub fn to_template(five: &[[f32; 2]; 5]) -> Option<Affine> {
    if !five.iter().flatten().all(|v| v.is_finite()) {
        return None;
    }
    let src = five.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let m = align::umeyama(&src, &ARCFACE_TEMPLATE);
    let scale_sq = m[0][0] * m[0][0] + m[1][0] * m[1][0];
    (scale_sq > MIN_SCALE_SQ).then_some(m)
}

/// Warps `bgr` to the 112×112 ArcFace template by a similarity transform of the 5 points
/// (least squares, bilinear, black outside the image), as OpenCV's `alignCrop`.
///
/// # Shapes
/// `bgr`: `H×W`, any OpenCV type (SFace wants `CV_8UC3` BGR); `five` in its pixels, in
/// [`Detection::landmarks`](crate::detect::Detection) order. Returns `112×112`, same type.
///
/// # Errors
/// OpenCV's error; `StsBadArg` when the points are not finite or coincide.
pub fn align_crop(bgr: &Mat, five: &[[f32; 2]; 5]) -> opencv::Result<Mat> {
    let Some(m) = to_template(five) else {
        let msg = format!("the 5 face points {five:?} are not finite or all coincide");
        return Err(opencv::Error::new(core::StsBadArg, msg));
    };
    let mut out = Mat::default();
    imgproc::warp_affine(
        bgr,
        &mut out,
        &Mat::from_slice_2d(&m)?,
        Size::new(CROP_PX, CROP_PX),
        INTER_LINEAR,
        BORDER_CONSTANT,
        Scalar::all(0.0),
    )?;
    Ok(out)
}

/// The SFace model file's bytes: cheap to clone, `Send + Sync`, so rayon workers can each
/// build their own [`SFace`] from one shared copy
/// (`par_iter().map_init(|| model.recognizer(), …)`); an [`SFace`] itself is not `Sync`.
#[derive(Debug, Clone)]
pub struct SFaceModel {
    /// The ONNX file, read once.
    file: OnnxFile,
}

impl SFaceModel {
    /// Reads the fp32 SFace ONNX file at `path` (from `Assets::model(SFACE_FILE)`); the bytes
    /// are parsed by [`SFaceModel::recognizer`].
    ///
    /// # Errors
    /// [`IdentityError::ReadModel`] when the file cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        match OnnxFile::read(&path) {
            Ok(file) => Ok(Self { file }),
            Err(source) => {
                Err(IdentityError::ReadModel { path: path.as_ref().to_path_buf(), source })
            }
        }
    }

    /// Builds a recognizer from the bytes in memory (no file access).
    ///
    /// # Errors
    /// [`IdentityError::LoadModel`] when OpenCV cannot parse the bytes.
    pub fn recognizer(&self) -> Result<SFace, IdentityError> {
        let net = self
            .file
            .net()
            .map_err(|source| IdentityError::LoadModel { path: self.path().to_owned(), source })?;
        Ok(SFace { net, model: self.clone(), blob: Mat::default(), output: Mat::default() })
    }

    /// Returns the model file this was read from.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// The SFace recognizer running on OpenCV DNN, CPU.
///
/// Holds its network and reusable buffers: `Send` but not `Sync`, so build one per thread
/// ([`SFace::try_clone`], [`SFaceModel::recognizer`]).
pub struct SFace {
    net: Net,
    model: SFaceModel,
    blob: Mat,
    output: Mat,
}

impl SFace {
    /// Loads the fp32 SFace ONNX model at `path` (from `Assets::model(SFACE_FILE)`).
    ///
    /// # Errors
    /// As [`SFaceModel::load`] and [`SFaceModel::recognizer`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        SFaceModel::load(path)?.recognizer()
    }

    /// Builds another recognizer from the same model bytes (no file access), for another
    /// thread.
    ///
    /// # Errors
    /// [`IdentityError::LoadModel`] if OpenCV fails to build the network again.
    pub fn try_clone(&self) -> Result<Self, IdentityError> {
        self.model.recognizer()
    }

    /// Returns the shared model bytes, from which other threads build recognizers.
    pub fn model(&self) -> &SFaceModel {
        &self.model
    }

    /// Aligns `bgr` by the 5 points to SFace's 112×112 crop and returns the embedding.
    ///
    /// # Shapes
    /// `bgr`: `H×W` `CV_8UC3`, BGR; `five` in its pixels, in
    /// [`Detection::landmarks`](crate::detect::Detection) order (use
    /// [`Landmarks68::five_points`](crate::face::landmarks::Landmarks68::five_points) for 68
    /// landmarks).
    ///
    /// # Errors
    /// [`IdentityError::BadImage`], [`IdentityError::BadPoints`], or as
    /// [`SFace::embed_crops`].
    pub fn embed(&mut self, bgr: &Mat, five: &[[f32; 2]; 5]) -> Result<Embedding, IdentityError> {
        check_bgr(bgr, 0, false)?;
        if to_template(five).is_none() {
            return Err(IdentityError::BadPoints { points: *five });
        }
        let crop = align_crop(bgr, five)?;
        let mut one = self.embed_crops(std::slice::from_ref(&crop))?;
        one.pop().ok_or(IdentityError::OutputShape { crops: 1, expected: EMBEDDING_LEN, got: 0 })
    }

    /// Embeds many already-aligned crops (from [`align_crop`]), [`MAX_BATCH`] per forward
    /// pass; the result is in input order.
    ///
    /// # Shapes
    /// Each crop: `112×112` `CV_8UC3`, BGR (swapped to RGB here). Network input
    /// `[n, 3, 112, 112]` f32 in 0..255, RGB; output `[n, 128]`.
    ///
    /// # Errors
    /// [`IdentityError::BadImage`] naming the first bad crop, [`IdentityError::OutputShape`],
    /// [`IdentityError::DegenerateOutput`], or an OpenCV error.
    pub fn embed_crops(&mut self, crops: &[Mat]) -> Result<Vec<Embedding>, IdentityError> {
        for (index, crop) in crops.iter().enumerate() {
            check_bgr(crop, index, true)?;
        }
        let mut all = Vec::with_capacity(crops.len());
        for (chunk_index, chunk) in crops.chunks(MAX_BATCH).enumerate() {
            let first = chunk_index * MAX_BATCH;
            // Vector<Mat> owns its Mats; a 112×112 copy is cheap next to the forward pass.
            let batch =
                chunk.iter().map(Mat::try_clone).collect::<opencv::Result<Vector<Mat>>>()?;
            all.extend(self.forward(&batch, first)?);
        }
        Ok(all)
    }

    /// Runs one batch of checked crops; `first` is the index of its first crop, for errors.
    fn forward(
        &mut self,
        crops: &Vector<Mat>,
        first: usize,
    ) -> Result<Vec<Embedding>, IdentityError> {
        let n = crops.len();
        // swap_rb: SFace was trained on RGB; no scaling or mean (normalised inside the graph).
        let size = Size::new(CROP_PX, CROP_PX);
        let zero = Scalar::default();
        // [n, 3, 112, 112]
        dnn::blob_from_images_to(crops, &mut self.blob, 1.0, size, zero, true, false, CV_32F)?;
        self.net.set_input(&self.blob, "", 1.0, zero)?;
        self.net.forward_layer(&mut self.output, "")?; // [n, 128]
        let values = if self.output.is_continuous() {
            self.output.data_typed::<f32>()?.to_vec()
        } else {
            self.output.try_clone()?.data_typed::<f32>()?.to_vec()
        };
        let expected = n * EMBEDDING_LEN;
        if values.len() != expected {
            return Err(IdentityError::OutputShape { crops: n, expected, got: values.len() });
        }
        let rows = values.chunks_exact(EMBEDDING_LEN).enumerate();
        rows.map(|(i, row)| {
            Embedding::from_vec(row.to_vec())
                .ok_or(IdentityError::DegenerateOutput { index: first + i })
        })
        .collect()
    }
}

/// Checks that `img` is a non-empty 2-D `CV_8UC3` Mat, and 112×112 when `is_crop`.
fn check_bgr(img: &Mat, index: usize, is_crop: bool) -> Result<(), IdentityError> {
    let bad_size = is_crop && (img.rows() != CROP_PX || img.cols() != CROP_PX);
    if img.empty() || img.typ() != CV_8UC3 || img.dims() != 2 || bad_size {
        let (rows, cols, typ) = (img.rows(), img.cols(), img.typ());
        return Err(IdentityError::BadImage { index, is_crop, rows, cols, typ });
    }
    Ok(())
}

/// SFace recognizers shared by worker threads: a thread takes one, or builds one when none is
/// free, and puts it back; so there are never more than threads (building one parses the
/// 38 MB model, ~0.1 s).
pub struct RecognizerPool {
    model: SFaceModel,
    free: std::sync::Mutex<Vec<SFace>>,
}

impl RecognizerPool {
    /// An empty pool for `model`.
    pub fn new(model: SFaceModel) -> Self {
        Self { model, free: std::sync::Mutex::new(Vec::new()) }
    }

    /// Takes a free recognizer or builds one.
    ///
    /// # Errors
    /// As [`SFaceModel::recognizer`].
    pub fn take(&self) -> Result<SFace, IdentityError> {
        let free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        free.map_or_else(|| self.model.recognizer(), Ok)
    }

    /// Returns a recognizer to the pool.
    pub fn put(&self, sface: SFace) {
        self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sface);
    }
}

#[cfg(test)]
mod tests {
    use opencv::core::{CV_8UC1, Point, Vec3b};

    use super::*;

    #[test]
    fn the_mean_is_a_unit_embedding_and_nothing_has_none() {
        let axis = |i: usize| {
            let mut v = vec![0.0; EMBEDDING_LEN];
            v[i] = 1.0;
            Embedding::from_vec(v).unwrap()
        };
        let mean = Embedding::mean(&[axis(0), axis(1)]).unwrap();
        let half = std::f64::consts::FRAC_1_SQRT_2;
        assert!((mean.cosine(&axis(0)) - half).abs() < 1e-6, "{:?}", &mean.as_slice()[..2]);
        assert!((mean.cosine(&mean) - 1.0).abs() < 1e-6);
        assert!(Embedding::mean(&[]).is_none());
        let minus = Embedding::from_vec(
            vec![0.0; EMBEDDING_LEN]
                .into_iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { -1.0 } else { 0.0 })
                .collect(),
        )
        .unwrap();
        assert!(Embedding::mean(&[axis(0), minus]).is_none(), "opposites cancel out");
    }

    #[test]
    fn from_vec_normalises() {
        let e = Embedding::from_vec(vec![2.0; EMBEDDING_LEN]).expect("valid");
        let want = 1.0 / (EMBEDDING_LEN as f32).sqrt();
        assert!(e.as_slice().iter().all(|&x| (x - want).abs() < 1e-7));
        assert!((e.cosine(&e) - 1.0).abs() < 1e-6);
        let neg = Embedding::from_vec(vec![-5.0; EMBEDDING_LEN]).expect("valid");
        assert!((e.cosine(&neg) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn from_vec_rejects_wrong_lengths_zero_and_non_finite() {
        for len in [0, 1, EMBEDDING_LEN - 1, EMBEDDING_LEN + 1, 512] {
            assert!(Embedding::from_vec(vec![1.0; len]).is_none(), "length {len}");
        }
        assert!(Embedding::from_vec(vec![0.0; EMBEDDING_LEN]).is_none(), "zero vector");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![1.0; EMBEDDING_LEN];
            v[7] = bad;
            assert!(Embedding::from_vec(v).is_none(), "{bad}");
        }
        // Tiny but non-zero still has a direction.
        let mut v = vec![0.0; EMBEDDING_LEN];
        v[3] = 1e-30;
        assert_eq!(Embedding::from_vec(v).expect("valid").as_slice()[3], 1.0);
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let mut v: Vec<f32> = (0..EMBEDDING_LEN).map(|i| i as f32 - 60.0).collect();
        v[0] = 3.0;
        let e = Embedding::from_vec(v).expect("valid");
        let json = serde_json::to_string(&e).expect("serialises");
        assert!(json.starts_with('['), "a plain JSON array: {json}");
        assert_eq!(serde_json::from_str::<Embedding>(&json).expect("parses"), e);
        let short = serde_json::from_str::<Embedding>("[1.0, 2.0]").unwrap_err();
        assert!(short.to_string().contains("got 2 values"), "{short}");
        let zero = serde_json::to_string(&vec![0.0f32; EMBEDDING_LEN]).expect("serialises");
        assert!(serde_json::from_str::<Embedding>(&zero).is_err());
    }

    #[test]
    fn template_maps_onto_itself_and_rejects_degenerate_points() {
        let template = ARCFACE_TEMPLATE.map(|[x, y]| [x as f32, y as f32]);
        let m = to_template(&template).expect("fits");
        assert!((m[0][0] - 1.0).abs() < 1e-6 && m[1][0].abs() < 1e-6, "{m:?}");
        assert!(m[0][2].abs() < 1e-4 && m[1][2].abs() < 1e-4, "{m:?}");
        assert!(to_template(&[[10.0, 10.0]; 5]).is_none());
        let mut nan = template;
        nan[2][1] = f32::NAN;
        assert!(to_template(&nan).is_none());
        assert!(align_crop(&Mat::default(), &[[3.0, 4.0]; 5]).is_err());
    }

    /// Returns the intensity-weighted centroid of channel 0 within `radius` px of `at`.
    fn centroid(img: &Mat, at: [f64; 2], radius: i32) -> [f64; 2] {
        let (mut sum, mut sx, mut sy) = (0.0, 0.0, 0.0);
        let (cx, cy) = (at[0].round() as i32, at[1].round() as i32);
        for y in cy - radius..=cy + radius {
            for x in cx - radius..=cx + radius {
                let w = f64::from(img.at_2d::<Vec3b>(y, x).expect("inside")[0]);
                (sum, sx, sy) = (sum + w, sx + w * f64::from(x), sy + w * f64::from(y));
            }
        }
        [sx / sum, sy / sum]
    }

    #[test]
    fn align_crop_puts_the_points_on_the_template() {
        // Source points: the template rotated by 20°, scaled by 2.5 and moved to (150, 90).
        let (s, (sin, cos)) = (2.5f64, 20f64.to_radians().sin_cos());
        let five = ARCFACE_TEMPLATE.map(|[x, y]| {
            [(s * (cos * x - sin * y) + 150.0) as f32, (s * (sin * x + cos * y) + 90.0) as f32]
        });
        let mut img = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(0.0))
            .expect("allocates");
        // A bright disc (radius 5 source px = 2 crop px) centred on each point, placed to 1/16 px.
        const SHIFT: i32 = 4;
        for [x, y] in five {
            let centre = Point::new((x * 16.0).round() as i32, (y * 16.0).round() as i32);
            let white = Scalar::all(255.0);
            imgproc::circle(&mut img, centre, 5 * 16, white, -1, imgproc::LINE_AA, SHIFT)
                .expect("draws");
        }
        let crop = align_crop(&img, &five).expect("warps");
        assert_eq!((crop.rows(), crop.cols(), crop.typ()), (CROP_PX, CROP_PX, CV_8UC3));
        for want in ARCFACE_TEMPLATE {
            let got = centroid(&crop, want, 4);
            let err = (got[0] - want[0]).hypot(got[1] - want[1]);
            assert!(err < 0.5, "disc at {got:?}, template says {want:?}");
        }
    }

    #[test]
    fn wrong_images_are_rejected() {
        let ok = Mat::new_rows_cols_with_default(112, 112, CV_8UC3, Scalar::all(0.0)).unwrap();
        assert!(check_bgr(&ok, 0, true).is_ok());
        let big = Mat::new_rows_cols_with_default(256, 256, CV_8UC3, Scalar::all(0.0)).unwrap();
        assert!(check_bgr(&big, 0, false).is_ok());
        let err = check_bgr(&big, 3, true).unwrap_err();
        assert!(matches!(err, IdentityError::BadImage { index: 3, rows: 256, .. }), "{err}");
        assert!(err.to_string().contains("112x112"), "{err}");
        let gray = Mat::new_rows_cols_with_default(112, 112, CV_8UC1, Scalar::all(0.0)).unwrap();
        assert!(check_bgr(&gray, 0, false).is_err());
        assert!(check_bgr(&Mat::default(), 0, false).is_err());
    }

    #[test]
    fn thread_bounds() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<SFace>();
        send_sync::<SFaceModel>();
        send_sync::<Embedding>();
    }
}
