//! `dfl extract` end to end on the bundled samples (installed by scripts/setup.sh), through the
//! real binary: detection rates, crash safety under kill -9, bad input, resume rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::Duration;

use serde_json::Value;

mod common;
use common::{dfl, dfl_cmd, stderr};

fn sample(name: &str) -> PathBuf {
    dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Frame name → number of faces, from `extract.jsonl`.
fn log_entries(ws: &Path, side: &str) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(ws.join(format!("data_{side}/extract.jsonl"))).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()) // a torn line after a kill
        .map(|v| (v["frame"].as_str().unwrap().to_owned(), v["faces"].as_array().unwrap().len()))
        .collect()
}

/// File name → bytes of every file in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Extracts a bundled clip into `ws` and returns (frames logged, frames with a face).
fn extract_clip(ws: &Path, clip: &str, side: &str, size: &str) -> (usize, usize) {
    let clip = sample(clip);
    let out = dfl(ws, &["extract", side, "--input", clip.to_str().unwrap(), "--size", size]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let entries = log_entries(ws, side);
    (entries.len(), entries.values().filter(|&&n| n > 0).count())
}

#[test]
fn carphone_faces_are_found_in_almost_every_frame_and_carry_their_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    let (frames, with_face) = extract_clip(ws, "carphone_pristine.mp4", "src", "128");
    assert_eq!(frames, 120, "every frame is logged once");
    assert!(with_face >= 118, "a face in only {with_face} of 120 frames");

    let face = ws.join("data_src/aligned/00060_0.jpg");
    let info = dfl(ws, &["faceset", "info", face.to_str().unwrap()]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    let meta: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(meta["source_filename"], "00060");
    assert_eq!(meta["face_type"], "whole_face");
    assert_eq!(meta["size_px"], 128);
    assert_eq!(meta["source_size"], serde_json::json!([176, 144]));
    let lm = meta["landmarks"].as_array().unwrap();
    assert_eq!(lm.len(), 68);
    // Upright and centred: eyes level, above the mouth, on either side of the crop's middle.
    let pt = |i: usize| [lm[i][0].as_f64().unwrap(), lm[i][1].as_f64().unwrap()];
    let (r_eye, l_eye, mouth) = (pt(36), pt(45), pt(57));
    assert!((r_eye[1] - l_eye[1]).abs() < 128.0 * 0.05, "eyes not level: {r_eye:?} {l_eye:?}");
    assert!(r_eye[0] < 64.0 && l_eye[0] > 64.0 && mouth[1] > r_eye[1] + 10.0);
}

#[test]
fn megamind_faces_are_found_in_at_least_265_of_270_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (frames, with_face) = extract_clip(tmp.path(), "Megamind.avi", "dst", "64");
    assert_eq!(frames, 270);
    assert!(with_face >= 265, "a face in only {with_face} of 270 frames");
}

/// Kills per crash test: 20 random points of the run.
const KILLS: usize = 20;

/// A tiny deterministic generator for the kill times (no `rand` needed).
fn next_fraction(state: &mut u64) -> f64 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Counts the lines of the extract log (0 when it does not exist yet).
fn logged_frames(ws: &Path) -> usize {
    std::fs::read_to_string(ws.join("data_src/extract.jsonl")).map_or(0, |t| t.lines().count())
}

#[test]
fn killing_extraction_at_random_moments_still_gives_the_same_faceset() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = sample("carphone_pristine.mp4");
    // One worker: chunks of 4 frames, so 20 kills leave work for the final run.
    let args = ["-j", "1", "extract", "src", "--input", clip.to_str().unwrap(), "--size", "96"];
    let reference = tmp.path().join("reference");
    assert_eq!(dfl(&reference, &args).status.code(), Some(0));

    let ws = tmp.path().join("killed");
    let mut seed = 0x5eed_u64;
    for round in 0..KILLS {
        let mut child =
            dfl_cmd(&ws, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Wait until this run has finished a frame, then a random moment more, so each kill
        // lands in the middle of real work (writing faces, appending the log, …).
        let before = logged_frames(&ws);
        while logged_frames(&ws) == before {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: run ended before it was killed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_micros((60_000.0 * next_fraction(&mut seed)) as u64));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: run ended before it was killed"
        );
        child.kill().unwrap(); // SIGKILL: no destructors, no flush
        child.wait().unwrap();
        eprintln!("round {round}: killed with {} frames logged", logged_frames(&ws));
    }
    assert!(logged_frames(&ws) < 120, "the kills left work for the final run");
    let out = dfl(&ws, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (got, want) =
        (snapshot(&ws.join("data_src/aligned")), snapshot(&reference.join("data_src/aligned")));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "same face files");
    assert!(got == want, "face files differ in content");
    assert_eq!(log_entries(&ws, "src"), log_entries(&reference, "src"));
}

