//! A model folder's checkpoints, saved as a set: weights, optimizer state and `state.json`
//! together, so a kill at any moment leaves the previous complete set loadable.
//!
//! ```text
//! model/<name>/
//!   config.json                 frozen options (written once)
//!   checkpoints/<iteration>-<t>/ weights.safetensors, optimizer.safetensors, state.json
//!   LATEST                      the name of the newest complete checkpoint folder
//!   backups/<iteration>/        rolling copies of older checkpoints
//! ```
//!
//! A save writes a new `checkpoints/<iteration>/` folder, syncs it, then replaces `LATEST`
//! atomically; only then are older checkpoint folders removed. A crash before the `LATEST`
//! rename leaves the previous checkpoint current; a half-written folder is never referenced and
//! is removed by the next save.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tch::Tensor;

use crate::atomic::{write_atomic, write_json_atomic};
use crate::model::checkpoint::{CheckpointError, read_tensors, save_tensors};

/// The weights file in a checkpoint folder.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The optimizer-state file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The counters and history in a checkpoint folder.
pub const STATE_FILE: &str = "state.json";
/// The pointer to the newest complete checkpoint folder.
const LATEST_FILE: &str = "LATEST";

/// Errors of saving or loading a checkpoint set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A tensor file is wrong.
    #[error(transparent)]
    Tensors(#[from] CheckpointError),
    /// A file or folder cannot be read or written.
    #[error("{}: {source}; check the model folder's permissions and free space", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `state.json` or `LATEST` does not parse.
    #[error("{} is corrupt ({reason}){}", .path.display(), backup_hint(.backup))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// The newest backup, if any, to restore from.
        backup: Option<PathBuf>,
    },
}

fn backup_hint(backup: &Option<PathBuf>) -> String {
    match backup {
        Some(dir) => {
            format!("; restore the newest backup: copy {} over the checkpoint", dir.display())
        }
        None => {
            "; no backup exists: restore the model folder from your own copy, or start a new model"
                .to_owned()
        }
    }
}

/// What one checkpoint set holds.
#[derive(Debug)]
pub struct Checkpoint<S> {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Model weights by name.
    pub weights: Vec<(String, Tensor)>,
    /// Optimizer state by name.
    pub optimizer: Vec<(String, Tensor)>,
    /// Counters and history (`state.json`).
    pub state: S,
}

/// A checkpoint set's weights and state, without the optimizer (for inference).
#[derive(Debug)]
pub struct Weights<S> {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Model weights by name.
    pub weights: Vec<(String, Tensor)>,
    /// Counters and history (`state.json`).
    pub state: S,
}

/// The checkpoint folders of one model.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

