//! `dfl model export-dfl`: one of our model folders as a DFL SAEHD model.

use std::path::{Path, PathBuf};

use super::error::DflModelError;
use super::files::{DflModelFiles, OPTIMIZER_STEM};
use super::history::export_history;
use super::optimizer::dfl_optimizer;
use super::options::export_options;
use super::weights::dfl_dicts;
use crate::atomic::write_atomic;
use crate::dfl_format::pickle::{Value, dumps};
use crate::model::dfl_names::NameMap;
use crate::model::folder::ModelFolder;

/// What an export did.
#[derive(Debug, Clone)]
pub struct ModelExportReport {
    /// The files written, `_data.dat` last.
    pub files: Vec<PathBuf>,
    /// The iteration exported.
    pub iteration: u64,
    /// Our options DFL cannot express, as `name=value`.
    pub not_exported: Vec<String>,
    /// Why no optimizer file was written, when none was.
    pub optimizer_skipped: Option<String>,
}

/// Writes the latest checkpoint of `source` into `out_dir` as DFL model `name`
/// (`<name>_SAEHD_data.dat` and the `.npy` files). Each file is written to a temporary name and
/// renamed; `_data.dat`, by which DFL finds a model, comes last, so a crash leaves no model DFL
/// would load half-written.
///
/// # Errors
/// `NoModel` when `source` has no options or checkpoint, or `name` is not a plain name;
/// `Exists` when `out_dir` already holds model `name`; `Folder`, `Format` or `Io` naming the
/// file.
pub fn export_dfl_model(
    source: &ModelFolder,
    out_dir: &Path,
    name: &str,
) -> Result<ModelExportReport, DflModelError> {
    check_name(name, out_dir)?;
    let no_model = |reason: &str| DflModelError::NoModel {
        dir: source.dir().to_owned(),
        reason: reason.to_owned(),
    };
    let cfg =
        source.read_config()?.ok_or_else(|| no_model("no config.json; train the model first"))?;
    let ck = source
        .load()?
        .ok_or_else(|| no_model("no checkpoint yet; train the model until it saves"))?;
    let files = DflModelFiles::new(out_dir, name);
    if files.data_path().exists() {
        return Err(DflModelError::Exists { path: files.data_path() });
    }
    let mut names: Vec<&str> = ck.weights.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let map = NameMap::new(cfg.model.arch, names)
        .map_err(|e| DflModelError::format(&ck.dir, e.to_string()))?;
    let mut outputs: Vec<(PathBuf, Value)> = dfl_dicts(&map, &ck.weights, &ck.dir)?
        .into_iter()
        .map(|(stem, dict)| (files.npy_path(stem), dict))
        .collect();
    let optimizer_skipped = match dfl_optimizer(&map, &ck.optimizer, cfg.optimizer.kind) {
        Ok(dict) => {
            outputs.push((files.npy_path(OPTIMIZER_STEM), dict));
            None
        }
        Err(why) => Some(why),
    };
    let (options, not_exported) = export_options(&cfg);
    let iteration = ck.state.iteration;
    let data = Value::Dict(vec![
        (Value::Str("iter".into()), Value::Int(i64::try_from(iteration).unwrap_or(i64::MAX))),
        (Value::Str("options".into()), options),
        (Value::Str("loss_history".into()), export_history(&ck.state.loss_history)),
        (Value::Str("sample_for_preview".into()), Value::None),
        (Value::Str("choosed_gpu_indexes".into()), Value::None),
    ]);
    outputs.push((files.data_path(), data));
    std::fs::create_dir_all(out_dir).map_err(DflModelError::io(out_dir))?;
    for (path, value) in &outputs {
        write_atomic(path, &dumps(value)).map_err(DflModelError::io(path))?;
    }
    let files = outputs.into_iter().map(|(path, _)| path).collect();
    Ok(ModelExportReport { files, iteration, not_exported, optimizer_skipped })
}

/// DFL finds a model by splitting file names; a name must be a plain file-name part.
fn check_name(name: &str, out_dir: &Path) -> Result<(), DflModelError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c));
    if plain {
        Ok(())
    } else {
        Err(DflModelError::NoModel {
            dir: out_dir.to_owned(),
            reason: format!(
                "{name:?} is not a usable DFL model name; use letters, digits, - and _"
            ),
        })
    }
}
