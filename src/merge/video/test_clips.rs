//! Test clips made with ffmpeg's lavfi sources, and probes of what a test produced.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use super::FFMPEG;
use super::probe::run_ffprobe;
use crate::progress::Progress;

/// Runs ffmpeg quietly on a test clip and asserts it succeeded.
pub(super) fn ffmpeg(args: &[&str]) {
    let status = Command::new(FFMPEG)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Returns a temporary path as text for ffmpeg's arguments.
pub(super) fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Writes every frame of `video` to `dir/00001.png`, … and returns the files in order.
pub(super) fn dump_frames(video: &Path, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let pattern = dir.join("%05d.png");
    let args = ["-fps_mode", "passthrough", "-enc_time_base", "-1"];
    ffmpeg(&[&["-i", path_str(video)], &args[..], &[path_str(&pattern)]].concat());
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Returns the codec of `video`'s first stream matching `spec` (`a:0`), if any.
pub(super) fn codec_of(video: &Path, spec: &str) -> Option<String> {
    let args = ["-select_streams", spec, "-show_entries", "stream=codec_name", "-of", "csv=p=0"];
    run_ffprobe(video, &args).unwrap().lines().next().map(str::to_owned)
}

/// Returns the sizes of the first audio stream's packets: equal lists mean a stream copy.
pub(super) fn audio_packet_sizes(video: &Path) -> Vec<u64> {
    let args = ["-select_streams", "a:0", "-show_entries", "packet=size", "-of", "csv=p=0"];
    let text = run_ffprobe(video, &args).unwrap();
    // Lines may end with a comma or be empty (side data); keep the numbers.
    let lines = text.lines().map(|l| l.trim().trim_end_matches(','));
    lines.filter(|l| !l.is_empty()).map(|l| l.parse().unwrap()).collect()
}

/// Makes a 64x48 testsrc clip; `audio` is ffmpeg's audio codec, or `None` for no audio.
pub(super) fn clip(path: &Path, rate: &str, audio: Option<&str>) {
    let video = format!("testsrc=size=64x48:rate={rate}:duration=1");
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if let Some(codec) = audio {
        args.extend(["-f", "lavfi", "-i", "sine=duration=1", "-c:a", codec]);
    }
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p", path_str(path)]);
    ffmpeg(&args);
}

/// Counts what `assemble` reports.
#[derive(Default)]
pub(super) struct Counter {
    /// The last `set_len`.
    pub(super) len: AtomicU64,
    /// The sum of `inc`s.
    pub(super) done: AtomicU64,
}

impl Progress for Counter {
    fn set_len(&self, len: u64) {
        self.len.store(len, Ordering::Relaxed);
    }
    fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

/// Writes `count` testsrc PNG frames of `size` (`32x32`) into `dir` and returns them in order.
pub(super) fn png_frames(dir: &Path, count: usize, size: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let pattern = dir.join("%05d.png");
    let frames = count.to_string();
    let source = format!("testsrc=size={size}:rate=25");
    ffmpeg(&["-f", "lavfi", "-i", &source, "-frames:v", &frames, path_str(&pattern)]);
    (1..=count).map(|i| dir.join(format!("{i:05}.png"))).collect()
}
