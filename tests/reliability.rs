//! The bad-input and fault corpus: what a hostile-but-realistic user does to every stage
//! (malformed media, face files, configs and checkpoints; absurd flags; a second run on the
//! same thing; a moved workspace). Every case asserts the exit code, one clear line (the file
//! involved, the next step), no panic, and that nothing already produced was lost.
//!
//! The findings of issue 14 are named `r14_…`; `docs/reliability.md` lists the cases.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{TINY, copy_dir, copy_of, dfl, dfl_cmd, stderr, wait_for};

/// A workspace with both facesets extracted from the bundled stills (Obama as src, Biden and
/// the astronaut as dst, as image folders) and model `m` trained for 2 iterations; made once,
/// every case works on its own copy.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, ws) = TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        for (side, names) in [
            ("src", &["obama.jpg", "obama2.jpg", "obama3.jpg"][..]),
            ("dst", &["biden.jpg", "astronaut.png"]),
        ] {
            let dir = ws.join(format!("data_{side}"));
            std::fs::create_dir_all(&dir).unwrap();
            for name in names {
                std::fs::copy(sample(name), dir.join(name)).unwrap();
            }
            let out = dfl(&ws, &["-q", "extract", side, "--size", "96"]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
        let train = [&["-q", "--device", "cpu", "train", "--name", "m"], &TINY[..]].concat();
        let out = dfl(&ws, &[&train[..], &["--iterations", "2"]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (tmp, ws)
    });
    ws
}

fn sample(name: &str) -> PathBuf {
    dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"))
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    copy_of(template())
}

/// Asserts a fatal error: exit 2, no panic, and the error as one line `dfl: …` (the last line;
/// every line before it is a dfl message too) containing every word of `says`, said once.
fn fatal(out: &Output, says: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(err.lines().all(|l| l.starts_with("dfl: ")), "every line a dfl message: {err}");
    let line = err.lines().last().unwrap_or_default();
    for word in says {
        assert!(line.contains(word), "{word:?} missing from: {err}");
    }
    assert_eq!(err.matches(line).count(), 1, "the error is said once: {err}");
    line.to_owned()
}

/// Asserts a run that finished but skipped something: exit 1, a warning naming it, no panic.
fn skipped(out: &Output, says: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    for word in says {
        assert!(err.contains(word), "{word:?} missing from: {err}");
    }
    err
}

/// Every file under `dir` with its bytes, to show that a failed run changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().ends_with(".lock"))
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

/// The first face file of a side.
fn first_face(ws: &Path, side: &str) -> PathBuf {
    let mut faces: Vec<PathBuf> = std::fs::read_dir(ws.join(format!("data_{side}/aligned")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    faces.sort();
    faces.remove(0)
}

/// Rewrites the metadata inside the face file `path` with `edit`.
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(path).unwrap();
    let json = dfl::face::dflimg::read(&bytes).unwrap().unwrap();
    let mut meta: Value = serde_json::from_slice(&json).unwrap();
    edit(&mut meta);
    let new = dfl::face::dflimg::embed(&bytes, &serde_json::to_vec(&meta).unwrap()).unwrap();
    std::fs::write(path, new).unwrap();
}

fn train(ws: &Path, extra: &[&str]) -> Output {
    dfl(ws, &[&["--device", "cpu", "train", "--name", "m"], extra].concat())
}

fn latest_checkpoint(ws: &Path) -> PathBuf {
    let name = std::fs::read_to_string(ws.join("model/m/LATEST")).unwrap();
    ws.join("model/m/checkpoints").join(name.trim())
}

// ---- malformed media -----------------------------------------------------------------------

#[test]
fn a_video_that_is_not_a_video_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("data_src.mp4"), b"definitely not h264").unwrap();
    fatal(&dfl(tmp.path(), &["extract", "src"]), &["data_src.mp4", "ffprobe"]);
}

