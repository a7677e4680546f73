//! The frames of a side's input, and the frame loop every stage shares.
//!
//! The input is a video decoded directly with OpenCV, or a folder of images. Frame names are
//! stable so every face traces back to its frame: `00001`, `00002`, … for a video (1-based),
//! the file stem for an image.
//!
//! The loop ([`for_each_frame`]): frames are decoded on a thread of their own, processed on all
//! cores as they arrive, and the results are recorded on the calling thread in frame order. Extract, merge and eval all run this way, so each records (logs, counts, writes) in
//! the same order whatever the thread count.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use rayon::prelude::*;

use crate::workspace::{Input, is_image_file};

/// Frames decoded ahead per worker thread: enough to keep every core busy.
const FRAMES_PER_THREAD_IN_FLIGHT: usize = 4;

/// Returns how many frames a chunk holds: a few per worker thread, so every core stays busy
/// while memory stays bounded.
pub fn chunk_len() -> usize {
    rayon::current_num_threads() * FRAMES_PER_THREAD_IN_FLIGHT
}

/// Runs the shared frame loop over the frames `pick` takes, as a pipeline: a decoder thread
/// reads frames ahead, `work` runs on each frame on all cores (rayon) as soon as it is decoded,
/// and `record` gets each result here, in frame order. Decoding, working and recording overlap,
/// and no core waits for the slowest frame of a chunk. At most [`chunk_len`] frames are
/// decoded and not yet recorded at any time, which bounds memory.
///
/// # Errors
/// The first error `record` returns; the frames after it are not recorded (those in flight
/// are dropped unprocessed).
pub fn for_each_frame<R: Send, E>(
    source: &mut FrameSource,
    pick: impl Fn(usize, &str) -> Pick + Send,
    work: impl Fn(&Frame) -> R + Sync + Send,
    mut record: impl FnMut(&Frame, R) -> Result<(), E>,
) -> Result<(), E> {
    let in_flight = chunk_len();
    // A credit per frame decoded and not yet recorded: the decoder takes one per frame, the
    // recorder gives it back.
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        credit_tx.send(()).expect("invariant: the channel holds in_flight credits");
    }
    let (frame_tx, frame_rx) = mpsc::sync_channel::<(usize, Frame)>(in_flight);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Frame, R)>();
    let stop = AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut seq = 0;
            while credit_rx.recv().is_ok() && !stop.load(Ordering::Relaxed) {
                let Some(frame) = source.next_picked(&pick) else { break };
                if frame_tx.send((seq, frame)).is_err() {
                    break;
                }
                seq += 1;
            }
        });
        let work = &work;
        scope.spawn(move || {
            frame_rx.into_iter().par_bridge().for_each(|(seq, frame)| {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let result = work(&frame);
                // The recorder is gone only after an error: the result is not wanted.
                let _ = done_tx.send((seq, frame, result));
            });
        });
        // Owned here, so an early return drops them and the other threads wind down.
        let (credits, done) = (credit_tx, done_rx);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for (seq, frame, result) in done.iter() {
            waiting.insert(seq, (frame, result));
            while let Some((frame, result)) = waiting.remove(&next) {
                next += 1;
                if let Err(e) = record(&frame, result) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                // The decoder may have finished and dropped its end.
                let _ = credits.send(());
            }
        }
        Ok(())
    })
}

/// Runs `work` on every item of `chunk` on all cores, then hands each result to `record` on
/// this thread, in order.
///
/// # Errors
/// The first error `record` returns.
pub fn process_in_order<T: Sync, R: Send, E>(
    chunk: &[T],
    work: impl Fn(&T) -> R + Sync + Send,
    mut record: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    let results: Vec<R> = chunk.par_iter().map(work).collect();
    for (item, result) in chunk.iter().zip(results) {
        record(item, result)?;
    }
    Ok(())
}

/// One frame: its name, and its pixels (BGR u8) unless it had to be skipped.
#[derive(Debug)]
pub struct Frame {
    /// The frame's 0-based position in the input.
    pub index: usize,
    /// The stable frame name.
    pub name: String,
    /// The video file or image the frame came from.
    pub source: PathBuf,
    /// The decoded frame, or why it could not be decoded.
    pub image: Result<Mat, String>,
}

