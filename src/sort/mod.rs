//! `dfl sort`: score, order and clean a faceset without ever losing a face.
//!
//! A sort reads every face of `aligned/` (metadata and a content hash), measures what the
//! method needs (cached by content in `sort.scores.jsonl`), ranks, and renames: kept faces get
//! an order prefix, rejected ones move to `aligned_trash/` with a reason. The moves go through
//! a journal (`journal`), so a crash at any point is finished by the next run, and every sort
//! is recorded so `--undo` puts every name back.

mod best;
mod hist;
mod identity;
mod measures;
mod method;
mod plan;
mod rank;
mod sheet;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::atomic::write_json_atomic;
use crate::detect::{FaceDetector, YuNetModel};
use crate::face::identity::{Embedding, SFaceModel};
use crate::face::metadata::{FaceFileError, parse_metadata, read_face_image};
use crate::face::pose::estimate_pitch_yaw_roll;
use crate::faceset::journal::{self, JournalError, Mover};
use crate::faceset::scores::{self, CHUNK, EmbedError, FaceScores, Measure, ScoreCache};
use crate::faceset::{Face, Faceset, FacesetError};
use crate::progress::Progress;
use crate::workspace::{Side, Workspace};

use measures::FaceImage;
use method::Histogram;
use plan::Placement;
use rank::{Measured, Ranking};
use sheet::Cell;

pub use method::Method;
pub use rank::Filters;

/// The models a sort may need (only `identity` does).
#[derive(Clone)]
pub struct SortModels {
    /// SFace, for embeddings.
    pub sface: SFaceModel,
    /// YuNet, to find the face in a `--keep-like` photo.
    pub yunet: YuNetModel,
}

/// What `dfl sort` was asked to do.
#[derive(Debug, Clone)]
pub struct SortOptions {
    /// The method.
    pub method: Method,
    /// `--keep`, `--min-score`, `--max-score`.
    pub filters: Filters,
    /// Images of the person to keep (`identity`).
    pub keep_like: Vec<PathBuf>,
    /// Print the plan, move nothing.
    pub dry_run: bool,
    /// Write contact sheets.
    pub sheet: bool,
    /// Write every face's scores to this JSON file.
    pub scores_json: Option<PathBuf>,
}

