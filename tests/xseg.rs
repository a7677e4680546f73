//! `dfl xseg train|apply|remove|fetch` and `dfl train --mask` through the real binary, on
//! small synthetic facesets: a killed XSeg run resumes to exactly the model an uninterrupted
//! run trains (lr dropout on, as by default), a killed apply leaves
//! no face damaged and a rerun finishes it, remove keeps the labels, fetch copies only
//! labelled faces, SAEHD training uses the applied masks, sort keeps them with their faces, and
//! a stop request in `control.json` ends a training run as Ctrl-C does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use dfl::face::align::{ALIGN_POINTS, FaceType, MEAN_FACE};
use dfl::face::dflimg;
use dfl::face::landmarks::Landmarks68;
use dfl::face::metadata::{
    FaceMetadata, ImageFormat, METADATA_VERSION, read_metadata, rewrite_metadata, write_face,
};
use dfl::face::seg::{PolyKind, SegPoly, XSegMask};
use dfl::model::checkpoint::read_tensors;
use dfl::model::folder::control::{Request, request};
use dfl::model::folder::{ModelFolder, OPTIMIZER_FILE, WEIGHTS_FILE};
use opencv::core::{CV_8UC1, Mat, Scalar};
use opencv::imgproc;
use opencv::prelude::*;
use serde_json::{Value, json};
use tch::{Kind, Tensor};

mod common;
use common::{TINY, copy_of, dfl, dfl_cmd, stderr, wait_for};

/// The side of the synthetic faces in pixels.
const SIZE: i32 = 64;

/// The mean face in the middle of a 64 px crop; the jaw and lips on a circle around it (as in
/// `tests/xseg_labels.rs`).
fn landmarks() -> Landmarks68 {
    Landmarks68::new(std::array::from_fn(|i| match ALIGN_POINTS.iter().position(|&p| p == i) {
        Some(k) => [(12.0 + 40.0 * MEAN_FACE[k][0]) as f32, (12.0 + 40.0 * MEAN_FACE[k][1]) as f32],
        None => {
            let t = i as f32 * 0.37;
            [32.0 + 24.0 * t.cos(), 32.0 + 24.0 * t.sin()]
        }
    }))
}

/// Face `i`'s pixels: noise around a brighter ellipse (the "face") whose size and brightness
/// depend on `i`, so every face differs and the labels have something to follow.
fn face_image(i: usize) -> Mat {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64).wrapping_mul(0x0100_0000_01B3);
    let mut noise = || {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 58) as i32 // 0..64
    };
    let (rx, ry) = (14 + (i % 5) as i32, 18 + (i % 3) as i32);
    let level = 120 + (i * 13 % 100) as i32;
    let mut bytes = Vec::with_capacity((SIZE * SIZE * 3) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let (dx, dy) = (f64::from(x - 32) / f64::from(rx), f64::from(y - 34) / f64::from(ry));
            let inside = dx * dx + dy * dy <= 1.0;
            for c in 0..3 {
                let base = if inside { level - 10 * c } else { 30 + 20 * c };
                bytes.push((base + noise()).clamp(0, 255) as u8);
            }
        }
    }
    Mat::from_slice(&bytes).unwrap().reshape(3, SIZE).unwrap().try_clone().unwrap()
}

/// Labels of face `i`: its ellipse as an include polygon, every third face with a hand
/// (exclude) over its chin.
fn labels(i: usize) -> Vec<SegPoly> {
    let (rx, ry) = (14.0 + (i % 5) as f32, 18.0 + (i % 3) as f32);
    let ellipse = (0..16)
        .map(|k| {
            let t = k as f32 * std::f32::consts::TAU / 16.0;
            [32.0 + rx * t.cos(), 34.0 + ry * t.sin()]
        })
        .collect();
    let mut polys = vec![SegPoly { kind: PolyKind::Include, points: ellipse }];
    if i.is_multiple_of(3) {
        polys.push(SegPoly {
            kind: PolyKind::Exclude,
            points: vec![[20.0, 44.0], [44.0, 44.0], [44.0, 60.0], [20.0, 60.0]],
        });
    }
    polys
}

