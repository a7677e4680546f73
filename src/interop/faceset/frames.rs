//! The frames DeepFaceLab faces came from: their path and size, which DeepFaceLab's metadata
//! does not keep (a face names only its frame's file, e.g. `00017.png`) but a dfl face must
//! (merge checks every face against its frame).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use crate::dfl_format::dfljpg;
use crate::workspace::{IMAGE_EXTENSIONS, Input};

/// A frame's file (or the video) and its `[width, height]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FrameInfo {
    /// The video, or the frame's image file.
    pub path: PathBuf,
    /// `[width, height]` in pixels.
    pub size: [u32; 2],
}

/// Finds the frames of faces, caching what it read (frames are shared by several faces).
#[derive(Debug)]
pub(super) struct Frames {
    input: Option<Input>,
    video_size: Option<[u32; 2]>,
    cache: Mutex<HashMap<String, Option<FrameInfo>>>,
}

impl Frames {
    /// Looks for frames in `input` (a video or a folder of images), or nowhere.
    ///
    /// # Errors
    /// The video's path when it cannot be opened or has no frame size.
    pub fn new(input: Option<Input>) -> Result<Self, PathBuf> {
        let video_size = match &input {
            Some(Input::Video(path)) => Some(video_size(path).ok_or_else(|| path.clone())?),
            _ => None,
        };
        Ok(Self { input, video_size, cache: Mutex::default() })
    }

    /// Where the frames are looked for.
    pub fn input(&self) -> Option<&Input> {
        self.input.as_ref()
    }

    /// The frame named `source_filename` (`00017.png`): in a video, frame 17; in a folder, the
    /// file of that name, or another image with the same stem. `None` when it is not there.
    pub fn find(&self, source_filename: &str) -> Option<FrameInfo> {
        let stem = Path::new(source_filename).file_stem()?.to_str()?.to_owned();
        match (&self.input, self.video_size) {
            (Some(Input::Video(path)), Some(size)) => {
                stem.parse::<u64>().ok().filter(|&n| n >= 1)?;
                Some(FrameInfo { path: path.clone(), size })
            }
            (Some(Input::Images(dir)), _) => {
                let cache = |info: Option<FrameInfo>| {
                    let mut map = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    map.insert(stem.clone(), info.clone());
                    info
                };
                if let Some(known) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&stem)
                {
                    return known.clone();
                }
                let named = dir.join(source_filename);
                let candidates = std::iter::once(named)
                    .chain(IMAGE_EXTENSIONS.iter().map(|ext| dir.join(format!("{stem}.{ext}"))));
                let found = candidates
                    .filter(|p| p.is_file())
                    .find_map(|path| Some(FrameInfo { size: image_size(&path)?, path }));
                cache(found)
            }
            _ => None,
        }
    }
}

/// The size of a video's frames.
fn video_size(path: &Path) -> Option<[u32; 2]> {
    let capture = VideoCapture::from_file(path.to_str()?, videoio::CAP_FFMPEG).ok()?;
    let side = |prop| {
        let v = capture.get(prop).ok()?;
        (v.is_finite() && v >= 1.0 && v <= f64::from(u32::MAX)).then_some(v as u32)
    };
    Some([side(videoio::CAP_PROP_FRAME_WIDTH)?, side(videoio::CAP_PROP_FRAME_HEIGHT)?])
}

/// The size of an image: from the JPEG or PNG header when it has one, else by decoding it.
fn image_size(path: &Path) -> Option<[u32; 2]> {
    let bytes = std::fs::read(path).ok()?;
    if let Ok(layout) = dfljpg::layout(&bytes) {
        return Some([layout.width, layout.height]);
    }
    let image = crate::img::read_image(path).ok()?;
    Some([u32::try_from(image.cols()).ok()?, u32::try_from(image.rows()).ok()?])
}

/// The smallest frame that holds the face's box and landmarks: what an import records when
/// the frame is not found (merging such a face asks for the frames).
pub(super) fn least_frame_size(rect: [f32; 4], points: &[[f32; 2]]) -> [u32; 2] {
    let right = points.iter().map(|p| p[0]).fold(rect[0] + rect[2], f32::max);
    let bottom = points.iter().map(|p| p[1]).fold(rect[1] + rect[3], f32::max);
    let side = |v: f32| (v.ceil().max(1.0) as u32).clamp(1, 65_536);
    [side(right), side(bottom)]
}
