//! `dfl faceset import-dfl`: DeepFaceLab face files (a folder of DFLJPG/DFLPNG, or a
//! `faceset.pak`) become dfl faces in `data_<side>/aligned/`.
//!
//! Each face keeps its file name and its image bytes (DeepFaceLab's metadata segment is
//! swapped for dfl's; the pixels are not re-encoded). The source files are only read. A face
//! already imported (its name is in the faceset and reads as a dfl face) is left alone, so a
//! rerun after a crash finishes the rest; faces are written with temp file + rename.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dict::{self, DflFace};
use super::frames::{FrameInfo, Frames, least_frame_size};
use super::pak::{Pak, PakError};
use crate::atomic::write_atomic;
use crate::dfl_format::dfljpg;
use crate::face::dflimg;
use crate::face::metadata::{FaceMetadata, METADATA_VERSION, parse_metadata};
use crate::face::seg::XSegMask;
use crate::progress::Progress;
use crate::workspace::{Input, Side, Workspace, is_image_file};

/// The model name an imported applied mask carries: DeepFaceLab does not record which XSeg
/// model made it.
pub const IMPORTED_MASK_MODEL: &str = "deepfacelab";

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// A folder of DeepFaceLab faces, or a `faceset.pak`.
    pub from: PathBuf,
    /// The faceset to import into.
    pub side: Side,
    /// The frames the faces came from (a video or a folder); by default the side's input,
    /// else the folder above `from` when it holds images (DeepFaceLab's `data_dst/aligned`).
    pub frames: Option<PathBuf>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Faces written in this run.
    pub imported: usize,
    /// Faces found imported by an earlier run.
    pub already: usize,
    /// Files that are not usable faces, each with the reason (they were not imported).
    pub skipped: Vec<(String, String)>,
    /// Where the frames were looked for.
    pub frames: Option<PathBuf>,
    /// Imported faces whose frame was not found: their frame size is the least that holds the
    /// face, so they train and sort, but merging them needs the frames.
    pub frame_not_found: usize,
    /// Imported faces with XSeg labels.
    pub labelled: usize,
    /// Imported faces with an applied XSeg mask.
    pub masked: usize,
    /// Faces whose applied mask could not be kept (not a square image of at most 2048 px).
    pub masks_dropped: usize,
    /// Faces whose `eyebrows_expand_mod` was not 1 (dfl has no such setting).
    pub eyebrows_changed: usize,
}

