//! The dst faces to swap, read from the metadata of `data_dst/aligned/` (a face the user
//! deleted there is not swapped), grouped by frame, with optional temporal smoothing of each
//! face track's landmarks (faceswap has this; DFL does not).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::face::landmarks::{LANDMARK_COUNT, Landmarks68};
use crate::face::metadata::FaceMetadata;
use crate::faceset::{Faceset, FacesetError};
use crate::progress::NoProgress;

/// Hex digits of a frame's faces key (64 bits).
const FACES_KEY_LEN: usize = 16;
/// Faces linked into one track overlap their previous frame's box by at least this IoU.
const TRACK_MIN_IOU: f32 = 0.3;

/// One dst face to merge.
#[derive(Debug, Clone, PartialEq)]
pub struct DstFaceInfo {
    /// Which face of the frame (0 = the largest at extraction).
    pub face_index: usize,
    /// The frame size the landmarks refer to, `[width, height]`.
    pub source_size: [u32; 2],
    /// The 68 landmarks in the frame (smoothed when asked).
    pub landmarks: Landmarks68,
    /// The detector's box `[x, y, w, h]` in the frame.
    pub rect: [f32; 4],
    /// The mask `dfl xseg apply` wrote into the face file, if any.
    pub xseg: Option<AppliedXSeg>,
}

/// An applied XSeg mask and where its face file sits in the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedXSeg {
    /// The mask as stored.
    pub mask: std::sync::Arc<crate::face::seg::XSegMask>,
    /// Frame → the face file's pixels.
    pub image_to_face_mat: crate::face::align::Affine,
    /// The face file's side in pixels.
    pub size_px: u32,
}

/// The dst faces by frame name.
#[derive(Debug, Default, Clone)]
pub struct DstFaces {
    frames: BTreeMap<String, Vec<DstFaceInfo>>,
}

impl DstFaces {
    /// Reads every face file's metadata in `aligned` (the shared faceset reader). Files that are
    /// not usable faces are skipped with a warning and counted in the second value.
    ///
    /// # Errors
    /// `Missing` when the folder does not exist, `List` when it cannot be listed.
    pub fn read(aligned: &Path) -> Result<(Self, usize), FacesetError> {
        let set = Faceset::read(aligned, &NoProgress)?;
        set.warn_skipped("that face is not merged");
        Ok((Self::of_faceset(&set), set.skipped.len()))
    }

    /// Indexes the faces of a faceset already read (its skipped files are the caller's).
    pub fn of_faceset(set: &Faceset) -> Self {
        let mut faces = DstFaces::default();
        for face in &set.faces {
            faces.insert(&face.meta);
        }
        faces
    }

    fn insert(&mut self, meta: &FaceMetadata) {
        let list = self.frames.entry(meta.source_filename.clone()).or_default();
        if list.iter().any(|f| f.face_index == meta.face_index) {
            log::warn!(
                "frame {} has two files for face {}; keeping the first",
                meta.source_filename,
                meta.face_index
            );
            return;
        }
        list.push(DstFaceInfo {
            face_index: meta.face_index,
            source_size: meta.source_size,
            landmarks: meta.source_landmarks,
            rect: meta.source_rect,
            xseg: meta.xseg_mask.clone().map(|m| AppliedXSeg {
                mask: std::sync::Arc::new(m),
                image_to_face_mat: meta.image_to_face_mat,
                size_px: meta.size_px,
            }),
        });
        list.sort_by_key(|f| f.face_index);
    }

    /// Builds the index from faces given per frame (for tests and tools).
    pub fn from_frames(frames: BTreeMap<String, Vec<DstFaceInfo>>) -> Self {
        Self { frames }
    }

    /// Returns the faces of `frame` (empty when it has none).
    pub fn of(&self, frame: &str) -> &[DstFaceInfo] {
        self.frames.get(frame).map_or(&[], Vec::as_slice)
    }

