//! `dfl xseg apply`, `remove` and `fetch`: write a trained model's mask into every face of a
//! side, take applied masks out again (labels stay), and copy the labelled faces to a folder.
//!
//! Apply rewrites only each face's metadata (the pixels' bytes are kept), one face at a time
//! and atomically, so a kill leaves every face either as it was or done; a rerun skips faces
//! that already carry this model's mask at this iteration. Faces are decoded in parallel and
//! segmented in batches.

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use opencv::core::Mat;

use rayon::prelude::*;

use crate::face::metadata::{FaceFileError, read_face_image, rewrite_metadata};
use crate::face::seg::XSegMask;
use crate::faceset::{Face, Faceset, FacesetError};
use crate::lock::LockError;
use crate::model::xseg::{FaceIn, XSegError, XSegModel};
use crate::progress::Progress;
use crate::workspace::{Side, Workspace};

/// Faces segmented per forward pass.
pub const APPLY_BATCH: usize = 32;

/// Errors that stop apply, remove or fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Another process writes the faceset.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// The model cannot run.
    #[error(transparent)]
    Model(#[from] XSegError),
    /// The fetch folder cannot be written.
    #[error("{}: {source}; choose another --out or free some space", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What apply or remove did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Faces written.
    pub written: usize,
    /// Faces already done (apply: this model and iteration; remove: no mask).
    pub unchanged: usize,
    /// Faces that could not be read or rewritten, left as they were: (file, why).
    pub failed: Vec<(PathBuf, String)>,
    /// Files of the folder that are not dfl faces (not touched).
    pub not_faces: usize,
}

/// Writes `model`'s mask into every face of `side` that does not carry it yet.
///
/// # Errors
/// `Lock` when another process uses the faceset, `Faceset` when it cannot be listed, `Model`
/// when the model fails on a whole batch.
pub fn apply(
    ws: &Workspace,
    side: Side,
    model: &XSegModel,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    let _lock = crate::lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let set = Faceset::read(&ws.aligned_dir(side), &crate::progress::NoProgress)?;
    let mut report = ApplyReport { not_faces: set.skipped.len(), ..ApplyReport::default() };
    let done = |f: &Face| {
        f.meta
            .xseg_mask
            .as_ref()
            .is_some_and(|m| m.model == model.name() && m.iteration == model.iteration())
    };
    let todo: Vec<&Face> = set.faces.iter().filter(|f| !done(f)).collect();
    report.unchanged = set.faces.len() - todo.len();
    progress.set_len(set.faces.len() as u64);
    progress.inc(report.unchanged as u64);
    let (name, iteration) = (model.name(), model.iteration());
    let dir = &set.dir;
    // Three stages overlap: one thread decodes the next batch while the model segments this
    // one, and another encodes and rewrites the previous one (each on all cores).
    let written = std::thread::scope(|scope| -> Result<Vec<Written>, ApplyError> {
        let (to_model, decoded) = sync_channel::<Vec<Decoded<'_>>>(1);
        let (to_writer, predicted) = sync_channel::<Vec<(PathBuf, Mat)>>(1);
        scope.spawn(move || {
            for chunk in todo.chunks(APPLY_BATCH) {
                let items = chunk
                    .par_iter()
                    .map(|f| {
                        let path = dir.join(&f.name);
                        let image = read_face_image(&path);
                        (*f, path, image)
                    })
                    .collect();
                if to_model.send(items).is_err() {
                    return; // the model's side stopped (an error); it reports
                }
            }
        });
        let writer = scope.spawn(move || {
            let mut results = Vec::new();
            for batch in predicted {
                results.extend(
                    batch
                        .par_iter()
                        .map(|(path, mask)| {
                            let fail = |e: String| (path.clone(), e);
                            let encoded = XSegMask::encode(name, iteration, mask)
                                .map_err(|e| fail(e.to_string()))?;
                            let r = rewrite_metadata(path, |m| m.xseg_mask = Some(encoded))
                                .map_err(|e| fail(e.to_string()));
                            progress.inc(1);
                            r
                        })
                        .collect::<Vec<_>>(),
                );
            }
            results
        });
        let mut unreadable = Vec::new();
        for items in decoded {
            let mut ready = Vec::new();
            for (face, path, image) in items {
                match image {
                    Ok(image) => ready.push((face, path, image)),
                    Err(e) => {
                        unreadable.push(Err((path, e.to_string())));
                        progress.inc(1);
                    }
                }
            }
            let inputs: Vec<FaceIn<'_>> = ready
                .iter()
                .map(|(face, _, image)| FaceIn {
                    image,
                    landmarks: &face.meta.landmarks,
                    face_type: face.meta.face_type,
                })
                .collect();
            let masks = model.predict_faces(&inputs, APPLY_BATCH)?;
            let out = ready.into_iter().zip(masks).map(|((_, path, _), m)| (path, m)).collect();
            if to_writer.send(out).is_err() {
                break;
            }
        }
        drop(to_writer);
        let mut written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        written.extend(unreadable);
        Ok(written)
    })?;
    tally(&mut report, written);
    Ok(report)
}

