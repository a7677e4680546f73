//! `dfl sort`: score, order and clean a faceset without ever losing a face.
//!
//! A sort reads every face of `aligned/` (metadata and a content hash), measures what the
//! method needs (cached by content in `sort.scores.jsonl`), ranks, and renames: kept faces get
//! an order prefix, rejected ones move to `aligned_trash/` with a reason. The moves go through
//! a journal (`journal`), so a crash at any point is finished by the next run, and every sort
//! is recorded so `--undo` puts every name back.

pub mod best;
pub mod cache;
pub mod faceset;
pub mod hist;
pub mod identity;
pub mod journal;
pub mod measures;
pub mod method;
pub mod plan;
pub mod rank;
pub mod sheet;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::atomic::write_json_atomic;
use crate::detect::{FaceDetector, YuNetModel};
use crate::face::identity::{RecognizerPool, SFaceModel, five_points_from_68};
use crate::face::metadata::{FaceFileError, parse_metadata};
use crate::face::pose::estimate_pitch_yaw_roll;
use crate::progress::Progress;
use crate::workspace::{Side, Workspace};

use cache::{FaceScores, Measure, ScoreCache};
use faceset::Faceset;
use journal::{Batch, JournalError, Mover};
use measures::FaceImage;
use method::{Histogram, Method};
use plan::Placement;
use rank::{Filters, Measured, Ranking};
use sheet::Cell;

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
    /// `--undo` with no sort to undo.
    #[error("{}: no sort to undo", .0.display())]
    NothingToUndo(PathBuf),
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
    let side_dir = ws.side_dir(side);
    let mut mover = Mover::new(&side_dir);
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
    report.skipped = set.skipped.iter().map(|(_, e)| e.to_string()).collect();

    let (mut measured, fresh) =
        measure(&set, &side_dir, opts.method, models.map(|m| &m.sface), progress)?;
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
            write_review(&sheets_dir(ws, side), &set, &ranking, &placements, opts.method)?;
    }
    if opts.dry_run {
        report.plan = batch.moves;
    } else if !batch.moves.is_empty() {
        mover.apply(&batch)?;
    }
    Ok(report)
}

/// Reverts the last sort of the `side` faceset; returns how many files moved back and whether
/// an interrupted run was finished first.
///
/// # Errors
/// `NothingToUndo` when no sort is recorded; the journal's errors otherwise.
pub fn undo(ws: &Workspace, side: Side) -> Result<(usize, Option<String>), SortError> {
    let side_dir = ws.side_dir(side);
    let mut mover = Mover::new(&side_dir);
    let recovered = mover.recover()?;
    if let Some(Batch { action: journal::Action::Undo { .. }, moves, .. }) = &recovered {
        // The interrupted command was this undo: finishing it was the undo.
        return Ok((moves.len(), Some("undo".to_owned())));
    }
    let last = mover
        .history()?
        .pop()
        .ok_or_else(|| SortError::NothingToUndo(side_dir.join(journal::HISTORY_FILE)))?;
    let mut undo = last.undo();
    // Files moved by hand since are left alone, with a warning.
    undo.moves.retain(|m| {
        let there = side_dir.join(&m.from).is_file();
        if !there {
            log::warn!("{}: not found, so it cannot be put back", side_dir.join(&m.from).display());
        }
        there
    });
    mover.apply(&undo)?;
    Ok((undo.moves.len(), recovered.map(|b| journal::describe(&b.action))))
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
    write_review(&sheets_dir(ws, side), &set, &ranking, &placements, Method::Origname)
}

/// The folder contact sheets go to: `data_<side>/sort_sheets/`.
pub fn sheets_dir(ws: &Workspace, side: Side) -> PathBuf {
    ws.side_dir(side).join("sort_sheets")
}