/// Errors of opening an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramesError {
    /// The video does not open (not a video, corrupt header, unsupported codec).
    #[error("cannot open video {}: it is empty, corrupt or not a video; check the file with ffprobe", .0.display())]
    BadVideo(PathBuf),
    /// The image folder cannot be listed.
    #[error("cannot list images in {}: {source}", .path.display())]
    ListDir {
        /// The folder.
        path: PathBuf,
        /// The walk error.
        #[source]
        source: walkdir::Error,
    },
    /// The input path does not exist.
    #[error("input {} does not exist; pass --input with a video file or an image folder", .0.display())]
    Missing(PathBuf),
}

/// What to do with the next frame of a [`FrameSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Decode and return it.
    Take,
    /// Pass over it without decoding.
    Skip,
    /// Return `None` now (the frame stays next).
    Stop,
}

/// A sequential reader of frames that skips the names in `done` cheaply (no decoding).
pub enum FrameSource {
    /// Frames of a video, decoded in order.
    Video {
        /// The video file.
        path: PathBuf,
        /// OpenCV's decoder.
        capture: VideoCapture,
        /// Frames decoded or skipped so far (= the next frame's 0-based index).
        next: usize,
        /// Frames the container claims to hold (0 when unknown).
        reported: usize,
    },
    /// Image files, in name order.
    Images {
        /// The remaining files, in reverse order (popped from the end).
        files: Vec<PathBuf>,
        /// Files taken so far (= the next file's 0-based index).
        next: usize,
    },
}

impl FrameSource {
    /// Opens `input` for reading.
    ///
    /// # Errors
    /// `Missing`, `BadVideo` or `ListDir`.
    pub fn open(input: &Input) -> Result<Self, FramesError> {
        let path = input.path();
        if !path.exists() {
            return Err(FramesError::Missing(path.to_owned()));
        }
        match input {
            Input::Video(path) => open_video(path),
            Input::Images(dir) => {
                let mut files = list_images(dir)?;
                files.reverse();
                Ok(FrameSource::Images { files, next: 0 })
            }
        }
    }

    /// Returns how many frames the input holds (for a video: as its container reports).
    pub fn len_hint(&self) -> usize {
        match self {
            FrameSource::Video { reported, .. } => *reported,
            FrameSource::Images { files, next } => files.len() + next,
        }
    }

    /// Returns the next `len` frames (fewer at the end) that `pick(index, name)` takes.
    pub fn next_chunk(&mut self, pick: impl Fn(usize, &str) -> Pick, len: usize) -> Vec<Frame> {
        std::iter::from_fn(|| self.next_picked(&pick)).take(len).collect()
    }

    /// Returns the next frame whose name is not in `done`, or `None` at the end.
    pub fn next_pending(&mut self, done: &HashSet<String>) -> Option<Frame> {
        self.next_picked(|_, name| if done.contains(name) { Pick::Skip } else { Pick::Take })
    }

    /// Returns the next frame `pick(index, name)` takes (skipped frames are not decoded), or
    /// `None` at the end or when `pick` says [`Pick::Stop`].
    pub fn next_picked(&mut self, pick: impl Fn(usize, &str) -> Pick) -> Option<Frame> {
        match self {
            FrameSource::Video { path, capture, next, .. } => loop {
                // `next` counts frames consumed; a failed read leaves it, so the end is stable.
                let name = video_frame_name(*next);
                let choice = pick(*next, &name);
                if choice == Pick::Stop {
                    return None;
                }
                if choice == Pick::Skip {
                    if !capture.grab().unwrap_or(false) {
                        return None;
                    }
                    *next += 1;
                    continue;
                }
                let mut image = Mat::default();
                return match capture.read(&mut image) {
                    Ok(true) if !image.empty() => {
                        *next += 1;
                        Some(Frame {
                            index: *next - 1,
                            name,
                            source: path.clone(),
                            image: Ok(image),
                        })
                    }
                    _ => None,
                };
            },
            FrameSource::Images { files, next } => loop {
                let file = files.pop()?;
                let (index, name) = (*next, image_frame_name(&file));
                match pick(index, &name) {
                    Pick::Stop => {
                        files.push(file);
                        return None;
                    }
                    Pick::Skip => {
                        *next += 1;
                        continue;
                    }
                    Pick::Take => *next += 1,
                }
                let image = read_image(&file);
                return Some(Frame { index, name, source: file, image });
            },
        }
    }

