//! [`assemble`]: merged frames and the dst audio into `result.mp4`, written atomically.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::atomic::AtomicFile;
use crate::progress::Progress;

use super::input::video_input;
use super::probe::probe_audio_codec;
use super::run::{ffmpeg_base_args, run_ffmpeg};
use super::{EncodeOptions, FFMPEG, Timing, VideoError, file_url, last_lines};

/// Bitrate of the aac fallback. DFL: mainscripts/VideoEd.py re-encodes all audio at 192k.
const FALLBACK_AUDIO_BITRATE: &str = "192k";
/// Seconds of audio muxed in the trial that decides whether the container can hold a copy.
const COPY_TRIAL_SECS: &str = "1";
/// The largest CRF libx264 accepts for 8-bit video.
const MAX_CRF: u8 = 51;
/// The eight bytes every PNG file starts with (PNG spec §5.2).
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// Signature, IHDR length and type, width and height: the bytes that give a PNG's size.
const PNG_HEADER_LEN: usize = 24;

/// Encodes `frames` (PNG files, in order, all the same size) into `out` with libx264 at the
/// timing of `timing`, and muxes the first audio stream of `audio_from` when given and present.
///
/// - **Constant rate** (a constant-rate source, or [`Timing::Constant`]): the frames are piped
///   in through `image2pipe` at exactly the rational rate (`30000/1001`, never a rounded float).
/// - **Variable rate**: the frames go through ffmpeg's concat demuxer with one `duration` per
///   frame (whole microseconds, so the sum does not drift) in the source's time base, which the
///   encoder and the muxer keep (`-enc_time_base -1`): each frame lands on its source tick.
/// - Either way `-fps_mode passthrough` makes one output frame of every input frame; the number
///   ffmpeg reports encoding is checked against `frames.len()`.
/// - **Odd sizes**: libx264's `yuv420p` needs an even width and height, so an odd-sized frame is
///   padded by one column or row on the right or bottom that repeats the edge pixels (`pad` and
///   `fillborders`); the result is then 1 px larger. Even sizes pass with no filter.
/// - **Audio** is copied unchanged (`-c:a copy`). When a one-second trial shows the container
///   cannot hold the codec (pcm in mp4), it is re-encoded as aac 192k with a warning.
/// - The result's video starts at 0, as DFL's does; the audio keeps its own timestamps.
///
/// ffmpeg writes `<out>.tmp`, which is renamed onto `out` only after it succeeded, so a failed
/// or killed run never leaves a half-written `out`. Progress counts encoded frames.
///
/// # Errors
/// `NoFrames`, `FrameCount`, `BadFrame`, `Crf`, `FrameRate` or `Container` before anything
/// runs; `Tool`, `Probe`, `Encode` or `Io` from the run.
pub fn assemble(
    frames: &[PathBuf],
    timing: Timing<'_>,
    audio_from: Option<&Path>,
    opts: &EncodeOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<(), VideoError> {
    let muxer = muxer_for(out)?;
    check_request(frames, timing, opts, out)?;
    let (width, height) = frame_size(frames)?;
    progress.set_len(frames.len() as u64);
    let io_err = |source| VideoError::Io { path: out.to_owned(), source };
    // A guard for `<out>.tmp`: ffmpeg truncates and fills it (same inode), `commit` syncs and
    // renames it, and an early return removes it.
    let tmp = AtomicFile::create(out).map_err(io_err)?;
    let audio = match audio_from {
        Some(src) => plan_audio(src, muxer, tmp.tmp_path(), out)?,
        None => None,
    };
    let (input, feed) = video_input(frames, timing)?;
    let mut args = ffmpeg_base_args();
    args.extend(["-progress".into(), "pipe:1".into()]);
    args.extend(input);
    args.extend(audio_args(audio.as_ref()));
    args.extend(video_encode_args(opts, width, height, timing));
    args.extend(["-f".into(), muxer.into(), file_url(tmp.tmp_path())]);
    let (encoded, stderr_tail) = run_ffmpeg(&args, &feed, out, progress)?;
    if encoded != frames.len() as u64 {
        let detail = format!("it encoded {encoded} of {} frames ({stderr_tail})", frames.len());
        return Err(VideoError::Encode { out: out.to_owned(), detail });
    }
    tmp.commit().map_err(io_err)
}

/// Returns ffmpeg's muxer for `out`'s extension.
fn muxer_for(out: &Path) -> Result<&'static str, VideoError> {
    let ext = out.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mp4" | "m4v") => Ok("mp4"),
        Some("mov") => Ok("mov"),
        Some("mkv") => Ok("matroska"),
        _ => Err(VideoError::Container(out.to_owned())),
    }
}