impl Store {
    /// Wraps the model folder `model/<name>`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Returns the model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// Returns the folder rolling backups go to.
    pub fn backups_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }

    /// Returns the newest complete checkpoint's folder, if a checkpoint was ever saved.
    ///
    /// # Errors
    /// `Corrupt` when `LATEST` names no folder; `Io` when it cannot be read.
    pub fn latest(&self) -> Result<Option<PathBuf>, StoreError> {
        let pointer = self.dir.join(LATEST_FILE);
        let name = match std::fs::read_to_string(&pointer) {
            Ok(name) => name,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&pointer)(e)),
        };
        let dir = self.checkpoints_dir().join(name.trim());
        if name.trim().is_empty() || name.contains('/') || !dir.is_dir() {
            let reason = format!("it names checkpoint {:?}, which does not exist", name.trim());
            return Err(StoreError::Corrupt {
                path: pointer,
                reason,
                backup: self.newest_backup(),
            });
        }
        Ok(Some(dir))
    }

    /// Saves a complete set for `iteration` and makes it the latest; removes older sets.
    ///
    /// # Errors
    /// `Tensors` or `Io`; the previous checkpoint then stays the latest.
    pub fn save<S: Serialize>(
        &self,
        iteration: u64,
        weights: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
        state: &S,
    ) -> Result<PathBuf, StoreError> {
        // A fresh folder name even when the iteration repeats (a save right after a resume), so
        // the current set is never touched before the pointer has moved.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{iteration:012}-{nanos}");
        let dir = self.checkpoints_dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        save_tensors(&dir.join(WEIGHTS_FILE), weights)?;
        save_tensors(&dir.join(OPTIMIZER_FILE), optimizer)?;
        let state_path = dir.join(STATE_FILE);
        write_json_atomic(&state_path, state).map_err(io_err(&state_path))?;
        sync_dir(&dir);
        let pointer = self.dir.join(LATEST_FILE);
        write_atomic(&pointer, name.as_bytes()).map_err(io_err(&pointer))?;
        self.remove_all_but(&name)?;
        Ok(dir)
    }

    /// Loads the latest set, or `None` when no checkpoint was ever saved.
    ///
    /// # Errors
    /// `Tensors`, `Io` or `Corrupt`, naming the file and the newest backup.
    pub fn load<S: DeserializeOwned>(&self) -> Result<Option<Checkpoint<S>>, StoreError> {
        let Some(dir) = self.latest()? else { return Ok(None) };
        Ok(Some(self.load_dir(&dir)?))
    }

    /// Loads the set in `dir` (a checkpoint or a backup folder).
    ///
    /// # Errors
    /// As [`Store::load`].
    pub fn load_dir<S: DeserializeOwned>(&self, dir: &Path) -> Result<Checkpoint<S>, StoreError> {
        let (weights, state) = self.read_weights_and_state(dir)?;
        let optimizer = read_tensors(&dir.join(OPTIMIZER_FILE)).map_err(self.with_backup())?;
        Ok(Checkpoint { dir: dir.to_owned(), weights, optimizer, state })
    }

    /// Loads the latest set without its optimizer state (for inference), or `None` when no
    /// checkpoint was ever saved.
    ///
    /// # Errors
    /// As [`Store::load`].
    pub fn load_weights<S: DeserializeOwned>(&self) -> Result<Option<Weights<S>>, StoreError> {
        let Some(dir) = self.latest()? else { return Ok(None) };
        let (weights, state) = self.read_weights_and_state(&dir)?;
        Ok(Some(Weights { dir, weights, state }))
    }

    fn read_weights_and_state<S: DeserializeOwned>(
        &self,
        dir: &Path,
    ) -> Result<(Vec<(String, Tensor)>, S), StoreError> {
        let weights = read_tensors(&dir.join(WEIGHTS_FILE)).map_err(self.with_backup())?;
        let state_path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
        let state = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: state_path.clone(),
            reason: e.to_string(),
            backup: self.newest_backup(),
        })?;
        Ok((weights, state))
    }

    /// Maps an unreadable tensor file to `Corrupt` naming the newest backup.
    fn with_backup(&self) -> impl Fn(CheckpointError) -> StoreError + '_ {
        |e| match e {
            CheckpointError::Read { path, reason } => {
                StoreError::Corrupt { path, reason, backup: self.newest_backup() }
            }
            other => StoreError::Tensors(other),
        }
    }

    /// Copies the latest set into `backups/<iteration>/` and keeps only the newest `keep`.
    ///
    /// # Errors
    /// `Io` naming the folder.
    pub fn backup(&self, keep: usize) -> Result<Option<PathBuf>, StoreError> {
        let Some(latest) = self.latest()? else { return Ok(None) };
        let name = latest.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let target = self.backups_dir().join(&name);
        let partial = self.backups_dir().join(format!("{}.partial", name.to_string_lossy()));
        std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
        for file in [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE] {
            std::fs::copy(latest.join(file), partial.join(file)).map_err(io_err(&partial))?;
        }
        sync_dir(&partial);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io_err(&target))?;
        }
        std::fs::rename(&partial, &target).map_err(io_err(&target))?;
        let mut backups = self.backups();
        while backups.len() > keep.max(1) {
            let oldest = backups.remove(0);
            std::fs::remove_dir_all(&oldest).map_err(io_err(&oldest))?;
        }
        Ok(Some(target))
    }

    /// Lists complete backup folders, oldest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.backups_dir()) else { return Vec::new() };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.extension().is_none())
            .collect();
        dirs.sort();
        dirs
    }

    fn newest_backup(&self) -> Option<PathBuf> {
        self.backups().pop()
    }

    /// Removes every checkpoint folder except `keep` (older sets and half-written tries).
    fn remove_all_but(&self, keep: &str) -> Result<(), StoreError> {
        let dir = self.checkpoints_dir();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if entry.file_name() != keep {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }
}