#[test]
fn an_empty_video_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("data_dst.mp4"), b"").unwrap();
    fatal(&dfl(tmp.path(), &["extract", "dst"]), &["data_dst.mp4"]);
}

#[test]
fn an_input_that_does_not_exist_says_to_pass_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["extract", "src", "--input", "/nowhere/clip.mp4"]);
    fatal(&out, &["/nowhere/clip.mp4", "--input"]);
}

#[test]
fn a_single_image_as_input_says_to_pass_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out =
        dfl(tmp.path(), &["extract", "src", "--input", sample("obama.jpg").to_str().unwrap()]);
    fatal(&out, &["obama.jpg", "folder"]);
}

#[test]
fn junk_in_an_image_folder_is_skipped_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data_src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(sample("obama.jpg"), dir.join("a.jpg")).unwrap();
    std::fs::write(dir.join("b.jpg"), b"not a jpeg").unwrap();
    skipped(&dfl(tmp.path(), &["extract", "src", "--size", "64"]), &["b.jpg"]);
    assert_eq!(std::fs::read_dir(dir.join("aligned")).unwrap().count(), 1, "a.jpg's face");
}

/// A PNG whose header claims 100000×100000 pixels: OpenCV refuses it with an assertion that
/// spans two lines; the warning is one line that names the file.
#[test]
fn r14_an_image_with_a_huge_header_is_one_line_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data_src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(sample("obama.jpg"), dir.join("a.jpg")).unwrap();
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32fast::hash(&c[4..]);
        c.extend_from_slice(&crc.to_be_bytes());
        c
    };
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0, 0, 0, 0, 1]));
    png.extend(chunk(b"IEND", &[]));
    std::fs::write(dir.join("huge.png"), png).unwrap();
    let err = skipped(&dfl(tmp.path(), &["extract", "src", "--size", "64"]), &["huge.png"]);
    for line in err.lines() {
        assert!(line.starts_with("dfl: "), "every line is a dfl message: {err}");
    }
}

#[test]
fn r14_a_video_without_faces_warns_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10"])
        .arg(tmp.path().join("data_src.mp4"))
        .status()
        .unwrap();
    assert!(ok.success());
    skipped(&dfl(tmp.path(), &["extract", "src"]), &["no face was found in any of the 10 frames"]);
}

// ---- malformed face files -----------------------------------------------------------------

#[test]
fn r14_faceset_info_refuses_a_truncated_face() {
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "src");
    let bytes = std::fs::read(&face).unwrap();
    std::fs::write(&face, &bytes[..bytes.len() / 2]).unwrap();
    let out = dfl(&ws, &["faceset", "info", face.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn r14_faceset_info_refuses_landmarks_far_outside_the_image() {
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "src");
    edit_metadata(&face, |m| m["landmarks"][3] = serde_json::json!([1e30, 1e30]));
    let out = dfl(&ws, &["faceset", "info", face.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("far outside"), "{}", stderr(&out));
}

#[test]
fn faceset_info_names_a_file_that_is_not_a_face() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.jpg");
    std::fs::write(&junk, b"junk").unwrap();
    let out = dfl(tmp.path(), &["faceset", "info", junk.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("junk.jpg"), "{}", stderr(&out));
}

#[test]
fn r14_sort_by_identity_skips_a_face_with_absurd_landmarks_and_names_it() {
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "src");
    edit_metadata(&face, |m| m["landmarks"][3] = serde_json::json!([1e30, 1e30]));
    let name = face.file_name().unwrap().to_string_lossy().into_owned();
    let out = dfl(&ws, &["sort", "src", "--by", "identity"]);
    skipped(&out, &[&name, "far outside"]);
    assert!(face.is_file(), "the bad face is left where it is");
}

#[test]
fn a_face_whose_metadata_is_broken_is_left_alone_by_sort() {
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "src");
    edit_metadata(&face, |m| m["landmarks"] = Value::Null);
    let before = std::fs::read(&face).unwrap();
    skipped(&dfl(&ws, &["sort", "src", "--by", "blur"]), &["bad dfl metadata"]);
    assert_eq!(std::fs::read(&face).unwrap(), before);
}

