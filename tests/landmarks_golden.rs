//! Golden test: dfl's shape predictor against real dlib. The images and dlib's points come from
//! `scripts/golden/dlib_landmarks.py` (dlib-bin 20.0.1); the rounded points must match exactly.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use dfl::face::shape_predictor::{
    DlibRect, GrayImage, ShapePredictor, intensity_from_bgr, round_like_dlib,
};
use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;
use rayon::prelude::*;
use serde::Deserialize;

/// Landmarks of dlib's 68-point model.
const NUM_PARTS: usize = 68;
/// Size of the first slice of the model used for the truncation test.
const TRUNCATED_LEN: usize = 10_000_000;

/// `tests/data/golden/landmarks/expected.json`.
#[derive(Debug, Deserialize)]
struct Expected {
    cases: Vec<Case>,
}

/// One face box in one image, with the points dlib returned for it.
#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    image: String,
    #[serde(rename = "box")]
    rect: [i64; 4],
    points: Vec<[i64; 2]>,
}

impl Case {
    fn rect(&self) -> DlibRect {
        let [left, top, right, bottom] = self.rect;
        DlibRect { left, top, right, bottom }
    }
}

/// An intensity image read from a golden PNG.
struct Intensity {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl Intensity {
    fn view(&self) -> GrayImage<'_> {
        GrayImage { data: &self.data, width: self.width, height: self.height }
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/landmarks")
}

fn model_path() -> PathBuf {
    dfl::assets::Assets::from_env()
        .model(dfl::assets::SHAPE_PREDICTOR_FILE)
        .unwrap_or_else(|err| panic!("{err} (scripts/setup.sh installs the dlib model)"))
}

/// The real 68-point model, loaded once for all tests in this file.
fn predictor() -> &'static ShapePredictor {
    static MODEL: OnceLock<ShapePredictor> = OnceLock::new();
    MODEL.get_or_init(|| {
        ShapePredictor::load(&model_path()).unwrap_or_else(|err| panic!("{}", chain(&err)))
    })
}

/// An error and its sources, joined with ": ".
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

fn expected() -> Expected {
    let path = golden_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a PNG as OpenCV does (BGR) and converts it to dlib's intensity.
fn read_intensity(file: &str) -> Intensity {
    let path = golden_dir().join(file);
    let mat: Mat = imgcodecs::imread(&path, imgcodecs::IMREAD_COLOR).expect("imread runs");
    assert!(!mat.empty(), "cannot read {}", path.display());
    let (width, height) = (mat.cols() as usize, mat.rows() as usize);
    let bgr = mat.data_bytes().expect("imread returns a continuous 8-bit BGR image");
    Intensity { data: intensity_from_bgr(bgr, width, height), width, height }
}

/// Predicts and rounds the landmarks of one case.
fn predict_case(model: &ShapePredictor, image: &Intensity, case: &Case) -> Vec<[i64; 2]> {
    model.predict(&image.view(), case.rect()).into_iter().map(round_like_dlib).collect()
}

/// Describes how `got` differs from dlib's points, or `None` when they are equal.
fn mismatch(case: &Case, got: &[[i64; 2]]) -> Option<String> {
    if got == case.points.as_slice() {
        return None;
    }
    let differing: Vec<usize> = (0..got.len().max(case.points.len()))
        .filter(|&i| got.get(i) != case.points.get(i))
        .collect();
    let first = differing[0];
    Some(format!(
        "{}: point {first}: dfl {:?}, dlib {:?} ({} of {} points differ)",
        case.name,
        got.get(first),
        case.points.get(first),
        differing.len(),
        case.points.len()
    ))
}

#[test]
fn landmarks_match_dlib_exactly() {
    let model = predictor();
    let expected = expected();
    assert!(expected.cases.len() >= 20, "expected.json holds {} cases", expected.cases.len());
    // Shared read-only across rayon threads, as extraction will use it.
    let failures: Vec<String> = expected
        .cases
        .par_iter()
        .filter_map(|case| {
            assert_eq!(case.points.len(), NUM_PARTS, "{}", case.name);
            mismatch(case, &predict_case(model, &read_intensity(&case.image), case))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from dlib:\n{}",
        failures.len(),
        expected.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_cases_sample_outside_the_image() {
    let expected = expected();
    let poking = expected
        .cases
        .iter()
        .filter(|case| {
            let image = read_intensity(&case.image);
            let r = case.rect();
            r.left < 0
                || r.top < 0
                || r.right >= image.width as i64
                || r.bottom >= image.height as i64
        })
        .count();
    assert!(poking >= 10, "only {poking} boxes stick out of their image");
}

#[test]
fn real_model_structure() {
    let model = predictor();
    assert_eq!(model.num_parts(), NUM_PARTS);
    assert_eq!(model.num_cascades(), 15);
    assert_eq!(model.tree_depth(), 4);
    for cascade in 0..15 {
        assert_eq!(model.num_trees(cascade), Some(500), "cascade {cascade}");
        assert_eq!(model.feature_pool_size(cascade), Some(500), "cascade {cascade}");
    }
    let shape = model.initial_shape();
    let near = |p: [f32; 2], q: [f32; 2]| (p[0] - q[0]).abs() < 5e-5 && (p[1] - q[1]).abs() < 5e-5;
    // Values read from the model file: nose tip, chin, outer eye corners.
    for (i, point) in [(30, [0.5000, 0.5470]), (8, [0.5000, 1.0697]), (36, [0.2139, 0.3156])] {
        assert!(near(shape[i], point), "initial shape point {i}: {:?}", shape[i]);
    }
}

#[test]
fn truncated_model_fails_cleanly() {
    let bytes = std::fs::read(model_path()).expect("the model was found, so it reads");
    let err = ShapePredictor::from_bytes(&bytes[..TRUNCATED_LEN]).unwrap_err();
    let text = chain(&err);
    assert!(text.contains("not a valid dlib shape predictor: "), "{text}");
    assert!(text.contains("truncated"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.dat");
    std::fs::write(&path, &bytes[..TRUNCATED_LEN]).unwrap();
    let text = chain(&ShapePredictor::load(&path).unwrap_err());
    assert!(text.contains(&*path.to_string_lossy()) && text.contains("truncated"), "{text}");
}

/// Load and predict timings; run with
/// `cargo test --release --test landmarks_golden -- --ignored --nocapture`.
#[test]
#[ignore = "timing, prints numbers"]
fn timings() {
    let path = model_path();
    let start = Instant::now();
    let model = ShapePredictor::load(&path).unwrap();
    println!("load: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let cases = expected().cases;
    let images: Vec<Intensity> = cases.iter().map(|c| read_intensity(&c.image)).collect();
    const ROUNDS: usize = 100;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for (case, image) in cases.iter().zip(&images) {
            std::hint::black_box(model.predict(&image.view(), case.rect()));
        }
    }
    let per_face = start.elapsed().as_secs_f64() / (ROUNDS * cases.len()) as f64;
    println!("predict: {:.1} µs per face ({} faces x {ROUNDS})", per_face * 1e6, cases.len());
}
