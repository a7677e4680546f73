//! Moving face files so that none is ever lost: a journal, two phases, a history for undo.
//!
//! A sort, a trash of faces picked by hand (`dfl studio`) or an undo is one [`Batch`] of
//! renames inside a side folder (`data_src/`): `aligned/x → aligned/y` to reorder,
//! `aligned/x → aligned_trash/x` to reject. It runs as:
//!
//! 1. write `sort.journal.json` (the batch, phase 1) atomically;
//! 2. phase 1: move every source into `.sort-staging/<n>-<name>`;
//! 3. rewrite the journal as phase 2;
//! 4. phase 2: move every staged file to its target;
//! 5. record the batch in `sort.history.jsonl` (an undo removes the batch it reverts from it),
//!    update `aligned_trash/reasons.json`, remove the journal.
//!
//! [`undo_last`] reverts the last recorded batch, a sort or a trash alike: it is `dfl sort
//! --undo` and the studio's Undo.
//!
//! In phase 1 a file is at its source or staged; in phase 2 staged or at its target; so after
//! a crash at any point [`recover`] knows where every file is and finishes the batch, even when
//! one batch swaps two names. Nothing is ever overwritten: a target that exists stops the batch
//! before anything moves.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, write_json_atomic};
use crate::lock::{self, LockError};
use crate::stage_log::StageLog;
use crate::workspace::{Side, Workspace};

/// Why each file in `aligned_trash/` is there.
pub const REASONS_FILE: &str = "reasons.json";

/// One rename, with paths relative to the side folder (`aligned/00017_0.jpg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Where the file is.
    pub from: String,
    /// Where it goes.
    pub to: String,
    /// Why it goes to the trash (for moves into `aligned_trash/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a batch does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A sort by a method (its `--by` name).
    Sort {
        /// The method.
        method: String,
    },
    /// Faces moved to `aligned_trash/` by hand.
    Trash {
        /// Who moved them (`studio`).
        by: String,
    },
    /// The undo of the sort or trash with this id.
    Undo {
        /// The reverted batch's [`Batch::id`].
        of: u64,
    },
}

/// A set of renames applied as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Unique in the history (milliseconds since the epoch when planned).
    pub id: u64,
    /// What the batch does.
    pub action: Action,
    /// The renames.
    pub moves: Vec<Move>,
}

impl Batch {
    /// A batch moving the faces `names` of `aligned/` to `aligned_trash/` with `reason`, for
    /// `by` ([`Action::Trash`]). A name the trash holds already (`trash_names`) becomes
    /// `<stem>~2.<ext>` (`~3`…) there; undoing puts the face back under its own name.
    pub fn trash(by: &str, names: &[String], reason: &str, trash_names: &HashSet<String>) -> Batch {
        let mut taken = trash_names.clone();
        let moves = names
            .iter()
            .map(|name| {
                let mut target = name.clone();
                let path = Path::new(name);
                let stem =
                    path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into());
                let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy()));
                let mut n = 1;
                while taken.contains(&target) {
                    n += 1;
                    target = format!("{stem}~{n}{}", ext.as_deref().unwrap_or(""));
                }
                taken.insert(target.clone());
                Move {
                    from: format!("aligned/{name}"),
                    to: format!("aligned_trash/{target}"),
                    reason: Some(reason.to_owned()),
                }
            })
            .collect();
        Batch { id: new_id(), action: Action::Trash { by: by.to_owned() }, moves }
    }

    /// The batch that reverts `self` (a sort or a trash): every move backwards.
    pub fn undo(&self) -> Batch {
        let moves = self
            .moves
            .iter()
            .map(|m| Move { from: m.to.clone(), to: m.from.clone(), reason: None })
            .collect();
        Batch { id: new_id(), action: Action::Undo { of: self.id }, moves }
    }
}

/// Returns a fresh batch id.
pub fn new_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The journal file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    phase: u8,
    batch: Batch,
}

