//! Running ffmpeg: feeding its stdin, counting its progress, keeping the end of its stderr.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};

use crate::progress::Progress;

use super::input::Feed;
use super::{FFMPEG, VideoError, last_lines};

/// The arguments of every ffmpeg run: quiet, no questions, overwrite the temporary file.
pub(super) fn ffmpeg_base_args() -> Vec<OsString> {
    let args = ["-hide_banner", "-loglevel", "error", "-nostats", "-nostdin", "-y"];
    args.iter().map(OsString::from).collect()
}

/// Runs ffmpeg with `args`, writes `feed` to its stdin, counts `frame=` progress lines, and
/// returns the number of frames it reports encoding with the end of its stderr.
pub(super) fn run_ffmpeg(
    args: &[OsString],
    feed: &Feed<'_>,
    out: &Path,
    progress: &dyn Progress,
) -> Result<(u64, String), VideoError> {
    let mut child = Command::new(FFMPEG)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| VideoError::Tool { tool: FFMPEG, source })?;
    let stdin = child.stdin.take().expect("invariant: stdin is piped");
    let stdout = child.stdout.take().expect("invariant: stdout is piped");
    let stderr = child.stderr.take().expect("invariant: stderr is piped");
    let (fed, encoded, tail) = std::thread::scope(|s| {
        let encoded = s.spawn(move || count_frames(stdout, progress));
        let tail = s.spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            last_lines(&text)
        });
        let fed = write_feed(feed, stdin);
        if fed.is_err() {
            // Without all frames ffmpeg would finish a short video: stop it.
            let _ = child.kill();
        }
        (fed, encoded.join().unwrap_or(0), tail.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|source| VideoError::Tool { tool: FFMPEG, source })?;
    let complete = fed?;
    let fail = |detail: String| VideoError::Encode { out: out.to_owned(), detail };
    if !status.success() {
        return Err(fail(tail));
    }
    if !complete {
        return Err(fail(format!("it stopped reading its input early ({tail})")));
    }
    Ok((encoded, tail))
}

/// Writes the feed to ffmpeg's stdin and closes it. Returns `Ok(false)` when ffmpeg closed the
/// pipe first (it failed; its exit status tells why).
///
/// # Errors
/// `BadFrame` when a frame file cannot be read.
fn write_feed(feed: &Feed<'_>, mut stdin: ChildStdin) -> Result<bool, VideoError> {
    match feed {
        Feed::Script(script) => Ok(stdin.write_all(script.as_bytes()).is_ok()),
        Feed::Pngs(frames) => {
            for path in *frames {
                let bytes = std::fs::read(path).map_err(|e| VideoError::BadFrame {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if stdin.write_all(&bytes).is_err() {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// Reads `-progress` output, reports every newly encoded frame, and returns the last count.
fn count_frames(stdout: impl Read, progress: &dyn Progress) -> u64 {
    let mut reported = 0;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Some(count) = line.strip_prefix("frame=").and_then(|n| n.trim().parse::<u64>().ok())
        else {
            continue;
        };
        if count > reported {
            progress.inc(count - reported);
            reported = count;
        }
    }
    reported
}
