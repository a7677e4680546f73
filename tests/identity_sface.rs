//! SFace identity embeddings on the real model and the sample stills that `scripts/setup.sh`
//! installs; a missing file fails the test with the setup hint, it is never skipped.

use std::path::PathBuf;

use dfl::assets::{SFACE_FILE, SHAPE_PREDICTOR_FILE, YUNET_FILE};
use dfl::detect::{Detection, DetectorConfig, FaceDetector, YuNet};
use dfl::face::align::{self, FaceType};
use dfl::face::identity::{
    self, Embedding, IdentityError, SAME_PERSON_COSINE, SFace, SFaceModel, align_crop,
};
use dfl::face::landmarks::Landmarks68;
use dfl::face::locate::Landmarker;
use dfl::face::shape_predictor::{GrayImage, ShapePredictor, intensity_from_bgr};
use opencv::core::{CV_8UC1, CV_8UC3, CV_32FC3, Mat, Scalar};
use opencv::imgcodecs::{IMREAD_COLOR, imread};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Deserialize;

const OBAMA: [&str; 3] = ["obama.jpg", "obama2.jpg", "obama3.jpg"];
const OTHERS: [&str; 3] = ["biden.jpg", "astronaut.png", "messi5.jpg"];
/// Two embeddings of the same crop agree to this cosine.
const SAME_CROP_COSINE: f64 = 0.9999;
/// Least cosine between two photos of Obama (measured 0.72–0.80 with OpenCV's own
/// `FaceRecognizerSF`, `docs/face-models.md`, "SFace").
const SAME_PERSON_FLOOR: f64 = 0.5;

fn model_path(file: &str) -> PathBuf {
    dfl::assets::Assets::from_env().model(file).unwrap_or_else(|e| panic!("{e}"))
}

fn sample(name: &str) -> Mat {
    let path = dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"));
    let img = imread(&path, IMREAD_COLOR).expect("imread");
    assert!(!img.empty(), "{} does not decode", path.display());
    img
}

fn sface() -> SFace {
    SFace::load(model_path(SFACE_FILE)).expect("the SFace model loads")
}

/// The largest face YuNet finds in `bgr`.
fn detect(bgr: &Mat) -> Detection {
    let mut det = YuNet::load(model_path(YUNET_FILE), DetectorConfig::default()).expect("YuNet");
    *det.detect(bgr).expect("detect").first().expect("a face")
}

/// dlib's 68 landmarks for `face` in `bgr` (with the refining pass, as extraction runs it).
fn landmarks_68(bgr: &Mat, face: &Detection) -> Landmarks68 {
    let predictor = ShapePredictor::load(&model_path(SHAPE_PREDICTOR_FILE)).expect("predictor");
    let bytes = dfl::img::bgr_bytes(bgr).expect("8-bit BGR");
    let (width, height) = (bgr.cols() as usize, bgr.rows() as usize);
    let gray = intensity_from_bgr(&bytes, width, height);
    Landmarker::new(&predictor).expect("the 68-point model").locate(
        &GrayImage { data: &gray, width, height },
        face,
        true,
    )
}

/// Embeds each sample by YuNet's 5 points.
fn embed_by_5(net: &mut SFace, names: &[&str]) -> Vec<Embedding> {
    names
        .iter()
        .map(|&name| {
            let bgr = sample(name);
            net.embed(&bgr, &detect(&bgr).landmarks).expect("embed")
        })
        .collect()
}

/// Embeds each sample by the 5 points taken from dlib's 68.
fn embed_by_68(net: &mut SFace, names: &[&str]) -> Vec<Embedding> {
    names
        .iter()
        .map(|&name| {
            let bgr = sample(name);
            let five = landmarks_68(&bgr, &detect(&bgr)).five_points();
            net.embed(&bgr, &five).expect("embed")
        })
        .collect()
}

/// Every (i < j) pair within `a` with its cosine.
fn pairs_within<'a>(names: &[&'a str], a: &[Embedding]) -> Vec<(&'a str, &'a str, f64)> {
    let mut out = Vec::new();
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            out.push((names[i], names[j], a[i].cosine(&a[j])));
        }
    }
    out
}

