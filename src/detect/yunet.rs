//! YuNet 2023mar (OpenCV zoo) over OpenCV's DNN module: letterbox preprocessing and a
//! hand-written decoder for its 12-output head, which OpenCV 4.6's `FaceDetectorYN` predates
//! (`docs/face-models.md`, "YuNet").

use std::path::Path;

use opencv::core::{self, BORDER_CONSTANT, CV_32F, Mat, MatTraitConst, Scalar, Size, Vector};
use opencv::dnn::{self, Net, NetTrait, NetTraitConst};
use opencv::imgproc::{self, INTER_LINEAR};
use opencv::prelude::{MatTraitConstManual, VectorToVec};

use super::{
    DetectError, Detection, DetectorConfig, FaceDetector, check_bgr, nms, rank_largest_first,
};
use crate::onnx::OnnxFile;

/// The longest side of the network input: larger frames are scaled down to it, smaller ones
/// are detected at their own size (the network is fully convolutional, so the input only has
/// to be a multiple of [`INPUT_MULTIPLE`]; the model file's 1×3×640×640 is a placeholder).
const MAX_INPUT_PX: i32 = 640;
/// The input's sides are padded up to a multiple of the coarsest stride.
const INPUT_MULTIPLE: i32 = 32;
/// Strides of the three detection heads (appendix C).
const STRIDES: [usize; 3] = [8, 16, 32];
/// Output kinds per head, in the order they are requested from the network.
const KINDS: [&str; 4] = ["cls", "obj", "bbox", "kps"];
/// Box regression values per anchor: centre offset x, y, log width, log height.
const BBOX_LEN: usize = 4;
/// Landmark values per anchor: 5 points × (x, y).
const KPS_LEN: usize = 10;

/// The raw outputs of one stride's head, as flat row-major slices over its anchor grid.
///
/// # Shapes
/// With `n = (input_w / stride)·(input_h / stride)` anchors: `cls`, `obj` `[n]`; `bbox` `[n, 4]`;
/// `kps` `[n, 10]`, all f32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    /// Anchor spacing in input pixels.
    pub stride: usize,
    /// Class score per anchor (a sigmoid output, clamped to [0, 1] when decoded).
    pub cls: &'a [f32],
    /// Objectness per anchor (clamped likewise).
    pub obj: &'a [f32],
    /// Box regression per anchor.
    pub bbox: &'a [f32],
    /// Landmark offsets per anchor, in strides from the anchor's cell.
    pub kps: &'a [f32],
}

/// Decodes all heads into candidate faces in input pixels, keeping those scoring at least
/// `score_threshold`. No NMS. `input_w` is the network input's width in pixels.
///
/// Per appendix C: `score = sqrt(clamp(cls)·clamp(obj))`, centre `(c + dx, r + dy)·s`,
/// size `exp(dw, dh)·s`, landmark k `(c + kx, r + ky)·s`.
pub(crate) fn decode(heads: &[Head<'_>], input_w: usize, score_threshold: f32) -> Vec<Detection> {
    let mut found = Vec::new();
    for head in heads {
        decode_head(head, input_w / head.stride, score_threshold, &mut found);
    }
    found
}

fn decode_head(head: &Head<'_>, cols: usize, score_threshold: f32, found: &mut Vec<Detection>) {
    let s = head.stride as f32;
    let anchors = head.cls.iter().zip(head.obj).zip(head.bbox.chunks_exact(BBOX_LEN));
    let anchors = anchors.zip(head.kps.chunks_exact(KPS_LEN)).enumerate();
    for (idx, (((&cls, &obj), bbox), kps)) in anchors {
        let score = (cls.clamp(0.0, 1.0) * obj.clamp(0.0, 1.0)).sqrt();
        if score.is_nan() || score < score_threshold {
            continue;
        }
        let (c, r) = ((idx % cols) as f32, (idx / cols) as f32);
        let (cx, cy) = ((c + bbox[0]) * s, (r + bbox[1]) * s);
        let (w, h) = (bbox[2].exp() * s, bbox[3].exp() * s);
        let mut landmarks = [[0.0; 2]; 5];
        for (point, k) in landmarks.iter_mut().zip(kps.chunks_exact(2)) {
            *point = [(k[0] + c) * s, (k[1] + r) * s];
        }
        found.push(Detection { rect: [cx - w / 2.0, cy - h / 2.0, w, h], score, landmarks });
    }
}

/// Where a `cols×rows` frame goes in the network input: resized to `resized` (aspect kept,
/// longer side at most `max_px`, never enlarged, at least 1 px a side) at the top-left of an
/// `input` whose sides are the next multiples of [`INPUT_MULTIPLE`]; the rest is black.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Letterbox {
    /// The frame's size after resizing, `(w, h)`.
    resized: (i32, i32),
    /// The network input's size, `(w, h)`.
    input: (i32, i32),
}