/// Errors of moving files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file or folder could not be read, written or renamed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The journal or history does not parse.
    #[error("{}: {reason}; move it aside and check aligned/ and aligned_trash/ by hand", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A target is taken by a file the batch does not move.
    #[error("{} already exists and would be overwritten; nothing was moved (move that file out of the way and run again)", .0.display())]
    TargetExists(PathBuf),
    /// A file to move is not there.
    #[error("{} is missing; nothing was moved (the faceset changed while sorting: run again)", .0.display())]
    SourceMissing(PathBuf),
    /// Another run holds the faceset.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Undo with no sort or trash recorded.
    #[error("{}: no sort or trash to undo", .0.display())]
    NothingToUndo(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

/// Applies batches in one side folder.
#[derive(Debug)]
pub struct Mover {
    /// The folder the moves' paths are relative to (`data_src/`).
    side_dir: PathBuf,
    /// The batch under way (`sort.journal.json`).
    journal: PathBuf,
    /// Every finished batch (`sort.history.jsonl`).
    history: PathBuf,
    /// Where files wait between the phases.
    staging: PathBuf,
    /// Where rejected faces go (`aligned_trash/`).
    trash: PathBuf,
    /// Test hook (debug builds): abort the process after this many renames, as `kill -9` would.
    fault_after: Option<usize>,
    renames: usize,
}

impl Mover {
    /// A mover for the `side` folder of `ws` (e.g. `workspace/data_src`).
    pub fn new(ws: &Workspace, side: Side) -> Self {
        let fault_after = if cfg!(debug_assertions) {
            std::env::var("DFL_SORT_FAULT_AFTER_MOVES").ok().and_then(|v| v.parse().ok())
        } else {
            None
        };
        Self {
            side_dir: ws.side_dir(side),
            journal: ws.sort_journal(side),
            history: ws.sort_history(side),
            staging: ws.sort_staging_dir(side),
            trash: ws.aligned_trash_dir(side),
            fault_after,
            renames: 0,
        }
    }

    fn journal_path(&self) -> PathBuf {
        self.journal.clone()
    }

    fn history_path(&self) -> PathBuf {
        self.history.clone()
    }

    /// Returns the batch an interrupted run left, if any.
    ///
    /// # Errors
    /// `Io` or `Corrupt` for an unreadable journal.
    pub fn pending(&self) -> Result<Option<Batch>, JournalError> {
        Ok(self.read_journal()?.map(|j| j.batch))
    }

    fn read_journal(&self) -> Result<Option<Journal>, JournalError> {
        let path = self.journal_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| JournalError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let bad = journal.batch.moves.iter().find(|m| !is_inside(&m.from) || !is_inside(&m.to));
        if let Some(m) = bad {
            let reason = format!("move {} → {} leaves the side folder", m.from, m.to);
            return Err(JournalError::Corrupt { path, reason });
        }
        Ok(Some(journal))
    }

    /// Finishes the batch an interrupted run left; returns it, or `None` when there was none.
    ///
    /// # Errors
    /// As [`Mover::apply`].
    pub fn recover(&mut self) -> Result<Option<Batch>, JournalError> {
        let Some(journal) = self.read_journal()? else { return Ok(None) };
        log::warn!(
            "{}: finishing the interrupted {} first",
            self.journal_path().display(),
            describe(&journal.batch.action)
        );
        if journal.phase <= 1 {
            self.phase(&journal.batch, 1)?;
            self.write_journal(&journal.batch, 2)?;
        }
        self.phase(&journal.batch, 2)?;
        self.finish(&journal.batch)?;
        Ok(Some(journal.batch))
    }

    /// Applies `batch`: checks it, journals it, moves every file, records it.
    ///
    /// # Errors
    /// `SourceMissing`/`TargetExists` before anything moved; `Io` when a rename fails (the
    /// journal then lets a rerun finish the batch).
    pub fn apply(&mut self, batch: &Batch) -> Result<(), JournalError> {
        self.check(batch)?;
        self.write_journal(batch, 1)?;
        self.phase(batch, 1)?;
        self.write_journal(batch, 2)?;
        self.phase(batch, 2)?;
        self.finish(batch)
    }

    /// Every source exists, and every target is free or freed by the batch itself.
    fn check(&self, batch: &Batch) -> Result<(), JournalError> {
        let sources: HashSet<&str> = batch.moves.iter().map(|m| m.from.as_str()).collect();
        for m in &batch.moves {
            let from = self.side_dir.join(&m.from);
            if !from.is_file() {
                return Err(JournalError::SourceMissing(from));
            }
            let to = self.side_dir.join(&m.to);
            if to.exists() && !sources.contains(m.to.as_str()) {
                return Err(JournalError::TargetExists(to));
            }
        }
        let staging = self.staging.clone();
        if std::fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some()) {
            return Err(JournalError::TargetExists(staging));
        }
        Ok(())
    }

    fn write_journal(&self, batch: &Batch, phase: u8) -> Result<(), JournalError> {
        let path = self.journal_path();
        write_json_atomic(&path, &Journal { phase, batch: batch.clone() }).map_err(io_err(&path))
    }

    fn staged(&self, index: usize, m: &Move) -> PathBuf {
        let name = Path::new(&m.to)
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        self.staging.join(format!("{index:06}-{name}"))
    }

    /// Runs phase 1 (sources → staging) or 2 (staging → targets); idempotent.
    fn phase(&mut self, batch: &Batch, phase: u8) -> Result<(), JournalError> {
        let staging = self.staging.clone();
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let mut dirs_made = HashSet::new();
        for (i, m) in batch.moves.iter().enumerate() {
            let (from, to) = match phase {
                1 => (self.side_dir.join(&m.from), self.staged(i, m)),
                _ => (self.staged(i, m), self.side_dir.join(&m.to)),
            };
            if let Some(dir) = to.parent().filter(|d| dirs_made.insert(d.to_path_buf())) {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            if from.is_file() {
                if to.exists() {
                    return Err(JournalError::TargetExists(to));
                }
                std::fs::rename(&from, &to).map_err(io_err(&from))?;
                self.renames += 1;
                if self.fault_after == Some(self.renames) {
                    std::process::abort();
                }
            } else if !to.is_file() {
                log::warn!("{}: vanished during the sort (it was not moved)", from.display());
            }
        }
        Ok(())
    }

    /// Records the finished batch, updates the trash reasons and removes the journal.
    fn finish(&self, batch: &Batch) -> Result<(), JournalError> {
        let mut history = self.history()?;
        match &batch.action {
            Action::Sort { .. } | Action::Trash { .. } => {
                if !history.iter().any(|b| b.id == batch.id) {
                    StageLog::open(self.history_path())
                        .and_then(|mut log| log.append(batch))
                        .map_err(|e| io_err(&self.history_path())(std::io::Error::other(e)))?;
                }
            }
            Action::Undo { of } => {
                if history.iter().any(|b| b.id == *of) {
                    history.retain(|b| b.id != *of);
                    self.write_history(&history)?;
                }
            }
        }
        self.update_reasons(batch)?;
        let staging = self.staging.clone();
        if let Err(e) = std::fs::remove_dir(&staging) {
            log::warn!("{}: not removed ({e}); check it for left-over faces", staging.display());
        }
        let journal = self.journal_path();
        std::fs::remove_file(&journal).map_err(io_err(&journal))
    }

    /// Returns every finished sort and trash not undone, oldest first.
    ///
    /// # Errors
    /// `Io` when the history exists but cannot be read.
    pub fn history(&self) -> Result<Vec<Batch>, JournalError> {
        let path = self.history_path();
        let entries =
            StageLog::read::<Batch>(&path).map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
        if entries.bad_lines > 0 {
            log::warn!("{}: {} unreadable line(s) ignored", path.display(), entries.bad_lines);
        }
        Ok(entries.entries)
    }

    fn write_history(&self, history: &[Batch]) -> Result<(), JournalError> {
        let path = self.history_path();
        let mut bytes = Vec::new();
        for b in history {
            bytes.extend(serde_json::to_vec(b).map_err(|e| io_err(&path)(e.into()))?);
            bytes.push(b'\n');
        }
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// Keeps `aligned_trash/reasons.json` in step: reasons for files moved in, none for files
    /// moved out (or no longer there).
    fn update_reasons(&self, batch: &Batch) -> Result<(), JournalError> {
        let touches_trash = |p: &str| p.starts_with("aligned_trash/");
        if !batch.moves.iter().any(|m| touches_trash(&m.from) || touches_trash(&m.to)) {
            return Ok(());
        }
        let trash = &self.trash;
        let path = trash.join(REASONS_FILE);
        let mut reasons: BTreeMap<String, String> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for m in &batch.moves {
            if let Some(name) = m.from.strip_prefix("aligned_trash/") {
                reasons.remove(name);
            }
            if let (Some(name), Some(reason)) = (m.to.strip_prefix("aligned_trash/"), &m.reason) {
                reasons.insert(name.to_owned(), reason.clone());
            }
        }
        reasons.retain(|name, _| trash.join(name).is_file());
        write_json_atomic(&path, &reasons).map_err(io_err(&path))
    }
}

/// Says what a batch is, for messages.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Sort { method } => format!("sort by {method}"),
        Action::Trash { by } => format!("trash from {by}"),
        Action::Undo { .. } => "undo".to_owned(),
    }
}