/// Every pair across `a` and `b` with its cosine.
fn pairs_across<'a>(
    (na, a): (&[&'a str], &[Embedding]),
    (nb, b): (&[&'a str], &[Embedding]),
) -> Vec<(&'a str, &'a str, f64)> {
    let mut out = Vec::new();
    for (x, ex) in na.iter().zip(a) {
        for (y, ey) in nb.iter().zip(b) {
            out.push((*x, *y, ex.cosine(ey)));
        }
    }
    out
}

#[test]
fn obama_matches_obama_and_no_one_else() {
    let mut net = sface();
    let obama = embed_by_5(&mut net, &OBAMA);
    let others = embed_by_5(&mut net, &OTHERS);
    let same = pairs_within(&OBAMA, &obama);
    let different = pairs_across((&OBAMA, &obama), (&OTHERS, &others));
    let report = format!("same {same:?}\ndifferent {different:?}");
    assert!(same.iter().all(|p| p.2 > SAME_PERSON_FLOOR), "{report}");
    assert!(different.iter().all(|p| p.2 < SAME_PERSON_COSINE), "{report}");
}

/// `tests/data/golden/sface/expected.json`, from `scripts/golden/sface_opencv.cpp`.
#[derive(Debug, Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

/// One still, the 5 points it was aligned by, and OpenCV's unit embedding.
#[derive(Debug, Deserialize)]
struct GoldenCase {
    sample: String,
    points: [[f32; 2]; 5],
    embedding: Vec<f32>,
}

#[test]
fn embeddings_match_opencv_face_recognizer_sf() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden/sface/expected.json");
    let text = std::fs::read_to_string(path).expect("golden file");
    let golden: Golden = serde_json::from_str(&text).expect("golden json");
    assert_eq!(golden.cases.len(), 6);
    let mut net = sface();
    for case in &golden.cases {
        let ours = net.embed(&sample(&case.sample), &case.points).expect("embed");
        let theirs = Embedding::from_vec(case.embedding.clone()).expect("128 values");
        let max_diff = ours
            .as_slice()
            .iter()
            .zip(theirs.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let cos = ours.cosine(&theirs);
        assert!(
            cos > SAME_CROP_COSINE && max_diff < 2e-3,
            "{}: cos {cos}, max |Δ| {max_diff}",
            case.sample
        );
    }
}

#[test]
fn a_batch_gives_the_same_embeddings_as_one_at_a_time() {
    let mut net = sface();
    let names: Vec<&str> = OBAMA.iter().chain(&OTHERS).copied().collect();
    let (mut crops, mut single) = (Vec::new(), Vec::new());
    for name in &names {
        let bgr = sample(name);
        let five = detect(&bgr).landmarks;
        crops.push(align_crop(&bgr, &five).expect("align"));
        single.push(net.embed(&bgr, &five).expect("embed"));
    }
    // 6 faces × 6 = 36 crops: more than one forward pass of MAX_BATCH.
    let repeated: Vec<Mat> =
        crops.iter().cycle().take(6 * crops.len()).map(|c| c.try_clone().expect("copy")).collect();
    assert!(repeated.len() > identity::MAX_BATCH);
    let batched = net.embed_crops(&repeated).expect("batch");
    assert_eq!(batched.len(), repeated.len());
    for (i, e) in batched.iter().enumerate() {
        let cos = e.cosine(&single[i % single.len()]);
        assert!(cos > SAME_CROP_COSINE, "crop {i} ({}): cos {cos}", names[i % names.len()]);
    }
    assert!(net.embed_crops(&[]).expect("empty batch").is_empty());
}

#[test]
fn the_68_landmark_path_agrees_with_the_5_point_path() {
    let mut net = sface();
    let names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];
    let by5 = embed_by_5(&mut net, &names);
    let by68 = embed_by_68(&mut net, &names);
    for (name, (a, b)) in names.iter().zip(by5.iter().zip(&by68)) {
        let cos = a.cosine(b);
        assert!(cos > 0.8, "{name}: 68-point vs 5-point cos {cos}");
    }
    let same = pairs_within(&names[..3], &by68[..3]);
    let biden = pairs_across((&names[..3], &by68[..3]), (&names[3..], &by68[3..]));
    assert!(same.iter().all(|p| p.2 > SAME_PERSON_FLOOR), "{same:?}");
    assert!(biden.iter().all(|p| p.2 < SAME_PERSON_COSINE), "{biden:?}");
}

/// How `dfl sort --by identity` will call it: on DFL-aligned face images with their 68
/// landmarks moved into the crop. Whole-face and head crops hold all of SFace's 112×112 field
/// (measured cos 0.97–0.999 with the photo's embedding); a full-face crop cuts off its forehead
/// and corners, which come in black (cos ≈ 0.94; half-face ≈ 0.65–0.80).
#[test]
fn aligned_face_images_embed_like_the_photo() {
    let mut net = sface();
    let bgr = sample("obama.jpg");
    let marks = landmarks_68(&bgr, &detect(&bgr));
    let on_photo = net.embed(&bgr, &marks.five_points()).expect("embed");
    let cases = [
        (256, FaceType::WholeFace, 0.98),
        (512, FaceType::WholeFace, 0.98),
        (256, FaceType::Head, 0.95),
        (512, FaceType::Full, 0.9),
    ];
    for (size_px, face_type, floor) in cases {
        let to_face = align::transform_mat(&marks, size_px, face_type).expect("aligns");
        let face = dfl::img::warp_to_face(&bgr, &to_face, size_px).expect("warp");
        let five = marks.transformed(&to_face).five_points();
        let cos = net.embed(&face, &five).expect("embed").cosine(&on_photo);
        assert!(cos > floor, "{size_px} px {face_type:?}: cos {cos} with the photo's embedding");
    }
}

/// SFace was trained on RGB: the channel swap in the blob is part of the model's contract.
/// A BGR-fed crop (simulated by swapping the crop before the swap) gives another vector
/// (measured cos 0.86 on obama.jpg).
#[test]
fn channel_order_matters() {
    let mut net = sface();
    let bgr = sample("obama.jpg");
    let crop = align_crop(&bgr, &detect(&bgr).landmarks).expect("align");
    let mut swapped = Mat::default();
    imgproc::cvt_color_def(&crop, &mut swapped, imgproc::COLOR_BGR2RGB).expect("swap");
    let both = net.embed_crops(&[crop, swapped]).expect("embed");
    let cos = both[0].cosine(&both[1]);
    assert!(cos < 0.95, "swapping channels should move the embedding, cos {cos}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut net = sface();
    let five = [[40.0, 50.0], [70.0, 50.0], [55.0, 70.0], [42.0, 90.0], [70.0, 90.0]];
    let blank =
        |rows, cols, typ| Mat::new_rows_cols_with_default(rows, cols, typ, Scalar::all(0.0));
    for img in
        [Mat::default(), blank(112, 112, CV_8UC1).unwrap(), blank(112, 112, CV_32FC3).unwrap()]
    {
        let err = net.embed(&img, &five).unwrap_err();
        assert!(matches!(err, IdentityError::BadImage { .. }), "{err}");
    }
    let ok = blank(200, 200, CV_8UC3).unwrap();
    let err = net.embed(&ok, &[[5.0, 5.0]; 5]).unwrap_err();
    assert!(matches!(err, IdentityError::BadPoints { .. }), "{err}");
    let mut nan = five;
    nan[0][0] = f32::NAN;
    assert!(matches!(net.embed(&ok, &nan), Err(IdentityError::BadPoints { .. })));
    let crops = [blank(112, 112, CV_8UC3).unwrap(), blank(100, 112, CV_8UC3).unwrap()];
    let err = net.embed_crops(&crops).unwrap_err();
    assert!(matches!(err, IdentityError::BadImage { index: 1, is_crop: true, .. }), "{err}");
}

#[test]
fn model_file_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.onnx");
    let err = SFaceModel::load(&missing).unwrap_err();
    assert!(matches!(err, IdentityError::ReadModel { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("nope.onnx") && text.ends_with("run scripts/setup.sh"), "{text}");
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not a protobuf").expect("write");
    let err = SFaceModel::load(&garbage).and_then(|m| m.recognizer()).err().expect("fails");
    assert!(matches!(err, IdentityError::LoadModel { .. }), "{err}");
    assert!(err.to_string().contains("garbage.onnx"), "{err}");
}