    /// Returns a key of what frame `frame` is merged from: its faces (index, frame size, box and
    /// landmarks, after smoothing), hashed. Equal keys, equal inputs.
    pub fn key_of(&self, frame: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        for f in self.of(frame) {
            hasher.update(&(f.face_index as u64).to_le_bytes());
            for v in f.source_size {
                hasher.update(&v.to_le_bytes());
            }
            for v in f.rect.iter().chain(f.landmarks.iter().flatten()) {
                hasher.update(&v.to_le_bytes());
            }
            // The applied mask belongs to what a frame is merged from (the XSeg modes read it).
            if let Some(x) = &f.xseg {
                hasher.update(&x.mask.png);
            }
        }
        hasher.finalize().to_hex()[..FACES_KEY_LEN].to_owned()
    }

    /// Returns the number of faces.
    pub fn len(&self) -> usize {
        self.frames.values().map(Vec::len).sum()
    }

    /// Returns how many faces have no applied XSeg mask.
    pub fn without_xseg(&self) -> usize {
        self.frames.values().flatten().filter(|f| f.xseg.is_none()).count()
    }

    /// Returns whether there are no faces.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Averages every face's landmarks with those of the same track in up to `radius` frames
    /// before and after. Frames are ordered by `order` (the source's frame names in order);
    /// a track links a face to the previous frame's face whose box overlaps it most (IoU ≥
    /// 0.3), and ends at a frame without such a face. Returns the smoothed index.
    pub fn smoothed(&self, order: &[String], radius: usize) -> DstFaces {
        if radius == 0 {
            return self.clone();
        }
        let tracks = self.tracks(order);
        let mut out = self.clone();
        for track in &tracks {
            for (k, &(frame, slot)) in track.iter().enumerate() {
                let window = &track[k.saturating_sub(radius)..(k + radius + 1).min(track.len())];
                let mut sum = [[0.0f64; 2]; LANDMARK_COUNT];
                for &(f, s) in window {
                    for (acc, p) in sum.iter_mut().zip(self.of(&order[f])[s].landmarks.iter()) {
                        acc[0] += f64::from(p[0]);
                        acc[1] += f64::from(p[1]);
                    }
                }
                let n = window.len() as f64;
                let smooth = Landmarks68::new(sum.map(|a| [(a[0] / n) as f32, (a[1] / n) as f32]));
                if let Some(list) = out.frames.get_mut(&order[frame]) {
                    list[slot].landmarks = smooth;
                }
            }
        }
        out
    }

