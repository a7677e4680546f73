//! Weights (and optimizer state) as safetensors files with readable names, written atomically
//! and loaded strictly: a missing, extra or mis-shaped tensor is an error naming it (style
//! rules 15–16).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::atomic::tmp_path;

/// Errors of saving or loading a checkpoint file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file cannot be read, is truncated, or is not safetensors.
    #[error("cannot read checkpoint {}: {reason}; restore it from a backup, or start a new model", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file cannot be written.
    #[error("cannot write checkpoint {}: {reason}; check free space and permissions", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model has a tensor the file lacks.
    #[error("checkpoint {} has no tensor {name}; it belongs to another model configuration", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// The file has a tensor the model lacks.
    #[error("checkpoint {} has a tensor {name} this model does not; it belongs to another model configuration", .path.display())]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor's shape differs.
    #[error("checkpoint {}: tensor {name} is {got:?} in the file but {expected:?} in the model; it belongs to another model configuration", .path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The model's shape.
        expected: Vec<i64>,
        /// The file's shape.
        got: Vec<i64>,
    },
}

/// Writes `tensors` to `path` as safetensors, atomically (temporary file, sync, rename).
///
/// # Errors
/// `Write` naming the file.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let err = |reason: String| CheckpointError::Write { path: path.to_owned(), reason };
    let host: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(name, t)| (name.as_str(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    let tmp = tmp_path(path);
    Tensor::write_safetensors(&host, &tmp).map_err(|e| err(e.to_string()))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Reads every tensor of a safetensors file.
///
/// # Errors
/// `Read` naming the file.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    Tensor::read_safetensors(path)
        .map_err(|e| CheckpointError::Read { path: path.to_owned(), reason: e.to_string() })
}

/// Saves every variable of `vs` under its name.
///
/// # Errors
/// As [`save_tensors`].
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    let sorted: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    save_tensors(path, &sorted.into_iter().collect::<Vec<_>>())
}

/// Copies the tensors of `path` into `targets`, strictly: same names, same shapes.
///
/// # Errors
/// `Read`, `Missing`, `Unexpected` or `ShapeMismatch`, each naming the file and tensor.
pub fn load_into(path: &Path, targets: &HashMap<String, Tensor>) -> Result<(), CheckpointError> {
    copy_named(path, read_tensors(path)?, targets)
}

/// Copies `tensors` (read from `path`) into same-named `targets`, strictly; nothing changes
/// unless every name and shape matches.
///
/// # Errors
/// `Missing`, `Unexpected` or `ShapeMismatch`, naming `path` and the tensor.
pub fn copy_named(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    targets: &HashMap<String, Tensor>,
) -> Result<(), CheckpointError> {
    let mut file: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut names: Vec<&String> = targets.keys().collect();
    names.sort();
    let mut checked = Vec::with_capacity(names.len());
    for name in names {
        let src = file.remove(name).ok_or_else(|| CheckpointError::Missing {
            path: path.to_owned(),
            name: name.clone(),
        })?;
        let dst = &targets[name];
        if src.size() != dst.size() {
            return Err(CheckpointError::ShapeMismatch {
                path: path.to_owned(),
                name: name.clone(),
                expected: dst.size(),
                got: src.size(),
            });
        }
        checked.push((dst, src));
    }
    if let Some(extra) = file.keys().min() {
        return Err(CheckpointError::Unexpected { path: path.to_owned(), name: extra.clone() });
    }
    // Only now that everything matched does anything change.
    tch::no_grad(|| {
        for (dst, src) in &checked {
            let mut dst = dst.shallow_clone();
            dst.copy_(src);
        }
    });
    Ok(())
}

/// Loads the weights of `path` into `vs`, strictly.
///
/// # Errors
/// As [`load_into`].
pub fn load_weights(vs: &VarStore, path: &Path) -> Result<(), CheckpointError> {
    load_into(path, &vs.variables())
}

/// Returns one `name [d0, d1, …]` line per variable, sorted: the golden key list of an archi.
pub fn key_list(vs: &VarStore) -> String {
    let sorted: BTreeMap<String, Vec<i64>> =
        vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    sorted.iter().map(|(name, shape)| format!("{name} {shape:?}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::ModelConfig;
    use crate::model::saehd::Saehd;
    use tch::Kind;

    fn tiny(arch: &str, e_dims: i64) -> (VarStore, Saehd) {
        let cfg = ModelConfig {
            arch: arch.parse().unwrap(),
            resolution: 32,
            ae_dims: 8,
            e_dims,
            d_dims: 4,
            d_mask_dims: 2,
        };
        let vs = VarStore::new(Device::Cpu);
        let model = Saehd::new(&vs.root(), &cfg);
        (vs, model)
    }

    #[test]
    fn save_then_load_reproduces_outputs_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let (vs_a, model_a) = tiny("liae-ud", 4);
        save_weights(&vs_a, &path).unwrap();
        assert!(!tmp_path(&path).exists());
        let (vs_b, model_b) = tiny("liae-ud", 4);
        load_weights(&vs_b, &path).unwrap();
        let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let (a, b) = (model_a.swap(&xs), model_b.swap(&xs));
        assert!(a.image.equal(&b.image) && a.mask.equal(&b.mask));
    }

    #[test]
    fn another_configuration_is_refused_naming_the_tensor() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let (vs, _) = tiny("df", 4);
        save_weights(&vs, &path).unwrap();

        let (wider, _) = tiny("df", 6);
        let before = wider.variables()["encoder.down.0.conv.weight"].copy();
        let err = load_weights(&wider, &path).unwrap_err();
        let msg = err.to_string();
        // Names are checked in sorted order: the bias comes first.
        assert!(
            msg.contains("encoder.down.0.conv.bias") && msg.contains("[4]") && msg.contains("[6]"),
            "{msg}"
        );
        assert!(
            matches!(err, CheckpointError::ShapeMismatch { expected, got, .. } if expected == [6] && got == [4])
        );
        assert!(
            wider.variables()["encoder.down.0.conv.weight"].equal(&before),
            "nothing was loaded"
        );

        let (liae, _) = tiny("liae", 4);
        let err = load_weights(&liae, &path).unwrap_err();
        assert!(matches!(err, CheckpointError::Missing { .. }), "{err}");
        let (df_d, _) = tiny("df-d", 4);
        assert!(matches!(
            load_weights(&df_d, &path),
            Err(CheckpointError::Missing { .. } | CheckpointError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn a_truncated_file_is_a_read_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let (vs, _) = tiny("df", 4);
        save_weights(&vs, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_weights(&vs, &path).unwrap_err();
        assert!(matches!(err, CheckpointError::Read { .. }));
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}
