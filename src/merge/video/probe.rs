//! [`probe`]: a video's size, frame rate, frame times and audio, read with ffprobe.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::{FFPROBE, Rational, VideoError, VideoInfo, file_url, last_lines};

/// How far a frame may sit from `index / r_frame_rate` in a constant-rate stream: 1 ms, or half
/// a tick when the time base is coarser (a 1/1000 time base rounds every frame time).
const RATE_TOLERANCE_SECS: f64 = 0.001;

/// Reads the size, frame rate, frame times and audio presence of `video`'s first video stream
/// (cover art is not a video stream).
///
/// Frame times come from the packets' timestamps (no decoding), sorted into presentation
/// order; packets the demuxer marks as discarded (before an edit list's start) are not frames.
///
/// # Errors
/// `Tool` when ffprobe is missing, `Probe` when it cannot read the file or finds no video frames.
pub fn probe(video: &Path) -> Result<VideoInfo, VideoError> {
    let fail = |reason: &str| VideoError::Probe { path: video.to_owned(), reason: reason.into() };
    let streams = probe_streams(video)?;
    let stream = streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or_else(|| fail("no video stream"))?;
    let time_base = stream
        .time_base
        .as_deref()
        .and_then(Rational::parse)
        .filter(|tb| tb.to_f64().is_some())
        .ok_or_else(|| fail("the video stream has no time base"))?;
    let frame_rate =
        stream.r_frame_rate.as_deref().and_then(Rational::parse).unwrap_or(Rational::new(0, 0));
    let ticks = probe_frame_ticks(video)?;
    let Some(&first) = ticks.first() else { return Err(fail("no video frames")) };
    let tick_secs = f64::from(time_base.num) / f64::from(time_base.den);
    let frame_times: Vec<f64> = ticks.iter().map(|t| (t - first) as f64 * tick_secs).collect();
    Ok(VideoInfo {
        width: stream.width.unwrap_or(0),
        height: stream.height.unwrap_or(0),
        variable_rate: !is_constant_rate(&frame_times, frame_rate, time_base),
        frame_rate,
        time_base,
        frame_times,
        has_audio: streams.iter().any(|s| s.codec_type.as_deref() == Some("audio")),
    })
}

/// One stream as `ffprobe -show_entries stream=… -of json` prints it.
#[derive(Debug, Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<String>,
    time_base: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

/// The part of a stream's disposition that tells cover art from video.
#[derive(Debug, Default, Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

/// ffprobe's JSON document.
#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

fn probe_streams(video: &Path) -> Result<Vec<ProbeStream>, VideoError> {
    let entries =
        "stream=codec_type,width,height,r_frame_rate,time_base:stream_disposition=attached_pic";
    let json = run_ffprobe(video, &["-show_entries", entries, "-of", "json"])?;
    let parsed: ProbeOutput = serde_json::from_str(&json).map_err(|e| VideoError::Probe {
        path: video.to_owned(),
        reason: format!("unexpected ffprobe output ({e})"),
    })?;
    Ok(parsed.streams)
}

/// Returns the timestamps (in time-base ticks) of the first video stream's frames, sorted into
/// presentation order. A packet without `pts` uses its `dts` (AVI).
fn probe_frame_ticks(video: &Path) -> Result<Vec<i64>, VideoError> {
    let args = ["-select_streams", "V:0", "-show_entries", "packet=pts,dts,flags"];
    let text = run_ffprobe(video, &[&args[..], &["-of", "compact=p=0"]].concat())?;
    let mut ticks = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let field =
            |key: &str| line.split('|').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
        if field("flags").is_some_and(|f| f.contains('D')) {
            continue; // discarded: decoded for reference only, never shown
        }
        let tick = [field("pts"), field("dts")].into_iter().flatten().find_map(|v| v.parse().ok());
        match tick {
            Some(t) => ticks.push(t),
            None => {
                return Err(VideoError::Probe {
                    path: video.to_owned(),
                    reason: "a video packet has no timestamp".into(),
                });
            }
        }
    }
    ticks.sort_unstable();
    Ok(ticks)
}

/// Returns the codec of `video`'s first audio stream, or `None` when it has none.
pub(super) fn probe_audio_codec(video: &Path) -> Result<Option<String>, VideoError> {
    let args = ["-select_streams", "a:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0"];
    let text = run_ffprobe(video, &args)?;
    Ok(text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned))
}

/// Runs `ffprobe -v error <args> file:<video>` and returns its stdout.
pub(super) fn run_ffprobe(video: &Path, args: &[&str]) -> Result<String, VideoError> {
    let output = Command::new(FFPROBE)
        .args(["-hide_banner", "-v", "error"])
        .args(args)
        .arg(file_url(video))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| VideoError::Tool { tool: FFPROBE, source })?;
    let fail = |reason: String| VideoError::Probe { path: video.to_owned(), reason };
    if !output.status.success() {
        return Err(fail(last_lines(&String::from_utf8_lossy(&output.stderr))));
    }
    String::from_utf8(output.stdout).map_err(|_| fail("ffprobe printed non-UTF-8 text".into()))
}

/// Tells whether every frame sits within the tolerance of `index / rate`. Absolute positions,
/// not deltas: a 29.97 fps stream labelled 30 fps passes a delta test but drifts from its audio.
pub(super) fn is_constant_rate(frame_times: &[f64], rate: Rational, time_base: Rational) -> bool {
    let (Some(fps), Some(tick)) = (rate.to_f64(), time_base.to_f64()) else { return false };
    let tolerance = RATE_TOLERANCE_SECS.max(tick / 2.0);
    frame_times.iter().enumerate().all(|(i, t)| (t - i as f64 / fps).abs() <= tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_junk_file_is_refused_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("data_dst.mp4");
        std::fs::write(&junk, b"definitely not h264").unwrap();
        let err = probe(&junk).unwrap_err();
        assert!(matches!(err, VideoError::Probe { .. }), "{err:?}");
        assert!(err.to_string().contains("data_dst.mp4"), "{err}");
    }

    #[test]
    fn a_rate_that_drifts_from_its_label_is_variable() {
        let ntsc: Vec<f64> = (0..3000).map(|i| f64::from(i) * 1001.0 / 30000.0).collect();
        let ms = Rational::new(1, 1000);
        let rounded: Vec<f64> = ntsc.iter().map(|t| (t * 1000.0).round() / 1000.0).collect();
        assert!(is_constant_rate(&rounded, Rational::new(30000, 1001), ms));
        // Every gap is within 0.04 ms of 1/30 s, but by frame 3000 the drift is 3 s.
        assert!(!is_constant_rate(&ntsc, Rational::new(30, 1), Rational::new(1, 90000)));
        assert!(!is_constant_rate(&ntsc, Rational::new(0, 0), ms));
    }
}
