//! An XSeg model's folder, `xseg/<name>/`: its options (`config.json`, an [`XSegConfig`]) and
//! the same checkpoint sets, backups and pictures as a SAEHD model's folder
//! ([`ModelFolder`]), so a kill at any moment leaves the previous complete set loadable.

use serde::{Deserialize, Serialize};

use crate::atomic::write_json_atomic;
use crate::face::align::FaceType;
use crate::model::folder::{FolderError, ModelFolder};
use crate::workspace::{Workspace, WorkspaceError};

use super::net::{DEFAULT_RESOLUTION, check_resolution};

/// XSeg's learning rate.
pub const DEFAULT_LR: f64 = 1e-4;
/// XSeg's batch size.
pub const DEFAULT_BATCH: usize = 4;
/// Largest batch a run accepts.
pub const MAX_BATCH: usize = 256;

/// What an XSeg model is and how it trains. `resolution` and `face_type` are fixed by the first
/// run; the rest may change on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XSegConfig {
    /// The side of the faces it reads and the masks it writes, a multiple of 64.
    pub resolution: i64,
    /// The crop it segments; faces of another type are re-cropped from their landmarks.
    pub face_type: FaceType,
    /// Faces per step.
    pub batch_size: usize,
    /// RMSprop's learning rate.
    pub lr: f64,
    /// DFL's lr dropout (each element's update kept with p 0.3).
    pub lr_dropout: bool,
    /// Train to reconstruct the grey face from the bottleneck alone (no labels needed).
    pub pretrain: bool,
    /// Stop at this iteration (0: never).
    pub target_iter: u64,
    /// Minutes between checkpoint sets.
    pub save_every_min: f64,
    /// Iterations between previews (0: only with each save).
    pub preview_every: u64,
    /// Iterations between held-out IoU measurements (0: never).
    pub eval_every: u64,
}

impl Default for XSegConfig {
    fn default() -> Self {
        Self {
            resolution: DEFAULT_RESOLUTION,
            face_type: FaceType::WholeFace,
            batch_size: DEFAULT_BATCH,
            lr: DEFAULT_LR,
            lr_dropout: true,
            pretrain: false,
            target_iter: 0,
            save_every_min: 25.0,
            preview_every: 100,
            eval_every: 500,
        }
    }
}

impl XSegConfig {
    /// Checks every option's range; the error names the option.
    ///
    /// # Errors
    /// A sentence naming the option and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(why) = check_resolution(self.resolution) {
            return Err(format!("--resolution {why}"));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(format!("--batch-size must be 1–{MAX_BATCH}, not {}", self.batch_size));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(format!("--lr must be in (0, 1], not {}", self.lr));
        }
        if !(self.save_every_min.is_finite() && self.save_every_min > 0.0) {
            return Err(format!("--save-every-min must be > 0, not {}", self.save_every_min));
        }
        Ok(())
    }

    /// Lists what differs from `saved` on resume: `Err` names a frozen option that changed,
    /// `Ok` the changed options that may change.
    ///
    /// # Errors
    /// A sentence naming the frozen option, its saved and its new value.
    pub fn changes_from(&self, saved: &XSegConfig) -> Result<Vec<String>, String> {
        if self.resolution != saved.resolution {
            return Err(format!(
                "the model was made at resolution {}; --resolution {} needs a new --name",
                saved.resolution, self.resolution
            ));
        }
        if self.face_type != saved.face_type {
            return Err(format!(
                "the model was made for {} faces; --face-type {} needs a new --name",
                saved.face_type.as_str(),
                self.face_type.as_str()
            ));
        }
        let (a, b) = (serde_json::to_value(saved), serde_json::to_value(self));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
            return Ok(Vec::new());
        };
        Ok(b.iter()
            .filter(|(k, v)| a.get(*k) != Some(v))
            .map(|(k, v)| format!("{k} → {v}"))
            .collect())
    }
}

/// An XSeg model's folder.
#[derive(Debug, Clone)]
pub struct XSegFolder {
    /// The checkpoint sets, backups and pictures.
    pub sets: ModelFolder,
    name: String,
}

impl XSegFolder {
    /// Wraps `xseg/<name>` in `ws` without touching the disk.
    ///
    /// # Errors
    /// `BadModelName` when `name` is not a plain folder name.
    pub fn open(ws: &Workspace, name: &str) -> Result<Self, WorkspaceError> {
        Ok(Self { sets: ModelFolder::new(ws.xseg_dir(name)?), name: name.to_owned() })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads `config.json`, or `None` when the model was never saved.
    ///
    /// # Errors
    /// `Config` when the file cannot be read or parsed, or holds options out of range.
    pub fn read_config(&self) -> Result<Option<XSegConfig>, FolderError> {
        let path = self.sets.config_path();
        let config_err = |reason: String| FolderError::Config { path: path.clone(), reason };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config_err(e.to_string())),
        };
        let cfg: XSegConfig =
            serde_json::from_slice(&bytes).map_err(|e| config_err(e.to_string()))?;
        cfg.validate().map_err(config_err)?;
        Ok(Some(cfg))
    }

    /// Writes `config.json` atomically.
    ///
    /// # Errors
    /// `Io` naming the file.
    pub fn write_config(&self, cfg: &XSegConfig) -> Result<(), FolderError> {
        let path = self.sets.config_path();
        write_json_atomic(&path, cfg).map_err(|source| FolderError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_options_are_refused_and_the_others_listed() {
        let saved = XSegConfig { resolution: 128, ..Default::default() };
        let bigger = XSegConfig { resolution: 256, ..saved.clone() };
        assert!(bigger.changes_from(&saved).unwrap_err().contains("new --name"));
        let faster = XSegConfig { batch_size: 8, pretrain: true, ..saved.clone() };
        let changes = faster.changes_from(&saved).unwrap();
        assert_eq!(changes, ["batch_size → 8", "pretrain → true"]);
        assert!(saved.changes_from(&saved).unwrap().is_empty());
    }

    #[test]
    fn options_out_of_range_are_named() {
        let bad = |cfg: XSegConfig| cfg.validate().unwrap_err();
        assert!(bad(XSegConfig { resolution: 100, ..Default::default() }).contains("--resolution"));
        assert!(bad(XSegConfig { batch_size: 0, ..Default::default() }).contains("--batch-size"));
        assert!(bad(XSegConfig { lr: f64::NAN, ..Default::default() }).contains("--lr"));
        assert!(XSegConfig::default().validate().is_ok());
    }
}
