//! The XSeg labeller: the faces of a side with their labels counted, for navigation and the
//! "N of M faces labelled" counters, and reading and saving one face's labels (DFL's
//! `seg_ie_polys`, in the face file's own metadata; the format is in `docs/xseg.md`).
//!
//! Endpoints:
//! - `GET /api/labeller`: labelled and total faces per side.
//! - `GET /api/labeller/{side}`: every face of the side in natural name order, each with its
//!   number of include and exclude polygons, whether an XSeg mask is applied, and its version.
//! - `GET /api/faces/{side}/{name}/labels`: the face's labels, size and applied mask, and its
//!   version.
//! - `PUT /api/faces/{side}/{name}/labels` with `{"version", "seg_ie_polys"}`: writes the labels
//!   into the face file.
//!
//! A face's version is the content key of its file's bytes ([`content_key`]): any write, by
//! anyone, changes it, and a rename (`dfl sort`) keeps it, so the page can follow a face that
//! was renamed under it.
//!
//! The face list: reading 10 000 faces' metadata on every request would take seconds, so each
//! side's list is cached, each face under its file name with the file's size, modification
//! time and inode. A request lists the folder and stats each file (no file is read), keeps
//! what still matches, takes over the entry of a file that was only renamed (same size, time
//! and inode: a sort), and reads the rest (in parallel). Writers replace files by a rename, so
//! a rewritten face has a new inode even within one tick of a coarse clock.
//!
//! Writing labels takes the faceset lock SHARED, and the studio's own label writes are
//! serialised by a mutex. The stages that restructure a faceset (extract, sort, `xseg apply`,
//! `xseg labels import`) take the lock exclusively, so while one of them runs a save is refused
//! with 409 naming it, and while a save runs they cannot start. A training run only reads, with
//! a shared lock, and can go on while labels are saved: a metadata rewrite is a temp file and a
//! rename, so a reader sees the old file or the new one, whole. A save also checks the version
//! the page loaded: when the file changed since (another writer), it is refused with 409 and
//! nothing is written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::faces::{face_error, face_path, parse_side};
use super::server::{ApiError, AppState, blocking};
use crate::face::align::FaceType;
use crate::face::metadata::{parse_metadata, rewrite_metadata};
use crate::face::seg::{self, SegPoly};
use crate::faceset::{content_key, natural_cmp};
use crate::lock::LockError;
use crate::workspace::{Side, Workspace, is_image_file};

/// What this page keeps between requests.
#[derive(Default)]
pub(super) struct LabellerState {
    /// The face list of each side, src then dst.
    lists: [Mutex<FaceList>; 2],
    /// Held while the studio writes a face's labels: one write at a time.
    writing: Mutex<()>,
}

impl LabellerState {
    fn list(&self, side: Side) -> MutexGuard<'_, FaceList> {
        let i = match side {
            Side::Src => 0,
            Side::Dst => 1,
        };
        self.lists[i].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The routes of this page.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/labeller", get(counts))
        .route("/api/labeller/{side}", get(list))
        .route("/api/faces/{side}/{name}/labels", get(labels).put(save))
}

/// What identifies one state of a face file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Stamp {
    len: u64,
    /// Modification time, ns since the Unix epoch (0 when the system has none).
    mtime_ns: u128,
    /// Kept by a rename, new for a rewritten file (0 where the system has none).
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Self { len: meta.len(), mtime_ns, inode: inode(meta) }
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// What the list shows of one face.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    /// Include polygons.
    include: usize,
    /// Exclude polygons.
    exclude: usize,
    /// Whether an XSeg mask is applied.
    mask: bool,
    /// The content key of the file.
    version: String,
}

impl Summary {
    fn labelled(&self) -> bool {
        self.include + self.exclude > 0
    }
}

/// One face file as the cache holds it: its stamp when read, and what it says (or why it
/// cannot be read as a face).
#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    face: Result<Summary, String>,
}

/// A side's cached face list, by file name.
#[derive(Debug, Default)]
struct FaceList {
    by_name: HashMap<String, Cached>,
}

impl FaceList {
    /// Brings the list up to date with `dir`: stats every face file, reads only the new and
    /// changed ones. A missing folder is an empty side.
    fn refresh(&mut self, dir: &Path) -> Result<(), ApiError> {
        let files = stat_faces(dir)?;
        let old = std::mem::take(&mut self.by_name);
        let by_stamp: HashMap<Stamp, &Cached> =
            old.values().filter(|c| c.stamp.inode != 0).map(|c| (c.stamp, c)).collect();
        let mut misses = Vec::new();
        for (name, stamp) in files {
            let same = old.get(&name).filter(|c| c.stamp == stamp);
            match same.or_else(|| by_stamp.get(&stamp).copied()) {
                Some(cached) => {
                    self.by_name.insert(name, cached.clone());
                }
                None => misses.push((name, stamp)),
            }
        }
        let read: Vec<(String, Cached)> = misses
            .into_par_iter()
            .map(|(name, stamp)| {
                let face = summarize(&dir.join(&name)).map(|(_, s)| s);
                (name, Cached { stamp, face })
            })
            .collect();
        self.by_name.extend(read);
        Ok(())
    }

