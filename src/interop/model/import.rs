//! `dfl model import-dfl`: a DFL SAEHD model folder into a new model folder of ours.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Device;
use tch::nn::VarStore;

use super::error::DflModelError;
use super::files::{DflModelFiles, read_pickle};
use super::history::import_history;
use super::optimizer::import_optimizer;
use super::options::{ImportedOptions, import_options};
use super::weights::read_weights;
use crate::model::arch::{ArchKind, ModelConfig};
use crate::model::dfl_names::{NameMap, dfl_file};
use crate::model::folder::{ModelFolder, TrainState};
use crate::model::saehd::{Part, Saehd};

/// Bytes per stored weight (DFL saves float32).
const BYTES_PER_WEIGHT: u64 = 4;
/// DFL's discriminator files (GAN, true face) and their optimizers, which are not imported.
const DISCRIMINATOR_STEMS: [&str; 4] = ["GAN", "GAN_opt", "code_discriminator", "D_code_opt"];

/// What an import did.
#[derive(Debug, Clone)]
pub struct ModelImportReport {
    /// The model folder written.
    pub folder: PathBuf,
    /// The DFL model's name (before `_SAEHD_`).
    pub dfl_name: String,
    /// DFL's iteration, where training resumes.
    pub iteration: u64,
    /// Weight tensors imported.
    pub weights: usize,
    /// DFL options with no counterpart, as `key=value`.
    pub not_mapped: Vec<String>,
    /// Why the optimizer starts fresh, when it does.
    pub optimizer_reset: Option<String>,
    /// DFL's discriminator files that were present but not imported (their networks start
    /// fresh when GAN or true face training runs).
    pub not_imported: Vec<PathBuf>,
}

/// Imports DFL model `dfl_name` (or the only SAEHD model) of `dfl_dir` as the new model folder
/// `target`. Everything is written into a temporary folder beside `target`, which is renamed
/// into place at the end: a crash leaves no half model.
///
/// # Errors
/// `Exists` when `target` exists; `NoModel`; `Io`, `Pickle` or `Format` naming the DFL file
/// that is unreadable or inconsistent; `Folder` when our files cannot be written.
pub fn import_dfl_model(
    dfl_dir: &Path,
    dfl_name: Option<&str>,
    target: &ModelFolder,
) -> Result<ModelImportReport, DflModelError> {
    if target.dir().exists() {
        return Err(DflModelError::Exists { path: target.dir().to_owned() });
    }
    let files = DflModelFiles::find(dfl_dir, dfl_name)?;
    let data_path = files.data_path();
    let (ImportedOptions { config, not_mapped }, state) = read_data(&data_path)?;
    let iteration = state.iteration;
    check_size(&files, &config.model)?;
    let (map, shapes) = network_names(&config.model, &data_path)?;
    let weights = read_weights(&files, &map, &shapes)?;
    let (optimizer, optimizer_reset) =
        import_optimizer(&files, &map, &weights, config.optimizer.kind);
    write_folder(target, |tmp| {
        tmp.write_config(&config)?;
        tmp.save(&weights, &optimizer, &[], &state)?;
        Ok(())
    })?;
    Ok(ModelImportReport {
        folder: target.dir().to_owned(),
        dfl_name: files.name().to_owned(),
        iteration,
        weights: weights.len(),
        not_mapped,
        optimizer_reset,
        not_imported: DISCRIMINATOR_STEMS
            .iter()
            .map(|stem| files.npy_path(stem))
            .filter(|p| p.exists())
            .collect(),
    })
}

