//! The faceset browser: a side's faces, listed in pages in name or score order, their
//! thumbnails, one face's pixels and metadata (landmarks, XSeg labels, the applied mask), and
//! moving faces picked by hand to `aligned_trash/` and back.
//!
//! Faces are named by side and file name (`/api/faces/src/00017_0.jpg/...`); the name is one
//! plain component resolved inside `data_<side>/aligned/` or refused.
//!
//! The listing of a side (names, content keys, cached scores) is made once per change of the
//! faceset (its folder's time and the score cache's size and time) and kept in [`FacesState`],
//! with each sort order asked for computed once over it; pages are slices of it. Thumbnails
//! come from the content-keyed cache in `data_<side>/thumbs/` (`faceset::thumbs`), are served
//! by key (the key changes when the face does, so the browser may keep them for good) and are
//! made on demand when missing, while a background build makes the side's missing ones when
//! the side is opened. A trash is one journal batch under the faceset's exclusive lock, undone
//! exactly as `dfl sort --undo` undoes (`faceset::journal::undo_last`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::paths;
use super::server::{ApiError, AppState, blocking};
use crate::face::align::{Affine, FaceType};
use crate::face::landmarks::Landmarks68;
use crate::face::metadata::{FaceFileError, read_metadata};
use crate::face::seg::SegPoly;
use crate::faceset::journal::{self, Batch, JournalError, Mover};
use crate::faceset::natural_cmp;
use crate::faceset::scores::{Measure, ScoreCache};
use crate::faceset::thumbs::{RACY_SECS, ThumbCache, ThumbError, ThumbOptions};
use crate::lock::LockError;
use crate::progress::Progress;
use crate::workspace::{Side, Workspace, is_image_file};

/// The reason a face trashed in the studio carries in `aligned_trash/reasons.json`.
const TRASH_REASON: &str = "trashed by hand in dfl studio";
/// Faces one page request returns at most.
const MAX_PAGE: usize = 10_000;
/// Faces one trash request moves at most.
const MAX_TRASH: usize = 100_000;
/// How long a browser may keep a thumbnail: a year (its URL changes with the face's content).
const THUMB_CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// The face routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/faces/{side}", get(list))
        .route("/api/faces/{side}/build", get(build_status))
        .route("/api/faces/{side}/trash", axum::routing::post(trash))
        .route("/api/faces/{side}/undo", get(undo_info).post(undo))
        .route("/api/thumbs/{side}/{key}", get(thumb))
        .route("/api/faces/{side}/{name}/image", get(image))
        .route("/api/faces/{side}/{name}/meta", get(meta))
        .route("/api/faces/{side}/{name}/xseg_mask.png", get(xseg_mask))
}

/// `src` or `dst`, or 404.
pub(super) fn parse_side(side: &str) -> Result<Side, ApiError> {
    match side {
        "src" => Ok(Side::Src),
        "dst" => Ok(Side::Dst),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such side (src or dst)")),
    }
}

/// The path of face `name` in `side`'s aligned folder, resolved inside the workspace; 404 when
/// there is no such face.
pub(super) fn face_path(ws: &Workspace, side: &str, name: &str) -> Result<PathBuf, ApiError> {
    let side = parse_side(side)?;
    let name = paths::plain_name(name)?;
    let rel = format!("data_{side}/aligned/{name}");
    let path = paths::resolve(ws.root(), &rel)?;
    if !path.is_file() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no face {rel}")));
    }
    Ok(path)
}

