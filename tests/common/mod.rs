//! Helpers shared by the integration tests that drive the real `dfl` binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `dfl --workspace WS ARGS…`, with dfl's own environment variables cleared.
pub fn dfl_cmd(ws: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfl"));
    cmd.arg("--workspace").arg(ws).args(args).env_remove("DFL_WORKSPACE");
    cmd
}

/// Runs `dfl --workspace WS ARGS…` to completion.
pub fn dfl(ws: &Path, args: &[&str]) -> Output {
    dfl_cmd(ws, args).output().expect("the dfl binary runs")
}

/// Runs `dfl ARGS…` inside `dir` (no `--workspace`: the default `workspace`, or what the
/// arguments say), with dfl's own environment variables cleared.
pub fn dfl_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dfl"))
        .args(args)
        .current_dir(dir)
        .env_remove("DFL_WORKSPACE")
        .output()
        .expect("the dfl binary runs")
}

/// The run's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dfl train` flags of a tiny DF that trains in a fraction of a second per step.
pub const TINY: [&str; 14] = [
    "--model",
    "df",
    "--resolution",
    "64",
    "--ae-dims",
    "32",
    "--e-dims",
    "16",
    "--d-dims",
    "16",
    "--d-mask-dims",
    "16",
    "--batch-size",
    "2",
];

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the workspace `template` in a new temporary folder (kept alive by the `TempDir`).
pub fn copy_of(template: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    copy_dir(template, &ws);
    (tmp, ws)
}

/// Waits up to `secs` seconds for `cond`, polling every 20 ms.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A workspace whose facesets are extracted (at 96 px) from bundled sample portraits.
pub fn extracted_workspace(src: &[&str], dst: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let assets = dfl::assets::Assets::from_env();
    for (side, names) in [("src", src), ("dst", dst)] {
        let dir = ws.join(format!("data_{side}"));
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            std::fs::copy(assets.sample(name).unwrap_or_else(|e| panic!("{e}")), dir.join(name))
                .unwrap();
        }
        let out = dfl(&ws, &["-q", "extract", side, "--size", "96"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    (tmp, ws)
}

/// Extracts both sides of `ws` at 96 px and trains the tiny model `m` for 2 iterations on the
/// CPU: the least a merge needs.
pub fn extract_and_train_tiny(ws: &Path) {
    for side in ["src", "dst"] {
        let out = dfl(ws, &["-q", "extract", side, "--size", "96"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let train = [&["-q", "--device", "cpu", "train", "--name", "m"], &TINY[..]].concat();
    let out = dfl(ws, &[&train[..], &["--iterations", "2"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// The frames of the workspace's `data_dst.mp4` as OpenCV decodes them, in order.
pub fn dst_frames(ws: &Path) -> Vec<opencv::core::Mat> {
    use opencv::prelude::*;
    use opencv::videoio::{self, VideoCapture};
    let path = ws.join("data_dst.mp4");
    let mut capture = VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    let mut frames = Vec::new();
    loop {
        let mut frame = opencv::core::Mat::default();
        if !capture.read(&mut frame).unwrap() || frame.empty() {
            return frames;
        }
        frames.push(frame);
    }
}

/// Whether two images have the same size and the same bytes.
pub fn same_pixels(a: &opencv::core::Mat, b: &opencv::core::Mat) -> bool {
    use opencv::prelude::*;
    a.size().unwrap() == b.size().unwrap() && a.data_bytes().unwrap() == b.data_bytes().unwrap()
}

/// Every image file (name → bytes) directly in `dir`; empty when `dir` does not exist.
pub fn image_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Default::default() };
    entries
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), e.path()))
        .filter(|(name, _)| name.ends_with(".jpg") || name.ends_with(".png"))
        // A file renamed away while the folder is read (a temp file of a running command).
        .filter_map(|(name, path)| Some((name, std::fs::read(path).ok()?)))
        .collect()
}
