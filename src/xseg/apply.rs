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
    let files = Files { dir: &set.dir, name: model.name(), iteration: model.iteration(), progress };
    let stages = Stages { files, model };
    let chunks = todo.chunks(APPLY_BATCH);
    let written = if model.device().is_cuda() {
        stages.overlapped(chunks)?
    } else {
        stages.in_turn(chunks)?
    };
    tally(&mut report, written);
    Ok(report)
}

/// A face, its file and its decoded pixels (or why they do not decode).
type Decoded<'f> = (&'f Face, PathBuf, Result<Mat, FaceFileError>);
/// Whether a face was rewritten, or its file and why it was left as it was.
type Written = Result<bool, (PathBuf, String)>;

/// Apply's three stages over one batch of faces: decode the files (on all cores), segment
/// them (one forward pass), encode the masks and rewrite the files (on all cores).
struct Stages<'a> {
    files: Files<'a>,
    model: &'a XSegModel,
}

/// The stages that read and write files (shareable with other threads; the model is not).
#[derive(Clone, Copy)]
struct Files<'a> {
    dir: &'a Path,
    name: &'a str,
    iteration: u64,
    progress: &'a dyn Progress,
}

impl Stages<'_> {
    /// Runs the stages one after the other for each batch, each with every core: on a CPU
    /// the network already uses all of them, and work beside it would only slow it down
    /// (its OpenMP threads wait for the slowest of them at every layer).
    fn in_turn<'f>(
        &self,
        chunks: impl Iterator<Item = &'f [&'f Face]>,
    ) -> Result<Vec<Written>, ApplyError> {
        let mut written = Vec::new();
        for chunk in chunks {
            let decoded = self.files.decode(chunk);
            let masks = self.segment(decoded, &mut written)?;
            written.extend(self.files.write(&masks));
        }
        Ok(written)
    }

    /// Overlaps the stages: one thread decodes the next batch while the device segments this
    /// one, and another encodes and rewrites the previous one.
    fn overlapped<'f>(
        &self,
        chunks: impl Iterator<Item = &'f [&'f Face]> + Send,
    ) -> Result<Vec<Written>, ApplyError> {
        let files = self.files;
        std::thread::scope(|scope| {
            let (to_model, decoded) = sync_channel::<Vec<Decoded<'f>>>(1);
            let (to_writer, predicted) = sync_channel::<Vec<(PathBuf, Mat)>>(1);
            scope.spawn(move || {
                for chunk in chunks {
                    if to_model.send(files.decode(chunk)).is_err() {
                        return; // the model's side stopped (an error); it reports
                    }
                }
            });
            let writer = scope.spawn(move || {
                predicted.into_iter().flat_map(|batch| files.write(&batch)).collect::<Vec<_>>()
            });
            let mut unreadable = Vec::new();
            for items in decoded {
                if to_writer.send(self.segment(items, &mut unreadable)?).is_err() {
                    break;
                }
            }
            drop(to_writer);
            let mut written =
                writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            written.extend(unreadable);
            Ok(written)
        })
    }

    /// Segments the faces that decoded; those that did not go to `unreadable`.
    fn segment(
        &self,
        items: Vec<Decoded<'_>>,
        unreadable: &mut Vec<Written>,
    ) -> Result<Vec<(PathBuf, Mat)>, ApplyError> {
        let mut ready = Vec::new();
        for (face, path, image) in items {
            match image {
                Ok(image) => ready.push((face, path, image)),
                Err(e) => {
                    unreadable.push(Err((path, e.to_string())));
                    self.files.progress.inc(1);
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
        let masks = self.model.predict_faces(&inputs, APPLY_BATCH)?;
        Ok(ready.into_iter().zip(masks).map(|((_, path, _), m)| (path, m)).collect())
    }
}

impl Files<'_> {
    fn decode<'f>(&self, chunk: &[&'f Face]) -> Vec<Decoded<'f>> {
        chunk
            .par_iter()
            .map(|f| {
                let path = self.dir.join(&f.name);
                let image = read_face_image(&path);
                (*f, path, image)
            })
            .collect()
    }

    fn write(&self, batch: &[(PathBuf, Mat)]) -> Vec<Written> {
        let (name, iteration) = (self.name, self.iteration);
        batch
            .par_iter()
            .map(|(path, mask)| {
                let fail = |e: String| (path.clone(), e);
                let encoded =
                    XSegMask::encode(name, iteration, mask).map_err(|e| fail(e.to_string()))?;
                let r = rewrite_metadata(path, |m| m.xseg_mask = Some(encoded))
                    .map_err(|e| fail(e.to_string()));
                self.progress.inc(1);
                r
            })
            .collect()
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use tch::Device;

    use super::*;
    use crate::face::seg::{PolyKind, SegPoly};
    use crate::face::testutil::write_faceset;
    use crate::model::xseg::{XSegConfig, XSegFolder};
    use crate::progress::NoProgress;
    use crate::xseg::train::{XSegRunOptions, train};

    /// Both schedules write the same bytes into every face and report the same unreadable
    /// file, over several full batches and a partial one.
    #[test]
    fn in_turn_and_overlapped_write_the_same_faces() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        let dir = ws.aligned_dir(Side::Dst);
        std::fs::create_dir_all(&dir).unwrap();
        let n = 2 * APPLY_BATCH + 5;
        let files = write_faceset(&dir, n, 64, |i| i as f64 * 0.01);
        let square = vec![[16.0, 16.0], [48.0, 16.0], [48.0, 48.0], [16.0, 48.0]];
        let label = SegPoly { kind: PolyKind::Include, points: square };
        rewrite_metadata(&files[0], |m| m.seg_ie_polys = vec![label]).unwrap();
        let cfg = XSegConfig { resolution: 64, batch_size: 2, ..XSegConfig::default() };
        let stop = Arc::new(AtomicBool::new(false));
        let opts = XSegRunOptions {
            name: "t",
            iterations: Some(1),
            stop,
            device: Device::Cpu,
            progress: &NoProgress,
        };
        train(&cfg, &ws, &opts).unwrap();
        let model = XSegModel::load(&XSegFolder::open(&ws, "t").unwrap(), Device::Cpu).unwrap();
        // A face whose pixels no longer decode (its metadata still reads).
        let broken = &files[APPLY_BATCH + 3];
        let mut bytes = std::fs::read(broken).unwrap();
        let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
        bytes[idat + 4..idat + 20].fill(0xA5);
        std::fs::write(broken, &bytes).unwrap();
        let twin = tmp.path().join("twin");
        std::fs::create_dir_all(&twin).unwrap();
        for f in &files {
            std::fs::copy(f, twin.join(f.file_name().unwrap())).unwrap();
        }

        let run = |dir: &Path, overlapped: bool| {
            let set = Faceset::read(dir, &NoProgress).unwrap();
            let files = Files {
                dir,
                name: model.name(),
                iteration: model.iteration(),
                progress: &NoProgress,
            };
            let stages = Stages { files, model: &model };
            let faces: Vec<&Face> = set.faces.iter().collect();
            let chunks = faces.chunks(APPLY_BATCH);
            let mut report = ApplyReport::default();
            let written =
                if overlapped { stages.overlapped(chunks) } else { stages.in_turn(chunks) };
            tally(&mut report, written.unwrap());
            report
        };
        let in_turn = run(&dir, false);
        let overlapped = run(&twin, true);
        for report in [&in_turn, &overlapped] {
            assert_eq!(report.written, n - 1, "{report:?}");
            assert_eq!(report.failed.len(), 1, "{report:?}");
            assert_eq!(report.failed[0].0.file_name(), broken.file_name());
        }
        for f in &files {
            let name = f.file_name().unwrap();
            let (a, b) = (std::fs::read(f).unwrap(), std::fs::read(twin.join(name)).unwrap());
            assert!(a == b, "{} differs between the schedules", name.to_string_lossy());
        }
    }
}