    /// Links faces of consecutive frames into tracks of `(frame position, slot)`.
    fn tracks(&self, order: &[String]) -> Vec<Vec<(usize, usize)>> {
        let mut tracks: Vec<Vec<(usize, usize)>> = Vec::new();
        // Track index of each face of the previous frame.
        let mut previous: Vec<(usize, [f32; 4])> = Vec::new();
        for (pos, name) in order.iter().enumerate() {
            let faces = self.of(name);
            let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
            for (slot, face) in faces.iter().enumerate() {
                for (p, (_, rect)) in previous.iter().enumerate() {
                    let iou = iou(&face.rect, rect);
                    if iou >= TRACK_MIN_IOU {
                        pairs.push((iou, slot, p));
                    }
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut assigned: Vec<Option<usize>> = vec![None; faces.len()];
            let mut taken = vec![false; previous.len()];
            for (_, slot, p) in pairs {
                if assigned[slot].is_none() && !taken[p] {
                    assigned[slot] = Some(previous[p].0);
                    taken[p] = true;
                }
            }
            let mut current = Vec::with_capacity(faces.len());
            for (slot, face) in faces.iter().enumerate() {
                let track = match assigned[slot] {
                    Some(t) => t,
                    None => {
                        tracks.push(Vec::new());
                        tracks.len() - 1
                    }
                };
                tracks[track].push((pos, slot));
                current.push((track, face.rect));
            }
            previous = current;
        }
        tracks
    }
}

/// The dst faces of a clip, and their tracks smoothed at each radius in use (a scene may
/// smooth more or less than the rest of the clip).
#[derive(Debug, Clone)]
pub struct ClipFaces {
    raw: DstFaces,
    /// The clip's frame names in order (for a video, a few past its reported end).
    order: Vec<String>,
    /// Each name's 0-based position in `order`.
    positions: HashMap<String, usize>,
    /// The faces smoothed at each radius asked for so far (radius 0 is `raw`).
    smoothed: BTreeMap<u32, DstFaces>,
}

impl ClipFaces {
    /// Wraps the faces of a clip whose frames are named `order`, in order.
    pub fn new(raw: DstFaces, order: Vec<String>) -> Self {
        let positions = order.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Self { raw, order, positions, smoothed: BTreeMap::new() }
    }

    /// Smooths the tracks at `radius` unless that was done already.
    pub fn smooth(&mut self, radius: u32) {
        if radius > 0 && !self.smoothed.contains_key(&radius) {
            let faces = self.raw.smoothed(&self.order, radius as usize);
            self.smoothed.insert(radius, faces);
        }
    }

    /// Drops the faces smoothed at every radius but `radius` (each radius holds a copy of the
    /// clip's faces).
    pub fn keep_only(&mut self, radius: u32) {
        self.smoothed.retain(|&r, _| r == radius);
    }

    /// Returns the faces smoothed at `radius` (unsmoothed when [`ClipFaces::smooth`] was not
    /// asked for that radius).
    pub fn at(&self, radius: u32) -> &DstFaces {
        debug_assert!(radius == 0 || self.smoothed.contains_key(&radius), "radius {radius}");
        self.smoothed.get(&radius).unwrap_or(&self.raw)
    }

    /// Returns the faces as extracted.
    pub fn raw(&self) -> &DstFaces {
        &self.raw
    }

    /// Returns the 0-based position of frame `name` in the clip.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// Returns the frame names in order.
    pub fn order(&self) -> &[String] {
        &self.order
    }
}

/// Intersection over union of two `[x, y, w, h]` boxes.
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let h = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(index: usize, x: f32, jitter: f32) -> DstFaceInfo {
        DstFaceInfo {
            xseg: None,
            face_index: index,
            source_size: [640, 480],
            landmarks: Landmarks68::new(std::array::from_fn(|i| {
                [x + i as f32 + jitter, 100.0 + jitter]
            })),
            rect: [x, 80.0, 100.0, 100.0],
        }
    }

    /// Two faces per frame, far apart; the left one jitters ±2 px around a fixed position.
    fn clip(frames: usize) -> (DstFaces, Vec<String>) {
        let order: Vec<String> = (1..=frames).map(|i| format!("{i:05}")).collect();
        let map = order
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let jitter = if i % 2 == 0 { 2.0 } else { -2.0 };
                (n.clone(), vec![face(0, 50.0, jitter), face(1, 400.0 + i as f32 * 3.0, 0.0)])
            })
            .collect();
        (DstFaces::from_frames(map), order)
    }

    #[test]
    fn smoothing_removes_jitter_and_keeps_steady_motion() {
        let (faces, order) = clip(9);
        let smooth = faces.smoothed(&order, 2);
        // Frame 5 (position 4): the left face's window holds 3 frames at +2 and 2 at −2.
        let left = &smooth.of("00005")[0].landmarks[0];
        assert!((left[0] - 50.4).abs() < 1e-4, "{left:?}");
        // The right face moves 3 px per frame: a centred average keeps it where it is.
        let right = &smooth.of("00005")[1].landmarks[0];
        assert!((right[0] - (400.0 + 12.0)).abs() < 1e-4, "{right:?}");
        // Faces are not mixed between tracks, and radius 0 changes nothing.
        assert!(smooth.of("00005")[1].landmarks[0][0] > 300.0);
        assert_eq!(faces.smoothed(&order, 0).of("00003"), faces.of("00003"));
    }

    #[test]
    fn a_frame_without_the_face_ends_its_track() {
        let (faces, order) = clip(5);
        let mut frames = faces.frames.clone();
        frames.insert("00003".into(), vec![]);
        let smooth = DstFaces::from_frames(frames).smoothed(&order, 3);
        // Frame 2's track is frames 1–2 only: (+2 − 2)/2 = 0 jitter.
        assert!((smooth.of("00002")[0].landmarks[0][0] - 50.0).abs() < 1e-4);
        assert_eq!(smooth.of("00003"), &[]);
    }

    #[test]
    fn box_overlap() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[5.0, 5.0, 1.0, 1.0]), 0.0);
    }
}