/// Errors of sorting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SortError {
    /// There is nothing to sort.
    #[error("{}: no faces to sort; run `dfl extract {side}` first", .dir.display())]
    NoFaces {
        /// The aligned folder.
        dir: PathBuf,
        /// The side.
        side: &'static str,
    },
    /// A folder or file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Moving files failed or was refused.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A face or reference image could not be read.
    #[error(transparent)]
    Face(#[from] FaceFileError),
    /// A `--keep-like` image has no face.
    #[error("{}: no face found; give a photo or an aligned face of the person to keep", .0.display())]
    NoReferenceFace(PathBuf),
    /// The identity model failed.
    #[error(transparent)]
    Identity(#[from] crate::face::identity::IdentityError),
    /// A face could not be embedded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The faceset cannot be listed.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// The detector failed on a `--keep-like` image.
    #[error("{}: {source}", .path.display())]
    Detect {
        /// The image.
        path: PathBuf,
        /// The detector's error.
        #[source]
        source: crate::detect::DetectError,
    },
    /// Options that do not fit together.
    #[error("{0}")]
    Options(String),
    /// Contact sheets could not be written.
    #[error(transparent)]
    Sheet(#[from] sheet::SheetError),
}

/// What a sort did (or, with `--dry-run`, would do).
#[derive(Debug, Default)]
pub struct SortReport {
    /// Faces sorted.
    pub faces: usize,
    /// Faces kept in `aligned/`.
    pub kept: usize,
    /// Faces moved to `aligned_trash/`.
    pub trashed: usize,
    /// Files renamed or moved.
    pub moved: usize,
    /// Image files that are not dfl faces (left in place).
    pub skipped: Vec<String>,
    /// Faces measured now (the rest came from the cache).
    pub measured: usize,
    /// An interrupted sort or undo that was finished first.
    pub recovered: Option<String>,
    /// Contact sheets written.
    pub sheets: Vec<PathBuf>,
    /// The plan, for `--dry-run`: each face's move.
    pub plan: Vec<journal::Move>,
}

/// Sorts the `side` faceset of `ws`.
///
/// # Errors
/// See [`SortError`]; nothing has moved unless the error says so, and a journal left behind is
/// finished by the next run.
pub fn sort(
    ws: &Workspace,
    side: Side,
    opts: &SortOptions,
    models: Option<&SortModels>,
    progress: &dyn Progress,
) -> Result<SortReport, SortError> {
    let _lock = lock_faceset(ws, side)?;
    let mut mover = Mover::new(ws, side);
    let mut report = SortReport::default();
    if opts.dry_run {
        if let Some(b) = mover.pending()? {
            log::warn!(
                "an interrupted {} is pending; the next real run finishes it first",
                journal::describe(&b.action)
            );
        }
    } else {
        report.recovered = mover.recover()?.map(|b| journal::describe(&b.action));
    }
    let set = read_faceset(ws, side, progress)?;
    report.faces = set.faces.len();
    report.skipped = set.skipped.iter().map(|s| s.error.to_string()).collect();

    let mut cache = ScoreCache::open(&ws.face_scores(side));
    let (mut measured, fresh) =
        measure(&set, &mut cache, opts.method, models.map(|m| &m.sface), progress)?;
    if let Some(m) = models.filter(|_| !opts.keep_like.is_empty()) {
        measured.references = reference_embeddings(&opts.keep_like, m)?;
    }
    report.measured = fresh;
    let ranking = rank::rank(opts.method, &set.faces, &measured, &opts.filters);
    let (placements, batch) =
        plan::plan(&set, &ranking, opts.method, &trash_names(&ws.aligned_trash_dir(side)));
    report.kept = ranking.order.len();
    report.trashed = ranking.trash.len();
    report.moved = batch.moves.len();

    if let Some(path) = &opts.scores_json {
        write_scores(path, &set, &ranking, &placements, opts.method)?;
    }
    if opts.sheet {
        report.sheets =
            write_review(&ws.sort_sheets_dir(side), &set, &ranking, &placements, opts.method)?;
    }
    if opts.dry_run {
        report.plan = batch.moves;
    } else if !batch.moves.is_empty() {
        mover.apply(&batch)?;
    }
    Ok(report)
}

/// Reverts the last sort (or trash from the studio) of the `side` faceset; returns how many
/// files moved back and whether an interrupted run was finished first. The undo itself is the
/// faceset's ([`journal::undo_last`]), shared with the studio's Undo.
///
/// # Errors
/// The journal's errors: `NothingToUndo` when nothing is recorded, `Lock` when another run
/// holds the faceset.
pub fn undo(ws: &Workspace, side: Side) -> Result<(usize, Option<String>), SortError> {
    let undone = journal::undo_last(ws, side)?;
    Ok((undone.moved, undone.recovered))
}

/// Writes contact sheets of the faceset as it is, without sorting.
///
/// # Errors
/// `NoFaces`, or the sheet writer's error.
pub fn sheets_only(
    ws: &Workspace,
    side: Side,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, SortError> {
    let _lock = lock_faceset(ws, side)?;
    let set = read_faceset(ws, side, progress)?;
    let ranking = Ranking {
        order: (0..set.faces.len()).collect(),
        score: vec![None; set.faces.len()],
        note: vec![String::new(); set.faces.len()],
        ..Ranking::default()
    };
    let placements: Vec<Placement> = (0..set.faces.len())
        .map(|i| Placement { face: i, to: format!("aligned/{}", set.faces[i].name), reason: None })
        .collect();
    write_review(&ws.sort_sheets_dir(side), &set, &ranking, &placements, Method::Origname)
}

/// Takes the `side` faceset for this sort alone (its files are renamed), if the side exists.
fn lock_faceset(ws: &Workspace, side: Side) -> Result<Option<crate::lock::Lock>, SortError> {
    if !ws.side_dir(side).is_dir() {
        return Ok(None); // nothing to sort; the error comes from reading the faceset
    }
    Ok(Some(crate::lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?))
}

fn read_faceset(ws: &Workspace, side: Side, progress: &dyn Progress) -> Result<Faceset, SortError> {
    let dir = ws.aligned_dir(side);
    let no_faces = || SortError::NoFaces { dir: dir.clone(), side: side.as_str() };
    let set = match Faceset::read(&dir, progress) {
        Err(FacesetError::Missing(_)) => return Err(no_faces()),
        other => other?,
    };
    set.warn_skipped("it is left where it is");
    if set.faces.is_empty() {
        return Err(no_faces());
    }
    Ok(set)
}

fn trash_names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Measures what `method` needs: cached scalars and embeddings, histograms, poses. Returns the
/// measurements and how many faces were decoded.
fn measure(
    set: &Faceset,
    cache: &mut ScoreCache,
    method: Method,
    sface: Option<&SFaceModel>,
    progress: &dyn Progress,
) -> Result<(Measured, usize), SortError> {
    let wanted: Vec<Measure> =
        method.measures().iter().copied().filter(|&m| m != Measure::Embedding).collect();
    let histogram = method.histogram();
    let n = set.faces.len();
    let mut scalars: Vec<FaceScores> =
        set.faces.iter().map(|f| cache.get(&f.key).cloned().unwrap_or_default()).collect();
    let mut histograms = vec![None; n];
    let todo: Vec<usize> = (0..n)
        .filter(|&i| histogram != Histogram::None || wanted.iter().any(|&m| !scalars[i].has(m)))
        .collect();
    progress.set_len(todo.len() as u64);
    for chunk in todo.chunks(CHUNK) {
        let results: Vec<(usize, Result<FaceMeasurement, SortError>)> = chunk
            .par_iter()
            .map(|&i| {
                let missing: Vec<Measure> =
                    wanted.iter().copied().filter(|&m| !scalars[i].has(m)).collect();
                let r = measure_face(set, i, &missing, histogram);
                progress.inc(1);
                (i, r)
            })
            .collect();
        let mut new = Vec::new();
        for (i, r) in results {
            let (s, h) = r?;
            histograms[i] = h;
            if s != FaceScores::default() {
                new.push((set.faces[i].key.clone(), s.clone()));
                scalars[i].merge(s);
            }
        }
        cache.record_or_warn(new);
    }
    let mut fresh = todo.len();
    let embedding = if method.measures().contains(&Measure::Embedding) {
        let sface =
            sface.ok_or_else(|| SortError::Options("identity needs the SFace model".into()))?;
        fresh += set
            .faces
            .iter()
            .filter(|f| !cache.get(&f.key).is_some_and(|s| s.has(Measure::Embedding)))
            .count();
        scores::embeddings(set, cache, sface, progress)?
    } else {
        Vec::new()
    };
    if let Err(e) = cache.compact() {
        log::warn!("{}: {e}", cache.path().display());
    }
    let scalar_measure = wanted.first().copied();
    let pose = |f: &Face| {
        estimate_pitch_yaw_roll(&f.meta.landmarks, f.meta.size_px)
            .map_or((0.0, 0.0), |p| (p.yaw, p.pitch))
    };
    let measured = Measured {
        scalar: scalars.iter().map(|s| scalar_measure.and_then(|m| s.get(m))).collect(),
        histogram: histograms,
        embedding,
        pose: if method.uses_pose() { set.faces.iter().map(pose).collect() } else { Vec::new() },
        references: Vec::new(),
    };
    Ok((measured, fresh))
}

/// What decoding one face yields: newly measured scores and its histogram feature.
type FaceMeasurement = (FaceScores, Option<Vec<f32>>);

/// Decodes face `i` and measures `missing` and its histogram.
fn measure_face(
    set: &Faceset,
    i: usize,
    missing: &[Measure],
    histogram: Histogram,
) -> Result<FaceMeasurement, SortError> {
    let path = set.path(i);
    let face = &set.faces[i];
    let codec = |source| SortError::Face(FaceFileError::Codec { path: path.clone(), source });
    let bgr = read_face_image(&path)?;
    let image = FaceImage::new(bgr, &face.meta.landmarks).map_err(codec)?;
    let scores = image.measure(missing).map_err(codec)?;
    let hist = match histogram {
        Histogram::None => None,
        Histogram::Color => Some(image.color_histograms().map_err(codec)?),
        Histogram::Gray => Some(image.gray_histogram().map_err(codec)?),
    };
    Ok((scores, hist))
}

/// Embeds the person in each `--keep-like` image: an aligned dfl face by its landmarks, any
/// other photo by its largest detected face.
fn reference_embeddings(
    paths: &[PathBuf],
    models: &SortModels,
) -> Result<Vec<Embedding>, SortError> {
    let mut sface = models.sface.recognizer()?;
    let mut detector = None;
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes =
            std::fs::read(path).map_err(|source| SortError::Io { path: path.clone(), source })?;
        let bgr = crate::img::decode(&bytes, path).map_err(FaceFileError::from)?;
        let five = match parse_metadata(path, &bytes) {
            Ok(meta) => Some(meta.landmarks.five_points()),
            Err(_) => {
                if detector.is_none() {
                    detector = Some(
                        models
                            .yunet
                            .detector()
                            .map_err(|source| SortError::Detect { path: path.clone(), source })?,
                    );
                }
                let det = detector.as_mut().expect("invariant: just built");
                let found = det
                    .detect(&bgr)
                    .map_err(|source| SortError::Detect { path: path.clone(), source })?;
                found.first().map(|d| d.landmarks)
            }
        };
        let five = five.ok_or_else(|| SortError::NoReferenceFace(path.clone()))?;
        out.push(sface.embed(&bgr, &five)?);
    }
    Ok(out)
}

/// One face in `--scores-json`.
#[derive(Serialize)]
struct ScoreRow<'a> {
    rank: Option<usize>,
    file: &'a str,
    was: &'a str,
    frame: &'a str,
    face_index: usize,
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    yaw_deg: Option<f64>,
    pitch_deg: Option<f64>,
}

fn write_scores(
    path: &Path,
    set: &Faceset,
    ranking: &Ranking,
    placements: &[Placement],
    method: Method,
) -> Result<(), SortError> {
    let kept = ranking.order.len();
    let rows: Vec<ScoreRow<'_>> = placements
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let f = &set.faces[p.face];
            let pose = estimate_pitch_yaw_roll(&f.meta.landmarks, f.meta.size_px);
            ScoreRow {
                rank: (k < kept).then_some(k),
                file: &p.to,
                was: &f.name,
                frame: &f.meta.source_filename,
                face_index: f.meta.face_index,
                score: ranking.score[p.face],
                reason: p.reason.as_deref(),
                yaw_deg: pose.map(|p| p.yaw.to_degrees()),
                pitch_deg: pose.map(|p| p.pitch.to_degrees()),
            }
        })
        .collect();
    let doc = serde_json::json!({ "method": method.name(), "faces": rows });
    write_json_atomic(path, &doc).map_err(|source| SortError::Io { path: path.to_owned(), source })
}

fn write_review(
    dir: &Path,
    set: &Faceset,
    ranking: &Ranking,
    placements: &[Placement],
    method: Method,
) -> Result<Vec<PathBuf>, SortError> {
    sheet::clear_sheets(dir);
    let cell = |k: usize, p: &Placement| {
        let score = ranking.score[p.face].map(|s| method.show(s)).unwrap_or_default();
        let note = &ranking.note[p.face];
        let name = p.to.rsplit('/').next().unwrap_or(&p.to).to_owned();
        Cell {
            path: set.path(p.face),
            title: format!("{k} {score} {note}").trim().to_owned(),
            detail: p.reason.clone().unwrap_or(name),
        }
    };
    let kept = ranking.order.len();
    let kept_cells: Vec<Cell> =
        placements[..kept].iter().enumerate().map(|(k, p)| cell(k, p)).collect();
    let trash_cells: Vec<Cell> =
        placements[kept..].iter().enumerate().map(|(k, p)| cell(k, p)).collect();
    let mut written = sheet::write_sheets(dir, "sheet", &kept_cells, false)?;
    if !trash_cells.is_empty() {
        written.extend(sheet::write_sheets(dir, "trash", &trash_cells, true)?);
    }
    Ok(written)
}