/// Why an import did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Nothing at `from`, or not a folder or `faceset.pak`.
    #[error("{}: not a folder of DeepFaceLab faces or a faceset.pak; pass one", .0.display())]
    NotASource(PathBuf),
    /// The folder could not be listed.
    #[error("{}: cannot list it: {source}", .path.display())]
    List {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pack is damaged.
    #[error("{}: {source}; unpack it with DeepFaceLab, or import the folder of faces", .path.display())]
    Pak {
        /// The pack.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: PakError,
    },
    /// The frames given cannot be read.
    #[error("{}: the frames cannot be read; pass --frames with the video or folder the faces came from", .0.display())]
    Frames(PathBuf),
    /// The faceset folder cannot be made.
    #[error("{}: cannot create it: {source}", .path.display())]
    Create {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The faces to import are the faceset itself.
    #[error("{}: this is the faceset being imported into; move DeepFaceLab's folder aside (e.g. to aligned_dfl) and import from there", .0.display())]
    IntoItself(PathBuf),
    /// Another command holds the faceset.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// Where face bytes come from.
enum Source {
    Folder(Vec<PathBuf>),
    Pak(Pak),
}

/// Imports every face of `opts.from` into the side's faceset.
///
/// # Errors
/// [`ImportError`] when nothing can be imported; bad face files are skipped and reported.
pub fn import_dfl(
    ws: &Workspace,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let aligned = ws.aligned_dir(opts.side);
    let faces_dir = faces_dir(&opts.from);
    if faces_dir
        .and_then(|d| d.canonicalize().ok())
        .is_some_and(|d| aligned.canonicalize().ok() == Some(d))
    {
        return Err(ImportError::IntoItself(opts.from.clone()));
    }
    let source = open_source(&opts.from)?;
    let frames = Frames::new(frames_input(ws, opts, faces_dir)).map_err(ImportError::Frames)?;
    std::fs::create_dir_all(&aligned)
        .map_err(|source| ImportError::Create { path: aligned.clone(), source })?;
    let _lock =
        crate::lock::exclusive(&ws.faceset_lock(opts.side), &format!("the {} faceset", opts.side))?;
    let items: Vec<(String, Item)> = match &source {
        Source::Folder(paths) => paths
            .iter()
            .map(|p| {
                (
                    p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into()),
                    Item::File(p),
                )
            })
            .collect(),
        Source::Pak(pak) => {
            pak.entries.iter().map(|e| (e.name.clone(), Item::Packed(pak, e))).collect()
        }
    };
    progress.set_len(items.len() as u64);
    let outcomes: Vec<(String, Result<Imported, String>)> = items
        .par_iter()
        .map(|(name, item)| {
            let result = import_one(name, item, &aligned, &frames);
            progress.inc(1);
            (name.clone(), result)
        })
        .collect();
    let mut report = ImportReport {
        frames: frames.input().map(|i| i.path().to_owned()),
        ..ImportReport::default()
    };
    for (name, outcome) in outcomes {
        match outcome {
            Ok(Imported::Already) => report.already += 1,
            Ok(Imported::New { frame_found, labelled, masked, mask_dropped, eyebrows_changed }) => {
                report.imported += 1;
                report.frame_not_found += usize::from(!frame_found);
                report.labelled += usize::from(labelled);
                report.masked += usize::from(masked);
                report.masks_dropped += usize::from(mask_dropped);
                report.eyebrows_changed += usize::from(eyebrows_changed);
            }
            Err(why) => report.skipped.push((name, why)),
        }
    }
    Ok(report)
}

fn open_source(from: &Path) -> Result<Source, ImportError> {
    if from.is_dir() {
        let pak = from.join("faceset.pak");
        let list_err = |source| ImportError::List { path: from.to_owned(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(from).map_err(list_err)? {
            let path = entry.map_err(list_err)?.path();
            if path.is_file() && is_image_file(&path) {
                paths.push(path);
            }
        }
        if paths.is_empty() && pak.is_file() {
            return open_pak(&pak);
        }
        paths.sort();
        return Ok(Source::Folder(paths));
    }
    if from.is_file() && from.extension().is_some_and(|e| e.eq_ignore_ascii_case("pak")) {
        return open_pak(from);
    }
    Err(ImportError::NotASource(from.to_owned()))
}

fn open_pak(path: &Path) -> Result<Source, ImportError> {
    Pak::open(path)
        .map(Source::Pak)
        .map_err(|source| ImportError::Pak { path: path.to_owned(), source })
}

/// The folder the faces are in: `from` itself, or the folder of a `faceset.pak`.
fn faces_dir(from: &Path) -> Option<&Path> {
    if from.is_dir() { Some(from) } else { from.parent() }
}

/// `--frames`, else the side's input, else the folder above the faces when it holds images.
fn frames_input(ws: &Workspace, opts: &ImportOptions, faces_dir: Option<&Path>) -> Option<Input> {
    if let Some(path) = &opts.frames {
        return Some(Input::from_path(path).unwrap_or_else(|_| Input::Video(path.clone())));
    }
    ws.find_input(opts.side).or_else(|| {
        let above = std::path::absolute(faces_dir?).ok()?.parent()?.to_owned();
        (crate::workspace::count_images(&above) > 0).then_some(Input::Images(above))
    })
}

/// One face to import.
enum Item<'a> {
    File(&'a PathBuf),
    Packed(&'a Pak, &'a super::pak::Entry),
}

impl Item<'_> {
    fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Item::File(path) => std::fs::read(path),
            Item::Packed(pak, entry) => pak.read(entry),
        }
    }
}

/// What became of one face.
enum Imported {
    /// An earlier run imported it.
    Already,
    /// Written now.
    New {
        frame_found: bool,
        labelled: bool,
        masked: bool,
        mask_dropped: bool,
        eyebrows_changed: bool,
    },
}