/// Writes faces `<frame>_0.jpg` for each frame of `frames` into `ws/data_<side>/aligned`,
/// each drawn as face `frame` (src as face `100 + frame`); those `labelled` says (by frame)
/// carry labels.
fn add_faces(
    ws: &Path,
    side: &str,
    frames: std::ops::RangeInclusive<usize>,
    labelled: impl Fn(usize) -> bool,
) {
    let dir = aligned(ws, side);
    std::fs::create_dir_all(&dir).unwrap();
    let landmarks = landmarks();
    for k in frames {
        let i = if side == "src" { 100 + k } else { k };
        let meta = FaceMetadata {
            version: METADATA_VERSION,
            source_filename: format!("{k:05}"),
            source_path: format!("/videos/data_{side}.mp4"),
            source_size: [400, 400],
            face_index: 0,
            face_type: FaceType::WholeFace,
            size_px: SIZE as u32,
            landmarks,
            source_landmarks: landmarks,
            image_to_face_mat: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            source_rect: [0.0, 0.0, 64.0, 64.0],
            detector_score: 0.9,
            seg_ie_polys: if labelled(k) { labels(i) } else { Vec::new() },
            xseg_mask: None,
        };
        let path = dir.join(format!("{k:05}_0.jpg"));
        write_face(&path, &face_image(i), &meta, ImageFormat::Jpg, 90).unwrap();
    }
}

/// A workspace with `src` and `dst` faces (frames 1…), labelled as `labelled` says.
fn workspace(
    src: usize,
    dst: usize,
    labelled: impl Fn(usize) -> bool,
) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    add_faces(&ws, "src", 1..=src, &labelled);
    add_faces(&ws, "dst", 1..=dst, &labelled);
    (tmp, ws)
}

fn aligned(ws: &Path, side: &str) -> PathBuf {
    ws.join(format!("data_{side}/aligned"))
}

/// The face files of a folder, sorted by name.
fn faces_in(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    all.sort();
    all
}