/// Makes a folder's new entries durable (best effort, as in `atomic`).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use tch::{Device, Kind};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        iteration: u64,
    }

    fn tensors(v: f32) -> Vec<(String, Tensor)> {
        vec![("w".to_owned(), Tensor::full([2, 3], f64::from(v), (Kind::Float, Device::Cpu)))]
    }

    #[test]
    fn the_latest_complete_set_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("model/m"));
        assert!(store.load::<State>().unwrap().is_none(), "a new model has no checkpoint");
        store.save(10, &tensors(1.0), &tensors(2.0), &State { iteration: 10 }).unwrap();
        store.save(20, &tensors(3.0), &tensors(4.0), &State { iteration: 20 }).unwrap();
        let ck = store.load::<State>().unwrap().unwrap();
        assert_eq!(ck.state, State { iteration: 20 });
        assert_eq!(ck.weights[0].1.double_value(&[0, 0]), 3.0);
        assert_eq!(
            std::fs::read_dir(store.checkpoints_dir()).unwrap().count(),
            1,
            "older sets removed"
        );
    }

    #[test]
    fn a_save_killed_before_the_pointer_moves_leaves_the_previous_set() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        store.save(10, &tensors(1.0), &tensors(2.0), &State { iteration: 10 }).unwrap();
        // A crash mid-save: a new folder with only part of its files, LATEST untouched.
        let partial = store.checkpoints_dir().join(format!("{:012}-1", 20));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join(WEIGHTS_FILE), b"half a file").unwrap();
        let ck = store.load::<State>().unwrap().unwrap();
        assert_eq!(ck.state.iteration, 10);
        // The next save cleans the debris.
        store.save(30, &tensors(5.0), &tensors(6.0), &State { iteration: 30 }).unwrap();
        assert!(!partial.exists());
    }

    #[test]
    fn a_corrupt_set_names_the_file_and_the_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        store.save(10, &tensors(1.0), &tensors(2.0), &State { iteration: 10 }).unwrap();
        let backup = store.backup(3).unwrap().unwrap();
        let latest = store.latest().unwrap().unwrap();
        let bytes = std::fs::read(latest.join(WEIGHTS_FILE)).unwrap();
        std::fs::write(latest.join(WEIGHTS_FILE), &bytes[..bytes.len() / 2]).unwrap();
        let err = store.load::<State>().unwrap_err().to_string();
        assert!(err.contains(WEIGHTS_FILE) && err.contains(&backup.display().to_string()), "{err}");
        // The backup itself loads.
        assert_eq!(store.load_dir::<State>(&backup).unwrap().state.iteration, 10);
    }

    #[test]
    fn saving_the_same_iteration_again_never_touches_the_current_set() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let first = store.save(10, &tensors(1.0), &tensors(2.0), &State { iteration: 10 }).unwrap();
        let second =
            store.save(10, &tensors(1.0), &tensors(2.0), &State { iteration: 10 }).unwrap();
        assert_ne!(first, second);
        assert_eq!(store.latest().unwrap().unwrap(), second);
        assert!(!first.exists());
    }

    #[test]
    fn backups_roll_keeping_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        for it in 1..=5 {
            store.save(it, &tensors(it as f32), &tensors(0.0), &State { iteration: it }).unwrap();
            store.backup(2).unwrap();
        }
        let names: Vec<String> = store
            .backups()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].starts_with(&format!("{:012}-", 4)), "{names:?}");
        assert!(names[1].starts_with(&format!("{:012}-", 5)), "{names:?}");
    }
}