    /// Returns how many video frames were decoded or skipped so far (0 for images).
    pub fn decoded_frames(&self) -> usize {
        match self {
            FrameSource::Video { next, .. } => *next,
            FrameSource::Images { .. } => 0,
        }
    }

    /// Returns how many frames a video lost, with a warning naming the file, when decoding
    /// stopped before the length its container reports (0 for images). Containers estimate
    /// their frame count, so one frame short is not a loss.
    pub fn warn_if_truncated(&self) -> usize {
        let FrameSource::Video { path, reported, next, .. } = self else { return 0 };
        if *reported <= next + 1 {
            return 0;
        }
        log::warn!(
            "{}: only {next} of {reported} frames decode; the file may be truncated or corrupt",
            path.display()
        );
        reported - next
    }

    /// Returns the 0-based index of the next frame (= frames consumed so far).
    pub fn position(&self) -> usize {
        match self {
            FrameSource::Video { next, .. } | FrameSource::Images { next, .. } => *next,
        }
    }
}

/// Returns the names of the frames of `input` in order: `count` names for a video, every
/// image's for a folder.
///
/// # Errors
/// `ListDir` when the image folder cannot be listed.
pub fn frame_names(input: &Input, count: usize) -> Result<Vec<String>, FramesError> {
    Ok(match input {
        Input::Video(_) => (0..count).map(video_frame_name).collect(),
        Input::Images(dir) => list_images(dir)?.iter().map(|p| image_frame_name(p)).collect(),
    })
}

/// Returns the name of the 0-based video frame `index`: `00001` for the first.
pub fn video_frame_name(index: usize) -> String {
    format!("{:05}", index + 1)
}