#[test]
fn r14_training_with_a_file_that_is_not_a_face_trains_and_exits_1() {
    let (_tmp, ws) = workspace();
    std::fs::write(ws.join("data_src/aligned/junk.jpg"), b"junk").unwrap();
    let out = train(&ws, &["--iterations", "1"]);
    let err = skipped(&out, &["junk.jpg", "not trained on"]);
    assert_eq!(err.matches("junk.jpg").count(), 1, "warned once: {err}");
}

#[test]
fn r14_merging_with_a_corrupt_dst_face_exits_1() {
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "dst");
    let bytes = std::fs::read(&face).unwrap();
    std::fs::write(&face, &bytes[..bytes.len() / 3]).unwrap();
    let out = dfl(&ws, &["--device", "cpu", "merge", "--no-video"]);
    skipped(&out, &["truncated", "not usable faces"]);
}

#[test]
fn a_face_file_with_a_name_that_is_not_utf8_is_named_and_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, ws) = workspace();
    let face = first_face(&ws, "src");
    let odd = face.with_file_name(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::rename(&face, &odd).unwrap();
    skipped(&dfl(&ws, &["sort", "src", "--by", "blur"]), &["not valid UTF-8"]);
    assert!(odd.is_file());
}

// ---- malformed configs and checkpoints ------------------------------------------------------

#[test]
fn a_garbage_config_json_is_named_and_the_checkpoint_kept() {
    let (_tmp, ws) = workspace();
    std::fs::write(ws.join("model/m/config.json"), b"{not json").unwrap();
    let before = snapshot(&ws.join("model/m/checkpoints"));
    fatal(&train(&ws, &["--iterations", "1"]), &["config.json"]);
    assert_eq!(snapshot(&ws.join("model/m/checkpoints")), before);
}

#[test]
fn an_absurd_value_in_config_json_is_refused_before_anything_is_allocated() {
    let (_tmp, ws) = workspace();
    let path = ws.join("model/m/config.json");
    for (key, value) in [("batch_size", "0"), ("bg_style_power", "1e300")] {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut cfg: Value = serde_json::from_str(&text).unwrap();
        cfg[key] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
        fatal(&train(&ws, &["--iterations", "1"]), &["config.json", key]);
        std::fs::write(&path, text).unwrap();
    }
}

