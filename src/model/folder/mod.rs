//! A model folder, `model/<name>/`: its options (`config.json`), its checkpoint sets (weights,
//! optimizer state and `state.json`, saved together so a kill at any moment leaves the previous
//! complete set loadable), backups and pictures. Training writes it; merge, eval, status and the
//! demo read it through [`ModelFolder`].
//!
//! ```text
//! model/<name>/
//!   config.json                  the options (frozen ones fixed by the first run)
//!   checkpoints/<iteration>-<t>/ weights.safetensors, optimizer.safetensors, state.json,
//!                                and, once a run trained them, the discriminators' weights and
//!                                optimizer states (gan*.safetensors, code_discriminator*…)
//!   LATEST                       the name of the newest complete checkpoint folder
//!   backups/<iteration>-<t>/     rolling copies of older checkpoints
//!   preview.png, loss.png, eval.png, previews/
//!   control.json                 requests to the running training, {"save": N, "stop": N}
//!                                (written by others, e.g. the studio; see [`control`])
//!   control.lock, train.lock     the locks of control.json's writers and of the training
//! ```
//!
//! A save writes a new `checkpoints/<iteration>-<t>/` folder, syncs it, then replaces `LATEST`
//! atomically; only then are older checkpoint folders removed. A crash before the `LATEST`
//! rename leaves the previous checkpoint current; a half-written folder is never referenced and
//! is removed by the next save.

pub mod config;
pub mod control;
pub mod live;
pub mod state;

use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::atomic::{write_atomic, write_json_atomic};
use crate::lock::{Lock, LockError};
use crate::model::checkpoint::{CheckpointError, read_tensors, save_tensors};
use crate::workspace::{Workspace, WorkspaceError};
pub use config::{FrozenOptionChanged, TrainConfig, TrainMask};
pub use live::{LIVE_FILE, LiveProgress, LiveWriter};
pub use state::{EvalPoint, IouPoint, LossPoint, TrainState};

/// The model's options file.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file in a checkpoint folder.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The optimizer-state file in a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The counters and history in a checkpoint folder.
pub const STATE_FILE: &str = "state.json";
/// The GAN's patch discriminator in a checkpoint folder.
pub const GAN_FILE: &str = "gan.safetensors";
/// The GAN discriminator's optimizer state.
pub const GAN_OPTIMIZER_FILE: &str = "gan_optimizer.safetensors";
/// True face's code discriminator in a checkpoint folder.
pub const CODE_DISCRIMINATOR_FILE: &str = "code_discriminator.safetensors";
/// The code discriminator's optimizer state.
pub const CODE_DISCRIMINATOR_OPTIMIZER_FILE: &str = "code_discriminator_optimizer.safetensors";
/// The optional files of a set: present once a run trained the discriminator they belong to
/// (and carried from set to set while it is off, so turning it on again resumes it). Inference
/// never reads them.
pub const DISCRIMINATOR_FILES: [&str; 4] =
    [GAN_FILE, GAN_OPTIMIZER_FILE, CODE_DISCRIMINATOR_FILE, CODE_DISCRIMINATOR_OPTIMIZER_FILE];
/// The pointer to the newest complete checkpoint folder.
const LATEST_FILE: &str = "LATEST";
/// The lock a training run holds.
const LOCK_FILE: &str = "train.lock";

/// Errors of reading or writing a model folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
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
    /// `config.json` does not parse.
    #[error("{}: {reason}; the model's options are unreadable: fix the file, or restore it from your own copy", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
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
pub struct Checkpoint {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Model weights by name.
    pub weights: Vec<(String, Tensor)>,
    /// Optimizer state by name.
    pub optimizer: Vec<(String, Tensor)>,
    /// The discriminator files the set holds ([`DISCRIMINATOR_FILES`]), by file name.
    pub discriminators: Vec<(String, Vec<(String, Tensor)>)>,
    /// Counters and history (`state.json`).
    pub state: TrainState,
}

/// Tensor files of a set beside the weights and optimizer: (file name, tensors by name).
pub type ExtraFiles = [(String, Vec<(String, Tensor)>)];

/// A checkpoint set's weights and state, without the optimizer (for inference).
#[derive(Debug)]
pub struct Weights {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Model weights by name.
    pub weights: Vec<(String, Tensor)>,
    /// Counters and history (`state.json`).
    pub state: TrainState,
}