impl Letterbox {
    fn of(cols: i32, rows: i32, max_px: i32) -> Self {
        let scale = (max_px as f64 / cols.max(rows) as f64).min(1.0);
        let side = |n: i32| ((n as f64 * scale).round() as i32).clamp(1, max_px);
        let (w, h) = (side(cols), side(rows));
        let pad = |n: i32| (n + INPUT_MULTIPLE - 1) / INPUT_MULTIPLE * INPUT_MULTIPLE;
        Self { resized: (w, h), input: (pad(w), pad(h)) }
    }
}

/// Maps a detection from letterbox pixels back to frame pixels (dividing by the per-axis
/// resize scale) and clips its box to the `cols×rows` frame. Landmarks are not clipped.
fn to_frame(d: Detection, scale: [f32; 2], cols: i32, rows: i32) -> Detection {
    let [sx, sy] = scale;
    let (fw, fh) = (cols as f32, rows as f32);
    let x0 = (d.rect[0] / sx).clamp(0.0, fw);
    let y0 = (d.rect[1] / sy).clamp(0.0, fh);
    let x1 = ((d.rect[0] + d.rect[2]) / sx).clamp(0.0, fw);
    let y1 = ((d.rect[1] + d.rect[3]) / sy).clamp(0.0, fh);
    let landmarks = d.landmarks.map(|[x, y]| [x / sx, y / sy]);
    Detection { rect: [x0, y0, x1 - x0, y1 - y0], score: d.score, landmarks }
}

/// Returns the network output names, head by head: `cls_8, obj_8, bbox_8, kps_8, cls_16, …`.
fn output_names() -> Vector<String> {
    let mut names = Vector::new();
    for stride in STRIDES {
        for kind in KINDS {
            names.push(format!("{kind}_{stride}").as_str());
        }
    }
    names
}

/// Borrows the forward outputs (in [`output_names`] order) as [`Head`]s, checking their sizes
/// against the `(w, h)` input.
fn heads_of(mats: &[Mat], input: (usize, usize)) -> Result<Vec<Head<'_>>, DetectError> {
    let per_anchor = [1, 1, BBOX_LEN, KPS_LEN];
    let mut heads = Vec::with_capacity(STRIDES.len());
    for (&stride, group) in STRIDES.iter().zip(mats.chunks_exact(KINDS.len())) {
        let cells = (input.0 / stride) * (input.1 / stride);
        let mut slices = [&[][..]; 4];
        for (i, mat) in group.iter().enumerate() {
            let data = mat.data_typed::<f32>()?;
            let expected = cells * per_anchor[i];
            if data.len() != expected {
                let name = format!("{}_{stride}", KINDS[i]);
                return Err(DetectError::OutputShape { name, expected, got: data.len() });
            }
            slices[i] = data;
        }
        let [cls, obj, bbox, kps] = slices;
        heads.push(Head { stride, cls, obj, bbox, kps });
    }
    Ok(heads)
}

/// The YuNet model file's bytes and the detector settings: cheap to clone, `Send + Sync`,
/// so rayon workers can each build their own [`YuNet`] from one shared copy
/// (`par_iter().map_init(|| model.detector(), …)`); a [`YuNet`] itself is not `Sync`.
#[derive(Debug, Clone)]
pub struct YuNetModel {
    /// The ONNX file, read once.
    file: OnnxFile,
    cfg: DetectorConfig,
}

impl YuNetModel {
    /// Reads the fp32 YuNet ONNX file at `path` (from `Assets::model(YUNET_FILE)`); the bytes
    /// are parsed by [`YuNetModel::detector`].
    ///
    /// # Errors
    /// [`DetectError::ReadModel`] when the file cannot be read.
    pub fn load(path: impl AsRef<Path>, cfg: DetectorConfig) -> Result<Self, DetectError> {
        match OnnxFile::read(&path) {
            Ok(file) => Ok(Self { file, cfg }),
            Err(source) => {
                Err(DetectError::ReadModel { path: path.as_ref().to_path_buf(), source })
            }
        }
    }

    /// Builds a detector from the bytes in memory (no file access).
    ///
    /// # Errors
    /// [`DetectError::LoadModel`] when OpenCV cannot parse the bytes or an output is missing.
    pub fn detector(&self) -> Result<YuNet, DetectError> {
        let net = build_net(&self.file)
            .map_err(|source| DetectError::LoadModel { path: self.path().to_owned(), source })?;
        Ok(YuNet {
            net,
            model: self.clone(),
            output_names: output_names(),
            resized: Mat::default(),
            padded: Mat::default(),
            blob: Mat::default(),
            outputs: Vector::new(),
        })
    }

