//! `dfl faceset synth` on the bundled samples (installed by scripts/setup.sh; a missing one
//! fails with the setup hint, it is never skipped): determinism, motion transfer, identity,
//! and the errors for bad input. The warp itself is tested in `src/synth/warp.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dfl::assets::{SFACE_FILE, SHAPE_PREDICTOR_FILE, YUNET_FILE};
use dfl::detect::{DetectorConfig, YuNetModel};
use dfl::face::identity::{Embedding, SAME_PERSON_COSINE, SFace, SFaceModel};
use dfl::face::landmarks::Landmarks68;
use dfl::face::locate::{Landmarker, find_faces};
use dfl::face::shape_predictor::ShapePredictor;
use dfl::frames::{FrameSource, Pick};
use dfl::progress::NoProgress;
use dfl::synth::{SynthConfig, SynthModels, SynthReport, synthesize};
use dfl::workspace::Input;
use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
use opencv::imgcodecs::{self, IMREAD_COLOR, imread};
use opencv::prelude::*;

mod common;
use common::{dfl, stderr};

/// The portrait of the library tests: a close-up, so the face is large at a small width.
const PORTRAIT: &str = "obama2.jpg";
const DRIVER: &str = "carphone_pristine.mp4";
/// Driver frames of the library tests: the first 64 hold the speaker's wide-open "O".
const FRAMES: usize = 64;
const WIDTH_PX: u32 = 256;
/// Mean landmark error allowed on the output, in inter-ocular distances.
const MAX_MEAN_NME: f32 = 0.08;
/// Least correlation between the output's mouth opening and the driver's.
const MIN_MOUTH_CORRELATION: f32 = 0.7;
/// Least SFace cosine between an output frame and the portrait (same person, same photo).
const MIN_PORTRAIT_COSINE: f64 = 0.6;

fn sample(name: &str) -> PathBuf {
    dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"))
}

fn model(file: &str) -> PathBuf {
    dfl::assets::Assets::from_env().model(file).unwrap_or_else(|e| panic!("{e}"))
}

/// The face models, loaded once.
struct Models {
    yunet: YuNetModel,
    predictor: ShapePredictor,
    sface: SFaceModel,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| Models {
        yunet: YuNetModel::load(model(YUNET_FILE), DetectorConfig::default()).expect("YuNet"),
        predictor: ShapePredictor::load(&model(SHAPE_PREDICTOR_FILE)).expect("predictor"),
        sface: SFaceModel::load(model(SFACE_FILE)).expect("SFace"),
    })
}

/// One synth run of [`PORTRAIT`] driven by the first [`FRAMES`] frames, shared by the tests.
fn synth_run() -> &'static (tempfile::TempDir, SynthReport) {
    static RUN: OnceLock<(tempfile::TempDir, SynthReport)> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let m = models();
        let cfg = SynthConfig { width_px: WIDTH_PX, seed: 1, frames: Some(FRAMES) };
        let synth_models = SynthModels { detector: &m.yunet, predictor: &m.predictor };
        let report = synthesize(
            &[sample(PORTRAIT)],
            &sample(DRIVER),
            &tmp.path().join("clip"),
            &cfg,
            &synth_models,
            &NoProgress,
        )
        .expect("synth runs");
        (tmp, report)
    })
}

/// The 68 landmarks of the largest face in `bgr`, if any.
fn landmarks(bgr: &Mat) -> Option<Landmarks68> {
    let m = models();
    let mut detector = m.yunet.detector().expect("detector");
    let landmarker = Landmarker::new(&m.predictor).expect("the 68-point model");
    let faces = find_faces(bgr, &mut detector, &landmarker, true).expect("find faces");
    faces.into_iter().next().map(|(_, l)| l)
}

fn read(path: &Path) -> Mat {
    let img = imread(path, IMREAD_COLOR).expect("imread");
    assert!(!img.empty(), "{} does not decode", path.display());
    img
}