/// One model's folder under `model/`.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io { path: path.to_owned(), source }
}

impl ModelFolder {
    /// Wraps the model folder `dir` (`model/<name>`) without touching the disk.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Wraps the folder of model `name` in `ws`.
    ///
    /// # Errors
    /// `BadModelName` when `name` is not a plain folder name.
    pub fn open(ws: &Workspace, name: &str) -> Result<Self, WorkspaceError> {
        Ok(Self::new(ws.model_dir(name)?))
    }

    /// Lists every folder under `ws`'s `model/`, sorted by name (none when it does not exist).
    pub fn list(ws: &Workspace) -> Vec<(String, ModelFolder)> {
        Self::list_in(&ws.models_dir())
    }

    /// Lists every folder under `dir` as a model folder, sorted by name (none when `dir` does
    /// not exist).
    pub fn list_in(dir: &Path) -> Vec<(String, ModelFolder)> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut folders: Vec<(String, ModelFolder)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), ModelFolder::new(e.path())))
            .collect();
        folders.sort_by(|a, b| a.0.cmp(&b.0));
        folders
    }

    /// Returns the model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Returns whether `config.json` exists (the model was created).
    pub fn has_config(&self) -> bool {
        self.config_path().is_file()
    }

    /// Reads `config.json`, or `None` when the model was never created.
    ///
    /// # Errors
    /// `Config` when the file cannot be read or parsed.
    pub fn read_config(&self) -> Result<Option<TrainConfig>, FolderError> {
        let path = self.config_path();
        let config_err = |reason: String| FolderError::Config { path: path.clone(), reason };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config_err(e.to_string())),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| config_err(e.to_string()))
    }

    /// Writes `config.json` atomically.
    ///
    /// # Errors
    /// `Io` naming the file.
    pub fn write_config(&self, cfg: &TrainConfig) -> Result<(), FolderError> {
        let path = self.config_path();
        write_json_atomic(&path, cfg).map_err(io_err(&path))
    }

    /// Takes the model for this process alone: the lock `dfl train` holds while it runs.
    ///
    /// # Errors
    /// `Busy` naming the process that trains it.
    pub fn lock(&self) -> Result<Lock, LockError> {
        let name =
            self.dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        crate::lock::exclusive(&self.dir.join(LOCK_FILE), &format!("model {name}"))
    }

    /// Removes the folder of a model that never saved (no `config.json`, no checkpoint, no
    /// backup): what a failed first run leaves (its lock, perhaps a preview). Anything saved
    /// keeps the folder.
    pub fn remove_if_never_saved(&self) {
        let saved =
            self.has_config() || !self.checkpoint_sets().is_empty() || !self.backups().is_empty();
        if !saved
            && self.dir.is_dir()
            && let Err(e) = std::fs::remove_dir_all(&self.dir)
        {
            log::warn!("{}: {e}; remove it by hand", self.dir.display());
        }
    }

    /// Returns `control.json`: the requests to a running training ([`control`]).
    pub fn control_path(&self) -> PathBuf {
        self.dir.join(control::CONTROL_FILE)
    }

    /// Returns `preview.png`: the latest preview grid.
    pub fn preview_path(&self) -> PathBuf {
        self.dir.join("preview.png")
    }

    /// Returns `previews/<iteration>.png`: a kept preview grid (`--preview-history`).
    pub fn preview_history_path(&self, iteration: u64) -> PathBuf {
        self.dir.join("previews").join(format!("{iteration:09}.png"))
    }

    /// Returns `loss.png`: the loss history plot.
    pub fn loss_plot_path(&self) -> PathBuf {
        self.dir.join("loss.png")
    }

    /// Returns `eval.png`: the held-out evaluation plot.
    pub fn eval_plot_path(&self) -> PathBuf {
        self.dir.join("eval.png")
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
    /// `LATEST` names it. When `LATEST` is missing, empty or names no folder while complete
    /// checkpoint sets are on disk (someone edited the folder), the newest of those is used,
    /// with a warning: a model is never taken for new while a loadable set exists.
    ///
    /// # Errors
    /// `Corrupt` (listing what is on disk) when checkpoint folders exist but none is complete;
    /// `Io` when `LATEST` cannot be read.
    pub fn latest(&self) -> Result<Option<PathBuf>, FolderError> {
        let pointer = self.dir.join(LATEST_FILE);
        let named = match std::fs::read_to_string(&pointer) {
            Ok(name) => Some(name.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&pointer)(e)),
        };
        if let Some(name) = &named {
            let dir = self.checkpoints_dir().join(name);
            if !name.is_empty() && !name.contains('/') && dir.is_dir() {
                return Ok(Some(dir));
            }
        }
        let sets = self.checkpoint_sets();
        let complete = sets.iter().rev().find(|dir| is_complete(dir));
        match (named, complete) {
            (None, None) if sets.is_empty() => Ok(None),
            (named, Some(dir)) => {
                let why = named.map_or_else(
                    || "is missing".to_owned(),
                    |n| format!("names checkpoint {n:?}, which does not exist"),
                );
                log::warn!(
                    "{} {why}; using the newest complete checkpoint on disk, {}",
                    pointer.display(),
                    dir.display()
                );
                Ok(Some(dir.clone()))
            }
            (_, None) => Err(FolderError::Corrupt {
                path: pointer,
                reason: format!(
                    "no complete checkpoint set is on disk ({} partial: {})",
                    sets.len(),
                    sets.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
                backup: self.newest_backup(),
            }),
        }
    }

    /// Lists the folders under `checkpoints/`, oldest first (their names start with the
    /// zero-padded iteration, then the save time).
    fn checkpoint_sets(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.checkpoints_dir()) else { return Vec::new() };
        let mut dirs: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        dirs
    }

    /// Reads the latest checkpoint's `state.json` only (no tensors), or `None` when no
    /// checkpoint was ever saved.
    ///
    /// # Errors
    /// As [`ModelFolder::latest`], and `Io` or `Corrupt` for `state.json`.
    pub fn latest_state(&self) -> Result<Option<TrainState>, FolderError> {
        let Some(dir) = self.latest()? else { return Ok(None) };
        Ok(Some(self.read_state(&dir)?))
    }

    /// Saves a complete set for `state.iteration` and makes it the latest; removes older sets.
    ///
    /// # Errors
    /// `Tensors` or `Io`; the previous checkpoint then stays the latest.
    /// `discriminators` names files of [`DISCRIMINATOR_FILES`].
    pub fn save(
        &self,
        weights: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
        discriminators: &ExtraFiles,
        state: &TrainState,
    ) -> Result<PathBuf, FolderError> {
        // A fresh folder name even when the iteration repeats (a save right after a resume), so
        // the current set is never touched before the pointer has moved.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{:012}-{nanos}", state.iteration);
        let dir = self.checkpoints_dir().join(&name);
        let written =
            self.write_set(&dir, weights, optimizer, discriminators, state).and_then(|()| {
                let pointer = self.dir.join(LATEST_FILE);
                write_atomic(&pointer, name.as_bytes()).map_err(io_err(&pointer))
            });
        if let Err(e) = written {
            // A failed save (a full disk) leaves no partial folder behind to pile up.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.remove_all_but(&name)?;
        Ok(dir)
    }

    /// Writes the files of a set into `dir` and makes them durable.
    fn write_set(
        &self,
        dir: &Path,
        weights: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
        discriminators: &ExtraFiles,
        state: &TrainState,
    ) -> Result<(), FolderError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        save_tensors(&dir.join(WEIGHTS_FILE), weights)?;
        save_tensors(&dir.join(OPTIMIZER_FILE), optimizer)?;
        for (file, tensors) in discriminators {
            debug_assert!(DISCRIMINATOR_FILES.contains(&file.as_str()), "{file}");
            save_tensors(&dir.join(file), tensors)?;
        }
        let state_path = dir.join(STATE_FILE);
        write_json_atomic(&state_path, state).map_err(io_err(&state_path))?;
        sync_dir(dir);
        Ok(())
    }

    /// Loads the latest set, or `None` when no checkpoint was ever saved.
    ///
    /// # Errors
    /// `Tensors`, `Io` or `Corrupt`, naming the file and the newest backup.
    pub fn load(&self) -> Result<Option<Checkpoint>, FolderError> {
        let Some(dir) = self.latest()? else { return Ok(None) };
        Ok(Some(self.load_dir(&dir)?))
    }

    /// Loads the set in `dir` (a checkpoint or a backup folder).
    ///
    /// # Errors
    /// As [`ModelFolder::load`].
    pub fn load_dir(&self, dir: &Path) -> Result<Checkpoint, FolderError> {
        let (weights, state) = self.read_weights_and_state(dir)?;
        let optimizer = read_tensors(&dir.join(OPTIMIZER_FILE)).map_err(self.with_backup())?;
        let mut discriminators = Vec::new();
        for file in DISCRIMINATOR_FILES {
            let path = dir.join(file);
            if path.exists() {
                let tensors = read_tensors(&path).map_err(self.with_backup())?;
                discriminators.push((file.to_owned(), tensors));
            }
        }
        Ok(Checkpoint { dir: dir.to_owned(), weights, optimizer, discriminators, state })
    }

    /// Loads the latest set without its optimizer state (for inference), or `None` when no
    /// checkpoint was ever saved.
    ///
    /// # Errors
    /// As [`ModelFolder::load`].
    pub fn load_weights(&self) -> Result<Option<Weights>, FolderError> {
        let Some(dir) = self.latest()? else { return Ok(None) };
        let (weights, state) = self.read_weights_and_state(&dir)?;
        Ok(Some(Weights { dir, weights, state }))
    }

    fn read_weights_and_state(
        &self,
        dir: &Path,
    ) -> Result<(Vec<(String, Tensor)>, TrainState), FolderError> {
        let weights = read_tensors(&dir.join(WEIGHTS_FILE)).map_err(self.with_backup())?;
        Ok((weights, self.read_state(dir)?))
    }

    fn read_state(&self, dir: &Path) -> Result<TrainState, FolderError> {
        let state_path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
        serde_json::from_slice(&bytes).map_err(|e| FolderError::Corrupt {
            path: state_path.clone(),
            reason: e.to_string(),
            backup: self.newest_backup(),
        })
    }

    /// Maps an unreadable tensor file to `Corrupt` naming the newest backup.
    fn with_backup(&self) -> impl Fn(CheckpointError) -> FolderError + '_ {
        |e| match e {
            CheckpointError::Read { path, reason } => {
                FolderError::Corrupt { path, reason, backup: self.newest_backup() }
            }
            other => FolderError::Tensors(other),
        }
    }

    /// Copies the latest set into `backups/<iteration>/` and keeps only the newest `keep`.
    ///
    /// # Errors
    /// `Io` naming the folder.
    pub fn backup(&self, keep: usize) -> Result<Option<PathBuf>, FolderError> {
        let Some(latest) = self.latest()? else { return Ok(None) };
        let name = latest.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let target = self.backups_dir().join(&name);
        let partial = self.backups_dir().join(format!("{}.partial", name.to_string_lossy()));
        std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
        let optional = DISCRIMINATOR_FILES.iter().filter(|f| latest.join(f).exists());
        for file in [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE].iter().chain(optional) {
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
    fn remove_all_but(&self, keep: &str) -> Result<(), FolderError> {
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

/// Whether a checkpoint folder holds its three files (a save that was cut short does not).
fn is_complete(dir: &Path) -> bool {
    [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE].iter().all(|f| dir.join(f).is_file())
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
    use tch::{Device, Kind};

    fn state(iteration: u64) -> TrainState {
        TrainState { iteration, ..TrainState::default() }
    }

    fn tensors(v: f32) -> Vec<(String, Tensor)> {
        vec![("w".to_owned(), Tensor::full([2, 3], f64::from(v), (Kind::Float, Device::Cpu)))]
    }

    #[test]
    fn the_latest_complete_set_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path().join("model/m"));
        assert!(folder.load().unwrap().is_none(), "a new model has no checkpoint");
        folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        folder.save(&tensors(3.0), &tensors(4.0), &[], &state(20)).unwrap();
        let ck = folder.load().unwrap().unwrap();
        assert_eq!(ck.state, state(20));
        assert_eq!(ck.weights[0].1.double_value(&[0, 0]), 3.0);
        assert_eq!(
            std::fs::read_dir(folder.checkpoints_dir()).unwrap().count(),
            1,
            "older sets removed"
        );
    }

    #[test]
    fn a_save_killed_before_the_pointer_moves_leaves_the_previous_set() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        // A crash mid-save: a new folder with only part of its files, LATEST untouched.
        let partial = folder.checkpoints_dir().join(format!("{:012}-1", 20));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join(WEIGHTS_FILE), b"half a file").unwrap();
        let ck = folder.load().unwrap().unwrap();
        assert_eq!(ck.state.iteration, 10);
        // The next save cleans the debris.
        folder.save(&tensors(5.0), &tensors(6.0), &[], &state(30)).unwrap();
        assert!(!partial.exists());
    }

    #[test]
    fn a_corrupt_set_names_the_file_and_the_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        let backup = folder.backup(3).unwrap().unwrap();
        let latest = folder.latest().unwrap().unwrap();
        let bytes = std::fs::read(latest.join(WEIGHTS_FILE)).unwrap();
        std::fs::write(latest.join(WEIGHTS_FILE), &bytes[..bytes.len() / 2]).unwrap();
        let err = folder.load().unwrap_err().to_string();
        assert!(err.contains(WEIGHTS_FILE) && err.contains(&backup.display().to_string()), "{err}");
        // The backup itself loads.
        assert_eq!(folder.load_dir(&backup).unwrap().state.iteration, 10);
    }

    #[test]
    fn a_damaged_latest_pointer_falls_back_to_the_newest_complete_set() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        let set = folder.latest().unwrap().unwrap();
        // A half-written newer set, as a kill mid-save leaves it.
        let partial = folder.checkpoints_dir().join(format!("{:012}-1", 99));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join(WEIGHTS_FILE), b"half").unwrap();
        let pointer = tmp.path().join(LATEST_FILE);
        for damage in [None, Some(""), Some("000000000077-5"), Some("../../etc")] {
            match damage {
                None => std::fs::remove_file(&pointer).unwrap(),
                Some(text) => std::fs::write(&pointer, text).unwrap(),
            }
            assert_eq!(folder.latest().unwrap(), Some(set.clone()), "{damage:?}");
            assert_eq!(folder.load().unwrap().unwrap().state.iteration, 10, "{damage:?}");
        }
        // With no complete set on disk the error lists what is there; nothing is taken for new.
        std::fs::remove_dir_all(&set).unwrap();
        let err = folder.latest().unwrap_err().to_string();
        assert!(err.contains("no complete checkpoint") && err.contains("000000000099-1"), "{err}");
    }

    #[test]
    fn a_failed_save_leaves_no_partial_folder_and_the_previous_set_current() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        let first = folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        // safetensors has no complex dtype: writing the weights fails after the folder exists.
        let unsaveable =
            vec![("w".to_owned(), Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu)))];
        assert!(folder.save(&unsaveable, &tensors(2.0), &[], &state(20)).is_err());
        assert_eq!(folder.checkpoint_sets(), std::slice::from_ref(&first), "nothing left behind");
        assert_eq!(folder.latest().unwrap(), Some(first));
    }

    #[test]
    fn saving_the_same_iteration_again_never_touches_the_current_set() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        let first = folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        let second = folder.save(&tensors(1.0), &tensors(2.0), &[], &state(10)).unwrap();
        assert_ne!(first, second);
        assert_eq!(folder.latest().unwrap().unwrap(), second);
        assert!(!first.exists());
    }

    #[test]
    fn backups_roll_keeping_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        for it in 1..=5 {
            folder.save(&tensors(it as f32), &tensors(0.0), &[], &state(it)).unwrap();
            folder.backup(2).unwrap();
        }
        let names: Vec<String> = folder
            .backups()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].starts_with(&format!("{:012}-", 4)), "{names:?}");
        assert!(names[1].starts_with(&format!("{:012}-", 5)), "{names:?}");
    }

    #[test]
    fn discriminator_files_travel_with_their_set_and_its_backups() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path());
        let gan = vec![(GAN_FILE.to_owned(), tensors(7.0))];
        folder.save(&tensors(1.0), &tensors(2.0), &gan, &state(10)).unwrap();
        let ck = folder.load().unwrap().unwrap();
        assert_eq!(ck.discriminators.len(), 1, "only the file that was saved");
        assert_eq!(ck.discriminators[0].0, GAN_FILE);
        assert_eq!(ck.discriminators[0].1[0].1.double_value(&[0, 0]), 7.0);
        let backup = folder.backup(1).unwrap().unwrap();
        assert!(backup.join(GAN_FILE).is_file());
        assert!(!backup.join(CODE_DISCRIMINATOR_FILE).exists());
        let restored = folder.load_dir(&backup).unwrap();
        assert_eq!(restored.discriminators.len(), 1);
        // A set saved without them has none.
        folder.save(&tensors(1.0), &tensors(2.0), &[], &state(20)).unwrap();
        assert!(folder.load().unwrap().unwrap().discriminators.is_empty());
    }
}
