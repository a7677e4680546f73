//! A DFL model folder's files: `<name>_SAEHD_data.dat`, `<name>_SAEHD_<part>.npy`,
//! `<name>_SAEHD_src_dst_opt.npy`, and reading and writing the pickles inside them.

use std::path::{Path, PathBuf};

use super::error::DflModelError;
use crate::dfl_format::pickle::{self, Value};

/// DFL's class name in every file name of a SAEHD model.
const CLASS: &str = "SAEHD";
/// The suffix of the options-and-counters file.
const DATA_SUFFIX: &str = "data.dat";
/// The stem of the generator's optimizer file.
pub const OPTIMIZER_STEM: &str = "src_dst_opt";

/// One SAEHD model inside a DFL model folder (which may hold several models).
#[derive(Debug, Clone)]
pub struct DflModelFiles {
    dir: PathBuf,
    name: String,
}

impl DflModelFiles {
    /// Names model `name` in `dir` (nothing is read).
    pub fn new(dir: &Path, name: &str) -> Self {
        Self { dir: dir.to_owned(), name: name.to_owned() }
    }

    /// Finds model `name` in `dir`, or the only SAEHD model there when `name` is `None`.
    ///
    /// # Errors
    /// `Io` when `dir` cannot be listed; `NoModel` when there is no such model, or several
    /// and no name.
    pub fn find(dir: &Path, name: Option<&str>) -> Result<Self, DflModelError> {
        let names = Self::list(dir)?;
        let no_model = |reason: String| DflModelError::NoModel { dir: dir.to_owned(), reason };
        match (name, names.as_slice()) {
            (Some(n), _) if names.iter().any(|m| m == n) => Ok(Self::new(dir, n)),
            (Some(n), _) => Err(no_model(format!(
                "no {n}_{CLASS}_{DATA_SUFFIX} here (SAEHD models found: {}); check --dfl-name",
                list_or_none(&names)
            ))),
            (None, [only]) => Ok(Self::new(dir, only)),
            (None, []) => Err(no_model(format!(
                "no *_{CLASS}_{DATA_SUFFIX} here; point at DeepFaceLab's model folder (workspace/model)"
            ))),
            (None, several) => Err(no_model(format!(
                "several SAEHD models here ({}); choose one with --dfl-name",
                several.join(", ")
            ))),
        }
    }

    /// Lists the names of the SAEHD models in `dir`, sorted.
    fn list(dir: &Path) -> Result<Vec<String>, DflModelError> {
        let entries = std::fs::read_dir(dir).map_err(DflModelError::io(dir))?;
        let suffix = format!("_{CLASS}_{DATA_SUFFIX}");
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(&suffix).map(str::to_owned))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Returns the model's name (the part before `_SAEHD_`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns `<name>_SAEHD_data.dat`.
    pub fn data_path(&self) -> PathBuf {
        self.file(DATA_SUFFIX)
    }

    /// Returns `<name>_SAEHD_<stem>.npy` (a part such as `inter_AB`, or the optimizer).
    pub fn npy_path(&self, stem: &str) -> PathBuf {
        self.file(&format!("{stem}.npy"))
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}_{CLASS}_{suffix}", self.name))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// Reads and decodes a pickle file.
///
/// # Errors
/// `Io` or `Pickle`, naming the file.
pub fn read_pickle(path: &Path) -> Result<Value, DflModelError> {
    let bytes = std::fs::read(path).map_err(DflModelError::io(path))?;
    pickle::loads(&bytes).map_err(|cause| DflModelError::Pickle { path: path.to_owned(), cause })
}

/// Returns the items of a dict with text keys, or a `Format` error naming `path`.
pub fn str_dict<'a>(
    value: &'a Value,
    path: &Path,
) -> Result<Vec<(&'a str, &'a Value)>, DflModelError> {
    let Value::Dict(items) = value else {
        return Err(DflModelError::format(
            path,
            format!(
                "holds a {}, not the dict DeepFaceLab writes; the file is not from a SAEHD model",
                value.type_name()
            ),
        ));
    };
    items
        .iter()
        .map(|(k, v)| match k {
            Value::Str(s) => Ok((s.as_str(), v)),
            other => Err(DflModelError::format(
                path,
                format!("has a {} key where names belong; the file is damaged", other.type_name()),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_found_by_name_or_as_the_only_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let err = DflModelFiles::find(dir, None).unwrap_err().to_string();
        assert!(err.contains("no *_SAEHD_data.dat"), "{err}");
        std::fs::write(dir.join("a_SAEHD_data.dat"), b"").unwrap();
        std::fs::write(dir.join("XSeg_data.dat"), b"").unwrap();
        let only = DflModelFiles::find(dir, None).unwrap();
        assert_eq!(only.name(), "a");
        assert_eq!(only.npy_path("inter_AB"), dir.join("a_SAEHD_inter_AB.npy"));
        std::fs::write(dir.join("my_model_SAEHD_data.dat"), b"").unwrap();
        let err = DflModelFiles::find(dir, None).unwrap_err().to_string();
        assert!(err.contains("a, my_model") && err.contains("--dfl-name"), "{err}");
        assert_eq!(DflModelFiles::find(dir, Some("my_model")).unwrap().name(), "my_model");
        let err = DflModelFiles::find(dir, Some("b")).unwrap_err().to_string();
        assert!(err.contains("no b_SAEHD_data.dat"), "{err}");
    }
}