/// Checks what needs no file access: frames present and as many as the source's, a valid CRF
/// and rate.
fn check_request(
    frames: &[PathBuf],
    timing: Timing<'_>,
    opts: &EncodeOptions,
    out: &Path,
) -> Result<(), VideoError> {
    if frames.is_empty() {
        return Err(VideoError::NoFrames(out.to_owned()));
    }
    if opts.crf > MAX_CRF {
        return Err(VideoError::Crf(opts.crf));
    }
    match timing {
        Timing::Source(info) if info.frame_count() != frames.len() => Err(VideoError::FrameCount {
            out: out.to_owned(),
            frames: frames.len(),
            expected: info.frame_count(),
        }),
        Timing::Constant(rate) if rate.to_f64().is_none() => Err(VideoError::FrameRate(rate)),
        _ => Ok(()),
    }
}

/// Reads every frame's PNG header and returns the common size.
fn frame_size(frames: &[PathBuf]) -> Result<(u32, u32), VideoError> {
    let mut size = None;
    for path in frames {
        let bad = |reason: String| VideoError::BadFrame { path: path.clone(), reason };
        let got = png_size(path).map_err(bad)?;
        match size {
            None => size = Some(got),
            Some(want) if want != got => {
                return Err(bad(format!(
                    "it is {}x{} but the first frame is {}x{}",
                    got.0, got.1, want.0, want.1
                )));
            }
            Some(_) => {}
        }
    }
    Ok(size.expect("invariant: check_request refused an empty frame list"))
}

/// Returns the width and height in a PNG's IHDR chunk.
fn png_size(path: &Path) -> Result<(u32, u32), String> {
    let mut head = [0u8; PNG_HEADER_LEN];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).map_err(|e| e.to_string())?;
    if head[..8] != PNG_SIGNATURE || &head[12..16] != b"IHDR" {
        return Err("it is not a PNG file".into());
    }
    let be = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    Ok((be(16), be(20)))
}

/// How the audio stream gets into the result.
#[derive(Debug)]
enum AudioPlan {
    /// The stream as it is (`-c:a copy`).
    Copy(PathBuf),
    /// Re-encoded as aac, because the container cannot hold the original codec.
    Aac(PathBuf),
}

/// Decides how to mux `src`'s first audio stream: a copy when a short trial copy into the same
/// container (written to `trial`, the output's temporary file) succeeds, aac otherwise.
fn plan_audio(
    src: &Path,
    muxer: &str,
    trial: &Path,
    out: &Path,
) -> Result<Option<AudioPlan>, VideoError> {
    let Some(codec) = probe_audio_codec(src)? else { return Ok(None) };
    let mut args = ffmpeg_base_args();
    args.extend(["-i".into(), file_url(src)]);
    for arg in ["-map", "0:a:0", "-c", "copy", "-t", COPY_TRIAL_SECS, "-f", muxer] {
        args.push(arg.into());
    }
    args.push(file_url(trial));
    let output = Command::new(FFMPEG)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| VideoError::Tool { tool: FFMPEG, source })?;
    if output.status.success() {
        return Ok(Some(AudioPlan::Copy(src.to_owned())));
    }
    log::warn!(
        "{} cannot hold the {codec} audio of {} ({}); re-encoding it as aac {FALLBACK_AUDIO_BITRATE}",
        out.display(),
        src.display(),
        last_lines(&String::from_utf8_lossy(&output.stderr)),
    );
    Ok(Some(AudioPlan::Aac(src.to_owned())))
}

/// Returns the audio input (input 1), the stream maps and the audio codec arguments.
fn audio_args(plan: Option<&AudioPlan>) -> Vec<OsString> {
    let (src, codec): (_, &[&str]) = match plan {
        None => return vec!["-map".into(), "0:v:0".into()],
        Some(AudioPlan::Copy(src)) => (src, &["-c:a", "copy"]),
        Some(AudioPlan::Aac(src)) => (src, &["-c:a", "aac", "-b:a", FALLBACK_AUDIO_BITRATE]),
    };
    let mut args = vec!["-i".into(), file_url(src), "-map".into(), "0:v:0".into()];
    args.extend(["-map", "1:a:0"].iter().chain(codec).map(OsString::from));
    args
}

