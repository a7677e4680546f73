//! Probing the dst video and assembling `result.mp4` with ffmpeg.
//!
//! ffmpeg and ffprobe run as subprocesses (Debian's 5.1). [`probe`] reads the timing of the
//! source video; [`assemble`] encodes the merged PNG frames with libx264 at exactly that timing
//! and puts the source's audio stream beside them unchanged.
//!
//! DFL: mainscripts/VideoEd.py (`video_from_sequence`). Kept: the first video stream's
//! `r_frame_rate`, frames streamed in order through `image2pipe`, libx264 with `yuv420p`, the
//! first audio stream of the reference video. Changed: the audio is copied, not re-encoded (aac
//! 192k only when the container cannot hold it), and variable-rate sources keep their frame
//! times instead of being forced to `r_frame_rate` (which desynchronises the audio).
//!
//! Every path handed to ffmpeg is prefixed with `file:`, so a name that starts with `-` or holds
//! a `:` is never read as an option or a protocol.

mod assemble;
mod input;
mod probe;
mod run;
#[cfg(test)]
mod test_clips;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use assemble::assemble;
pub use probe::probe;

const FFMPEG: &str = "ffmpeg";
const FFPROBE: &str = "ffprobe";
/// Lines of ffmpeg's stderr quoted in an error.
const STDERR_TAIL_LINES: usize = 3;

/// A rational number as ffmpeg prints it (`30000/1001`): a frame rate or a time base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rational {
    /// Numerator.
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl Rational {
    /// Creates `num/den`.
    pub const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    /// Returns the value, or `None` when a part is 0 (ffprobe's `0/0` means unknown).
    pub fn to_f64(self) -> Option<f64> {
        (self.num > 0 && self.den > 0).then(|| f64::from(self.num) / f64::from(self.den))
    }

    /// Parses ffprobe's `num/den`.
    fn parse(text: &str) -> Option<Self> {
        let (num, den) = text.split_once('/')?;
        Some(Self::new(num.trim().parse().ok()?, den.trim().parse().ok()?))
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What [`probe`] learns about a video: its first video stream's size and timing, and whether
/// it has sound.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// The stream's `r_frame_rate` (`0/0` when ffprobe does not know it).
    pub frame_rate: Rational,
    /// The stream's time base: the tick its timestamps count in.
    pub time_base: Rational,
    /// The presentation time of every frame in seconds, in presentation order, the first at 0.
    pub frame_times: Vec<f64>,
    /// True when some frame is more than 1 ms (or half a tick) away from `index / frame_rate`,
    /// or the rate is unknown: the frames then keep their own times in [`assemble`].
    pub variable_rate: bool,
    /// True when the file has an audio stream.
    pub has_audio: bool,
}

impl VideoInfo {
    /// Returns the number of video frames.
    pub fn frame_count(&self) -> usize {
        self.frame_times.len()
    }
}

/// When each encoded frame is shown.
#[derive(Debug, Clone, Copy)]
pub enum Timing<'a> {
    /// The frames are the probed source's frames, one for one: keep its rate, or its frame
    /// times when it is variable-rate.
    Source(&'a VideoInfo),
    /// The frames came from an image folder: a constant rate in frames per second.
    Constant(Rational),
}

/// libx264's speed/size presets, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Fastest, largest files.
    Ultrafast,
    /// Much faster than medium.
    Superfast,
    /// Faster than medium.
    Veryfast,
    /// Faster than medium.
    Faster,
    /// A little faster than medium.
    Fast,
    /// libx264's default balance.
    #[default]
    Medium,
    /// A little smaller than medium.
    Slow,
    /// Smaller than medium.
    Slower,
    /// Smallest files that are still practical.
    Veryslow,
}

impl Preset {
    /// Returns the name libx264 knows the preset by.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Ultrafast => "ultrafast",
            Preset::Superfast => "superfast",
            Preset::Veryfast => "veryfast",
            Preset::Faster => "faster",
            Preset::Fast => "fast",
            Preset::Medium => "medium",
            Preset::Slow => "slow",
            Preset::Slower => "slower",
            Preset::Veryslow => "veryslow",
        }
    }
}

/// How [`assemble`] encodes the video stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeOptions {
    /// libx264's constant rate factor: 0 is lossless, 51 the worst; 18 looks lossless.
    pub crf: u8,
    /// libx264's preset.
    pub preset: Preset,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { crf: 18, preset: Preset::Medium }
    }
}

/// Errors of probing a video or assembling one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// ffmpeg or ffprobe cannot be started (usually: not installed).
    #[error("cannot run {tool}: {source}; install ffmpeg (scripts/setup.sh does)")]
    Tool {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// The OS error of starting it.
        #[source]
        source: io::Error,
    },
    /// ffprobe cannot read the file, or it holds no video frames.
    #[error("cannot probe {}: {reason}; check that it is a video (ffprobe shows why)", .path.display())]
    Probe {
        /// The file.
        path: PathBuf,
        /// ffprobe's message or what is missing.
        reason: String,
    },
    /// The list of frames is empty.
    #[error("no frames to encode into {}; run dfl merge first", .0.display())]
    NoFrames(PathBuf),
    /// The number of frames differs from the source video's.
    #[error(
        "{frames} frames to encode into {} but the source video has {expected}; rerun dfl merge \
         so that every frame is merged",
        .out.display()
    )]
    FrameCount {
        /// The output.
        out: PathBuf,
        /// Frames given.
        frames: usize,
        /// Frames of the source.
        expected: usize,
    },
    /// A frame is not a readable PNG, or its size differs from the first frame's.
    #[error("cannot encode frame {}: {reason}; rerun dfl merge to rewrite it", .path.display())]
    BadFrame {
        /// The frame file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CRF is beyond libx264's range.
    #[error("crf {0} is out of range; use 0 (lossless) to 51 (18 looks lossless)")]
    Crf(u8),
    /// A constant frame rate is zero or unknown.
    #[error("frame rate {0} is not a positive rate; pass one such as 25 or 30000/1001")]
    FrameRate(Rational),
    /// The output's extension names no container ffmpeg is told to write.
    #[error("cannot write {}: unknown container; name the output .mp4, .mov or .mkv", .0.display())]
    Container(PathBuf),
    /// ffmpeg failed or encoded a different number of frames.
    #[error("ffmpeg failed writing {}: {detail}; fix that and rerun (an older file there is unchanged)", .out.display())]
    Encode {
        /// The output.
        out: PathBuf,
        /// The last lines of ffmpeg's stderr, or what went wrong.
        detail: String,
    },
    /// The temporary output cannot be created or put in place.
    #[error("cannot write {}: {source}; check free space and permissions", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Returns the last non-empty lines of a tool's stderr on one line.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join(" | ");
    if tail.is_empty() { "no message".to_owned() } else { tail }
}

/// Returns `file:<path>`, so ffmpeg reads the path as a file whatever it starts with or holds.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}