/// A face file error as an answer: a file that is not a face is 422, the rest 500.
pub(super) fn face_error(e: FaceFileError) -> ApiError {
    let status = match e {
        FaceFileError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// A journal error as an answer: another run holding the faceset, nothing to undo and a
/// faceset that changed under the request are 409, the rest 500.
fn journal_error(e: JournalError) -> ApiError {
    let status = match &e {
        JournalError::Lock(LockError::Busy { .. })
        | JournalError::NothingToUndo(_)
        | JournalError::SourceMissing(_)
        | JournalError::TargetExists(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// The query of a page: `?sort=name|<measure>&desc=true&offset=0&limit=240`.
#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    desc: bool,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

/// A page of a side's listing.
#[derive(Debug, Serialize)]
struct Page {
    /// Changes when the listing does (names, keys, scores): pages of two versions do not mix.
    version: String,
    /// Faces in the side.
    total: usize,
    /// The first face's position in the order.
    offset: usize,
    /// The order: `name` or a measure.
    sort: &'static str,
    /// Highest score first.
    desc: bool,
    /// The measures at least one face has a cached score for.
    measures: Vec<&'static str>,
    /// The faces from `offset` on.
    faces: Vec<PageFace>,
    /// The background build of the side's thumbnails.
    thumbs: BuildStatus,
}

/// `GET /api/faces/{side}?sort=&desc=&offset=&limit=`: a page of the side's faces in the
/// order asked for, with each face's name, content key, whether its thumbnail exists, and its
/// cached scores. Starts the background build of missing thumbnails.
async fn list(
    State(state): State<AppState>,
    Path(side): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let sort = match q.sort.as_deref() {
        None | Some("name") => SortKey::Name,
        Some(m) => SortKey::parse(m).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("no sort order {m:?}; use name or a measure the score cache has"),
            )
        })?,
    };
    let limit = q.limit.unwrap_or(240).min(MAX_PAGE);
    let (ws, faces) = (state.ws.clone(), state.faces.clone());
    let page = blocking(move || {
        let listing = faces.listing(&ws, side)?;
        faces.start_build(&ws, side, &listing);
        let order = listing.order(sort, q.desc);
        let end = q.offset.saturating_add(limit).min(order.len());
        let start = q.offset.min(end);
        let cache = faces.cache(&ws, side)?;
        let page: Vec<PageFace> =
            order[start..end].iter().map(|&i| listing.page_face(i as usize, &cache)).collect();
        Ok(Page {
            version: listing.version(),
            total: listing.len(),
            offset: start,
            sort: sort.name(),
            desc: q.desc,
            measures: listing.measures(),
            faces: page,
            thumbs: faces.build_status(side),
        })
    })
    .await?;
    Ok(Json(page).into_response())
}

/// `GET /api/faces/{side}/build`: how far the background build of thumbnails is.
async fn build_status(
    State(state): State<AppState>,
    Path(side): Path<String>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    Ok(Json(state.faces.build_status(side)).into_response())
}

/// `GET /api/thumbs/{side}/{key}`: the thumbnail (JPEG) of the face with content key `key`,
/// made now when the cache has none; kept by the browser for good (the key changes with the
/// face). 404 when no face of the side has that key any more.
async fn thumb(
    State(state): State<AppState>,
    Path((side, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let (ws, faces) = (state.ws.clone(), state.faces.clone());
    let jpeg = blocking(move || faces.thumb(&ws, side, &key)).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, THUMB_CACHE_CONTROL)], jpeg)
        .into_response())
}

/// The body of a trash request.
#[derive(Debug, Deserialize)]
struct TrashRequest {
    /// File names in `aligned/`.
    names: Vec<String>,
}

/// What a trash did.
#[derive(Debug, Serialize)]
struct Trashed {
    /// Faces moved to `aligned_trash/`.
    moved: usize,
    /// An interrupted sort or trash finished first.
    recovered: Option<String>,
}

/// `POST /api/faces/{side}/trash` with `{"names": [...]}`: moves those faces to
/// `aligned_trash/` as one journal batch under the faceset's exclusive lock (409 naming the
/// holder when another run uses the faceset); `dfl sort --undo` or the Undo endpoint puts them
/// back.
async fn trash(
    State(state): State<AppState>,
    Path(side): Path<String>,
    Json(request): Json<TrashRequest>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let names = trash_names(request.names)?;
    let (ws, faces) = (state.ws.clone(), state.faces.clone());
    let trashed = blocking(move || {
        let aligned = ws.aligned_dir(side);
        if !aligned.is_dir() {
            let message = format!("{} does not exist; run `dfl extract {side}`", aligned.display());
            return Err(ApiError::new(StatusCode::NOT_FOUND, message));
        }
        let what = format!("the {side} faceset");
        let _lock = crate::lock::exclusive(&ws.faceset_lock(side), &what)
            .map_err(|e| journal_error(e.into()))?;
        let mut mover = Mover::new(&ws, side);
        let recovered = mover.recover().map_err(journal_error)?;
        for name in &names {
            if !aligned.join(name).is_file() {
                let message = format!(
                    "{} is not in the faceset (any more); reload the page",
                    aligned.join(name).display()
                );
                return Err(ApiError::new(StatusCode::CONFLICT, message));
            }
        }
        let in_trash = folder_names(&ws.aligned_trash_dir(side));
        let batch = Batch::trash("studio", &names, TRASH_REASON, &in_trash);
        mover.apply(&batch).map_err(journal_error)?;
        faces.forget(side);
        Ok(Trashed {
            moved: batch.moves.len(),
            recovered: recovered.map(|b| journal::describe(&b.action)),
        })
    })
    .await?;
    Ok(Json(trashed).into_response())
}

