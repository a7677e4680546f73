//! `dfl merge` end to end through the real binary: a tiny model trained for a few iterations
//! on the bundled samples (Obama portraits as src, the carphone clip with a generated sound
//! track as dst) merges every frame, leaves everything outside the face mask byte-identical,
//! builds result.mp4 with the dst's frame count, rate and audio, resumes after kill -9 to the
//! same bytes, merges ranges, and refuses changed settings without --force.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opencv::core::{Mat, Point, Size};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

mod common;
use common::{copy_of, dfl, dfl_cmd, dst_frames, same_pixels, stderr};

/// Frames of the dst clip (all of carphone).
const FRAMES: usize = 120;

/// A workspace with both facesets extracted and a tiny model trained, made once per test run;
/// every test works on its own copy.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, ws) = TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let assets = dfl::assets::Assets::from_env();
        std::fs::create_dir_all(ws.join("data_src")).unwrap();
        for name in ["obama.jpg", "obama2.jpg", "obama3.jpg"] {
            let from = assets.sample(name).unwrap_or_else(|e| panic!("{e}"));
            std::fs::copy(from, ws.join("data_src").join(name)).unwrap();
        }
        let carphone = assets.sample("carphone_pristine.mp4").unwrap_or_else(|e| panic!("{e}"));
        let dst = ws.join("data_dst.mp4");
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&carphone)
            .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=10"])
            .args(["-c:v", "copy", "-c:a", "aac", "-shortest"])
            .arg(&dst)
            .status()
            .expect("ffmpeg runs");
        assert!(ok.success(), "making the dst clip with sound");
        common::extract_and_train_tiny(&ws);
        (tmp, ws)
    });
    ws
}

/// A fresh copy of the template workspace.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    copy_of(template())
}

fn merge(ws: &Path, extra: &[&str]) -> std::process::Output {
    dfl(ws, &[&["--device", "cpu", "merge"], extra].concat())
}

/// ffprobe's view of a stream: codec type, r_frame_rate and the decoded frame count.
fn streams(video: &Path) -> Vec<(String, String, String)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["stream=codec_type,r_frame_rate,nb_read_frames", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_owned(),
                f.get(1).unwrap_or(&"").to_string(),
                f.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn merged_files(ws: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ws.join("data_dst/merged"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn merge_changes_only_the_faces_and_builds_the_video_with_the_dst_timing_and_sound() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--masks"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(merged_files(&ws).len(), FRAMES);

    let source = streams(&ws.join("data_dst.mp4"));
    let result = streams(&ws.join("result.mp4"));
    let video =
        |s: &[(String, String, String)]| s.iter().find(|t| t.0 == "video").cloned().unwrap();
    assert_eq!(video(&result).2, FRAMES.to_string(), "frame count: {result:?}");
    assert_eq!(video(&result).1, video(&source).1, "frame rate");
    assert!(result.iter().any(|s| s.0 == "audio"), "the dst sound is there: {result:?}");

    // Every pixel farther than 3 px from the blend mask is the dst frame's own byte.
    let mut capture =
        VideoCapture::from_file(ws.join("data_dst.mp4").to_str().unwrap(), videoio::CAP_FFMPEG)
            .unwrap();
    let kernel =
        imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(7, 7), Point::new(-1, -1))
            .unwrap();
    let (mut changed_frames, mut checked_px) = (0, 0usize);
    for i in 1..=FRAMES {
        let mut frame = Mat::default();
        assert!(capture.read(&mut frame).unwrap(), "frame {i} decodes");
        let read = |dir: &str, flags| {
            imgcodecs::imread(
                ws.join(format!("data_dst/{dir}/{i:05}.png")).to_str().unwrap(),
                flags,
            )
            .unwrap()
        };
        let merged = read("merged", imgcodecs::IMREAD_COLOR);
        let mask = read("merged_mask", imgcodecs::IMREAD_GRAYSCALE);
        let mut dilated = Mat::default();
        imgproc::dilate_def(&mask, &mut dilated, &kernel).unwrap();
        let (f, m, d) = (
            frame.data_bytes().unwrap(),
            merged.data_bytes().unwrap(),
            dilated.data_bytes().unwrap(),
        );
        let mut changed = false;
        for (px, &inside) in d.iter().enumerate() {
            let (a, b) = (&f[px * 3..px * 3 + 3], &m[px * 3..px * 3 + 3]);
            if inside == 0 {
                assert_eq!(a, b, "frame {i} pixel {px} outside the mask changed");
                checked_px += 1;
            } else {
                changed |= a != b;
            }
        }
        changed_frames += usize::from(changed);
    }
    assert!(checked_px > FRAMES * 176 * 144 / 2, "most of each frame is outside the face");
    assert!(
        changed_frames >= FRAMES - 2,
        "the face changed in {changed_frames} of {FRAMES} frames"
    );
}

#[test]
fn a_merge_killed_with_sigkill_resumes_to_the_same_bytes() {
    // Both runs use the same batch size: predictions are only bit-stable for a fixed shape.
    let slow = ["-j", "1", "--device", "cpu", "merge", "--batch-size", "1"];
    let (_a, whole) = workspace();
    let out = dfl(&whole, &slow);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (_b, killed) = workspace();
    // 20 kills, each a random moment (fixed seed) after the run wrote a frame.
    let mut seed = 0x5eed_u64;
    for round in 0..20 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let mut child =
            dfl_cmd(&killed, &slow).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let (start, before) = (Instant::now(), merged_files(&killed).len());
        while merged_files(&killed).len() == before {
            assert!(start.elapsed() < Duration::from_secs(120), "round {round}: no progress");
            assert!(child.try_wait().unwrap().is_none(), "round {round}: ended before the kill");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis((seed >> 33) % 100));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let at_kill = merged_files(&killed).len();
    assert!(at_kill < FRAMES, "the merge was interrupted ({at_kill} frames written)");
    assert!(!killed.join("result.mp4").exists());

    let out = dfl(&killed, &slow);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (a, b) = (merged_files(&whole), merged_files(&killed));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let same = std::fs::read(x).unwrap() == std::fs::read(y).unwrap();
        assert!(same, "{} differs from the uninterrupted merge", y.display());
    }
    let result = |ws: &Path| std::fs::read(ws.join("result.mp4")).unwrap();
    assert!(result(&whole) == result(&killed), "result.mp4 differs");
}