/// Returns the frame name of an image file: its stem.
pub fn image_frame_name(path: &Path) -> String {
    path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

fn open_video(path: &Path) -> Result<FrameSource, FramesError> {
    let bad = || FramesError::BadVideo(path.to_owned());
    let capture = VideoCapture::from_file(path, videoio::CAP_FFMPEG).map_err(|_| bad())?;
    if !capture.is_opened().unwrap_or(false) {
        return Err(bad());
    }
    let reported = capture.get(videoio::CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
    let reported = if reported.is_finite() && reported > 0.0 { reported as usize } else { 0 };
    Ok(FrameSource::Video { path: path.to_owned(), capture, next: 0, reported })
}

/// Lists the image files directly in `dir` (not in subfolders such as `aligned/`), sorted by
/// name; other files are skipped with a warning, and a second file with the same stem too.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, FramesError> {
    let mut files = Vec::new();
    let mut stems = HashSet::new();
    let walk = walkdir::WalkDir::new(dir).min_depth(1).max_depth(1).sort_by_file_name();
    for entry in walk {
        let entry =
            entry.map_err(|source| FramesError::ListDir { path: dir.to_owned(), source })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.into_path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let is_stage_file = [".settings.json", ".config.json", ".jsonl", ".journal.json", ".lock"];
        if is_stage_file.iter().any(|suffix| name.ends_with(suffix)) {
            continue; // the stage's own files
        }
        if !is_image_file(&path) {
            log::warn!("skipping {}: not an image file", path.display());
        } else if !stems.insert(image_frame_name(&path)) {
            log::warn!("skipping {}: another image has the same name stem", path.display());
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

fn read_image(path: &Path) -> Result<Mat, String> {
    match imgcodecs::imread(path, imgcodecs::IMREAD_COLOR) {
        Ok(img) if !img.empty() => Ok(img),
        Ok(_) => Err("not a readable image (empty, truncated or another format)".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC3, Scalar, Vector};

    #[test]
    fn video_frames_are_named_from_one() {
        assert_eq!(video_frame_name(0), "00001");
        assert_eq!(video_frame_name(123_455), "123456");
    }

    #[test]
    fn image_folders_skip_junk_and_subfolders_and_keep_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let img = Mat::new_rows_cols_with_default(4, 4, CV_8UC3, Scalar::all(7.0)).unwrap();
        for name in ["b.png", "a.jpg", "c.jpg"] {
            imgcodecs::imwrite(dir.join(name).to_str().unwrap(), &img, &Vector::new()).unwrap();
        }
        std::fs::write(dir.join("c.png"), b"same stem as c.jpg").unwrap();
        std::fs::write(dir.join("readme.txt"), b"text").unwrap();
        std::fs::write(dir.join("zero.jpg"), b"").unwrap();
        std::fs::create_dir(dir.join("aligned")).unwrap();
        imgcodecs::imwrite(dir.join("aligned/x.png").to_str().unwrap(), &img, &Vector::new())
            .unwrap();

        let mut source = FrameSource::open(&Input::Images(dir.to_owned())).unwrap();
        let mut seen = Vec::new();
        let done = HashSet::from(["b".to_owned()]);
        while let Some(frame) = source.next_pending(&done) {
            seen.push((frame.name, frame.image.is_ok()));
        }
        let want = [("a", true), ("c", true), ("zero", false)];
        assert_eq!(seen, want.map(|(n, ok)| (n.to_owned(), ok)));
    }

    #[test]
    fn a_file_that_is_not_a_video_is_refused_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("data_src.mp4");
        std::fs::write(&fake, b"definitely not h264").unwrap();
        let err = FrameSource::open(&Input::Video(fake)).err().expect("refused").to_string();
        assert!(err.contains("data_src.mp4"), "{err}");
    }

    /// A folder of `n` tiny images named `000`, `001`, …
    fn image_folder(n: usize) -> (tempfile::TempDir, FrameSource) {
        let tmp = tempfile::tempdir().unwrap();
        let img = Mat::new_rows_cols_with_default(2, 2, CV_8UC3, Scalar::all(1.0)).unwrap();
        for i in 0..n {
            let path = tmp.path().join(format!("{i:03}.png"));
            imgcodecs::imwrite(path.to_str().unwrap(), &img, &Vector::new()).unwrap();
        }
        let source = FrameSource::open(&Input::Images(tmp.path().to_owned())).unwrap();
        (tmp, source)
    }

    #[test]
    fn the_pipeline_records_in_frame_order_with_bounded_frames_in_flight() {
        let (_tmp, mut source) = image_folder(40);
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let pick = |i: usize, _: &str| {
            if i % 7 == 3 {
                return Pick::Skip;
            }
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            Pick::Take
        };
        // Early frames take longest, so later ones finish first and must wait their turn.
        let work = |f: &Frame| {
            std::thread::sleep(std::time::Duration::from_millis(
                40u64.saturating_sub(f.index as u64),
            ));
            f.index * 10
        };
        let mut recorded = Vec::new();
        for_each_frame(&mut source, pick, work, |f, r| {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(r, f.index * 10);
            recorded.push(f.index);
            Ok::<(), ()>(())
        })
        .unwrap();
        let want: Vec<usize> = (0..40).filter(|i| i % 7 != 3).collect();
        assert_eq!(recorded, want);
        assert!(most.load(Ordering::SeqCst) <= chunk_len(), "{most:?}");
    }

    #[test]
    fn an_error_from_record_stops_the_pipeline_and_is_returned() {
        let (_tmp, mut source) = image_folder(200);
        let worked = std::sync::atomic::AtomicUsize::new(0);
        let work = |_: &Frame| worked.fetch_add(1, Ordering::SeqCst);
        let mut recorded = 0;
        let result = for_each_frame(
            &mut source,
            |_, _| Pick::Take,
            work,
            |f, _| {
                if f.index == 5 {
                    return Err(format!("disk full at {}", f.name));
                }
                recorded += 1;
                Ok(())
            },
        );
        assert_eq!(result, Err("disk full at 005".to_owned()));
        assert_eq!(recorded, 5);
        // Frames in flight when it stopped may have been worked on; the rest were not decoded.
        let worked = worked.load(Ordering::SeqCst);
        assert!(worked < 5 + 3 * chunk_len(), "{worked} of 200 frames were processed");
    }
}