/// The names of a trash request, checked: plain names of image files, each once, at least one.
fn trash_names(names: Vec<String>) -> Result<Vec<String>, ApiError> {
    if names.is_empty() || names.len() > MAX_TRASH {
        let message = format!("give 1 to {MAX_TRASH} face names to trash");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        paths::plain_name(&name)?;
        if !is_image_file(std::path::Path::new(&name)) {
            let message = format!("{name:?} is not a face file name; use a name from the listing");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
        }
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    Ok(out)
}

/// The file names directly in `dir` (none when it does not exist).
fn folder_names(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// What the Undo button would undo.
#[derive(Debug, Serialize)]
struct UndoInfo {
    /// The last sort or trash not undone ([`journal::describe`]), if any.
    last: Option<String>,
    /// How many files it moved.
    moves: usize,
    /// A sort, trash or undo was interrupted: the next one finishes it first.
    interrupted: Option<String>,
}

/// `GET /api/faces/{side}/undo`: what `dfl sort --undo` (and the Undo button) would undo now.
async fn undo_info(
    State(state): State<AppState>,
    Path(side): Path<String>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let ws = state.ws.clone();
    let info = blocking(move || {
        let mover = Mover::new(&ws, side);
        let last = mover.history().map_err(journal_error)?.pop();
        let interrupted = mover.pending().map_err(journal_error)?;
        Ok(UndoInfo {
            last: last.as_ref().map(|b| journal::describe(&b.action)),
            moves: last.map_or(0, |b| b.moves.len()),
            interrupted: interrupted.map(|b| journal::describe(&b.action)),
        })
    })
    .await?;
    Ok(Json(info).into_response())
}

/// What an undo did.
#[derive(Debug, Serialize)]
struct UndoDone {
    /// Files moved back.
    moved: usize,
    /// What was undone.
    undid: Option<String>,
    /// An interrupted batch finished first.
    recovered: Option<String>,
}

/// `POST /api/faces/{side}/undo`: exactly `dfl sort --undo` — the last sort or trash of the
/// side is reverted (409 when there is none, or when another run holds the faceset).
async fn undo(
    State(state): State<AppState>,
    Path(side): Path<String>,
) -> Result<Response, ApiError> {
    let side = parse_side(&side)?;
    let (ws, faces) = (state.ws.clone(), state.faces.clone());
    let done = blocking(move || {
        let undone = journal::undo_last(&ws, side).map_err(journal_error)?;
        faces.forget(side);
        Ok(UndoDone { moved: undone.moved, undid: undone.undid, recovered: undone.recovered })
    })
    .await?;
    Ok(Json(done).into_response())
}

/// `GET /api/faces/{side}/{name}/image`: the face file as it is (JPEG or PNG).
async fn image(
    State(state): State<AppState>,
    Path((side, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let (bytes, kind) = blocking(move || {
        let path = face_path(&ws, &side, &name)?;
        let kind = if name.ends_with(".png") { "image/png" } else { "image/jpeg" };
        let bytes = std::fs::read(&path)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((bytes, kind))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

/// What the page knows of a face: its metadata without the applied mask's pixels.
#[derive(Debug, Serialize)]
pub(super) struct FaceInfo {
    /// The face file's name.
    pub name: String,
    /// The frame's name.
    pub source_filename: String,
    /// The video or image the frame came from.
    pub source_path: String,
    /// Which face of the frame.
    pub face_index: usize,
    /// How much of the head the crop shows.
    pub face_type: FaceType,
    /// The aligned image's side in pixels.
    pub size_px: u32,
    /// 68 landmarks in the aligned image.
    pub landmarks: Landmarks68,
    /// Frame → aligned image.
    pub image_to_face_mat: Affine,
    /// The detector's box in the frame.
    pub source_rect: [f32; 4],
    /// The detector's confidence.
    pub detector_score: f32,
    /// XSeg labels, applied in order.
    pub seg_ie_polys: Vec<SegPoly>,
    /// The XSeg model and iteration of the applied mask, when one is applied.
    pub xseg_mask: Option<(String, u64)>,
}

/// `GET /api/faces/{side}/{name}/meta`: the face's metadata as [`FaceInfo`].
async fn meta(
    State(state): State<AppState>,
    Path((side, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let info = blocking(move || {
        let path = face_path(&ws, &side, &name)?;
        let m = read_metadata(&path).map_err(face_error)?;
        Ok(FaceInfo {
            name,
            source_filename: m.source_filename,
            source_path: m.source_path,
            face_index: m.face_index,
            face_type: m.face_type,
            size_px: m.size_px,
            landmarks: m.landmarks,
            image_to_face_mat: m.image_to_face_mat,
            source_rect: m.source_rect,
            detector_score: m.detector_score,
            seg_ie_polys: m.seg_ie_polys,
            xseg_mask: m.xseg_mask.map(|x| (x.model, x.iteration)),
        })
    })
    .await?;
    Ok(Json(info).into_response())
}

/// `GET /api/faces/{side}/{name}/xseg_mask.png`: the applied XSeg mask (404 when none).
async fn xseg_mask(
    State(state): State<AppState>,
    Path((side, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let png = blocking(move || {
        let path = face_path(&ws, &side, &name)?;
        let m = read_metadata(&path).map_err(face_error)?;
        m.xseg_mask
            .map(|x| x.png)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no XSeg mask applied"))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

// ---------- what the browser keeps between requests ----------

/// The measures of the score cache the browser sorts by, with their names in the API.
const MEASURES: [(Measure, &str); 5] = [
    (Measure::Blur, "blur"),
    (Measure::MotionBlur, "motion_blur"),
    (Measure::Brightness, "brightness"),
    (Measure::Hue, "hue"),
    (Measure::Black, "black"),
];

/// An order of the listing: by name (numbers by value), or by one of [`MEASURES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SortKey {
    /// [`natural_cmp`] of the file names.
    Name,
    /// The cached score `MEASURES[i]`; faces without it come last.
    Measure(usize),
}

impl SortKey {
    /// The measure named `name`, if the browser sorts by it.
    fn parse(name: &str) -> Option<Self> {
        MEASURES.iter().position(|(_, n)| *n == name).map(SortKey::Measure)
    }

    /// The name in the API.
    fn name(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Measure(i) => MEASURES[i].1,
        }
    }
}

/// What the faceset browser keeps between requests, per side: the thumbnail cache, the
/// listing with its sort orders, and the background build of thumbnails.
#[derive(Default)]
pub(super) struct FacesState {
    sides: [SideState; 2],
}

/// [`FacesState`] of one side.
#[derive(Default)]
struct SideState {
    /// Opened on first use (the side may not exist when the studio starts).
    cache: Mutex<Option<Arc<ThumbCache>>>,
    /// The listing of the faceset as it was at its stamp.
    listing: Mutex<Option<Arc<Listing>>>,
    /// The background build of the side's missing thumbnails.
    build: Arc<Build>,
}

/// Locks `m`; a panic elsewhere leaves nothing half-changed that matters here (at worst a
/// listing is made again).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FacesState {
    fn side(&self, side: Side) -> &SideState {
        &self.sides[usize::from(side == Side::Dst)]
    }

    /// The thumbnail cache of `side`, opened once.
    fn cache(&self, ws: &Workspace, side: Side) -> Result<Arc<ThumbCache>, ApiError> {
        let mut slot = lock(&self.side(side).cache);
        if let Some(cache) = slot.as_ref() {
            return Ok(cache.clone());
        }
        let cache =
            Arc::new(ThumbCache::for_side(ws, side, ThumbOptions::default()).map_err(thumb_error)?);
        *slot = Some(cache.clone());
        Ok(cache)
    }

    /// The listing of `side`: the one kept while the faceset's stamp is unchanged (and old
    /// enough to be trusted), a new one otherwise.
    fn listing(&self, ws: &Workspace, side: Side) -> Result<Arc<Listing>, ApiError> {
        let mut slot = lock(&self.side(side).listing);
        let stamp = Stamp::of(ws, side);
        if let Some(listing) = slot.as_ref().filter(|l| l.stamp.still_holds(&stamp)) {
            return Ok(listing.clone());
        }
        let cache = self.cache(ws, side)?;
        let listing = Arc::new(Listing::read(ws, side, &cache, stamp)?);
        *slot = Some(listing.clone());
        Ok(listing)
    }

    /// Drops the listing of `side` (after the studio itself moved faces).
    fn forget(&self, side: Side) {
        *lock(&self.side(side).listing) = None;
    }

    /// Starts the background build of `side`'s missing thumbnails unless one runs or this
    /// listing's faces were built already.
    fn start_build(&self, ws: &Workspace, side: Side, listing: &Listing) {
        let build = self.side(side).build.clone();
        if build.running.load(Ordering::Acquire) {
            return;
        }
        if listing.faces.iter().all(|f| f.had_thumb) {
            // Nothing to build: say so, or a page waiting for the build would wait forever.
            lock(&build.last).get_or_insert_with(|| BuildOutcome::nothing(None));
            return;
        }
        {
            let mut last = lock(&build.version);
            if *last == Some(listing.version) {
                return;
            }
            if build.running.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(listing.version);
        }
        let cache = match self.cache(ws, side) {
            Ok(cache) => cache,
            Err(e) => {
                *lock(&build.last) = Some(BuildOutcome::nothing(Some(e.1)));
                build.running.store(false, Ordering::Release);
                return;
            }
        };
        let thread = {
            let build = build.clone();
            std::thread::Builder::new().name(format!("dfl-studio-thumbs-{side}")).spawn(move || {
                build.run(&cache);
            })
        };
        if let Err(e) = thread {
            log::warn!("cannot start the thumbnail build of the {side} faceset: {e}");
            build.running.store(false, Ordering::Release);
        }
    }

    /// How far the background build of `side` is.
    fn build_status(&self, side: Side) -> BuildStatus {
        self.side(side).build.status()
    }

    /// The thumbnail of content key `key`: from the cache, or made from the listed face with
    /// that key.
    fn thumb(&self, ws: &Workspace, side: Side, key: &str) -> Result<Vec<u8>, ApiError> {
        let cache = self.cache(ws, side)?;
        if cache.thumb_path(key).is_none() {
            let message = format!("{key:?} is not a thumbnail key; use a key from the listing");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
        }
        if let Some(jpeg) = cache.cached(key) {
            return Ok(jpeg);
        }
        let listing = self.listing(ws, side)?;
        let gone = || {
            let message = format!(
                "no face of data_{side}/aligned has the content key {key} any more; reload the page"
            );
            ApiError::new(StatusCode::NOT_FOUND, message)
        };
        let &i = listing.by_key.get(key).ok_or_else(gone)?;
        let jpeg = cache.get(&listing.faces[i as usize].name).map_err(thumb_error)?;
        // The face may have changed since the listing: only a thumbnail of this key answers.
        if cache.thumb_path(key).is_some_and(|p| p.is_file()) { Ok(jpeg) } else { Err(gone()) }
    }
}

/// A thumbnail error as an answer: a missing faceset or face is 404, a name that is not a
/// face 400, a file that is not an image 422, the rest 500.
fn thumb_error(e: ThumbError) -> ApiError {
    let status = match &e {
        ThumbError::NoSuchFace(_)
        | ThumbError::Faceset(crate::faceset::FacesetError::Missing(_)) => StatusCode::NOT_FOUND,
        ThumbError::NotAFace(_) => StatusCode::BAD_REQUEST,
        ThumbError::NotAnImage { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// What tells a faceset changed: its folder's time, inode and size (a face added, removed or
/// renamed, or rewritten through a rename as every dfl write is) and the score cache's (new
/// scores); and when that was looked at.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// (modification time in ns since the Unix epoch, inode, size) of `aligned/` and of the
    /// score cache, when they exist.
    files: [Option<(u64, u64, u64)>; 2],
    /// When they were looked at, ns since the Unix epoch.
    taken_ns: u64,
}

impl Stamp {
    fn of(ws: &Workspace, side: Side) -> Self {
        let stat = |path: &std::path::Path| {
            let meta = std::fs::metadata(path).ok()?;
            let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            let ino = std::os::unix::fs::MetadataExt::ino(&meta);
            Some((u64::try_from(mtime.as_nanos()).unwrap_or(u64::MAX), ino, meta.len()))
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Stamp {
            files: [stat(&ws.aligned_dir(side)), stat(&ws.face_scores(side))],
            taken_ns: u64::try_from(now).unwrap_or(u64::MAX),
        }
    }

    /// Whether a listing made at this stamp still holds at `now`: the files are as they were,
    /// and they had not changed for [`RACY_SECS`] when it was made (a change in the same clock
    /// tick as the one before could leave their times equal).
    fn still_holds(&self, now: &Stamp) -> bool {
        let newest = self.files.iter().flatten().map(|f| f.0).max().unwrap_or(0);
        self.files == now.files && newest.saturating_add(RACY_SECS * 1_000_000_000) < self.taken_ns
    }
}

/// One face of a listing.
#[derive(Debug)]
struct Listed {
    name: String,
    key: Option<String>,
    /// Its cached scores, by [`MEASURES`].
    scores: [Option<f64>; MEASURES.len()],
    /// Whether its thumbnail existed when listed.
    had_thumb: bool,
}

/// A side's faces at one stamp, in name order, with the sort orders asked for so far.
#[derive(Debug)]
struct Listing {
    stamp: Stamp,
    /// A hash of the names, keys and scores.
    version: u64,
    faces: Vec<Listed>,
    /// Face position by content key.
    by_key: HashMap<String, u32>,
    /// Positions in each order asked for.
    orders: Mutex<HashMap<(SortKey, bool), Order>>,
}

/// Face positions of a listing in one order, shared by the pages cut from it.
type Order = Arc<Vec<u32>>;

impl Listing {
    /// Lists `side` through its thumbnail cache (no face read when the index knows it) and
    /// takes each face's scores from the score cache.
    fn read(
        ws: &Workspace,
        side: Side,
        cache: &ThumbCache,
        stamp: Stamp,
    ) -> Result<Listing, ApiError> {
        let entries = cache.lookup().map_err(thumb_error)?;
        let scores = ScoreCache::open(&ws.face_scores(side));
        let mut faces: Vec<Listed> = entries
            .into_iter()
            .map(|e| {
                let cached = e.key.as_deref().and_then(|k| scores.get(k));
                let scores = MEASURES.map(|(m, _)| cached.and_then(|s| s.get(m)));
                Listed { name: e.file.name, key: e.key, scores, had_thumb: e.has_thumb }
            })
            .collect();
        drop(scores);
        faces.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        let mut hasher = DefaultHasher::new();
        let mut by_key = HashMap::with_capacity(faces.len());
        for (i, f) in faces.iter().enumerate() {
            (&f.name, &f.key).hash(&mut hasher);
            f.scores.map(|s| s.map(f64::to_bits)).hash(&mut hasher);
            if let Some(key) = &f.key {
                by_key.insert(key.clone(), u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let version = hasher.finish();
        Ok(Listing { stamp, version, faces, by_key, orders: Mutex::default() })
    }

    fn len(&self) -> usize {
        self.faces.len()
    }

    /// The version as the page sees it.
    fn version(&self) -> String {
        format!("{:016x}", self.version)
    }

    /// The names of the measures at least one face has.
    fn measures(&self) -> Vec<&'static str> {
        (0..MEASURES.len())
            .filter(|&m| self.faces.iter().any(|f| f.scores[m].is_some()))
            .map(|m| MEASURES[m].1)
            .collect()
    }

    /// The positions of the faces in `sort` order (computed once per listing and order): by
    /// score, ties and faces without a score in name order, the latter last either way.
    fn order(&self, sort: SortKey, desc: bool) -> Order {
        let mut orders = lock(&self.orders);
        if let Some(order) = orders.get(&(sort, desc)) {
            return order.clone();
        }
        let n = u32::try_from(self.faces.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..n).collect();
        match sort {
            SortKey::Name if desc => order.reverse(),
            SortKey::Name => {}
            SortKey::Measure(m) => {
                let score = |i: u32| self.faces[i as usize].scores[m];
                order.sort_by(|&a, &b| match (score(a), score(b)) {
                    (Some(x), Some(y)) => {
                        let by_score = if desc { y.total_cmp(&x) } else { x.total_cmp(&y) };
                        by_score.then(a.cmp(&b))
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.cmp(&b),
                });
            }
        }
        let order = Arc::new(order);
        orders.insert((sort, desc), order.clone());
        order
    }

    /// Face `i` as a page shows it (whether its thumbnail exists is looked up now).
    fn page_face(&self, i: usize, cache: &ThumbCache) -> PageFace {
        let f = &self.faces[i];
        let has_thumb =
            f.key.as_deref().and_then(|k| cache.thumb_path(k)).is_some_and(|p| p.is_file());
        let scores =
            MEASURES.iter().zip(f.scores).filter_map(|((_, name), s)| Some((*name, s?))).collect();
        PageFace { name: f.name.clone(), key: f.key.clone(), has_thumb, scores }
    }
}

/// One face of a page.
#[derive(Debug, Serialize)]
struct PageFace {
    /// The file name in `aligned/`.
    name: String,
    /// Its content key (`None` when it could not be read): its thumbnail's URL.
    key: Option<String>,
    /// Whether its thumbnail is in the cache (else it is made when asked for).
    has_thumb: bool,
    /// Its cached scores by measure name (measures it has no score for are left out).
    scores: BTreeMap<&'static str, f64>,
}

/// The background build of a side's thumbnails, and its progress.
#[derive(Debug, Default)]
struct Build {
    running: AtomicBool,
    /// Faces looked at and listed in this build.
    done: AtomicU64,
    total: AtomicU64,
    /// The listing version the last build started for.
    version: Mutex<Option<u64>>,
    /// The last build's outcome.
    last: Mutex<Option<BuildOutcome>>,
    started: Mutex<Option<Instant>>,
}

/// What the last finished build did.
#[derive(Debug, Clone, Serialize)]
struct BuildOutcome {
    /// Thumbnails made.
    built: usize,
    /// Faces without a thumbnail, and the first one's error.
    failed: usize,
    first_failure: Option<String>,
    /// Seconds it took.
    seconds: f64,
    /// The faceset could not be listed.
    error: Option<String>,
}

impl BuildOutcome {
    /// A build that made nothing: every face had its thumbnail, or (`error`) the cache could
    /// not be opened.
    fn nothing(error: Option<String>) -> Self {
        Self { built: 0, failed: 0, first_failure: None, seconds: 0.0, error }
    }
}

/// How far the background build is, for the page.
#[derive(Debug, Serialize)]
struct BuildStatus {
    running: bool,
    /// Faces done of `total` in the running build.
    done: u64,
    total: u64,
    /// Seconds since the running build started.
    seconds: f64,
    /// The last finished build.
    last: Option<BuildOutcome>,
}

impl Build {
    /// Builds every missing thumbnail of `cache`'s faceset, then clears `running`.
    fn run(&self, cache: &ThumbCache) {
        self.done.store(0, Ordering::Release);
        self.total.store(0, Ordering::Release);
        let started = Instant::now();
        *lock(&self.started) = Some(started);
        let outcome = match cache.build(self) {
            Ok(report) => {
                if let Some(f) = report.failed.first() {
                    log::warn!(
                        "{} face(s) of {} have no thumbnail; the first: {}",
                        report.failed.len(),
                        cache.faceset_dir().display(),
                        f.error
                    );
                }
                BuildOutcome {
                    built: report.built,
                    failed: report.failed.len(),
                    first_failure: report.failed.first().map(|f| f.error.to_string()),
                    seconds: started.elapsed().as_secs_f64(),
                    error: None,
                }
            }
            Err(e) => BuildOutcome {
                seconds: started.elapsed().as_secs_f64(),
                ..BuildOutcome::nothing(Some(e.to_string()))
            },
        };
        *lock(&self.last) = Some(outcome);
        self.running.store(false, Ordering::Release);
    }

    fn status(&self) -> BuildStatus {
        let running = self.running.load(Ordering::Acquire);
        let started = *lock(&self.started);
        let seconds = started.filter(|_| running).map_or(0.0, |s| s.elapsed().as_secs_f64());
        BuildStatus {
            running,
            done: self.done.load(Ordering::Acquire),
            total: self.total.load(Ordering::Acquire),
            seconds,
            last: lock(&self.last).clone(),
        }
    }
}

impl Progress for Build {
    fn set_len(&self, len: u64) {
        self.total.store(len, Ordering::Release);
    }

    fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::AcqRel);
    }
}