fn read_faceset(ws: &Workspace, side: Side, progress: &dyn Progress) -> Result<Faceset, SortError> {
    let dir = ws.aligned_dir(side);
    let no_faces = || SortError::NoFaces { dir: dir.clone(), side: side.as_str() };
    if !dir.is_dir() {
        return Err(no_faces());
    }
    let set = Faceset::read(&dir, progress)
        .map_err(|source| SortError::Io { path: dir.clone(), source })?;
    for (_, e) in &set.skipped {
        log::warn!("{e}; it is left where it is");
    }
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

/// The SFace embedding of every face of `set` (in `side_dir`'s score cache, computed where
/// missing): what `identity` sorts by, and what `dfl eval` compares swaps with.
///
/// # Errors
/// A face that does not decode, or the model's error.
pub fn embeddings(
    set: &Faceset,
    side_dir: &Path,
    sface: &SFaceModel,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f32>>, SortError> {
    let (measured, _) = measure(set, side_dir, Method::Identity, Some(sface), progress)?;
    Ok(measured.embedding.into_iter().map(Option::unwrap_or_default).collect())
}

/// Faces measured per cache write: a kill loses at most this much work.
const CHUNK: usize = 256;

/// Measures what `opts.method` needs: cached scalars and embeddings, histograms, poses.
/// Returns the measurements and how many faces were decoded.
fn measure(
    set: &Faceset,
    side_dir: &Path,
    method: Method,
    sface: Option<&SFaceModel>,
    progress: &dyn Progress,
) -> Result<(Measured, usize), SortError> {
    let wanted = method.measures();
    let histogram = method.histogram();
    let sface = match (wanted.contains(&Measure::Embedding), sface) {
        (true, Some(m)) => Some(m.clone()),
        (true, None) => return Err(SortError::Options("identity needs the SFace model".into())),
        _ => None,
    };
    let recognizers = sface.map(RecognizerPool::new);
    let mut cache = ScoreCache::open(side_dir);
    let n = set.faces.len();
    let mut scores: Vec<FaceScores> =
        set.faces.iter().map(|f| cache.get(&f.key).cloned().unwrap_or_default()).collect();
    let mut histograms = vec![None; n];
    let todo: Vec<usize> = (0..n)
        .filter(|&i| histogram != Histogram::None || wanted.iter().any(|&m| !scores[i].has(m)))
        .collect();
    progress.set_len(todo.len() as u64);
    let mut fresh = 0;
    for chunk in todo.chunks(CHUNK) {
        let results: Vec<(usize, Result<FaceMeasurement, SortError>)> = chunk
            .par_iter()
            .map(|&i| {
                let missing: Vec<Measure> =
                    wanted.iter().copied().filter(|&m| !scores[i].has(m)).collect();
                let r = measure_face(set, i, &missing, histogram, &recognizers);
                progress.inc(1);
                (i, r)
            })
            .collect();
        let mut new = Vec::new();
        for (i, r) in results {
            let (s, h) = r?;
            fresh += 1;
            histograms[i] = h;
            if s != FaceScores::default() {
                new.push((set.faces[i].key.clone(), s.clone()));
                scores[i].merge(s);
            }
        }
        if let Err(e) = cache.record(new) {
            log::warn!(
                "{}: {e}; scores are not cached",
                side_dir.join(cache::SCORES_FILE).display()
            );
        }
    }
    if let Err(e) = cache.compact() {
        log::warn!("{}: {e}", side_dir.join(cache::SCORES_FILE).display());
    }
    let scalar_measure = wanted.first().copied();
    let pose = |f: &faceset::Face| {
        estimate_pitch_yaw_roll(&f.meta.landmarks, f.meta.size_px)
            .map_or((0.0, 0.0), |p| (p.yaw, p.pitch))
    };
    let measured = Measured {
        scalar: scores.iter().map(|s| scalar_measure.and_then(|m| s.get(m))).collect(),
        histogram: histograms,
        embedding: scores.into_iter().map(|s| s.embedding).collect(),
        pose: if method.uses_pose() { set.faces.iter().map(pose).collect() } else { Vec::new() },
        references: Vec::new(),
    };
    Ok((measured, fresh))
}

/// What decoding one face yields: newly measured scores and its histogram feature.
type FaceMeasurement = (FaceScores, Option<Vec<f32>>);

/// Decodes face `i` and measures `missing`, its histogram and (with a recognizer) its embedding.
fn measure_face(
    set: &Faceset,
    i: usize,
    missing: &[Measure],
    histogram: Histogram,
    recognizers: &Option<RecognizerPool>,
) -> Result<FaceMeasurement, SortError> {
    let path = set.path(i);
    let face = &set.faces[i];
    let codec = |source| SortError::Face(FaceFileError::Codec { path: path.clone(), source });
    let bytes =
        std::fs::read(&path).map_err(|source| SortError::Io { path: path.clone(), source })?;
    let bgr = measures::decode(&bytes).map_err(codec)?;
    let image = FaceImage::new(bgr, &face.meta.landmarks).map_err(codec)?;
    let mut scores = image.measure(missing).map_err(codec)?;
    if missing.contains(&Measure::Embedding) {
        let five = five_points_from_68(&face.meta.landmarks)
            .ok_or_else(|| SortError::Options(format!("{}: not 68 landmarks", path.display())))?;
        let pool = recognizers
            .as_ref()
            .ok_or_else(|| SortError::Options("identity needs the SFace model".into()))?;
        let mut sface = pool.take()?;
        let embedding = sface.embed(&image.bgr, &five);
        pool.put(sface);
        scores.embedding = Some(embedding?.as_slice().to_vec());
    }
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
) -> Result<Vec<Vec<f32>>, SortError> {
    let mut sface = models.sface.recognizer()?;
    let mut detector = None;
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes =
            std::fs::read(path).map_err(|source| SortError::Io { path: path.clone(), source })?;
        let codec = |source| SortError::Face(FaceFileError::Codec { path: path.clone(), source });
        let bgr = measures::decode(&bytes).map_err(codec)?;
        let five = match parse_metadata(path, &bytes) {
            Ok(meta) => five_points_from_68(&meta.landmarks),
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
        out.push(sface.embed(&bgr, &five)?.as_slice().to_vec());
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