    /// Labelled and total faces (files that are not faces left out).
    fn counts(&self) -> SideCounts {
        let faces = self.by_name.values().filter_map(|c| c.face.as_ref().ok());
        let (mut labelled, mut total) = (0, 0);
        for face in faces {
            total += 1;
            labelled += usize::from(face.labelled());
        }
        let unreadable = self.by_name.len() - total;
        SideCounts { labelled, total, unreadable }
    }
}

/// The face files directly in `dir` (by name, the way every stage reads a faceset) with their
/// stamps; none when `dir` does not exist.
fn stat_faces(dir: &Path) -> Result<Vec<(String, Stamp)>, ApiError> {
    let failed = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot list {}: {e}; check the folder's permissions", dir.display()),
        )
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(failed)?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_file()) || !is_image_file(Path::new(&name)) {
            continue;
        }
        // A file removed between the listing and its stat is gone: skip it.
        if let Ok(meta) = entry.metadata() {
            out.push((name, Stamp::of(&meta)));
        }
    }
    Ok(out)
}

/// Reads a face file: its labels and applied mask, and the list's summary of it.
fn summarize(path: &Path) -> Result<(FaceLabels, Summary), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{}: {e}; check the file's permissions", path.display()))?;
    let meta = parse_metadata(path, &bytes).map_err(|e| e.to_string())?;
    let (include, exclude, _) = seg::counts(&meta.seg_ie_polys);
    let version = content_key(&bytes);
    let summary =
        Summary { include, exclude, mask: meta.xseg_mask.is_some(), version: version.clone() };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let labels = FaceLabels {
        name,
        size_px: meta.size_px,
        face_type: meta.face_type,
        seg_ie_polys: meta.seg_ie_polys,
        xseg_mask: meta.xseg_mask.map(|m| (m.model, m.iteration)),
        version,
    };
    Ok((labels, summary))
}

/// Labelled and total faces of a side.
#[derive(Debug, Clone, Copy, Serialize)]
struct SideCounts {
    /// Faces with at least one polygon.
    labelled: usize,
    /// Faces.
    total: usize,
    /// Image files of the folder that are not dfl faces.
    unreadable: usize,
}

/// The counts of a side, its list brought up to date first.
fn side_counts(ws: &Workspace, state: &LabellerState, side: Side) -> Result<SideCounts, ApiError> {
    let mut list = state.list(side);
    list.refresh(&ws.aligned_dir(side))?;
    Ok(list.counts())
}

/// `GET /api/labeller`: `{"src": counts, "dst": counts}`.
async fn counts(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (ws, labeller) = (state.ws.clone(), state.labeller.clone());
    let both = blocking(move || {
        let src = side_counts(&ws, &labeller, Side::Src)?;
        let dst = side_counts(&ws, &labeller, Side::Dst)?;
        Ok(serde_json::json!({ "src": src, "dst": dst }))
    })
    .await?;
    Ok(Json(both).into_response())
}

/// One face of the list.
#[derive(Debug, Serialize)]
struct ListEntry {
    name: String,
    #[serde(flatten)]
    summary: Summary,
}

/// An image file of the folder that is not a dfl face, and why.
#[derive(Debug, Serialize)]
struct Unreadable {
    name: String,
    error: String,
}

/// The faces of a side for the labeller.
#[derive(Debug, Serialize)]
struct SideList {
    side: Side,
    #[serde(flatten)]
    counts: SideCounts,
    /// In natural name order.
    faces: Vec<ListEntry>,
    /// Files that are not faces, in natural name order.
    unreadable_files: Vec<Unreadable>,
}

/// `GET /api/labeller/{side}`: the side's [`SideList`].
async fn list(
    State(state): State<AppState>,
    UrlPath(side): UrlPath<String>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let (ws, labeller) = (state.ws.clone(), state.labeller.clone());
    let out = blocking(move || {
        let mut list = labeller.list(side);
        list.refresh(&ws.aligned_dir(side))?;
        let mut faces = Vec::with_capacity(list.by_name.len());
        let mut unreadable_files = Vec::new();
        for (name, cached) in &list.by_name {
            match &cached.face {
                Ok(summary) => {
                    faces.push(ListEntry { name: name.clone(), summary: summary.clone() })
                }
                Err(error) => {
                    unreadable_files.push(Unreadable { name: name.clone(), error: error.clone() })
                }
            }
        }
        faces.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        unreadable_files.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        Ok(SideList { side, counts: list.counts(), faces, unreadable_files })
    })
    .await?;
    Ok(Json(out).into_response())
}

/// One face's labels as the editor loads them.
#[derive(Debug, Serialize)]
struct FaceLabels {
    /// The face file's name.
    name: String,
    /// The aligned image's side in pixels: the unit of the points.
    size_px: u32,
    /// How much of the head the crop shows.
    face_type: FaceType,
    /// The labels, applied in order.
    seg_ie_polys: Vec<SegPoly>,
    /// The XSeg model and iteration of the applied mask, when one is applied.
    xseg_mask: Option<(String, u64)>,
    /// The content key of the file: what a save names as the version it changes.
    version: String,
}

