//! YuNet on the real model and the sample media that `scripts/setup.sh` installs.

use dfl::assets::YUNET_FILE;
use dfl::detect::{DetectError, Detection, DetectorConfig, FaceDetector, YuNet};
use opencv::core::{CV_8UC1, CV_8UC3, Mat, Scalar};
use opencv::imgcodecs::{IMREAD_COLOR, imread};
use opencv::prelude::*;
use opencv::videoio::{CAP_ANY, VideoCapture};

fn yunet() -> YuNet {
    let path = dfl::assets::Assets::from_env()
        .model(YUNET_FILE)
        .expect("model installed by scripts/setup.sh");
    YuNet::load(path, DetectorConfig::default()).expect("the YuNet model loads")
}

fn faces_in(sample: &str) -> Vec<Detection> {
    let path = dfl::assets::Assets::from_env()
        .sample(sample)
        .expect("sample installed by scripts/setup.sh");
    let img = imread(&path, IMREAD_COLOR).expect("imread");
    assert!(!img.empty(), "{} decodes", path.display());
    yunet().detect(&img).expect("detect")
}

fn inside(p: [f32; 2], rect: [f32; 4]) -> bool {
    p[0] >= rect[0] && p[0] <= rect[0] + rect[2] && p[1] >= rect[1] && p[1] <= rect[1] + rect[3]
}

#[test]
fn obama_has_one_well_formed_face() {
    let faces = faces_in("obama.jpg");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let f = faces[0];
    assert!(f.score > 0.85, "score {}", f.score);
    let [r_eye, l_eye, nose, r_mouth, l_mouth] = f.landmarks;
    assert!(r_eye[0] < l_eye[0], "subject's right eye is image-left: {f:?}");
    assert!(r_eye[1] < nose[1] && l_eye[1] < nose[1], "eyes above the nose: {f:?}");
    assert!(nose[1] < r_mouth[1] && nose[1] < l_mouth[1], "nose above the mouth: {f:?}");
    assert!(r_mouth[0] < l_mouth[0], "subject's right mouth corner is image-left: {f:?}");
    assert!(f.landmarks.iter().all(|&p| inside(p, f.rect)), "landmarks inside the box: {f:?}");
}

#[test]
fn biden_and_astronaut_have_one_face() {
    for sample in ["biden.jpg", "astronaut.png"] {
        let faces = faces_in(sample);
        assert_eq!(faces.len(), 1, "{sample}: {faces:?}");
    }
}

#[test]
fn messi_small_face_is_found() {
    let faces = faces_in("messi5.jpg");
    assert!(!faces.is_empty());
}

#[test]
fn black_frame_has_no_faces() {
    let black = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(0.0)).unwrap();
    assert!(yunet().detect(&black).unwrap().is_empty());
}

#[test]
fn wrong_mat_type_is_an_error() {
    let mut det = yunet();
    let gray = Mat::new_rows_cols_with_default(480, 640, CV_8UC1, Scalar::all(0.0)).unwrap();
    let err = det.detect(&gray).unwrap_err();
    assert!(matches!(err, DetectError::BadImage { .. }), "{err}");
    assert!(matches!(det.detect(&Mat::default()), Err(DetectError::BadImage { .. })));
}

#[test]
fn missing_or_corrupt_model_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let err = YuNet::load(&missing, DetectorConfig::default()).err().expect("load fails");
    assert!(matches!(err, DetectError::ReadModel { .. }));
    let msg = err.to_string();
    assert!(msg.contains("nope.onnx") && msg.contains("scripts/setup.sh"), "{msg}");

    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = YuNet::load(&junk, DetectorConfig::default()).err().expect("load fails");
    assert!(matches!(err, DetectError::LoadModel { .. }));
    assert!(err.to_string().contains("junk.onnx"), "{err}");
}

#[test]
fn clones_detect_the_same_faces() {
    let path = dfl::assets::Assets::from_env().sample("obama2.jpg").unwrap();
    let img = imread(&path, IMREAD_COLOR).unwrap();
    let mut a = yunet();
    let mut b = a.try_clone().unwrap();
    let handle = std::thread::spawn(move || b.detect(&img).map(|f| (f, img)));
    let (from_b, img) = handle.join().unwrap().unwrap();
    assert_eq!(a.detect(&img).unwrap(), from_b);
    assert!(!from_b.is_empty());
}

#[test]
fn carphone_has_a_face_in_nearly_every_frame() {
    let path = dfl::assets::Assets::from_env().sample("carphone_pristine.mp4").unwrap();
    let mut cap = VideoCapture::from_file(&path, CAP_ANY).unwrap();
    assert!(cap.is_opened().unwrap(), "{} opens", path.display());
    let mut det = yunet();
    let (mut frames, mut with_face) = (0, 0);
    let mut frame = Mat::default();
    while cap.read(&mut frame).unwrap() {
        frames += 1;
        with_face += usize::from(!det.detect(&frame).unwrap().is_empty());
    }
    assert_eq!(frames, 120);
    assert!(with_face >= 118, "faces in {with_face}/120 frames");
}
