//! How the frames enter ffmpeg: PNG bytes through `image2pipe` at a constant rate, or an ffconcat
//! script that gives every frame its source time.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Rational, Timing, VideoError, VideoInfo};

/// Duration of a source's only frame when nothing else tells it: 25 fps, ffmpeg's default.
const DEFAULT_FRAME_SECS: f64 = 0.04;

/// What ffmpeg reads on its stdin.
pub(super) enum Feed<'a> {
    /// The bytes of these PNG files, one after the other (`image2pipe`).
    Pngs(&'a [PathBuf]),
    /// A concat script.
    Script(String),
}

/// Returns the input arguments for the frames and what to write to ffmpeg's stdin.
pub(super) fn video_input<'a>(
    frames: &'a [PathBuf],
    timing: Timing<'_>,
) -> Result<(Vec<OsString>, Feed<'a>), VideoError> {
    let rate = match timing {
        Timing::Source(info) if info.variable_rate => {
            let args = ["-protocol_whitelist", "file,pipe", "-f", "concat", "-safe", "0"];
            let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
            args.extend(["-i".into(), "pipe:0".into()]);
            return Ok((args, Feed::Script(concat_script(frames, info)?)));
        }
        Timing::Source(info) => info.frame_rate,
        Timing::Constant(rate) => rate,
    };
    let args = ["-f", "image2pipe", "-c:v", "png", "-framerate", &rate.to_string(), "-i", "pipe:0"];
    Ok((args.iter().map(OsString::from).collect(), Feed::Pngs(frames)))
}

/// Writes an ffconcat script that shows `frames[i]` at `info.frame_times[i]`.
///
/// The script is read from a pipe, so paths are absolute `file:` URLs. Each file is opened with
/// `framerate` = 1 / time base, which gives the concat stream the source's time base; the
/// durations are differences of start times rounded to whole microseconds, so the starts are
/// exact and land on the source's ticks.
fn concat_script(frames: &[PathBuf], info: &VideoInfo) -> Result<String, VideoError> {
    let starts_us: Vec<i64> = info.frame_times.iter().map(|&t| secs_to_us(t)).collect();
    let last_us = secs_to_us(last_frame_secs(info));
    let framerate = Rational::new(info.time_base.den, info.time_base.num);
    let mut script = String::from("ffconcat version 1.0\n");
    for (i, (frame, &start)) in frames.iter().zip(&starts_us).enumerate() {
        let next = starts_us.get(i + 1).copied().unwrap_or(start + last_us);
        let duration = (next - start).max(0);
        let secs = format!("{}.{:06}", duration / 1_000_000, duration % 1_000_000);
        let quoted = concat_quote(frame)?;
        // Writing to a String cannot fail.
        let _ = write!(script, "file {quoted}\noption framerate {framerate}\nduration {secs}\n");
    }
    Ok(script)
}

/// Returns `'file:/abs/path'` quoted for an ffconcat script.
fn concat_quote(frame: &Path) -> Result<String, VideoError> {
    let bad = |reason: &str| VideoError::BadFrame { path: frame.to_owned(), reason: reason.into() };
    let abs = std::path::absolute(frame).map_err(|e| bad(&e.to_string()))?;
    let text = abs.to_str().ok_or_else(|| bad("its path is not UTF-8"))?;
    if text.contains('\n') {
        return Err(bad("its path holds a line break"));
    }
    Ok(format!("'file:{}'", text.replace('\'', r"'\''")))
}

/// Returns how long the source shows its last frame: the previous frame's gap, else one frame
/// at `r_frame_rate`, else [`DEFAULT_FRAME_SECS`].
fn last_frame_secs(info: &VideoInfo) -> f64 {
    match info.frame_times.as_slice() {
        [.., before, last] => last - before,
        _ => info.frame_rate.to_f64().map_or(DEFAULT_FRAME_SECS, |fps| 1.0 / fps),
    }
}

fn secs_to_us(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_script_quotes_paths_and_keeps_start_times_exact() {
        let info = VideoInfo {
            width: 2,
            height: 2,
            frame_rate: Rational::new(30, 1),
            time_base: Rational::new(1, 90000),
            frame_times: vec![0.0, 1.0 / 3.0, 0.4],
            variable_rate: true,
            has_audio: false,
        };
        let frames = ["/m/a.png", "/m/it's.png", "/m/c.png"].map(PathBuf::from);
        let script = concat_script(&frames, &info).unwrap();
        // 1/3 s rounds to 333333 µs, so the next gap is 66667 µs and frame 3 starts at exactly
        // 0.4 s; the last frame lasts as long as the gap before it.
        let want = "ffconcat version 1.0\n\
            file 'file:/m/a.png'\noption framerate 90000/1\nduration 0.333333\n\
            file 'file:/m/it'\\''s.png'\noption framerate 90000/1\nduration 0.066667\n\
            file 'file:/m/c.png'\noption framerate 90000/1\nduration 0.066667\n";
        assert_eq!(script, want);
    }
}
