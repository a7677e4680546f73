//! Errors that stop a merge.

use std::path::PathBuf;

use super::config::OutOfRange;
use super::masked::MergeFaceError;
use super::predict::PredictError;
use super::video::VideoError;
use crate::faceset::FacesetError;
use crate::frames::FramesError;
use crate::img::ImageWriteError;
use crate::settings::SettingsError;
use crate::stage_log::StageLogError;

/// Errors that stop a merge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// There is no dst input to decode.
    #[error("no dst input in {}: pass --input with the video or image folder the dst faces were extracted from (or put it there as data_dst.mp4 or a data_dst/ image folder)", .0.display())]
    NoInput(PathBuf),
    /// The input cannot be read.
    #[error(transparent)]
    Frames(#[from] FramesError),
    /// The dst faces cannot be read.
    #[error(transparent)]
    Faces(#[from] FacesetError),
    /// The model cannot be loaded or run.
    #[error(transparent)]
    Predict(#[from] PredictError),
    /// A model name is not a plain folder name.
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    /// The XSeg model cannot be loaded or run.
    #[error(transparent)]
    XSeg(#[from] crate::model::xseg::XSegError),
    /// The mask mode needs an XSeg model and none was given.
    #[error(
        "--mask-mode {mode} needs an XSeg model{why}: pass --xseg NAME (a model trained with `dfl xseg train`)"
    )]
    NeedsXSeg {
        /// The mask mode.
        mode: String,
        /// Why (which faces lack an applied mask).
        why: String,
    },
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] OutOfRange),
    /// The per-scene settings are unusable.
    #[error(transparent)]
    Scenes(#[from] super::scenes::ScenesError),
    /// The merge config file cannot be read or is unusable.
    #[error(transparent)]
    ConfigFile(#[from] super::scenes::ConfigFileError),
    /// The saved settings differ.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The stage log cannot be read or written.
    #[error(transparent)]
    Log(#[from] StageLogError),
    /// A merged frame cannot be written.
    #[error(transparent)]
    ImageWrite(#[from] ImageWriteError),
    /// Merging a face failed.
    #[error("frame {frame}: {source}")]
    Face {
        /// The frame.
        frame: String,
        /// What failed.
        #[source]
        source: MergeFaceError,
    },
    /// The frames are not the size the faces were extracted at.
    #[error("frame {frame} of {} is {got:?} but its faces were extracted from a {want:?} frame; the dst input changed since `dfl extract dst` — extract again", .input.display())]
    FrameSize {
        /// The frame.
        frame: String,
        /// The input.
        input: PathBuf,
        /// The decoded size.
        got: [u32; 2],
        /// The size in the face metadata.
        want: [u32; 2],
    },
    /// `result.mp4` could not be made.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// An output folder cannot be created.
    #[error("cannot create {}: {source}; check the path and its permissions", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An image operation failed.
    #[error("image operation failed: {0}")]
    Cv(#[from] opencv::Error),
    /// The preview frame cannot be used.
    #[error("{0}")]
    Preview(String),
}