fn import_one(
    name: &str,
    item: &Item,
    aligned: &Path,
    frames: &Frames,
) -> Result<Imported, String> {
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")) {
        return Err("not a .jpg or .png face file".into());
    }
    let target = aligned.join(name);
    if target.exists() {
        let bytes = std::fs::read(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        return match parse_metadata(&target, &bytes) {
            Ok(_) => Ok(Imported::Already),
            Err(_) => {
                Err(format!("{} exists and is not a dfl face; move it away", target.display()))
            }
        };
    }
    let bytes = item.bytes().map_err(|e| e.to_string())?;
    let image = dfljpg::read(&bytes).map_err(|e| e.to_string())?;
    let dict = image.metadata.ok_or("no DeepFaceLab metadata (not an aligned face)")?;
    let face = dict::from_dict(&dict)?;
    if image.width != image.height {
        return Err(format!("the face is {}×{}, not square", image.width, image.height));
    }
    let frame = frames.find(&face.source_filename);
    let (meta, mask_dropped) = metadata(name, &face, image.width, frame.as_ref())?;
    let stripped = dfljpg::strip_metadata(&bytes).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
    let out = dflimg::embed(&stripped, &json).map_err(|e| e.to_string())?;
    // The rules every dfl face obeys, checked on what is about to be written.
    parse_metadata(&target, &out).map_err(|e| e.to_string())?;
    write_atomic(&target, &out).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(Imported::New {
        frame_found: frame.is_some(),
        labelled: !meta.seg_ie_polys.is_empty(),
        masked: meta.xseg_mask.is_some(),
        mask_dropped,
        eyebrows_changed: face.eyebrows_expand_mod != 1.0,
    })
}

/// dfl's metadata for a DeepFaceLab face of side `size_px`, and whether its mask was dropped.
fn metadata(
    name: &str,
    face: &DflFace,
    size_px: u32,
    frame: Option<&FrameInfo>,
) -> Result<(FaceMetadata, bool), String> {
    let stem = Path::new(&face.source_filename)
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("source_filename has no name")?
        .to_owned();
    let (source_path, source_size) = match frame {
        Some(f) => (f.path.to_string_lossy().into_owned(), f.size),
        None => (
            face.source_filename.clone(),
            least_frame_size(face.source_rect, face.source_landmarks.points()),
        ),
    };
    let (xseg_mask, mask_dropped) = match &face.xseg_mask {
        Some(bytes) => match decode_mask(bytes) {
            Some(mask) => (Some(mask), false),
            None => (None, true),
        },
        None => (None, false),
    };
    let meta = FaceMetadata {
        version: METADATA_VERSION,
        source_filename: stem.clone(),
        source_path,
        source_size,
        face_index: face_index(name, &stem),
        face_type: face.face_type,
        size_px,
        landmarks: face.landmarks,
        source_landmarks: face.source_landmarks,
        image_to_face_mat: face.image_to_face_mat,
        source_rect: face.source_rect,
        // DeepFaceLab keeps no detector confidence; a face that reached a faceset was kept.
        detector_score: 1.0,
        seg_ie_polys: face.seg_ie_polys.clone(),
        xseg_mask,
    };
    Ok((meta, mask_dropped))
}

/// The face's index in its frame from DeepFaceLab's name `<frame>_<index>.jpg`; 0 for names
/// a sort gave (DeepFaceLab's sorted files are numbered `00000.jpg`, …).
fn face_index(name: &str, frame_stem: &str) -> usize {
    let file_stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    file_stem
        .strip_prefix(frame_stem)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// DeepFaceLab's mask bytes (PNG, or JPEG for a large one) as dfl's binarised PNG.
fn decode_mask(bytes: &[u8]) -> Option<XSegMask> {
    use opencv::core::Vector;
    use opencv::imgcodecs;
    let mat = imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_GRAYSCALE).ok()?;
    XSegMask::encode(IMPORTED_MASK_MODEL, 0, &mat).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_index_comes_from_deepfacelabs_name() {
        assert_eq!(face_index("00017_2.jpg", "00017"), 2);
        assert_eq!(face_index("00017_0.jpg", "00017"), 0);
        assert_eq!(face_index("00042.jpg", "00017"), 0);
        assert_eq!(face_index("00017_x.jpg", "00017"), 0);
    }
}