/// What [`undo_last`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    /// Files moved back.
    pub moved: usize,
    /// What was undone ([`describe`] of its action); `None` when the undo was an interrupted
    /// undo, finished.
    pub undid: Option<String>,
    /// An interrupted batch finished first ([`describe`] of its action).
    pub recovered: Option<String>,
}

/// Reverts the last sort or trash of the `side` faceset, under the faceset's exclusive lock
/// (`dfl sort --undo`, the studio's Undo). An interrupted batch is finished first; when that
/// batch was itself an undo, finishing it is the undo. Files moved by hand since the batch are
/// left where they are, with a warning.
///
/// # Errors
/// `Lock` naming the holder when another run uses the faceset; `NothingToUndo` when no sort or
/// trash is recorded; the journal's errors otherwise.
pub fn undo_last(ws: &Workspace, side: Side) -> Result<Undone, JournalError> {
    let side_dir = ws.side_dir(side);
    let _lock = if side_dir.is_dir() {
        Some(lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?)
    } else {
        None // no faceset: nothing to lock, and nothing to undo
    };
    let mut mover = Mover::new(ws, side);
    let recovered = mover.recover()?;
    if let Some(Batch { action: Action::Undo { .. }, moves, .. }) = &recovered {
        return Ok(Undone { moved: moves.len(), undid: None, recovered: Some("undo".to_owned()) });
    }
    let last =
        mover.history()?.pop().ok_or_else(|| JournalError::NothingToUndo(ws.sort_history(side)))?;
    let mut undo = last.undo();
    undo.moves.retain(|m| {
        let there = side_dir.join(&m.from).is_file();
        if !there {
            log::warn!("{}: not found, so it cannot be put back", side_dir.join(&m.from).display());
        }
        there
    });
    mover.apply(&undo)?;
    Ok(Undone {
        moved: undo.moves.len(),
        undid: Some(describe(&last.action)),
        recovered: recovered.map(|b| describe(&b.action)),
    })
}

