//! What a merge run is asked to do and what it reports: the frame range, the run options, the
//! stage-log entry and the report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;

use super::video::{EncodeOptions, Rational};
use crate::progress::Progress;
use crate::report::StageReport;
use crate::workspace::Input;

/// A range of frames by 1-based position: `A..B` (inclusive), `A..`, `..B` or `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameRange {
    /// The first frame (1-based), if bounded.
    pub first: Option<usize>,
    /// The last frame (1-based, inclusive), if bounded.
    pub last: Option<usize>,
}

impl FrameRange {
    /// Returns whether the 0-based frame `index` is in the range.
    pub fn contains(&self, index: usize) -> bool {
        let n = index + 1;
        self.first.is_none_or(|f| n >= f) && self.last.is_none_or(|l| n <= l)
    }

    /// Returns how many frames the range holds of an input that reports `len` frames (0 when
    /// unknown).
    pub fn len_hint(&self, len: usize) -> usize {
        let end = match self.last {
            Some(last) if len > 0 => last.min(len),
            Some(last) => last,
            None => len,
        };
        (end + 1).saturating_sub(self.first.unwrap_or(1))
    }

    /// Returns whether the range ends before the input does.
    pub fn is_bounded_above(&self) -> bool {
        self.last.is_some()
    }

    /// Returns whether the two ranges share a frame.
    pub fn overlaps(&self, other: &FrameRange) -> bool {
        let first = self.first.unwrap_or(1).max(other.first.unwrap_or(1));
        let last = self.last.unwrap_or(usize::MAX).min(other.last.unwrap_or(usize::MAX));
        first <= last
    }
}

impl std::fmt::Display for FrameRange {
    /// The range as `A..B`, `A..`, `..B`, `..` or `N` (one frame), as [`FromStr`] reads it.
    ///
    /// [`FromStr`]: std::str::FromStr
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.first, self.last) {
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (a, b) => {
                if let Some(a) = a {
                    write!(f, "{a}")?;
                }
                f.write_str("..")?;
                if let Some(b) = b {
                    write!(f, "{b}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for FrameRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a frame range; write A..B, A.., ..B or N (1-based)");
        let num = |t: &str| -> Result<Option<usize>, String> {
            let t = t.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<usize>().ok().filter(|&n| n >= 1).map(Some).ok_or_else(bad)
        };
        let range = match s.split_once("..") {
            Some((a, b)) => FrameRange { first: num(a)?, last: num(b.trim_start_matches('='))? },
            None => {
                let n = num(s)?.ok_or_else(bad)?;
                FrameRange { first: Some(n), last: Some(n) }
            }
        };
        if let (Some(a), Some(b)) = (range.first, range.last)
            && a > b
        {
            return Err(bad());
        }
        Ok(range)
    }
}

/// How a merge run goes, beyond the per-face settings.
pub struct MergeOptions<'a> {
    /// The model's name (its folder under `model/`).
    pub model: &'a str,
    /// The XSeg model of the XSeg mask modes (its folder under `xseg/`), if given.
    pub xseg: Option<&'a str>,
    /// The inference device.
    pub device: Device,
    /// Faces per forward pass.
    pub batch_size: usize,
    /// Which frames to merge.
    pub frames: FrameRange,
    /// Continue even though the saved settings differ (re-merges every frame).
    pub force: bool,
    /// Encoding of `result.mp4`; `None` writes frames only.
    pub video: Option<EncodeOptions>,
    /// Also write each frame's blend mask to `data_dst/merged_mask/<frame>.png`.
    pub write_masks: bool,
    /// The frame rate of `result.mp4` for an image-folder dst.
    pub image_fps: Rational,
    /// The dst frames (`--input`); `None` finds them: the workspace's dst video or image
    /// folder, else the input the dst faces were extracted from.
    pub input: Option<Input>,
    /// Frames progress.
    pub progress: &'a dyn Progress,
}

/// One line of `merge.jsonl`: a finished frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeEntry {
    /// The frame's name.
    pub frame: String,
    /// Faces swapped in it.
    pub faces: usize,
    /// What the frame was merged from: a hash of its dst faces ([`DstFaces::key_of`](super::DstFaces::key_of)). A frame
    /// whose faces changed since (a face restored, deleted or re-extracted) is merged again;
    /// an entry without one (an older log) counts as changed.
    #[serde(default)]
    pub faces_key: String,
}

/// What a merge run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MergeReport {
    /// Frame counts: merged now, finished earlier, skipped as unreadable.
    pub frames: StageReport,
    /// Faces swapped in this run.
    pub faces: usize,
    /// Merged frames with no face (copied unchanged).
    pub frames_without_faces: usize,
    /// The model iteration used.
    pub iteration: u64,
    /// `result.mp4`, when it was written in this run.
    pub video: Option<PathBuf>,
    /// Frames of the input still without a merged PNG (when known).
    pub not_merged: Option<usize>,
    /// Face files of `data_dst/aligned` that are not usable faces (not merged).
    pub skipped_faces: usize,
}