fn run_ok(ws: &Path, args: &[&str]) -> String {
    let out = dfl(ws, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

/// `dfl --device cpu xseg train --name NAME --resolution 64 ARGS…`.
fn xseg_train(ws: &Path, name: &str, args: &[&str]) -> Output {
    let base = ["--device", "cpu", "xseg", "train", "--name", name, "--resolution", "64"];
    dfl(ws, &[&base[..], args].concat())
}

/// The latest checkpoint set of XSeg model `name`.
fn latest_set(ws: &Path, name: &str) -> PathBuf {
    ModelFolder::new(ws.join("xseg").join(name)).latest().unwrap().expect("a checkpoint set")
}

/// The iteration of the latest checkpoint set of XSeg model `name`.
fn latest_iteration(ws: &Path, name: &str) -> u64 {
    let folder = ModelFolder::new(ws.join("xseg").join(name));
    folder.latest_state().unwrap().expect("a checkpoint set").iteration
}

/// Asserts that tensor file `file` of sets `a` and `b` holds the same tensors, bit for bit (the
/// files' bytes may differ: the order of a safetensors header is not fixed); on a difference,
/// names the tensors that differ and by how much.
fn assert_same_tensors(a: &Path, b: &Path, file: &str) {
    let sorted = |set: &Path| {
        let mut t = read_tensors(&set.join(file)).unwrap();
        t.sort_by(|x, y| x.0.cmp(&y.0));
        t
    };
    let (ta, tb) = (sorted(a), sorted(b));
    let names = |t: &[(String, Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ta), names(&tb), "{file}: the same tensors");
    let differ: Vec<String> = ta
        .iter()
        .zip(&tb)
        .filter(|((_, p), (_, q))| !p.equal(q))
        .map(|((n, p), (_, q))| {
            let diff = (p.to_kind(Kind::Double) - q.to_kind(Kind::Double)).abs().max();
            format!("{n} (max |Δ| {:e})", diff.double_value(&[]))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{file} differs in {} of {} tensors, e.g. {}",
        differ.len(),
        ta.len(),
        differ[..differ.len().min(4)].join(", ")
    );
}

/// The iteration both runs of the kill test train to.
const KILL_TARGET: u64 = 5;

/// Trains XSeg model `m` to [`KILL_TARGET`] with `extra` flags twice from the same initial
/// set: once uninterrupted, once killed with SIGKILL a while after its first save and resumed.
/// Returns the two workspaces' final sets.
fn kill_and_resume(extra: &[&str]) -> (Vec<tempfile::TempDir>, PathBuf, PathBuf) {
    // Six labelled faces: none held out, so no measurement interleaves with the steps.
    let (tmp, template) = workspace(3, 3, |_| true);
    let target = KILL_TARGET.to_string();
    let flags =
        [&["--batch-size", "2", "--target-iter", target.as_str(), "--preview-every", "0"], extra]
            .concat();
    // Both runs start from this set (the initialisation is random per process).
    let out = xseg_train(&template, "m", &[&["--iterations", "0"], &flags[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_iteration(&template, "m"), 0);

    let (a_tmp, a) = copy_of(&template);
    let out = xseg_train(&a, "m", &flags);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_iteration(&a, "m"), KILL_TARGET);

    // The same run, saving after every step, killed a while after its first save (mid-run on
    // this machine; wherever it lands, the resume must give the same model), then resumed.
    let (b_tmp, b) = copy_of(&template);
    let pointer = b.join("xseg/m/LATEST");
    let initial = std::fs::read_to_string(&pointer).unwrap();
    let base = ["--device", "cpu", "xseg", "train", "--name", "m", "--resolution", "64"];
    let mut child = dfl_cmd(&b, &[&base[..], &flags, &["--save-every-min", "0.0001"]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(120, "the first save", || std::fs::read_to_string(&pointer).unwrap() != initial);
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = latest_iteration(&b, "m");
    eprintln!("killed; the latest set is at iteration {killed_at} of {KILL_TARGET}");
    let out = xseg_train(&b, "m", &flags);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("at iteration {killed_at}")), "{}", stderr(&out));
    assert_eq!(latest_iteration(&b, "m"), KILL_TARGET);
    (vec![tmp, a_tmp, b_tmp], latest_set(&a, "m"), latest_set(&b, "m"))
}

/// With the default options (lr dropout on: its masks are keyed by the step count).
#[test]
fn xseg_train_kill_9_then_resume_equals_an_uninterrupted_run() {
    let (_tmp, a, b) = kill_and_resume(&[]);
    assert_same_tensors(&a, &b, WEIGHTS_FILE);
    assert_same_tensors(&a, &b, OPTIMIZER_FILE);
}

#[test]
fn a_stop_request_in_control_json_ends_xseg_training_with_the_last_step_saved() {
    let (tmp, ws) = workspace(3, 3, |_| true);
    let folder = ModelFolder::new(ws.join("xseg/m"));
    let log = tmp.path().join("stderr.txt");
    let base = ["--device", "cpu", "xseg", "train", "--name", "m", "--resolution", "64"];
    let flags = ["--batch-size", "2", "--iterations", "100000", "--preview-every", "1"];
    let child = dfl_cmd(&ws, &[&base[..], &flags].concat())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Killed when dropped, so a failure leaves no training behind.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Running(child);
    wait_for(120, "the first preview", || folder.preview_path().is_file());
    request(&folder, Request::Stop).unwrap();
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(20), "still running 20 s after the stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("exited {:.1} s after the request", asked.elapsed().as_secs_f64());
    let err = std::fs::read_to_string(&log).unwrap();
    // Exit 0, as a Ctrl-C'd run (it saves and returns as a finished one).
    assert_eq!(status.code(), Some(0), "{err}");
    let marker = "stopping after iteration ";
    let at = err.find(marker).unwrap_or_else(|| panic!("no stop line: {err}"));
    let digits: String =
        err[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
    let stopped_at: u64 = digits.parse().unwrap();
    assert!(err.contains("(asked through control.json)"), "{err}");
    assert_eq!(latest_iteration(&ws, "m"), stopped_at, "the last step is saved: {err}");
}

/// The pixels of a face file as stored: its bytes with the metadata replaced by a constant
/// (`dflimg::embed` keeps every other byte), so two files give the same only when their image
/// bytes are the same.
fn image_bytes(path: &Path) -> Vec<u8> {
    dflimg::embed(&std::fs::read(path).unwrap(), b"{}").unwrap()
}

/// What a face file is apart from its applied mask: its image bytes and the rest of its
/// metadata (labels included).
fn all_but_mask(path: &Path) -> (Vec<u8>, FaceMetadata) {
    let mut meta = read_metadata(path).unwrap();
    meta.xseg_mask = None;
    (image_bytes(path), meta)
}

/// The applied mask of every face of `dir`, by file name.
fn masks(dir: &Path) -> BTreeMap<String, Option<XSegMask>> {
    faces_in(dir).iter().map(|p| (name(p), read_metadata(p).unwrap().xseg_mask)).collect()
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Writes an applied mask into the face at `path` as `dfl xseg apply` stores it: model `model`
/// at `iteration`, a disc of radius `r` px.
fn put_mask(path: &Path, model: &str, iteration: u64, r: i32) {
    let mut disc = Mat::new_rows_cols_with_default(SIZE, SIZE, CV_8UC1, Scalar::all(0.0)).unwrap();
    let centre = opencv::core::Point::new(32, 34);
    imgproc::circle(&mut disc, centre, r, Scalar::all(255.0), -1, imgproc::LINE_8, 0).unwrap();
    let mask = XSegMask::encode(model, iteration, &disc).unwrap();
    assert!(rewrite_metadata(path, |m| m.xseg_mask = Some(mask)).unwrap());
}

/// Trains XSeg model `name` for `iterations` iterations at 64 px, batches of 2.
fn train_model(ws: &Path, name: &str, iterations: u64) {
    let n = iterations.to_string();
    let out = xseg_train(ws, name, &["--iterations", n.as_str(), "--batch-size", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_iteration(ws, name), iterations);
}

fn apply(ws: &Path, side: &str, name: &str) -> String {
    run_ok(ws, &["--device", "cpu", "xseg", "apply", side, "--name", name])
}

#[test]
fn xseg_apply_kill_9_then_rerun_writes_every_face_once_and_damages_none() {
    const FACES: usize = 40;
    let (_tmp, ws) = workspace(2, FACES, |k| k <= 2);
    train_model(&ws, "m", 1);
    let dir = aligned(&ws, "dst");
    let (_copy_tmp, copy) = copy_of(&ws);
    let before: BTreeMap<String, (Vec<u8>, FaceMetadata)> =
        faces_in(&dir).iter().map(|p| (name(p), all_but_mask(p))).collect();
    assert_eq!(before.len(), FACES);

    // Killed as soon as the first face has its mask.
    let mut child = dfl_cmd(&ws, &["--device", "cpu", "xseg", "apply", "dst", "--name", "m"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(120, "the first mask", || masks(&dir).values().any(Option::is_some));
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = masks(&dir);
    let done: Vec<&String> =
        after_kill.iter().filter(|(_, m)| m.is_some()).map(|(n, _)| n).collect();
    eprintln!("killed with {} of {FACES} faces done", done.len());
    let done_bytes: Vec<Vec<u8>> =
        done.iter().map(|n| std::fs::read(dir.join(n)).unwrap()).collect();

    // The rerun writes the others only.
    let err = apply(&ws, "dst", "m");
    let want = format!(
        "masks written into {} face(s), {} already had them",
        FACES - done.len(),
        done.len()
    );
    assert!(err.contains(&want), "{want}: {err}");
    for (n, bytes) in done.iter().zip(&done_bytes) {
        assert!(&std::fs::read(dir.join(n)).unwrap() == bytes, "{n} was written again");
    }

    // Every face reads, carries the model's mask at its iteration, and is otherwise unchanged.
    let files = faces_in(&dir);
    let mut args = vec!["faceset".to_owned(), "info".to_owned()];
    args.extend(files.iter().map(|p| p.to_string_lossy().into_owned()));
    let out = dfl(&ws, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), FACES);
    let final_masks = masks(&dir);
    for (path, line) in files.iter().zip(&lines) {
        let mask = final_masks[&name(path)].as_ref().expect("every face has a mask");
        let want = json!({"model": "m", "iteration": 1, "size": SIZE, "bytes": mask.png.len()});
        assert_eq!(line["xseg_mask"], want, "{}", path.display());
        assert!(
            all_but_mask(path) == before[&name(path)],
            "{}: pixels or metadata changed",
            path.display()
        );
    }

    // The same masks, byte for byte, as an apply that was never interrupted.
    apply(&copy, "dst", "m");
    assert_eq!(masks(&aligned(&copy, "dst")), final_masks);
    let err = apply(&ws, "dst", "m");
    assert!(err.contains(&format!("written into 0 face(s), {FACES} already had them")), "{err}");
}

#[test]
fn remove_keeps_labels_and_fetch_copies_only_labelled_faces() {
    let labelled = |k: usize| k == 2 || k == 5;
    let (tmp, ws) = workspace(0, 6, labelled);
    let dir = aligned(&ws, "dst");
    for (k, path) in faces_in(&dir).iter().enumerate() {
        put_mask(path, "m", 30, 10 + k as i32);
    }
    let before: Vec<(Vec<u8>, FaceMetadata)> =
        faces_in(&dir).iter().map(|p| all_but_mask(p)).collect();

    let err = run_ok(&ws, &["xseg", "remove", "dst"]);
    assert!(err.contains("removed from 6 face(s)"), "{err}");
    for (path, was) in faces_in(&dir).iter().zip(&before) {
        let meta = read_metadata(path).unwrap();
        assert!(meta.xseg_mask.is_none(), "{}", path.display());
        let frame: usize = meta.source_filename.parse().unwrap();
        assert_eq!(!meta.seg_ie_polys.is_empty(), labelled(frame), "{}", path.display());
        assert!(
            all_but_mask(path) == *was,
            "{}: labels, metadata or pixels changed",
            path.display()
        );
    }
    let files: Vec<Vec<u8>> = faces_in(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    let err = run_ok(&ws, &["xseg", "remove", "dst"]);
    assert!(err.contains("removed from 0 face(s) (6 had none"), "{err}");
    let again: Vec<Vec<u8>> = faces_in(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(files == again, "a second remove writes nothing");

    // Fetch: exact copies of the labelled faces, by default beside the faceset.
    let copies = |out: &Path| {
        let got: Vec<String> = faces_in(out).iter().map(|p| name(p)).collect();
        assert_eq!(got, ["00002_0.jpg", "00005_0.jpg"], "{}", out.display());
        for n in &got {
            let (a, b) = (std::fs::read(out.join(n)).unwrap(), std::fs::read(dir.join(n)).unwrap());
            assert!(a == b, "{n} is a byte-for-byte copy");
        }
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 2, "nothing else in {}", out.display());
    };
    let err = run_ok(&ws, &["xseg", "fetch", "dst"]);
    assert!(err.contains("2 labelled face(s) copied"), "{err}");
    copies(&ws.join("data_dst/aligned_xseg"));
    let err = run_ok(&ws, &["xseg", "fetch", "dst"]);
    assert!(
        err.contains("0 labelled face(s) copied") && err.contains("(2 already there)"),
        "{err}"
    );
    let out = tmp.path().join("elsewhere");
    run_ok(&ws, &["xseg", "fetch", "dst", "--out", out.to_str().unwrap()]);
    copies(&out);
    assert_eq!(faces_in(&dir).len(), 6, "the faceset keeps every face");
}

#[test]
fn train_mask_auto_trains_on_a_faceset_where_only_some_faces_have_masks() {
    let (_tmp, ws) = workspace(4, 4, |k| k <= 2);
    train_model(&ws, "x", 0);
    apply(&ws, "src", "x");
    apply(&ws, "dst", "x");
    // Two dst faces extracted after the masks were applied.
    add_faces(&ws, "dst", 5..=6, |_| false);
    let train = |name: &str, mask: &str| {
        let args = [&["--device", "cpu", "train", "--name", name][..], &TINY[..]].concat();
        dfl(&ws, &[&args[..], &["--iterations", "2", "--mask", mask]].concat())
    };

    let out = train("auto", "auto");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("src: 4 of 4 faces train on their XSeg mask, 0 on the landmark hull"),
        "{err}"
    );
    assert!(
        err.contains("dst: 4 of 6 faces train on their XSeg mask, 2 on the landmark hull"),
        "{err}"
    );
    let state = ModelFolder::new(ws.join("model/auto")).latest_state().unwrap().unwrap();
    assert_eq!(state.iteration, 2);

    let out = train("strict", "xseg");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| l.contains("--mask xseg")).count(), 1, "{err}");
    assert!(err.contains("data_dst/aligned"), "names the folder: {err}");
    assert!(err.contains("2 of 6 faces have no applied XSeg mask"), "{err}");
    assert!(err.contains("`dfl xseg apply dst"), "says what to run: {err}");
    assert!(!ws.join("model/strict/LATEST").exists(), "nothing trained");
}

#[test]
fn no_labels_is_one_line_and_exit_2() {
    let (_tmp, ws) = workspace(3, 3, |_| false);
    let out = xseg_train(&ws, "m", &["--iterations", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    // Only the refusal: no "new model" line for a model that is never made.
    let error: Vec<&str> = err.lines().filter(|l| !l.contains("no CUDA device")).collect();
    assert_eq!(error.len(), 1, "{err}");
    assert!(error[0].contains("`dfl xseg labels import --side dst FILE.json`"), "{err}");
    assert!(
        error[0].contains("data_src/aligned") && error[0].contains("data_dst/aligned"),
        "{err}"
    );
    assert!(!ws.join("xseg/m/LATEST").exists() && !ws.join("xseg/m/config.json").exists());
}

#[test]
fn dry_run_prints_dfls_parameter_count() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["xseg", "train", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let (table, last) = text.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(last, "XSeg at 256×256: 17,569,317 parameters");
    // The layer table adds up to it.
    let sum: i64 =
        table.lines().map(|l| l.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(sum, 17_569_317, "{table}");
    assert!(table.lines().next().unwrap().starts_with("conv01.conv "), "{table}");
    assert!(!tmp.path().join("xseg").exists(), "a dry run writes nothing");
}

#[test]
fn sort_and_undo_keep_applied_masks() {
    let (_tmp, ws) = workspace(0, 6, |k| k == 3);
    let dir = aligned(&ws, "dst");
    for (k, path) in faces_in(&dir).iter().enumerate() {
        put_mask(path, "m", 100 + k as u64, 8 + 3 * k as i32);
    }
    // By frame: the mask and labels must follow their face through the renames.
    let by_frame = || -> BTreeMap<String, (Option<XSegMask>, Vec<SegPoly>)> {
        faces_in(&dir)
            .iter()
            .map(|p| {
                let meta = read_metadata(p).unwrap();
                (meta.source_filename, (meta.xseg_mask, meta.seg_ie_polys))
            })
            .collect()
    };
    let names = || faces_in(&dir).iter().map(|p| name(p)).collect::<Vec<_>>();
    let (want, before) = (by_frame(), names());
    assert_eq!(want.len(), 6);
    run_ok(&ws, &["sort", "dst", "--by", "brightness"]);
    assert_ne!(names(), before, "sort renamed the faces");
    assert_eq!(by_frame(), want, "masks moved with their faces");
    run_ok(&ws, &["sort", "dst", "--undo"]);
    assert_eq!(names(), before);
    assert_eq!(by_frame(), want, "and back");
}