/// Whether a journal path stays inside the side folder.
fn is_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(names: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let side = tmp.path().join("data_src");
        std::fs::create_dir_all(side.join("aligned")).unwrap();
        for n in names {
            std::fs::write(side.join("aligned").join(n), n.as_bytes()).unwrap();
        }
        (tmp, side)
    }

    fn mv(from: &str, to: &str) -> Move {
        Move { from: from.into(), to: to.into(), reason: None }
    }

    fn contents(side: &Path, dir: &str) -> Vec<(String, String)> {
        let mut out: Vec<_> = std::fs::read_dir(side.join(dir))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().unwrap().is_file())
                    .filter(|e| e.file_name() != REASONS_FILE)
                    .map(|e| {
                        let name = e.file_name().into_string().unwrap();
                        (name, std::fs::read_to_string(e.path()).unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn swap_and_trash() -> Batch {
        Batch {
            id: 7,
            action: Action::Sort { method: "blur".into() },
            moves: vec![
                mv("aligned/a.jpg", "aligned/b.jpg"),
                mv("aligned/b.jpg", "aligned/a.jpg"),
                Move {
                    reason: Some("too blurry".into()),
                    ..mv("aligned/c.jpg", "aligned_trash/c.jpg")
                },
            ],
        }
    }

    #[test]
    fn a_batch_can_swap_names_trash_and_be_undone() {
        let (_tmp, side) = setup(&["a.jpg", "b.jpg", "c.jpg"]);
        let mut mover = Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src);
        mover.apply(&swap_and_trash()).unwrap();
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(contents(&side, "aligned"), [s("a.jpg", "b.jpg"), s("b.jpg", "a.jpg")]);
        assert_eq!(contents(&side, "aligned_trash"), [s("c.jpg", "c.jpg")]);
        let reasons =
            std::fs::read_to_string(side.join("aligned_trash").join(REASONS_FILE)).unwrap();
        assert!(reasons.contains("too blurry"), "{reasons}");
        assert!(!side.join("sort.journal.json").exists() && !side.join(".sort-staging").exists());

        let last = mover.history().unwrap().pop().unwrap();
        mover.apply(&last.undo()).unwrap();
        let names = ["a.jpg", "b.jpg", "c.jpg"];
        assert_eq!(contents(&side, "aligned"), names.map(|n| s(n, n)));
        assert!(contents(&side, "aligned_trash").is_empty());
        assert!(mover.history().unwrap().is_empty(), "the undone sort leaves the history");
    }

    #[test]
    fn a_trash_by_hand_is_undone_like_a_sort_and_old_histories_still_read() {
        let (_tmp, side) = setup(&["a.jpg", "b.jpg", "c.jpg"]);
        let ws = Workspace::new(side.parent().unwrap());
        std::fs::create_dir_all(side.join("aligned_trash")).unwrap();
        std::fs::write(side.join("aligned_trash/a.jpg"), "older a").unwrap();
        // A history written before trashes existed: one sort line.
        let old_line = r#"{"id":3,"action":{"kind":"sort","method":"blur"},"moves":[]}"#;
        std::fs::write(side.join("sort.history.jsonl"), format!("{old_line}\n")).unwrap();

        let taken = ["a.jpg".to_owned()].into();
        let names = ["a.jpg".to_owned(), "c.jpg".to_owned()];
        let batch = Batch::trash("studio", &names, "by hand", &taken);
        assert_eq!(batch.moves[0].to, "aligned_trash/a~2.jpg", "the trash's own a.jpg stays");
        Mover::new(&ws, Side::Src).apply(&batch).unwrap();
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(contents(&side, "aligned"), [s("b.jpg", "b.jpg")]);
        assert_eq!(
            contents(&side, "aligned_trash"),
            [s("a.jpg", "older a"), s("a~2.jpg", "a.jpg"), s("c.jpg", "c.jpg")]
        );
        let history = Mover::new(&ws, Side::Src).history().unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(describe(&history[1].action), "trash from studio");

        let undone = undo_last(&ws, Side::Src).unwrap();
        assert_eq!(undone.moved, 2);
        assert_eq!(undone.undid.as_deref(), Some("trash from studio"));
        assert_eq!(contents(&side, "aligned"), ["a.jpg", "b.jpg", "c.jpg"].map(|n| s(n, n)));
        assert_eq!(contents(&side, "aligned_trash"), [s("a.jpg", "older a")]);
        let reasons =
            std::fs::read_to_string(side.join("aligned_trash").join(REASONS_FILE)).unwrap();
        assert!(!reasons.contains("by hand"), "{reasons}");
        // The old sort is next, then nothing.
        assert_eq!(undo_last(&ws, Side::Src).unwrap().undid.as_deref(), Some("sort by blur"));
        let err = undo_last(&ws, Side::Src).unwrap_err();
        assert!(matches!(err, JournalError::NothingToUndo(_)), "{err}");
    }

    #[test]
    fn undo_is_refused_while_another_run_reads_the_faceset() {
        let (_tmp, side) = setup(&["a.jpg"]);
        let ws = Workspace::new(side.parent().unwrap());
        let batch = Batch::trash("studio", &["a.jpg".to_owned()], "x", &HashSet::new());
        Mover::new(&ws, Side::Src).apply(&batch).unwrap();
        let reader = lock::shared(&ws.faceset_lock(Side::Src), "the src faceset").unwrap();
        let err = undo_last(&ws, Side::Src).unwrap_err();
        assert!(matches!(err, JournalError::Lock(LockError::Busy { .. })), "{err}");
        assert!(side.join("aligned_trash/a.jpg").is_file(), "nothing moved");
        drop(reader);
        assert_eq!(undo_last(&ws, Side::Src).unwrap().moved, 1);
    }

    #[test]
    fn nothing_is_overwritten() {
        let (_tmp, side) = setup(&["a.jpg", "b.jpg"]);
        let batch = Batch { moves: vec![mv("aligned/a.jpg", "aligned/b.jpg")], ..swap_and_trash() };
        let err = Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src)
            .apply(&batch)
            .unwrap_err();
        assert!(matches!(err, JournalError::TargetExists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(side.join("aligned/b.jpg")).unwrap(), "b.jpg");
        assert!(!side.join("sort.journal.json").exists(), "a refused batch leaves no journal");
    }

    #[test]
    fn recovery_finishes_a_batch_interrupted_in_either_phase() {
        for (phase, moved) in [(1, 0), (1, 2), (2, 0), (2, 1), (2, 3)] {
            let (_tmp, side) = setup(&["a.jpg", "b.jpg", "c.jpg"]);
            let mut mover = Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src);
            let batch = swap_and_trash();
            // Replay the run by hand up to the crash: phase 1 fully when in phase 2, then
            // `moved` renames of the current phase.
            mover.write_journal(&batch, 1).unwrap();
            if phase == 2 {
                mover.phase(&batch, 1).unwrap();
                mover.write_journal(&batch, 2).unwrap();
            }
            for (i, m) in batch.moves.iter().enumerate().take(moved) {
                let (from, to) = match phase {
                    1 => (side.join(&m.from), mover.staged(i, m)),
                    _ => (mover.staged(i, m), side.join(&m.to)),
                };
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::rename(from, to).unwrap();
            }
            let recovered = Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src)
                .recover()
                .unwrap()
                .unwrap();
            assert_eq!(recovered.id, 7);
            let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
            assert_eq!(
                contents(&side, "aligned"),
                [s("a.jpg", "b.jpg"), s("b.jpg", "a.jpg")],
                "phase {phase}, {moved} moved"
            );
            assert_eq!(contents(&side, "aligned_trash"), [s("c.jpg", "c.jpg")]);
            assert_eq!(
                Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src)
                    .history()
                    .unwrap()
                    .len(),
                1
            );
            assert!(
                Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src)
                    .recover()
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn a_journal_cannot_move_files_outside_the_side_folder() {
        let (_tmp, side) = setup(&["a.jpg"]);
        let batch = Batch { moves: vec![mv("aligned/a.jpg", "../a.jpg")], ..swap_and_trash() };
        Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src)
            .write_journal(&batch, 1)
            .unwrap();
        let err =
            Mover::new(&Workspace::new(side.parent().unwrap()), Side::Src).recover().unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    }
}
