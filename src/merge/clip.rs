//! Random access to the dst frames, for a caller that jumps around the clip (the studio's
//! merge tuner) rather than reading it in order as `dfl merge` does.
//!
//! A video is read forward from where the decoder stands when the frame asked for is a little
//! ahead, and sought with OpenCV (`CAP_PROP_POS_FRAMES`) otherwise; a seek that lands
//! elsewhere than asked (some containers seek to the nearest keyframe only) is redone by
//! decoding from the start. The last few frames decoded are kept, so going back and forth
//! between neighbours decodes nothing.

use std::collections::VecDeque;
use std::path::PathBuf;

use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use super::MergeError;
use crate::frames::{FramesError, image_frame_name, list_images, video_frame_name};
use crate::workspace::Input;

/// Frames ahead of the decoder that are reached by decoding forward rather than seeking.
const READ_AHEAD_FRAMES: usize = 48;
/// Decoded frames kept.
const KEPT_FRAMES: usize = 4;

/// Reads any frame of a dst input by its 0-based index.
pub struct FrameReader {
    source: Source,
    /// Recently decoded frames, the newest last.
    kept: VecDeque<(usize, Mat)>,
}

enum Source {
    Video {
        path: PathBuf,
        capture: VideoCapture,
        /// The index of the frame the next `read` returns.
        next: usize,
        /// Frames in the video.
        len: usize,
    },
    Images(Vec<PathBuf>),
}

impl FrameReader {
    /// Opens `input`. A video whose container does not say how many frames it holds is
    /// decoded once to count them.
    ///
    /// # Errors
    /// `Frames` when the input is missing or does not open.
    pub fn open(input: &Input) -> Result<Self, MergeError> {
        let path = input.path();
        if !path.exists() {
            return Err(FramesError::Missing(path.to_owned()).into());
        }
        let source = match input {
            Input::Images(dir) => Source::Images(list_images(dir)?),
            Input::Video(path) => {
                let mut capture = open_video(path)?;
                let reported = capture.get(videoio::CAP_PROP_FRAME_COUNT).unwrap_or(0.0);
                let len = if reported.is_finite() && reported >= 1.0 {
                    reported as usize
                } else {
                    let mut n = 0;
                    while capture.grab().unwrap_or(false) {
                        n += 1;
                    }
                    capture = open_video(path)?;
                    n
                };
                Source::Video { path: path.clone(), capture, next: 0, len }
            }
        };
        Ok(Self { source, kept: VecDeque::new() })
    }

    /// Returns how many frames the input holds (a video: as its container says).
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Video { len, .. } => *len,
            Source::Images(files) => files.len(),
        }
    }

    /// Returns whether the input holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the name of the 0-based frame `index` (`None` past the end).
    pub fn name(&self, index: usize) -> Option<String> {
        match &self.source {
            Source::Video { len, .. } => (index < *len).then(|| video_frame_name(index)),
            Source::Images(files) => files.get(index).map(|f| image_frame_name(f)),
        }
    }

    /// Decodes the 0-based frame `index` (BGR u8).
    ///
    /// # Errors
    /// `Preview` naming the frame when it is past the end or does not decode.
    pub fn read(&mut self, index: usize) -> Result<Mat, MergeError> {
        if let Some(k) = self.kept.iter().position(|(i, _)| *i == index) {
            let entry = self.kept.remove(k).expect("invariant: k is a position of kept");
            let image = entry.1.try_clone()?;
            self.kept.push_back(entry);
            return Ok(image);
        }
        let image = match &mut self.source {
            Source::Images(files) => {
                let file = files.get(index).ok_or_else(|| past_end(index, files.len()))?;
                match imgcodecs::imread(file, imgcodecs::IMREAD_COLOR) {
                    Ok(img) if !img.empty() => img,
                    _ => return Err(undecodable(index, file)),
                }
            }
            Source::Video { path, capture, next, len } => {
                if index >= *len {
                    return Err(past_end(index, *len));
                }
                read_video_frame(path, capture, next, index)?
            }
        };
        if self.kept.len() == KEPT_FRAMES {
            self.kept.pop_front();
        }
        self.kept.push_back((index, image.try_clone()?));
        Ok(image)
    }
}

/// Decodes video frame `index`: forward from `next` when it is a little ahead, else after a
/// seek that is checked, else from the start.
fn read_video_frame(
    path: &std::path::Path,
    capture: &mut VideoCapture,
    next: &mut usize,
    index: usize,
) -> Result<Mat, MergeError> {
    let ahead = index >= *next && index - *next <= READ_AHEAD_FRAMES;
    if !ahead && index > READ_AHEAD_FRAMES {
        let sought = capture.set(videoio::CAP_PROP_POS_FRAMES, index as f64).unwrap_or(false);
        let at = capture.get(videoio::CAP_PROP_POS_FRAMES).unwrap_or(-1.0);
        if sought && at == index as f64 {
            *next = index;
        } else {
            log::debug!("{}: seeking to frame {index} landed at {at}", path.display());
            *capture = open_video(path)?;
            *next = 0;
        }
    } else if !ahead {
        *capture = open_video(path)?;
        *next = 0;
    }
    while *next < index {
        if !capture.grab().unwrap_or(false) {
            return Err(undecodable(index, path));
        }
        *next += 1;
    }
    let mut image = Mat::default();
    match capture.read(&mut image) {
        Ok(true) if !image.empty() => {
            *next += 1;
            Ok(image)
        }
        _ => {
            // The decoder's position is unknown after a failed read: start over next time.
            *capture = open_video(path)?;
            *next = 0;
            Err(undecodable(index, path))
        }
    }
}

fn open_video(path: &std::path::Path) -> Result<VideoCapture, MergeError> {
    let bad = || MergeError::Frames(FramesError::BadVideo(path.to_owned()));
    let capture = VideoCapture::from_file(path, videoio::CAP_FFMPEG).map_err(|_| bad())?;
    if !capture.is_opened().unwrap_or(false) {
        return Err(bad());
    }
    Ok(capture)
}

fn past_end(index: usize, len: usize) -> MergeError {
    MergeError::Preview(format!(
        "frame {} is past the end of the dst input ({len} frames); pick 1 to {len}",
        index + 1
    ))
}

fn undecodable(index: usize, path: &std::path::Path) -> MergeError {
    MergeError::Preview(format!(
        "frame {} of {} does not decode; pick another frame",
        index + 1,
        path.display()
    ))
}