/// `GET /api/faces/{side}/{name}/labels`: the face's [`FaceLabels`].
async fn labels(
    State(state): State<AppState>,
    UrlPath((side, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let labels = blocking(move || {
        let path = face_path(&ws, &side, &name)?;
        summarize(&path).map(|(labels, _)| labels).map_err(unprocessable)
    })
    .await?;
    Ok(Json(labels).into_response())
}

/// A face file that cannot be read as a face.
fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// The body of a save.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    /// The version of the file the page loaded.
    version: String,
    /// The face's new labels, in its pixels, applied in order (empty: no labels).
    seg_ie_polys: Vec<SegPoly>,
}

/// What a save answers: the face as written, and whether the file changed.
#[derive(Debug, Serialize)]
struct Saved {
    #[serde(flatten)]
    face: FaceLabels,
    /// False when the file already had exactly these labels (nothing was written).
    written: bool,
}

/// `PUT /api/faces/{side}/{name}/labels` with a [`SaveBody`]: writes the labels into the face
/// file (atomically; its pixels untouched). 400 for labels that break a rule of
/// [`seg::validate`], 409 when the faceset is locked by a stage that restructures it or the
/// file changed since the page loaded it; the file is left as it was in every refusal.
async fn save(
    State(state): State<AppState>,
    UrlPath((side, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let labeller = state.labeller.clone();
    let saved = blocking(move || {
        let path = face_path(&ws, &side, &name)?;
        let side = parse_side(&side)?;
        let body: SaveBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name}: the labels are not {{\"version\", \"seg_ie_polys\"}} JSON ({e}); nothing was saved"),
            )
        })?;
        let _writing = labeller.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let _lock = crate::lock::shared(&ws.faceset_lock(side), &format!("the {side} faceset"))
            .map_err(|e| match e {
                LockError::Busy { .. } => ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{e}; the labels of {name} were not saved"),
                ),
                _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            })?;
        let bytes = std::fs::read(&path)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")))?;
        let meta = parse_metadata(&path, &bytes).map_err(face_error)?;
        seg::validate(&body.seg_ie_polys, meta.size_px).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{name} ({0}×{0} px): {e}; the labels were not saved",
                    meta.size_px
                ),
            )
        })?;
        if content_key(&bytes) != body.version {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{name} changed on disk since the page loaded it (another program wrote \
                     it); the labels were not saved: reload the face to see it as it is now"
                ),
            ));
        }
        let written =
            rewrite_metadata(&path, |m| m.seg_ie_polys = body.seg_ie_polys).map_err(face_error)?;
        let stamp = std::fs::metadata(&path).map(|m| Stamp::of(&m));
        let (face, summary) = summarize(&path).map_err(unprocessable)?;
        if let Ok(stamp) = stamp {
            let cached = Cached { stamp, face: Ok(summary) };
            labeller.list(side).by_name.insert(face.name.clone(), cached);
        }
        Ok(Saved { face, written })
    })
    .await?;
    Ok(Json(saved).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::seg::PolyKind;
    use crate::face::testutil::write_faceset;

    fn triangle(kind: PolyKind) -> SegPoly {
        SegPoly { kind, points: vec![[1.0, 1.0], [20.0, 2.0], [10.0, 15.0]] }
    }

    #[test]
    fn the_list_reads_only_new_and_changed_faces_and_follows_renames() {
        let tmp = tempfile::tempdir().unwrap();
        let faces = write_faceset(tmp.path(), 3, 32, |_| 0.0);
        std::fs::write(tmp.path().join("junk.jpg"), b"not a face").unwrap();
        let mut list = FaceList::default();
        list.refresh(tmp.path()).unwrap();
        let c = list.counts();
        assert_eq!((c.labelled, c.total, c.unreadable), (0, 3, 1));

        // Poison the cache of one face: an entry that still matches its file is not read
        // again, so the poisoned value shows.
        let name = |p: &std::path::Path| p.file_name().unwrap().to_str().unwrap().to_owned();
        let (a, b) = (name(&faces[0]), name(&faces[1]));
        if let Ok(s) = &mut list.by_name.get_mut(&a).unwrap().face {
            s.include = 7;
        }
        // A labelled face is read again; a renamed one keeps its (poisoned) entry.
        rewrite_metadata(&faces[1], |m| m.seg_ie_polys = vec![triangle(PolyKind::Exclude)])
            .unwrap();
        let renamed = tmp.path().join(format!("00001_{a}"));
        std::fs::rename(&faces[0], &renamed).unwrap();
        list.refresh(tmp.path()).unwrap();
        let entry = |n: &str| list.by_name[n].face.as_ref().unwrap().clone();
        assert_eq!(entry(&name(&renamed)).include, 7, "taken over, not read");
        assert!(!list.by_name.contains_key(&a));
        assert_eq!((entry(&b).include, entry(&b).exclude), (0, 1));
        assert_eq!(list.counts().labelled, 2);
        // A missing folder is an empty side.
        let mut none = FaceList::default();
        none.refresh(&tmp.path().join("nope")).unwrap();
        assert_eq!(none.counts().total, 0);
    }
}