/// A face, its file and its decoded pixels (or why they do not decode).
type Decoded<'f> = (&'f Face, PathBuf, Result<Mat, FaceFileError>);
/// Whether a face was rewritten, or its file and why it was left as it was.
type Written = Result<bool, (PathBuf, String)>;

/// Removes the applied mask from every face of `side` (labels stay).
///
/// # Errors
/// As [`apply`].
pub fn remove(
    ws: &Workspace,
    side: Side,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    let _lock = crate::lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let set = Faceset::read(&ws.aligned_dir(side), &crate::progress::NoProgress)?;
    let mut report = ApplyReport { not_faces: set.skipped.len(), ..ApplyReport::default() };
    progress.set_len(set.faces.len() as u64);
    let written: Vec<Result<bool, (PathBuf, String)>> = set
        .faces
        .par_iter()
        .map(|face| {
            let path = set.dir.join(&face.name);
            let r = if face.meta.xseg_mask.is_none() {
                Ok(false)
            } else {
                rewrite_metadata(&path, |m| m.xseg_mask = None)
                    .map_err(|e| (path.clone(), e.to_string()))
            };
            progress.inc(1);
            r
        })
        .collect();
    tally(&mut report, written);
    Ok(report)
}

fn tally(report: &mut ApplyReport, results: Vec<Written>) {
    for r in results {
        match r {
            Ok(true) => report.written += 1,
            Ok(false) => report.unchanged += 1,
            Err(e) => report.failed.push(e),
        }
    }
}

/// What fetch did.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Labelled faces copied.
    pub copied: usize,
    /// Labelled faces already there with the same bytes.
    pub unchanged: usize,
    /// The folder written.
    pub out: PathBuf,
}

/// Copies the labelled faces of `side` into `out` (default: `aligned_xseg/` beside the
/// faceset), each atomically; files already there with the same bytes are left alone.
///
/// # Errors
/// `Lock`, `Faceset`, or `Io` naming the file that could not be written.
pub fn fetch(ws: &Workspace, side: Side, out: Option<&Path>) -> Result<FetchReport, ApplyError> {
    let _lock = crate::lock::shared(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let set = Faceset::read(&ws.aligned_dir(side), &crate::progress::NoProgress)?;
    let out = out.map_or_else(|| ws.side_dir(side).join("aligned_xseg"), Path::to_owned);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ApplyError::Io { path, source }
    };
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let mut report = FetchReport { out: out.clone(), ..FetchReport::default() };
    for face in set.faces.iter().filter(|f| !f.meta.seg_ie_polys.is_empty()) {
        let (from, to) = (set.dir.join(&face.name), out.join(&face.name));
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        if std::fs::read(&to).is_ok_and(|old| old == bytes) {
            report.unchanged += 1;
            continue;
        }
        crate::atomic::write_atomic(&to, &bytes).map_err(io(&to))?;
        report.copied += 1;
    }
    Ok(report)
}
