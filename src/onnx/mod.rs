//! An ONNX model file read once and shared: every thread builds its own OpenCV DNN network
//! from the same bytes (a `Net` is not `Sync`), with no further file access; and the writer
//! of ONNX files (`proto`: the messages, `graph`: a builder).

pub mod graph;
pub mod proto;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opencv::core::Vector;
use opencv::dnn::{self, Net};
use opencv::prelude::*;

/// The bytes of an ONNX file and where they came from: cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct OnnxFile {
    bytes: Arc<[u8]>,
    path: PathBuf,
}

impl OnnxFile {
    /// Reads the file at `path`.
    ///
    /// # Errors
    /// The OS error (the caller names the model and the next step).
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path)?;
        Ok(Self { bytes: Arc::from(bytes), path })
    }

    /// Returns the file the bytes were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the bytes into a network on OpenCV's own CPU backend.
    ///
    /// # Errors
    /// OpenCV's error when the bytes are not a model it can run.
    pub fn net(&self) -> opencv::Result<Net> {
        let mut net = dnn::read_net_from_onnx_buffer(&Vector::from_slice(&self.bytes))?;
        net.set_preferable_backend(dnn::DNN_BACKEND_OPENCV)?;
        net.set_preferable_target(dnn::DNN_TARGET_CPU)?;
        Ok(net)
    }
}