    /// Returns the model file this was read from.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Returns the settings its detectors apply.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }
}

/// The YuNet 2023mar face detector (box + 5 landmarks) running on OpenCV DNN, CPU.
///
/// Holds its network and reusable buffers: `Send` but not `Sync`, so build one per thread
/// ([`YuNet::try_clone`], [`YuNetModel::detector`]).
pub struct YuNet {
    net: Net,
    model: YuNetModel,
    output_names: Vector<String>,
    resized: Mat,
    padded: Mat,
    blob: Mat,
    outputs: Vector<Mat>,
}

impl YuNet {
    /// Loads the fp32 YuNet ONNX model at `path` (from `Assets::model(YUNET_FILE)`).
    ///
    /// # Errors
    /// As [`YuNetModel::load`] and [`YuNetModel::detector`].
    pub fn load(path: impl AsRef<Path>, cfg: DetectorConfig) -> Result<Self, DetectError> {
        YuNetModel::load(path, cfg)?.detector()
    }

    /// Builds another detector from the same model bytes (no file access), for another thread.
    ///
    /// # Errors
    /// [`DetectError::LoadModel`] if OpenCV fails to build the network again.
    pub fn try_clone(&self) -> Result<Self, DetectError> {
        self.model.detector()
    }

    /// Returns the shared model bytes and settings, from which other threads build detectors.
    pub fn model(&self) -> &YuNetModel {
        &self.model
    }

    /// Returns the settings this detector applies.
    pub fn config(&self) -> &DetectorConfig {
        &self.model.cfg
    }

    /// Letterboxes `bgr` into the reused input blob.
    fn prepare(&mut self, bgr: &Mat) -> Result<Letterbox, DetectError> {
        let letterbox = Letterbox::of(bgr.cols(), bgr.rows(), MAX_INPUT_PX);
        let ((w, h), (input_w, input_h)) = (letterbox.resized, letterbox.input);
        let source = if (w, h) == (bgr.cols(), bgr.rows()) {
            bgr
        } else {
            imgproc::resize(bgr, &mut self.resized, Size::new(w, h), 0.0, 0.0, INTER_LINEAR)?;
            &self.resized
        };
        let black = Scalar::all(0.0);
        core::copy_make_border(
            source,
            &mut self.padded,
            0,
            input_h - h,
            0,
            input_w - w,
            BORDER_CONSTANT,
            black,
        )?;
        let size = Size::new(input_w, input_h);
        dnn::blob_from_image_to(
            &self.padded,
            &mut self.blob,
            1.0,
            size,
            black,
            false,
            false,
            CV_32F,
        )?;
        Ok(letterbox)
    }
}

/// Parses the ONNX file and checks the 12 outputs the decoder reads are there.
fn build_net(model: &OnnxFile) -> Result<Net, opencv::Error> {
    let net = model.net()?;
    let have = net.get_unconnected_out_layers_names()?;
    for name in &output_names() {
        if !have.iter().any(|h| h == name) {
            let msg = format!(
                "no output named {name} (has {:?}); not a YuNet 2023mar model",
                have.to_vec()
            );
            return Err(opencv::Error::new(core::StsError, msg));
        }
    }
    Ok(net)
}

