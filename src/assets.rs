//! The face models and sample media that `scripts/setup.sh` puts in `DFL_HOME`
//! (default `~/.cache/dfl`): where that folder is, the file names, and a clear error when one
//! is missing. Where each comes from: `docs/face-models.md`.

use std::path::{Path, PathBuf};

/// YuNet 2023mar face detector, folded to fp32 by `scripts/fold_int8bq.py`.
pub const YUNET_FILE: &str = "face_detection_yunet_2023mar_fp32.onnx";
/// SFace 2021dec face recognizer (128-d identity embedding), folded to fp32.
pub const SFACE_FILE: &str = "face_recognition_sface_2021dec_fp32.onnx";
/// dlib's 68-point regression-tree shape predictor (Debian `libdlib-data`).
pub const SHAPE_PREDICTOR_FILE: &str = "shape_predictor_68_face_landmarks.dat";

/// A model or sample file that is not where setup puts it.
#[derive(Debug, thiserror::Error)]
#[error("{} is missing; run scripts/setup.sh (or set DFL_HOME to where it installed)", .0.display())]
pub struct MissingAsset(pub PathBuf);

/// The `DFL_HOME` folder: `models/` and `samples/`.
#[derive(Debug, Clone)]
pub struct Assets {
    home: PathBuf,
}

impl Assets {
    /// Wraps a `DFL_HOME` folder.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// Wraps the folder the `DFL_HOME` variable names (default `~/.cache/dfl`). The one place
    /// that reads the variable: the CLI calls it once and hands the models it finds to the
    /// stages; tests call it to find the samples.
    pub fn from_env() -> Self {
        let home = match std::env::var_os("DFL_HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            _ => {
                let user =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
                user.join(".cache").join("dfl")
            }
        };
        Self::new(home)
    }

    /// Returns the `DFL_HOME` folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Returns `models/<file>`, or an error naming it when it does not exist.
    ///
    /// # Errors
    /// `MissingAsset` when the file is not there.
    pub fn model(&self, file: &str) -> Result<PathBuf, MissingAsset> {
        existing(self.home.join("models").join(file))
    }

    /// Returns `samples/<file>`, or an error naming it when it does not exist.
    ///
    /// # Errors
    /// `MissingAsset` when the file is not there.
    pub fn sample(&self, file: &str) -> Result<PathBuf, MissingAsset> {
        existing(self.home.join("samples").join(file))
    }
}

fn existing(path: PathBuf) -> Result<PathBuf, MissingAsset> {
    if path.is_file() { Ok(path) } else { Err(MissingAsset(path)) }
}