/// Returns the libx264 arguments, with the even-size filter when needed.
fn video_encode_args(
    opts: &EncodeOptions,
    width: u32,
    height: u32,
    timing: Timing<'_>,
) -> Vec<OsString> {
    let mut args: Vec<String> = Vec::new();
    if let Some(filter) = even_size_filter(width, height) {
        args.extend(["-vf".into(), filter]);
    }
    let x264 = ["-c:v", "libx264", "-preset", opts.preset.as_str(), "-pix_fmt", "yuv420p"];
    args.extend(x264.iter().map(|s| s.to_string()));
    args.extend(["-crf".into(), opts.crf.to_string(), "-fps_mode".into(), "passthrough".into()]);
    if matches!(timing, Timing::Source(info) if info.variable_rate) {
        // Keep the concat stream's time base (the source's) through the encoder and muxer.
        args.extend(["-enc_time_base".into(), "-1".into()]);
    }
    args.into_iter().map(OsString::from).collect()
}

/// Returns the filter that pads an odd width or height by one edge-repeating pixel, if needed.
fn even_size_filter(width: u32, height: u32) -> Option<String> {
    let (right, bottom) = (width % 2, height % 2);
    if right == 0 && bottom == 0 {
        return None;
    }
    let (w, h) = (width + right, height + bottom);
    Some(format!("pad={w}:{h}:0:0,fillborders=right={right}:bottom={bottom}:mode=smear"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::video::test_clips::*;
    use crate::merge::video::{Rational, VideoInfo, probe};
    use crate::progress::NoProgress;

    fn assemble_from_source(source: &Path, frames: &[PathBuf], out: &Path) -> VideoInfo {
        let info = probe(source).unwrap();
        let opts = EncodeOptions::default();
        assemble(frames, Timing::Source(&info), Some(source), &opts, out, &NoProgress).unwrap();
        assert!(!crate::atomic::tmp_path(out).exists(), "the temporary file is renamed");
        info
    }

    #[test]
    fn constant_rate_source_keeps_its_rate_frame_count_and_copied_audio() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("dst.mp4");
        clip(&source, "30000/1001", Some("aac"));
        let info = probe(&source).unwrap();
        assert_eq!(info.frame_rate, Rational::new(30000, 1001));
        assert_eq!((info.width, info.height), (64, 48));
        assert!(info.has_audio && !info.variable_rate, "{info:?}");
        assert_eq!(info.frame_count(), 30);

        let frames = dump_frames(&source, &tmp.path().join("merged"));
        let out = tmp.path().join("result.mp4");
        assemble_from_source(&source, &frames, &out);

        let result = probe(&out).unwrap();
        assert_eq!(result.frame_count(), info.frame_count());
        assert_eq!(result.frame_rate, Rational::new(30000, 1001));
        assert!(!result.variable_rate && result.has_audio, "{result:?}");
        assert_eq!(codec_of(&out, "a:0").as_deref(), Some("aac"));
        assert_eq!(audio_packet_sizes(&out), audio_packet_sizes(&source), "audio is copied");
    }

    #[test]
    fn variable_rate_source_keeps_every_frame_time() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("vfr.mp4");
        // 30 frames at 1/30 s, moved by 0, 12 or 24 ms, and all after the 20th by 50 ms more.
        let setpts = "settb=1/90000,setpts=(N/30+0.012*mod(N\\,3)+0.05*gte(N\\,20))/TB";
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=30:duration=1",
            "-vf",
            setpts,
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1:90000",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            path_str(&source),
        ]);
        let info = probe(&source).unwrap();
        assert!(info.variable_rate, "{info:?}");
        assert_eq!(info.frame_count(), 30);
        assert!((info.frame_times[21] - (21.0 / 30.0 + 0.05)).abs() < 1e-4, "{info:?}");

        let frames = dump_frames(&source, &tmp.path().join("merged"));
        assert_eq!(frames.len(), 30);
        let out = tmp.path().join("result.mp4");
        assemble_from_source(&source, &frames, &out);

        let result = probe(&out).unwrap();
        assert_eq!(result.frame_count(), info.frame_count());
        assert!(result.variable_rate && !result.has_audio, "{result:?}");
        for (i, (got, want)) in result.frame_times.iter().zip(&info.frame_times).enumerate() {
            assert!((got - want).abs() <= 0.001, "frame {i}: {got} s, source {want} s");
        }
    }

    #[test]
    fn pcm_audio_that_mp4_cannot_hold_is_reencoded_as_aac() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("dst.mov");
        clip(&source, "25", Some("pcm_s16le"));
        assert_eq!(codec_of(&source, "a:0").as_deref(), Some("pcm_s16le"));
        let frames = dump_frames(&source, &tmp.path().join("merged"));
        let out = tmp.path().join("result.mp4");
        let info = assemble_from_source(&source, &frames, &out);

        let result = probe(&out).unwrap();
        assert_eq!(result.frame_count(), info.frame_count());
        assert_eq!(codec_of(&out, "a:0").as_deref(), Some("aac"));
    }

    #[test]
    fn source_without_audio_gives_result_without_audio() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("dst.mkv");
        clip(&source, "24", None);
        let frames = dump_frames(&source, &tmp.path().join("merged"));
        let out = tmp.path().join("result.mp4");
        let info = assemble_from_source(&source, &frames, &out);
        assert!(!info.has_audio && !info.variable_rate, "{info:?}");

        let result = probe(&out).unwrap();
        assert_eq!(result.frame_count(), 24);
        assert_eq!(result.frame_rate, Rational::new(24, 1));
        assert!(!result.has_audio, "{result:?}");
    }

    #[test]
    fn odd_sized_frames_are_padded_to_even() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = png_frames(&tmp.path().join("merged"), 5, "65x49");
        let out = tmp.path().join("result.mp4");
        let timing = Timing::Constant(Rational::new(25, 1));
        let opts = EncodeOptions::default();
        assemble(&frames, timing, None, &opts, &out, &NoProgress).unwrap();

        let result = probe(&out).unwrap();
        assert_eq!((result.width, result.height), (66, 50));
        assert_eq!(result.frame_count(), 5);
        assert_eq!(result.frame_rate, Rational::new(25, 1));
    }

    #[test]
    fn progress_counts_every_encoded_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = png_frames(&tmp.path().join("merged"), 12, "32x32");
        let out = tmp.path().join("result.mkv");
        let counter = Counter::default();
        let timing = Timing::Constant(Rational::new(30000, 1001));
        assemble(&frames, timing, None, &EncodeOptions::default(), &out, &counter).unwrap();
        assert_eq!(counter.len.into_inner(), 12);
        assert_eq!(counter.done.into_inner(), 12);
        let result = probe(&out).unwrap();
        assert_eq!(result.frame_count(), 12);
        assert_eq!(result.frame_rate, Rational::new(30000, 1001));
    }

    #[test]
    fn a_frame_ffmpeg_cannot_decode_fails_and_keeps_the_old_result() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = png_frames(&tmp.path().join("merged"), 6, "32x32");
        // A valid header over a cut-off body: it passes the size check, then fails to decode.
        let bytes = std::fs::read(&frames[3]).unwrap();
        std::fs::write(&frames[3], &bytes[..bytes.len() / 3]).unwrap();
        let out = tmp.path().join("result.mp4");
        std::fs::write(&out, b"the previous result").unwrap();

        let timing = Timing::Constant(Rational::new(25, 1));
        let opts = EncodeOptions::default();
        let err = assemble(&frames, timing, None, &opts, &out, &NoProgress).unwrap_err();
        assert!(matches!(err, VideoError::Encode { .. }), "{err:?}");
        assert!(err.to_string().contains("result.mp4"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"the previous result");
        assert!(!crate::atomic::tmp_path(&out).exists());
    }

    #[test]
    fn requests_that_cannot_give_the_source_frame_count_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let frames = png_frames(&tmp.path().join("merged"), 3, "32x32");
        let out = tmp.path().join("result.mp4");
        let info = VideoInfo {
            width: 32,
            height: 32,
            frame_rate: Rational::new(25, 1),
            time_base: Rational::new(1, 25),
            frame_times: vec![0.0, 0.04, 0.08, 0.12],
            variable_rate: false,
            has_audio: false,
        };
        let opts = EncodeOptions::default();
        let run = |frames: &[PathBuf], timing| {
            assemble(frames, timing, None, &opts, &out, &NoProgress).unwrap_err()
        };
        let err = run(&frames, Timing::Source(&info));
        assert!(matches!(err, VideoError::FrameCount { frames: 3, expected: 4, .. }), "{err:?}");
        let err = run(&[], Timing::Constant(Rational::new(25, 1)));
        assert!(matches!(err, VideoError::NoFrames(_)), "{err:?}");
        let err = run(&frames, Timing::Constant(Rational::new(0, 0)));
        assert!(matches!(err, VideoError::FrameRate(_)), "{err:?}");
        std::fs::write(&frames[1], b"not a png").unwrap();
        let err = run(&frames, Timing::Constant(Rational::new(25, 1)));
        assert!(err.to_string().contains("00002.png"), "{err}");
        assert!(!out.exists() && !crate::atomic::tmp_path(&out).exists());
    }
}
