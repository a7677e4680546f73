//! `dfl model export-dfm`: a trained model folder as a DeepFaceLive `.dfm` file (an ONNX
//! model, opset 12, in the contract of [`crate::model::onnx_export`]), written by dfl itself.

use std::path::{Path, PathBuf};

use tch::Device;
use tch::nn::VarStore;

use crate::atomic::write_atomic;
use crate::model::arch::{Arch, ConfigError};
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::folder::{FolderError, ModelFolder, WEIGHTS_FILE, Weights};
use crate::model::onnx_export::{ExportError, export_merge_onnx};
use crate::model::saehd::Saehd;

/// The suffix of the default file name, `<name>_SAEHD_model.dfm` (the name DeepFaceLab gives
/// its own exports, so guides written for it still apply).
const DEFAULT_FILE_SUFFIX: &str = "_SAEHD_model.dfm";

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct DfmReport {
    /// The `.dfm` file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The checkpoint folder the weights came from.
    pub checkpoint: PathBuf,
    /// The training iteration of those weights.
    pub iteration: u64,
    /// The model's archi.
    pub arch: Arch,
    /// The model's resolution R (the file takes `[N, R, R, 3]`).
    pub resolution: i64,
}

/// Errors of exporting a `.dfm`; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DfmError {
    /// The folder has no `config.json`.
    #[error("{}: no trained model here; train it with `dfl train --name {name}` first", .dir.display())]
    NoConfig {
        /// The model folder.
        dir: PathBuf,
        /// The model's name (the folder's name).
        name: String,
    },
    /// No checkpoint was saved yet.
    #[error("{}: no checkpoint saved yet; run `dfl train --name {name}` until it saves", .dir.display())]
    NoCheckpoint {
        /// The model folder.
        dir: PathBuf,
        /// The model's name.
        name: String,
    },
    /// The options describe no buildable network.
    #[error("{}: {source}; fix the file or restore it from your own copy", .path.display())]
    Config {
        /// `config.json`.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// The options or the checkpoint cannot be read.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The checkpoint's tensors do not fit the options.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The graph could not be built from the weights.
    #[error("{}: {source}", .checkpoint.display())]
    Export {
        /// The checkpoint folder.
        checkpoint: PathBuf,
        /// What failed.
        #[source]
        source: ExportError,
    },
    /// The file cannot be written.
    #[error("cannot write {}: {source}; check free space and permissions, or pass another --out", .path.display())]
    Write {
        /// The `.dfm` file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Returns where `export-dfm` writes by default: `model/<name>/<name>_SAEHD_model.dfm`.
pub fn default_dfm_path(folder: &ModelFolder) -> PathBuf {
    folder.dir().join(format!("{}{DEFAULT_FILE_SUFFIX}", folder_name(folder)))
}

fn folder_name(folder: &ModelFolder) -> String {
    folder
        .dir()
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Exports the latest checkpoint of `folder` as a `.dfm` at `out`, atomically (a temporary
/// file renamed into place: an interrupted export leaves any previous file as it was).
///
/// The weights are checked strictly against the model's options (names and shapes), as for
/// merging, and exported on the CPU.
///
/// # Errors
/// `NoConfig`/`NoCheckpoint` for an untrained model; `Config`, `Folder` or `Checkpoint` for
/// unreadable or mismatched options or weights; `Export` when the graph cannot be built (over
/// 2 GiB); `Write` when `out` cannot be written.
pub fn export_dfm(folder: &ModelFolder, out: &Path) -> Result<DfmReport, DfmError> {
    let name = folder_name(folder);
    let dir = folder.dir().to_owned();
    let Some(cfg) = folder.read_config()? else {
        return Err(DfmError::NoConfig { dir, name });
    };
    let model_cfg = cfg.effective().model;
    model_cfg
        .validate_dims()
        .map_err(|source| DfmError::Config { path: folder.config_path(), source })?;
    let Some(Weights { dir: checkpoint, weights, state }) = folder.load_weights()? else {
        return Err(DfmError::NoCheckpoint { dir, name });
    };
    let _guard = tch::no_grad_guard();
    let vs = VarStore::new(Device::Cpu);
    // Builds the variables the options imply, so the copy below checks every name and shape.
    let _model = Saehd::new(&vs.root(), &model_cfg);
    copy_named(&checkpoint.join(WEIGHTS_FILE), weights, &vs.variables())?;
    let bytes = export_merge_onnx(&model_cfg, &vs.variables())
        .map_err(|source| DfmError::Export { checkpoint: checkpoint.clone(), source })?;
    drop(vs);
    write_atomic(out, &bytes).map_err(|source| DfmError::Write { path: out.to_owned(), source })?;
    Ok(DfmReport {
        path: out.to_owned(),
        bytes: bytes.len() as u64,
        checkpoint,
        iteration: state.iteration,
        arch: model_cfg.arch,
        resolution: model_cfg.resolution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::ModelConfig;
    use crate::model::folder::{TrainConfig, TrainState};
    use crate::onnx::proto::ModelProto;
    use prost::Message;

    fn tiny_df() -> ModelConfig {
        ModelConfig {
            arch: "df".parse().expect("invariant: a valid archi"),
            resolution: 32,
            ae_dims: 8,
            e_dims: 2,
            d_dims: 2,
            d_mask_dims: 2,
        }
    }

    /// A model folder `me` with one saved checkpoint at iteration 42.
    fn trained_folder(root: &Path) -> ModelFolder {
        let folder = ModelFolder::new(root.join("me"));
        let cfg = TrainConfig { model: tiny_df(), ..Default::default() };
        folder.write_config(&cfg).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _model = Saehd::new(&vs.root(), &cfg.model);
        let weights: Vec<_> = vs.variables().into_iter().collect();
        folder
            .save(&weights, &[], &[], &TrainState { iteration: 42, ..Default::default() })
            .unwrap();
        folder
    }

    #[test]
    fn a_trained_folder_exports_a_dfm_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = trained_folder(tmp.path());
        let out = default_dfm_path(&folder);
        assert!(out.ends_with("me/me_SAEHD_model.dfm"));
        let report = export_dfm(&folder, &out).unwrap();
        assert_eq!((report.iteration, report.resolution), (42, 32));
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(report.bytes, bytes.len() as u64);
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.graph.unwrap().output.len(), 3);
        assert!(!crate::atomic::tmp_path(&out).exists(), "the temporary file is left");
    }

    #[test]
    fn an_untrained_folder_says_to_train_first() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = ModelFolder::new(tmp.path().join("me"));
        let out = tmp.path().join("me.dfm");
        let err = export_dfm(&folder, &out).unwrap_err().to_string();
        assert!(
            err.contains("no trained model here") && err.contains("dfl train --name me"),
            "{err}"
        );
        folder.write_config(&TrainConfig { model: tiny_df(), ..Default::default() }).unwrap();
        let err = export_dfm(&folder, &out).unwrap_err().to_string();
        assert!(err.contains("no checkpoint saved yet"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn an_unwritable_target_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = trained_folder(tmp.path());
        // A regular file where the parent folder should be.
        let blocker = tmp.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let err = export_dfm(&folder, &blocker.join("x.dfm")).unwrap_err().to_string();
        assert!(err.starts_with("cannot write") && err.contains("x.dfm"), "{err}");
    }
}