impl FaceDetector for YuNet {
    fn detect(&mut self, bgr: &Mat) -> Result<Vec<Detection>, DetectError> {
        check_bgr(bgr)?;
        let letterbox = self.prepare(bgr)?;
        self.net.set_input(&self.blob, "", 1.0, Scalar::default())?;
        // Outputs come back in the order of the names asked for (OpenCV's Net::forward).
        self.net.forward(&mut self.outputs, &self.output_names)?;
        let mats = self.outputs.to_vec();
        let input = (letterbox.input.0 as usize, letterbox.input.1 as usize);
        let found = decode(&heads_of(&mats, input)?, input.0, self.model.cfg.score_threshold);
        let (cols, rows) = (bgr.cols(), bgr.rows());
        let (w, h) = letterbox.resized;
        let scale = [w as f32 / cols as f32, h as f32 / rows as f32];
        let faces =
            nms(found, self.model.cfg.nms_iou).into_iter().map(|d| to_frame(d, scale, cols, rows));
        Ok(rank_largest_first(faces.collect(), &self.model.cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of one head with `cells` anchors, all zero (score 0, so nothing decodes).
    struct Grid {
        cls: Vec<f32>,
        obj: Vec<f32>,
        bbox: Vec<f32>,
        kps: Vec<f32>,
    }

    impl Grid {
        fn new(cells: usize) -> Self {
            Self {
                cls: vec![0.0; cells],
                obj: vec![0.0; cells],
                bbox: vec![0.0; 4 * cells],
                kps: vec![0.0; 10 * cells],
            }
        }
        fn head(&self, stride: usize) -> Head<'_> {
            Head { stride, cls: &self.cls, obj: &self.obj, bbox: &self.bbox, kps: &self.kps }
        }
    }

    #[test]
    fn decode_one_anchor_exactly() {
        // Stride 32 on 64 px: 2 columns. Anchor idx 3 = row 1, col 1.
        let mut g = Grid::new(4);
        g.cls[3] = 0.81;
        g.obj[3] = 1.5; // clamped to 1 -> score sqrt(0.81) = 0.9
        g.bbox[12..16].copy_from_slice(&[0.5, 0.25, 0.0, 2f32.ln()]);
        let kps = [0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.25, 1.0, 0.75, 1.0];
        g.kps[30..40].copy_from_slice(&kps);
        let found = decode(&[g.head(32)], 64, 0.6);
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert!((d.score - 0.9).abs() < 1e-6);
        // Centre ((1+0.5)*32, (1+0.25)*32) = (48, 40); size (32, 64).
        let want = [32.0, 8.0, 32.0, 64.0];
        for (got, want) in d.rect.iter().zip(want) {
            assert!((got - want).abs() < 1e-4, "{:?}", d.rect);
        }
        let want = [[32.0, 32.0], [64.0, 32.0], [48.0, 48.0], [40.0, 64.0], [56.0, 64.0]];
        assert_eq!(d.landmarks, want);
    }

    #[test]
    fn decode_thresholds_and_ignores_nan() {
        let mut g = Grid::new(4);
        g.cls[0] = 0.35; // sqrt(0.35) = 0.59 < 0.6
        g.obj[0] = 1.0;
        g.cls[1] = f32::NAN;
        g.obj[1] = 1.0;
        g.cls[2] = -3.0; // clamped to 0
        g.obj[2] = 1.0;
        assert!(decode(&[g.head(32)], 64, 0.6).is_empty());
        assert_eq!(decode(&[g.head(32)], 64, 0.5).len(), 1);
    }

    #[test]
    fn decode_reads_every_stride() {
        let mut a = Grid::new(16); // stride 16 on 64 px: 4×4
        a.cls[5] = 1.0;
        a.obj[5] = 1.0; // row 1, col 1 -> centre (16, 16)
        let mut b = Grid::new(4);
        b.cls[0] = 1.0;
        b.obj[0] = 1.0; // row 0, col 0 -> centre (0, 0), size 32
        let found = decode(&[a.head(16), b.head(32)], 64, 0.6);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].rect, [8.0, 8.0, 16.0, 16.0]);
        assert_eq!(found[1].rect, [-16.0, -16.0, 32.0, 32.0]);
    }

    #[test]
    fn letterbox_shrinks_large_frames_keeps_small_ones_and_pads_to_32() {
        let lb = |cols, rows| {
            let l = Letterbox::of(cols, rows, 640);
            (l.resized, l.input)
        };
        assert_eq!(lb(176, 144), ((176, 144), (192, 160)));
        assert_eq!(lb(426, 240), ((426, 240), (448, 256)));
        assert_eq!(lb(720, 528), ((640, 469), (640, 480)));
        assert_eq!(lb(480, 960), ((320, 640), (320, 640)));
        assert_eq!(lb(1920, 1080), ((640, 360), (640, 384)));
        assert_eq!(lb(640, 640), ((640, 640), (640, 640)));
        assert_eq!(lb(5000, 1), ((640, 1), (640, 32)));
        assert_eq!(lb(1, 1), ((1, 1), (32, 32)));
    }

    #[test]
    fn to_frame_scales_and_clips() {
        let d = Detection {
            rect: [-10.0, 20.0, 100.0, 700.0],
            score: 0.8,
            landmarks: [[40.0, 80.0]; 5],
        };
        let f = to_frame(d, [2.0, 4.0], 100, 100);
        assert_eq!(f.rect, [0.0, 5.0, 45.0, 95.0]);
        assert_eq!(f.landmarks[0], [20.0, 20.0]);
        assert_eq!(f.score, 0.8);
    }

    #[test]
    fn output_names_are_head_major() {
        let names = output_names().to_vec();
        assert_eq!(names.len(), 12);
        assert_eq!(&names[..5], ["cls_8", "obj_8", "bbox_8", "kps_8", "cls_16"]);
    }

    #[test]
    fn thread_bounds() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<YuNet>();
        send_sync::<YuNetModel>();
    }

    #[test]
    fn short_outputs_are_an_error() {
        let short = Mat::from_slice(&[0f32; 3]).unwrap().try_clone().unwrap();
        let mats = vec![short; 12];
        assert!(matches!(heads_of(&mats, (64, 64)), Err(DetectError::OutputShape { .. })));
    }
}