#[test]
fn an_image_folder_with_junk_extracts_the_images_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(sample("obama.jpg"), input.join("a_obama.jpg")).unwrap();
    std::fs::copy(sample("biden.jpg"), input.join("b_biden.jpg")).unwrap();
    std::fs::write(input.join("c_empty.jpg"), b"").unwrap();
    std::fs::write(input.join("notes.txt"), b"not an image").unwrap();
    let ws = tmp.path().join("ws");

    let out = dfl(
        &ws,
        &["extract", "src", "--input", input.to_str().unwrap(), "--size", "64", "--debug"],
    );
    assert_eq!(out.status.code(), Some(1), "a skipped image means exit 1: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("notes.txt") && err.contains("c_empty"), "{err}");
    let faces = snapshot(&ws.join("data_src/aligned"));
    assert_eq!(faces.keys().collect::<Vec<_>>(), ["a_obama_0.jpg", "b_biden_0.jpg"]);
    assert!(ws.join("data_src/aligned_debug/a_obama.jpg").is_file());

    // A rerun has nothing left to do but the unreadable image, and keeps every face.
    let again = dfl(&ws, &["extract", "src", "--input", input.to_str().unwrap(), "--size", "64"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(snapshot(&ws.join("data_src/aligned")), faces);
}

#[test]
fn resuming_with_other_settings_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(sample("obama2.jpg"), input.join("o.jpg")).unwrap();
    let ws = tmp.path().join("ws");
    let run = |extra: &[&str]| {
        dfl(&ws, &[&["extract", "dst", "--input", input.to_str().unwrap()], extra].concat())
    };
    assert_eq!(run(&["--size", "64"]).status.code(), Some(0));
    let before = snapshot(&ws.join("data_dst/aligned"));

    let refused = run(&["--size", "128"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = stderr(&refused);
    assert!(err.contains("size_px: 64 → 128") && err.contains("--force"), "{err}");
    assert_eq!(snapshot(&ws.join("data_dst/aligned")), before, "nothing changed");

    // A sort renamed the faces; the forced re-extraction must not mix new faces with them.
    let sorted = dfl(&ws, &["sort", "dst", "--by", "blur"]);
    assert_eq!(sorted.status.code(), Some(0), "{}", stderr(&sorted));
    let forced = run(&["--size", "128", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    let meta =
        dfl(&ws, &["faceset", "info", ws.join("data_dst/aligned/o_0.jpg").to_str().unwrap()]);
    let meta: Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(meta["size_px"], 128);
    assert_eq!(snapshot(&ws.join("data_dst/aligned")).len(), 1, "only the new face");
    let aside = ws.join("data_dst/aligned.replaced");
    let old_faces: Vec<Vec<u8>> =
        snapshot(&aside).into_iter().filter(|(n, _)| n.ends_with(".jpg")).map(|(_, b)| b).collect();
    assert_eq!(old_faces, before.into_values().collect::<Vec<_>>(), "the sorted faces, aside");
    assert!(aside.join("sort.history.jsonl").is_file(), "the sort history went with its faces");
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let fake = tmp.path().join("clip.mp4");
    std::fs::write(&fake, b"this is not a video").unwrap();
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    for (input, needle) in
        [(&fake, "clip.mp4"), (&empty, "empty.mp4"), (&tmp.path().join("nope.mp4"), "nope.mp4")]
    {
        let out = dfl(&ws, &["-q", "extract", "src", "--input", input.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.starts_with("dfl: ") && err.contains(needle), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // No input at all in the workspace.
    let out = dfl(&ws, &["extract", "dst"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data_dst.mp4"), "{}", stderr(&out));
}

#[test]
fn missing_models_say_to_run_setup() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("photos");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(sample("obama.jpg"), input.join("o.jpg")).unwrap();
    let out =
        dfl_cmd(&tmp.path().join("ws"), &["extract", "src", "--input", input.to_str().unwrap()])
            .env("DFL_HOME", tmp.path().join("no-home"))
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("scripts/setup.sh"), "{}", stderr(&out));
}

#[test]
fn a_truncated_video_keeps_what_decodes_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample("Megamind.avi")).unwrap();
    let clip = tmp.path().join("cut.avi");
    std::fs::write(&clip, &bytes[..300_000]).unwrap();
    let ws = tmp.path().join("ws");
    let args =
        ["extract", "dst", "--input", clip.to_str().unwrap(), "--size", "64", "--keep-frames"];
    let out = dfl(&ws, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    let entries = log_entries(&ws, "dst");
    assert!(entries.len() > 30 && entries.len() < 270, "{} frames", entries.len());
    let kept = snapshot(&ws.join("data_dst/frames"));
    assert_eq!(kept.len(), entries.len(), "--keep-frames wrote every decoded frame");
    assert!(kept.contains_key("00001.png"));
    assert!(entries.values().filter(|&&n| n > 0).count() > 30);
}