#[test]
fn a_range_merges_only_its_frames_and_the_video_waits_for_the_rest() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--frames", "11..20"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names: Vec<String> = merged_files(&ws)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, (11..=20).map(|i| format!("{i:05}.png")).collect::<Vec<_>>());
    assert!(!ws.join("result.mp4").exists());

    let out = merge(&ws, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("10 done before"), "{}", stderr(&out));
    assert_eq!(merged_files(&ws).len(), FRAMES);
    assert!(ws.join("result.mp4").is_file());
}

#[test]
fn sorting_the_dst_faceset_leaves_the_merge_unchanged_and_trashed_faces_unswapped() {
    let (_tmp, ws) = workspace();
    let range = ["--frames", "1..12", "--no-video"];
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read =
        |ws: &Path| merged_files(ws).iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>();
    let before = read(&ws);
    let start_over = |ws: &Path| {
        std::fs::remove_dir_all(ws.join("data_dst/merged")).unwrap();
        std::fs::remove_file(ws.join("data_dst/merge.jsonl")).unwrap();
    };

    // Renamed faces: the merge finds them by the frame name in their metadata.
    let out = dfl(&ws, &["sort", "dst", "--by", "face-yaw"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!ws.join("data_dst/aligned/00001_0.jpg").exists(), "the faces were renamed");
    start_over(&ws);
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read(&ws), before, "the same merged bytes after sorting");

    // A face sorted into the trash is not swapped: its frame is the dst frame as it was.
    let out = dfl(&ws, &["sort", "dst", "--by", "origname", "--keep", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    start_over(&ws);
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = read(&ws);
    assert_eq!(after[..5], before[..5], "frames 1–5 keep their swapped faces");
    assert!(
        after[5..].iter().zip(&before[5..]).all(|(a, b)| a != b),
        "frames 6–12 are not swapped"
    );
}

#[test]
fn changed_settings_are_refused_without_force() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--frames", "1..3", "--no-video"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = std::fs::read(ws.join("data_dst/merged/00001.png")).unwrap();

    let out = merge(&ws, &["--frames", "1..3", "--no-video", "--blur", "40"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("merge.settings.json") && err.contains("--force") && err.contains("blur"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(ws.join("data_dst/merged/00001.png")).unwrap(),
        before,
        "nothing lost"
    );

    let out = merge(&ws, &["--frames", "1..3", "--no-video", "--blur", "40", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(std::fs::read(ws.join("data_dst/merged/00001.png")).unwrap(), before, "re-merged");
}

#[test]
fn preview_writes_the_frame_and_a_grid_of_choices() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--preview", "30", "--mask-mode", "dst"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let frame = imgcodecs::imread(
        ws.join("merge_preview_00030.png").to_str().unwrap(),
        imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    let grid = imgcodecs::imread(
        ws.join("merge_preview_00030_grid.png").to_str().unwrap(),
        imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    assert_eq!((frame.cols(), frame.rows()), (176, 144));
    assert!(grid.rows() > 4 * 192 && grid.cols() > 6 * 100, "{}×{}", grid.cols(), grid.rows());
    assert!(merged_files(&ws).is_empty(), "a preview merges nothing else");
}

#[test]
fn missing_models_and_bad_values_are_one_line_errors() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--model", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("dfl train --name nope") && err.lines().count() == 1, "{err}");

    let out = merge(&ws, &["--erode", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("erode"), "{}", stderr(&out));
    assert!(merged_files(&ws).is_empty());
}

/// Issue 14: a frame merged while its dst face was missing (copied unchanged) is merged again
/// once the face is back, instead of counting as done and ending up unswapped in result.mp4.
#[test]
fn r14_frames_whose_faces_came_back_are_merged_again() {
    let (_tmp, ws) = workspace();
    let aligned = ws.join("data_dst/aligned");
    let aside = ws.join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let moved: Vec<String> = (10..=19).map(|i| format!("{i:05}_0.jpg")).collect();
    for name in &moved {
        std::fs::rename(aligned.join(name), aside.join(name)).unwrap();
    }
    let out = merge(&ws, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let frame = ws.join("data_dst/merged/00012.png");
    let unswapped = std::fs::read(&frame).unwrap();
    let video_before = std::fs::read(ws.join("result.mp4")).unwrap();

    for name in &moved {
        std::fs::rename(aside.join(name), aligned.join(name)).unwrap();
    }
    let again = merge(&ws, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(err.contains("10 merged frame(s) have other dst faces now"), "{err}");
    assert_ne!(std::fs::read(&frame).unwrap(), unswapped, "frame 12 is swapped now");
    assert_ne!(std::fs::read(ws.join("result.mp4")).unwrap(), video_before, "result.mp4 redone");

    // A third run has nothing left to do.
    let third = merge(&ws, &["--no-video"]);
    assert!(!stderr(&third).contains("other dst faces"), "{}", stderr(&third));
}

fn merged_frame(ws: &Path, n: usize) -> Mat {
    let path = ws.join(format!("data_dst/merged/{n:05}.png"));
    imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap()
}

#[test]
fn scenes_of_the_merge_config_file_are_merged_with_their_own_settings() {
    let (_tmp, ws) = workspace();
    let config = ws.join("data_dst/merge.config.json");
    let scenes = |scene_settings: &str| {
        format!(
            r#"{{"default": {{"blur": 20}},
                 "scenes": [{{"frames": "3..4", "settings": {scene_settings}}},
                            {{"frames": "7", "settings": {{"mode": "original"}}}}]}}"#
        )
    };
    std::fs::write(&config, scenes(r#"{"mode": "original"}"#)).unwrap();
    let range = ["--frames", "1..8", "--no-video"];
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 scene(s)"), "{}", stderr(&out));
    let dst = dst_frames(&ws);
    let has_face = |n: usize| ws.join(format!("data_dst/aligned/{n:05}_0.jpg")).is_file();
    assert!((1..=8).all(has_face), "every frame of 1..8 has a face");
    for n in 1..=8 {
        let in_scene = [3, 4, 7].contains(&n);
        assert_eq!(
            same_pixels(&merged_frame(&ws, n), &dst[n - 1]),
            in_scene,
            "frame {n}: the dst frame itself exactly when its scene says mode original"
        );
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.join("data_dst/merge.settings.json")).unwrap())
            .unwrap();
    assert_eq!(saved["merge"]["blur"], 20, "{saved}");
    assert_eq!(saved["scenes"][0]["frames"], "3..4", "{saved}");
    assert_eq!(saved["scenes"][0]["settings"]["mode"], "original", "{saved}");
    // Keys a scene leaves out are the default's.
    assert_eq!(saved["scenes"][0]["settings"]["blur"], 20, "{saved}");

    // A flag changes the default, not the scenes: a scene frame stays the dst frame.
    let (_tmp2, ws2) = workspace();
    std::fs::write(ws2.join("data_dst/merge.config.json"), scenes(r#"{"mode": "original"}"#))
        .unwrap();
    let out = merge(&ws2, &["--frames", "3..3", "--no-video", "--mode", "raw-rgb"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(same_pixels(&merged_frame(&ws2, 3), &dst[2]));

    // A scene whose settings changed is refused like any changed setting.
    let before = std::fs::read(ws.join("data_dst/merged/00003.png")).unwrap();
    std::fs::write(&config, scenes(r#"{"mode": "overlay", "erode": 30}"#)).unwrap();
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("scenes") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(ws.join("data_dst/merged/00003.png")).unwrap(), before);
    let out = merge(&ws, &[&range[..], &["--force"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!same_pixels(&merged_frame(&ws, 3), &dst[2]), "frame 3 is swapped now");
    assert!(same_pixels(&merged_frame(&ws, 7), &dst[6]), "frame 7 keeps its scene");

    // A broken file stops the merge in one line naming it and the scene.
    std::fs::write(&config, r#"{"scenes": [{"frames": "2..5"}, {"frames": "5..6"}]}"#).unwrap();
    let out = merge(&ws, &range);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("merge.config.json: scene 2 (frames 5..6) overlaps scene 1")
            && err.lines().count() == 1,
        "{err}"
    );
    // --config FILE replaces it (and its scenes).
    std::fs::write(ws.join("cfg.json"), r#"{"mode": "original"}"#).unwrap();
    let cfg = ws.join("cfg.json");
    let out = merge(
        &ws,
        &["--frames", "1..8", "--no-video", "--force", "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(same_pixels(&merged_frame(&ws, 1), &dst[0]));
}

#[test]
fn the_tuner_merges_any_frame_in_any_order_as_dfl_merge_does() {
    let (_tmp, ws) = workspace();
    let out = merge(&ws, &["--frames", "1..40", "--no-video", "--batch-size", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dst = dst_frames(&ws);
    let workspace = dfl::workspace::Workspace::new(&ws);
    let mut tuner =
        dfl::merge::Tuner::load(&workspace, "m", None, tch::Device::Cpu).expect("the tuner loads");
    assert_eq!(tuner.frame_count(), FRAMES);
    assert!(tuner.is_current(&workspace));
    let cfg = dfl::merge::config::MergeConfig::default();
    let original = dfl::merge::config::MergeConfig {
        mode: dfl::merge::config::BlendMode::Original,
        ..cfg.clone()
    };
    // Jumps forward, back and far: each frame is the one `dfl merge` decoded.
    for n in [30, 5, 100, 99, 40, 1, 120, 60] {
        let shown = tuner.render(n - 1, &original).unwrap();
        assert!(same_pixels(&shown.image, &dst[n - 1]), "frame {n} is the dst frame {n}");
        assert_eq!(tuner.frame_name(n - 1).unwrap(), format!("{n:05}"));
    }
    // The merged frame is byte for byte what `dfl merge` wrote (one face per forward pass,
    // as `--batch-size 1`).
    for n in [12, 3, 40] {
        let shown = tuner.render(n - 1, &cfg).unwrap();
        assert!(same_pixels(&shown.image, &merged_frame(&ws, n)), "frame {n} as merged");
    }
    let grid = tuner.grid(11, &cfg).unwrap();
    assert!(grid.rows() > 4 * 192, "{}", grid.rows());
    assert!(tuner.render(FRAMES, &cfg).is_err(), "past the end");
}