#[test]
fn a_config_json_asking_for_a_giant_network_is_refused() {
    let (_tmp, ws) = workspace();
    let path = ws.join("model/m/config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["model"]["resolution"] = serde_json::json!(1_000_000_000i64);
    let file = ws.join("giant.json");
    std::fs::write(&file, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out =
        dfl(&ws, &["--device", "cpu", "train", "--name", "n", "--config", file.to_str().unwrap()]);
    fatal(&out, &["giant.json", "resolution"]);
    assert!(!ws.join("model/n").exists(), "nothing was created");
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused() {
    let (_tmp, ws) = workspace();
    let file = ws.join("typo.json");
    std::fs::write(&file, br#"{"batch_sise": 4}"#).unwrap();
    let out = dfl(&ws, &["train", "--name", "n", "--config", file.to_str().unwrap()]);
    fatal(&out, &["typo.json"]);
}

#[test]
fn a_corrupt_state_json_is_named_with_what_to_do() {
    let (_tmp, ws) = workspace();
    let state = latest_checkpoint(&ws).join("state.json");
    std::fs::write(&state, b"{\"iteration\": ").unwrap();
    let before = snapshot(&ws.join("model/m"));
    fatal(&train(&ws, &["--iterations", "1"]), &["state.json", "corrupt"]);
    assert_eq!(snapshot(&ws.join("model/m")), before, "nothing was lost or written");
}

#[test]
fn truncated_weights_are_named_and_never_overwritten() {
    let (_tmp, ws) = workspace();
    let weights = latest_checkpoint(&ws).join("weights.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let before = snapshot(&ws.join("model/m"));
    fatal(&train(&ws, &["--iterations", "1"]), &["weights.safetensors"]);
    fatal(&dfl(&ws, &["--device", "cpu", "merge", "--no-video"]), &["weights.safetensors"]);
    assert_eq!(snapshot(&ws.join("model/m")), before);
}

#[test]
fn r14_a_damaged_latest_pointer_resumes_from_the_checkpoint_on_disk() {
    for damage in [Some(""), Some("nonsense"), None] {
        let (_tmp, ws) = workspace();
        let pointer = ws.join("model/m/LATEST");
        match damage {
            Some(text) => std::fs::write(&pointer, text).unwrap(),
            None => std::fs::remove_file(&pointer).unwrap(),
        }
        let out = train(&ws, &["--iterations", "1"]);
        assert_eq!(out.status.code(), Some(0), "{damage:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("using the newest complete checkpoint"), "{err}");
        assert!(err.contains("resuming") && !err.contains("new model"), "{err}");
        let state: Value = serde_json::from_slice(
            &std::fs::read(latest_checkpoint(&ws).join("state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["iteration"], 3, "{damage:?}: 2 before, 1 now");
    }
}

#[test]
fn a_corrupt_stage_settings_file_is_named_with_force_as_the_way_out() {
    let (_tmp, ws) = workspace();
    std::fs::write(ws.join("data_src/extract.settings.json"), b"[").unwrap();
    fatal(&dfl(&ws, &["extract", "src", "--size", "96"]), &["extract.settings.json", "--force"]);
}

#[test]
fn a_corrupt_sort_journal_stops_sort_and_moves_nothing() {
    let (_tmp, ws) = workspace();
    std::fs::write(ws.join("data_src/sort.journal.json"), b"{\"phase\":").unwrap();
    let before = snapshot(&ws.join("data_src/aligned"));
    fatal(&dfl(&ws, &["sort", "src", "--by", "blur"]), &["sort.journal.json", "by hand"]);
    assert_eq!(snapshot(&ws.join("data_src/aligned")), before);
}

#[test]
fn a_garbage_score_cache_is_measured_again() {
    let (_tmp, ws) = workspace();
    std::fs::write(ws.join("data_src/sort.scores.jsonl"), b"\x00\xff{{{\n").unwrap();
    let out = dfl(&ws, &["sort", "src", "--by", "blur"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ---- absurd flags ---------------------------------------------------------------------------

#[test]
fn r14_an_absurd_batch_size_is_a_usage_error_not_a_crash() {
    let (_tmp, ws) = workspace();
    for bs in ["99999999999", "100000", "0", "-3"] {
        let out = train(&ws, &[&format!("--batch-size={bs}"), "--iterations", "1"]);
        assert_eq!(out.status.code(), Some(2), "{bs}: {}", stderr(&out));
        assert!(stderr(&out).contains("batch size from 1 to"), "{bs}: {}", stderr(&out));
    }
}

#[test]
fn r14_a_batch_that_does_not_fit_in_memory_says_what_fits() {
    let (_tmp, ws) = workspace();
    let out = train(&ws, &["--batch-size", "65536", "--iterations", "1"]);
    let line = fatal(&out, &["batch 65536", "GiB", "--batch-size"]);
    assert!(line.contains("at most") || line.contains("smaller --resolution"), "{line}");
}

#[test]
fn r14_an_absurd_learning_rate_is_refused_and_a_bad_one_saves_nothing() {
    let (_tmp, ws) = workspace();
    for lr in ["1e6", "NaN", "0", "-1"] {
        let out = train(&ws, &[&format!("--lr={lr}"), "--iterations", "1"]);
        assert_eq!(out.status.code(), Some(2), "{lr}: {}", stderr(&out));
        assert!(stderr(&out).contains("learning rate"), "{lr}: {}", stderr(&out));
    }
    // A rate that parses but diverges every step: nothing is saved, the config keeps its lr.
    let config = std::fs::read(ws.join("model/m/config.json")).unwrap();
    let checkpoints = snapshot(&ws.join("model/m/checkpoints"));
    // 18 iterations from 2: checks at 10 and 20 both roll back at this rate.
    let out = train(&ws, &["--lr", "1", "--iterations", "18"]);
    let line = fatal(&out, &["nothing was saved", "--lr", "--clip-grad true"]);
    assert!(!line.contains("saved iteration"), "{line}");
    assert_eq!(std::fs::read(ws.join("model/m/config.json")).unwrap(), config);
    assert_eq!(snapshot(&ws.join("model/m/checkpoints")), checkpoints);
}

#[test]
fn r14_a_failed_first_run_leaves_no_model_behind() {
    let (_tmp, ws) = workspace();
    // The facesets are whole_face: a head model cannot be cut from them, so the run fails
    // before its first save.
    let new = |extra: &[&str]| {
        let flags = ["--device", "cpu", "train", "--name", "fresh", "--iterations", "1"];
        dfl(&ws, &[&flags[..], &TINY[..], extra].concat())
    };
    fatal(&new(&["--face-type", "head"]), &["--face-type head"]);
    assert!(!ws.join("model/fresh").exists(), "no half model");
    // So the next try with other options is a new model, not a "resume" that refuses them.
    let other = new(&["--face-type", "full"]);
    assert_eq!(other.status.code(), Some(0), "{}", stderr(&other));
}

#[test]
fn r14_clip_grad_is_a_flag_and_is_saved() {
    let (_tmp, ws) = workspace();
    let out = train(&ws, &["--clip-grad", "true", "--iterations", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(ws.join("model/m/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["optimizer"]["clip_grad_norm"], 1.0);
}

#[test]
fn a_resolution_that_is_not_a_multiple_of_16_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["train", "--name", "x", "--model", "df", "--resolution", "100"]);
    fatal(&out, &["resolution 100"]);
}

#[test]
fn r14_a_nan_score_filter_is_a_usage_error() {
    let (_tmp, ws) = workspace();
    for flag in ["--min-score", "--max-score"] {
        let out = dfl(&ws, &["sort", "src", "--by", "blur", flag, "NaN"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("finite"), "{}", stderr(&out));
    }
}

#[test]
fn merge_values_out_of_range_are_named() {
    let (_tmp, ws) = workspace();
    fatal(&dfl(&ws, &["--device", "cpu", "merge", "--blur", "999"]), &["blur"]);
    let out = dfl(&ws, &["--device", "cpu", "merge", "--frames", "0..5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = dfl(&ws, &["--device", "cpu", "merge", "--fps", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn zero_jobs_and_tiny_extraction_sizes_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["--jobs", "0", "status"][..],
        &["extract", "src", "--size", "0"],
        &["extract", "src", "--jpeg-quality", "101"],
    ] {
        let out = dfl(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

// ---- a second run on the same thing -----------------------------------------------------------

/// A child process that is killed when dropped (a failed assertion unwinds through it).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 14: two `dfl train` on one model both ran, and one's iterations were lost; now the
/// second is refused, naming the first, and so is a sort of a faceset it reads.
#[test]
fn r14_a_second_run_on_a_model_or_a_faceset_in_use_is_refused_naming_the_holder() {
    let (_tmp, ws) = workspace();
    let first = dfl_cmd(
        &ws,
        &[
            "--device",
            "cpu",
            "train",
            "--name",
            "m",
            "--iterations",
            "100000",
            "--preview-every",
            "1",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Killed if an assertion below fails, so a failing test leaves no training behind.
    let mut first = KillOnDrop(first);
    std::fs::remove_file(ws.join("model/m/preview.png")).unwrap();
    wait_for(120, "the first run to train", || ws.join("model/m/preview.png").is_file());
    let pid = first.0.id().to_string();

    let second = train(&ws, &["--iterations", "5"]);
    fatal(&second, &["model m is in use by pid", &pid, "train --name m"]);
    let sort = dfl(&ws, &["sort", "src", "--by", "blur"]);
    fatal(&sort, &["the src faceset is in use by pid", &pid]);
    let extract = dfl(&ws, &["extract", "dst", "--size", "96"]);
    fatal(&extract, &["the dst faceset is in use by pid", &pid]);

    let ok = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(ok.success());
    assert!(first.0.wait().unwrap().success());
    let state: Value =
        serde_json::from_slice(&std::fs::read(latest_checkpoint(&ws).join("state.json")).unwrap())
            .unwrap();
    assert!(state["iteration"].as_u64().unwrap() > 2, "the first run's work was saved");
    // With the first run gone, the lock is gone with it.
    let again = train(&ws, &["--iterations", "1"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

#[test]
fn r14_a_merge_while_another_writes_the_output_is_refused() {
    let (_tmp, ws) = workspace();
    let held = dfl::lock::exclusive(&ws.join("data_dst/merge.lock"), "the merge output").unwrap();
    let out = dfl(&ws, &["--device", "cpu", "merge", "--no-video"]);
    fatal(&out, &["in use by pid", &std::process::id().to_string()]);
    assert!(!ws.join("data_dst/merged").exists(), "nothing was written");
    drop(held);
    let out = dfl(&ws, &["--device", "cpu", "merge", "--no-video"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ---- where things are -------------------------------------------------------------------------

/// Issue 14: a moved or renamed workspace refused every resume (absolute paths in the saved
/// settings).
#[test]
fn r14_a_moved_workspace_resumes() {
    let (tmp, ws) = workspace();
    let moved = tmp.path().join("elsewhere");
    std::fs::rename(&ws, &moved).unwrap();
    let out = dfl(&moved, &["extract", "src", "--size", "96"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("3 done before"), "{}", stderr(&out));
    let merge = || dfl(&moved, &["--device", "cpu", "merge", "--no-video"]);
    assert_eq!(merge().status.code(), Some(0));
    let renamed = tmp.path().join("renamed");
    std::fs::rename(&moved, &renamed).unwrap();
    let again = dfl(&renamed, &["--device", "cpu", "merge", "--no-video"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains("2 done before"), "{}", stderr(&again));
}

/// Issue 14: `dfl extract dst --input clip` worked, then `dfl merge` dead-ended on "no dst
/// input". Merge (and eval) find the input the dst faces came from, and take `--input`.
#[test]
fn r14_merge_finds_the_input_extract_was_given() {
    let (tmp, ws) = workspace();
    let frames = tmp.path().join("footage");
    copy_dir(&ws.join("data_dst"), &frames);
    std::fs::remove_dir_all(frames.join("aligned")).unwrap();
    for entry in std::fs::read_dir(&frames).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !dfl::workspace::is_image_file(&path) {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::remove_dir_all(ws.join("data_dst")).unwrap();
    let out = dfl(&ws, &["extract", "dst", "--size", "96", "--input", frames.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged = dfl(&ws, &["--device", "cpu", "merge", "--no-video"]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert_eq!(std::fs::read_dir(ws.join("data_dst/merged")).unwrap().count(), 2);
    // With the faces' source gone, the error says to pass --input; with it, merge works.
    let away = tmp.path().join("moved-footage");
    std::fs::rename(&frames, &away).unwrap();
    let lost = dfl(&ws, &["--device", "cpu", "merge", "--no-video", "--force"]);
    fatal(&lost, &["no dst input", "--input"]);
    // The input moved, so its recorded path changed: resuming needs --force.
    let flags = ["--device", "cpu", "merge", "--no-video", "--force", "--input"];
    let given = dfl(&ws, &[&flags[..], &[away.to_str().unwrap()]].concat());
    assert_eq!(given.status.code(), Some(0), "{}", stderr(&given));
}

#[test]
fn r14_a_cuda_device_that_is_not_there_stops_extract_too() {
    let tmp = tempfile::tempdir().unwrap();
    let count = dfl::device::cuda_device_count();
    let out = dfl(tmp.path(), &["--device", &format!("cuda:{}", count + 6), "extract", "src"]);
    fatal(&out, &["CUDA"]);
}

#[test]
fn merge_without_a_model_says_to_train() {
    let (_tmp, ws) = workspace();
    std::fs::remove_dir_all(ws.join("model")).unwrap();
    let out = dfl(&ws, &["--device", "cpu", "merge"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("dfl train"), "{}", stderr(&out));
}

#[test]
fn eval_before_merge_says_to_merge() {
    let (_tmp, ws) = workspace();
    fatal(&dfl(&ws, &["eval"]), &["no merged frames", "dfl merge"]);
}

#[test]
fn a_model_name_that_escapes_the_model_folder_is_refused() {
    let (_tmp, ws) = workspace();
    for name in ["../x", "a/b", ".."] {
        let out = dfl(&ws, &["train", "--name", name, "--iterations", "1"]);
        fatal(&out, &["not usable as a folder name"]);
    }
}

// ---- a full disk ------------------------------------------------------------------------------

/// Runs the script `body` as root of a private mount namespace (`unshare -rm`), where it may
/// mount a small tmpfs; returns its `KEY=value` lines.
fn in_mount_namespace(body: &str, args: &[&Path]) -> std::collections::HashMap<String, String> {
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", body, "sh"])
        .args(args)
        .output()
        .expect("unshare runs");
    assert!(out.status.success(), "the script failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// A save that runs out of disk: one line naming the file and free space, exit 2, no partial
/// checkpoint folder, the previous set still the latest and loadable.
#[test]
fn r14_a_save_on_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_debris() {
    let (tmp, ws) = workspace();
    let mnt = tmp.path().join("small");
    let err_file = tmp.path().join("err.txt");
    let dfl_bin = Path::new(env!("CARGO_BIN_EXE_dfl"));
    // The tmpfs holds the workspace and half a checkpoint set more: the next save cannot fit.
    let script = r#"
        set -e
        ws=$1; mnt=$2; dfl=$3; err=$4
        used=$(du -sk "$ws" | cut -f1)
        set_kb=$(du -sk "$ws"/model/m/checkpoints | cut -f1)
        mkdir -p "$mnt"
        mount -t tmpfs -o size=$((used + set_kb / 2 + 64))k tmpfs "$mnt"
        cp -a "$ws" "$mnt/ws"
        before=$(cat "$mnt/ws/model/m/LATEST")
        set +e
        "$dfl" -w "$mnt/ws" --device cpu train --name m --iterations 1 2>"$err"
        echo "EXIT=$?"
        set -e
        [ "$(cat "$mnt/ws/model/m/LATEST")" = "$before" ] && echo "LATEST=unchanged"
        echo "SETS=$(ls "$mnt/ws/model/m/checkpoints" | wc -l)"
        echo "ITERATION=$(grep -o '"iteration": *[0-9]*' "$mnt/ws/model/m/checkpoints/$before/state.json" | grep -o '[0-9]*$')"
    "#;
    let facts = in_mount_namespace(script, &[&ws, &mnt, dfl_bin, &err_file]);
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert_eq!(facts.get("EXIT").map(String::as_str), Some("2"), "{facts:?} {err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("No space left") && line.contains("model/m"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(facts.get("LATEST").map(String::as_str), Some("unchanged"), "{facts:?}");
    assert_eq!(facts.get("SETS").map(String::as_str), Some("1"), "no partial set: {facts:?}");
    assert_eq!(facts.get("ITERATION").map(String::as_str), Some("2"), "{facts:?}");
}
