//! `dfl faceset export-dfl`: a dfl faceset written as DeepFaceLab's DFLJPG files, so a user
//! can go back to DeepFaceLab (or use its tools) at any time.
//!
//! A JPEG face keeps its image bytes: dfl's metadata segments are taken out and DeepFaceLab's
//! pickled dict goes in one APP15 segment after the last `APPn`, where DeepFaceLab puts it.
//! DeepFaceLab reads only `.jpg` faces, so a PNG face is re-encoded as a JPEG at quality 100
//! (counted in the report). The faceset itself is only read; a rerun skips the files it
//! already wrote (same bytes) and never overwrites a different file.

use std::path::{Path, PathBuf};

use opencv::core::Vector;
use opencv::imgcodecs;
use opencv::prelude::*;
use rayon::prelude::*;

use super::dict;
use crate::atomic::write_atomic;
use crate::dfl_format::{dfljpg, pickle};
use crate::face::dflimg;
use crate::face::metadata::FaceMetadata;
use crate::faceset::{Faceset, FacesetError};
use crate::progress::{NoProgress, Progress};
use crate::workspace::{Side, Workspace};

/// The JPEG quality of re-encoded PNG faces.
const REENCODE_QUALITY: i32 = 100;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The faceset to export.
    pub side: Side,
    /// The folder to write DeepFaceLab's faces into (created if needed).
    pub out: PathBuf,
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    /// Faces written in this run.
    pub exported: usize,
    /// Faces an earlier run wrote (the same bytes are there).
    pub already: usize,
    /// PNG faces re-encoded as JPEG.
    pub reencoded: usize,
    /// Faces not exported, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Why an export did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// The output folder cannot be made.
    #[error("{}: cannot create it: {source}; pass --out with a folder you can write", .path.display())]
    Create {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The output folder is the faceset itself.
    #[error("{}: --out is the faceset itself; pass another folder", .0.display())]
    IntoItself(PathBuf),
    /// Another command holds the faceset exclusively.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// Writes every face of the side's faceset into `opts.out` as a DeepFaceLab face.
///
/// # Errors
/// [`ExportError`] when nothing can be exported; faces that fail are skipped and reported.
pub fn export_dfl(
    ws: &Workspace,
    opts: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport, ExportError> {
    let aligned = ws.aligned_dir(opts.side);
    std::fs::create_dir_all(&opts.out)
        .map_err(|source| ExportError::Create { path: opts.out.clone(), source })?;
    let same = |a: &Path, b: &Path| {
        a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a))
    };
    if same(&aligned, &opts.out) {
        return Err(ExportError::IntoItself(opts.out.clone()));
    }
    let _lock =
        crate::lock::shared(&ws.faceset_lock(opts.side), &format!("the {} faceset", opts.side))?;
    let set = Faceset::read(&aligned, &NoProgress)?;
    let mut report = ExportReport::default();
    for s in &set.skipped {
        report.skipped.push((s.path.display().to_string(), s.error.to_string()));
    }
    progress.set_len(set.faces.len() as u64);
    let outcomes: Vec<(String, Result<Exported, String>)> = set
        .faces
        .par_iter()
        .enumerate()
        .map(|(i, face)| {
            let result = export_one(&set.path(i), &face.meta, &opts.out);
            progress.inc(1);
            (face.name.clone(), result)
        })
        .collect();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(Exported::Already) => report.already += 1,
            Ok(Exported::New { reencoded }) => {
                report.exported += 1;
                report.reencoded += usize::from(reencoded);
            }
            Err(why) => report.skipped.push((name, why)),
        }
    }
    Ok(report)
}

enum Exported {
    Already,
    New { reencoded: bool },
}

fn export_one(path: &Path, meta: &FaceMetadata, out_dir: &Path) -> Result<Exported, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (jpeg, reencoded) = if bytes.starts_with(&[0xFF, 0xD8]) {
        (dflimg::strip(&bytes).map_err(|e| e.to_string())?, false)
    } else {
        (reencode(path)?, true)
    };
    let dict = dict::to_dict(meta, &source_file_name(meta));
    let out = dfljpg::embed_jpeg(&jpeg, &pickle::dumps(&dict)).map_err(|e| e.to_string())?;
    let stem =
        Path::new(path).file_stem().and_then(|s| s.to_str()).ok_or("the file has no name")?;
    let target = out_dir.join(format!("{stem}.jpg"));
    match std::fs::read(&target) {
        Ok(existing) if existing == out => return Ok(Exported::Already),
        Ok(_) => {
            return Err(format!(
                "{} exists with other bytes; export into an empty folder",
                target.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", target.display())),
    }
    write_atomic(&target, &out).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(Exported::New { reencoded })
}

/// The frame's file name DeepFaceLab keeps (`00017.png`): the source image's own name when
/// the face came from an image of that name, else the frame name with DeepFaceLab's `.png`
/// (the extension of the frames its video extraction writes).
fn source_file_name(meta: &FaceMetadata) -> String {
    let source = Path::new(&meta.source_path);
    let own = source.file_stem().and_then(|s| s.to_str()) == Some(meta.source_filename.as_str())
        && crate::workspace::is_image_file(source);
    match source.file_name().and_then(|n| n.to_str()) {
        Some(name) if own => name.to_owned(),
        _ => format!("{}.png", meta.source_filename),
    }
}

/// A PNG face as JPEG bytes at [`REENCODE_QUALITY`].
fn reencode(path: &Path) -> Result<Vec<u8>, String> {
    let image = crate::img::read_image(path).map_err(|e| e.to_string())?;
    let mut out = Vector::<u8>::new();
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, REENCODE_QUALITY]);
    imgcodecs::imencode(".jpg", &image, &mut out, &params).map_err(|e| e.to_string())?;
    Ok(out.to_vec())
}