/// Reads `_data.dat`: the options as ours, and the iteration and loss history as our state.
fn read_data(data_path: &Path) -> Result<(ImportedOptions, TrainState), DflModelError> {
    let data = read_pickle(data_path)?;
    let options = data.get("options").ok_or_else(|| {
        DflModelError::format(data_path, "has no options; the file is not from SAEHD")
    })?;
    let options = import_options(options, data_path)?;
    let iteration = data
        .get("iter")
        .and_then(|v| v.as_i64())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
        DflModelError::format(data_path, "has no iteration count (iter); the file is damaged")
    })?;
    let loss_history = import_history(data.get("loss_history"), iteration, data_path)?;
    Ok((options, TrainState { iteration, loss_history, ..TrainState::default() }))
}

/// Our weight names and shapes for `cfg` (built once on the CPU), and their DFL names.
fn network_names(
    cfg: &ModelConfig,
    data_path: &Path,
) -> Result<(NameMap, HashMap<String, Vec<i64>>), DflModelError> {
    let vs = VarStore::new(Device::Cpu);
    let _net = tch::no_grad(|| Saehd::new(&vs.root(), cfg));
    let shapes: HashMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    let mut names: Vec<&str> = shapes.keys().map(String::as_str).collect();
    names.sort_unstable();
    let map = NameMap::new(cfg.arch, names)
        .map_err(|e| DflModelError::format(data_path, e.to_string()))?;
    Ok((map, shapes))
}

/// Refuses options that describe a network larger than the weight files could hold, before
/// anything that size is allocated (a damaged or hostile `_data.dat` cannot exhaust memory).
fn check_size(files: &DflModelFiles, cfg: &ModelConfig) -> Result<(), DflModelError> {
    let mut on_disk = 0u64;
    for part in Part::of(cfg.arch.kind) {
        let path = files.npy_path(dfl_file(part.name()).unwrap_or(part.name()));
        let meta = std::fs::metadata(&path).map_err(DflModelError::io(&path))?;
        on_disk = on_disk.saturating_add(meta.len());
    }
    let need = min_weights(cfg).saturating_mul(BYTES_PER_WEIGHT);
    if need > on_disk {
        return Err(DflModelError::format(
            files.data_path(),
            format!(
                "its options describe a network of at least {need} bytes of weights, but the weight files hold {on_disk}; the options do not match the weights"
            ),
        ));
    }
    Ok(())
}

/// A lower bound of the network's weight count: the inters' first dense layers and the first
/// upscale of the decoder's image branch.
fn min_weights(cfg: &ModelConfig) -> u64 {
    let (inters, code_ch) = match cfg.arch.kind {
        ArchKind::Df => (1, cfg.ae_dims),
        ArchKind::Liae => (2, 4 * cfg.ae_dims),
    };
    let dense1 = cfg.encoder_out_len().saturating_mul(cfg.ae_dims).saturating_mul(inters);
    // Upscale(C_in → 8D): a 3×3 conv to 4·8D channels.
    let upscale0 = code_ch.saturating_mul(32 * cfg.d_dims).saturating_mul(9);
    u64::try_from(dense1.saturating_add(upscale0)).unwrap_or(u64::MAX)
}

/// Writes a model folder into `.<name>.import.tmp` beside `target`, then renames it to `target`.
fn write_folder(
    target: &ModelFolder,
    write: impl FnOnce(&ModelFolder) -> Result<(), DflModelError>,
) -> Result<(), DflModelError> {
    let dir = target.dir();
    let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp_dir = dir.with_file_name(format!(".{name}.import.tmp"));
    if tmp_dir.exists() {
        // What a crashed import left.
        std::fs::remove_dir_all(&tmp_dir).map_err(DflModelError::io(&tmp_dir))?;
    }
    std::fs::create_dir_all(&tmp_dir).map_err(DflModelError::io(&tmp_dir))?;
    let written = write(&ModelFolder::new(&tmp_dir)).and_then(|()| {
        // A folder that appeared meanwhile is not replaced: renaming onto it fails.
        if dir.exists() {
            return Err(DflModelError::Exists { path: dir.to_owned() });
        }
        std::fs::rename(&tmp_dir, dir).map_err(DflModelError::io(dir))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp_dir);
    }
    written
}