/// The first `n` frames of the driver video.
fn driver_frames(n: usize) -> Vec<Mat> {
    let mut source = FrameSource::open(&Input::Video(sample(DRIVER))).expect("driver opens");
    std::iter::from_fn(|| source.next_picked(|_, _| Pick::Take))
        .take(n)
        .map(|f| f.image.expect("frame decodes"))
        .collect()
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The inner-lip opening (iBUG 62–66).
fn mouth_opening(l: &[[f32; 2]]) -> f32 {
    dist(l[62], l[66])
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() as f32;
    let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
    let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn embed(net: &mut SFace, bgr: &Mat, l: &Landmarks68) -> Embedding {
    net.embed(bgr, &l.five_points()).expect("embed")
}

/// Runs the CLI on the first `frames` driver frames of obama2.jpg into `out`.
fn synth_cli(ws: &Path, out: &Path, seed: &str, frames: &str) -> std::process::Output {
    let (portrait, driver) = (sample(PORTRAIT), sample(DRIVER));
    let args = [
        "faceset",
        "synth",
        "--portrait",
        portrait.to_str().unwrap(),
        "--driver",
        driver.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--width",
        "160",
        "--seed",
        seed,
        "--frames",
        frames,
    ];
    dfl(ws, &args)
}

/// File name → BLAKE3 of the bytes of every file in `dir`, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let hash = blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string();
            (p.file_name().unwrap().to_string_lossy().into_owned(), hash)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_same_seed_gives_byte_identical_frames_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let runs: Vec<_> = [("a", "1"), ("b", "1"), ("c", "2")]
        .iter()
        .map(|(dir, seed)| {
            let out = tmp.path().join(dir);
            let run = synth_cli(&ws, &out, seed, "6");
            assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
            snapshot(&out)
        })
        .collect();
    let names: Vec<&str> = runs[0].iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<String> = (1..=6).map(|i| format!("{i:05}.png")).collect();
    assert_eq!(names, want);
    assert!(runs[0] == runs[1], "two runs with seed 1 differ");
    let same = runs[0].iter().zip(&runs[2]).filter(|(a, b)| a.1 == b.1).count();
    assert!(same < 6, "seed 2 gave the same frames as seed 1");

    // A shorter run into the same folder writes the same first frames and leaves no others.
    let out = tmp.path().join("a");
    let run = synth_cli(&ws, &out, "1", "4");
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(snapshot(&out), runs[0][..4].to_vec());
}

#[test]
fn the_output_faces_follow_the_targets_and_the_mouth_follows_the_driver() {
    let (_, report) = synth_run();
    assert_eq!(report.frames.len(), FRAMES);
    let (mut nme_sum, mut ours, mut theirs) = (0.0, Vec::new(), Vec::new());
    let driver = driver_frames(FRAMES);
    for (frame, driver_frame) in report.frames.iter().zip(&driver) {
        let found = landmarks(&read(&frame.path))
            .unwrap_or_else(|| panic!("no face in {}", frame.path.display()));
        let eyes = dist(frame.targets[36], frame.targets[45]);
        let err: f32 = found.iter().zip(&frame.targets).map(|(a, b)| dist(*a, *b)).sum();
        nme_sum += err / found.len() as f32 / eyes;
        ours.push(mouth_opening(&found));
        let d = landmarks(driver_frame).expect("a face in the driver frame");
        theirs.push(mouth_opening(&d));
    }
    let nme = nme_sum / FRAMES as f32;
    assert!(nme < MAX_MEAN_NME, "mean NME {nme:.3} against the targets");
    let r = correlation(&ours, &theirs);
    let range = ours.iter().copied().fold(f32::MIN, f32::max)
        - ours.iter().copied().fold(f32::MAX, f32::min);
    assert!(
        r > MIN_MOUTH_CORRELATION,
        "mouth opening correlation {r:.2} (output range {range:.1} px)"
    );
}

#[test]
fn the_identity_is_the_portraits_not_the_drivers() {
    let (_, report) = synth_run();
    let mut net = models().sface.recognizer().expect("SFace");
    let portrait = read(&sample(PORTRAIT));
    let on_portrait = embed(&mut net, &portrait, &landmarks(&portrait).expect("portrait face"));
    let driver = driver_frames(1).remove(0);
    let on_driver = embed(&mut net, &driver, &landmarks(&driver).expect("driver face"));
    // The first frame, the widest "O" (driver frame 59) and the last.
    for index in [0, 59, FRAMES - 1] {
        let frame = &report.frames[index];
        let bgr = read(&frame.path);
        let ours = embed(&mut net, &bgr, &landmarks(&bgr).expect("output face"));
        let (same, other) = (ours.cosine(&on_portrait), ours.cosine(&on_driver));
        assert!(same > MIN_PORTRAIT_COSINE, "frame {index}: cosine to the portrait {same:.3}");
        assert!(other < SAME_PERSON_COSINE, "frame {index}: cosine to the driver {other:.3}");
    }
}

#[test]
fn bad_input_is_refused_with_the_file_and_the_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let flat = tmp.path().join("flat_gray.png");
    let gray = Mat::new_rows_cols_with_default(240, 200, CV_8UC3, Scalar::all(128.0)).unwrap();
    imgcodecs::imwrite(flat.to_str().unwrap(), &gray, &Vector::new()).unwrap();
    let not_video = tmp.path().join("broken.mp4");
    std::fs::write(&not_video, b"not a video").unwrap();
    let (portrait, driver) = (sample(PORTRAIT), sample(DRIVER));
    let out = tmp.path().join("out");
    let run = |portrait: &Path, driver: &Path| {
        let args = ["faceset", "synth", "--portrait", portrait.to_str().unwrap(), "--driver"];
        let mut cmd = common::dfl_cmd(&ws, &args);
        cmd.arg(driver).arg("--out").arg(&out).args(["--frames", "2"]);
        cmd
    };

    let no_face = run(&flat, &driver).output().unwrap();
    assert_eq!(no_face.status.code(), Some(2));
    let err = stderr(&no_face);
    assert!(err.contains("flat_gray.png") && err.contains("no face"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let bad_driver = run(&portrait, &not_video).output().unwrap();
    assert_eq!(bad_driver.status.code(), Some(2));
    let err = stderr(&bad_driver);
    assert!(err.contains("broken.mp4") && err.contains("ffprobe"), "{err}");

    let empty_home = tmp.path().join("no_models");
    std::fs::create_dir_all(&empty_home).unwrap();
    let no_models = run(&portrait, &driver).env("DFL_HOME", &empty_home).output().unwrap();
    assert_eq!(no_models.status.code(), Some(2));
    let err = stderr(&no_models);
    assert!(err.contains(YUNET_FILE) && err.contains("scripts/setup.sh"), "{err}");
    assert!(!out.exists(), "nothing is written on a fatal error");
}

#[test]
fn the_help_says_what_the_tool_is_for() {
    let tmp = tempfile::tempdir().unwrap();
    let help = dfl(tmp.path(), &["faceset", "synth", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("tests and demos") && text.contains("not a deepfake generator"),
        "{text}"
    );
}
