//! Why a DFL model folder could not be imported or exported.

use std::path::PathBuf;

use crate::dfl_format::pickle::PickleError;
use crate::model::folder::FolderError;

/// Errors of `dfl model import-dfl` and `export-dfl`. Each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DflModelError {
    /// A file or folder cannot be read or written.
    #[error("{}: {cause}; check that it exists and is readable (writable for the output)", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error (in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// A pickle (`_data.dat` or a `.npy` weight file) does not decode.
    #[error("{}: {cause}", .path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Why it does not decode (in the message, so not repeated as a source).
        cause: PickleError,
    },
    /// A file decodes but does not hold what DFL's SAEHD writes there.
    #[error("{}: {reason}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, ending with what to do.
        reason: String,
    },
    /// The folder holds no SAEHD model (or not the one asked for).
    #[error("{}: {reason}", .dir.display())]
    NoModel {
        /// The folder searched.
        dir: PathBuf,
        /// What was looked for and what to do.
        reason: String,
    },
    /// The target exists already; nothing is overwritten.
    #[error("{} already exists; choose another name, or move it away first", .path.display())]
    Exists {
        /// The existing model folder or file.
        path: PathBuf,
    },
    /// Our model folder cannot be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
}

impl DflModelError {
    /// A `Format` error for `path`.
    pub(super) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DflModelError::Format { path: path.into(), reason: reason.into() }
    }

    /// An `Io` error for `path`, as a closure for `map_err`.
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| DflModelError::Io { path, cause }
    }
}
