//! `dfl merge`: the src face onto every dst frame, then `result.mp4` with the dst audio.
//!
//! The dst frames are decoded again from the dst input, in order. Chunks of frames go through
//! three steps: crop every face (all cores), predict the swaps in fixed-size batches on the
//! device (this thread), then merge, write `data_dst/merged/<frame>.png` and log the frame
//! (a second thread, using all cores), so the device works on the next chunk while the CPU
//! finishes this one. A frame's log line is appended only after its PNG is on disk, so a rerun
//! after a crash skips exactly the finished frames. Merging is deterministic (random colour
//! transfers are seeded per face, batches are padded to one shape), so a resumed merge writes
//! the same bytes an uninterrupted one does.
//!
//! Each frame is merged with the settings of its scene, if it is in one, else the default
//! ([`MergeSettings`], `data_dst/merge.config.json`). [`Tuner`] merges single frames on demand
//! for the studio's Merge page.
//!
//! DFL's per-face merge is described in `docs/dfl-parity.md`, "Merge".

mod blend;
mod clip;
pub mod config;
mod error;
mod faces;
mod frame;
mod mask;
mod masked;
mod options;
mod predict;
mod preview;
mod run;
mod scenes;
mod tuner;
mod video;

pub use clip::FrameReader;
pub use error::MergeError;
pub use faces::{ClipFaces, DstFaceInfo, DstFaces};
pub use frame::{MergedFrame, merge_frame};
pub use masked::{DstFace, FacePrediction};
pub use options::{FrameRange, MergeEntry, MergeOptions, MergeReport};
pub use predict::{PredictError, Predictor};
pub use preview::{FrameSwap, PreviewFiles, write_preview};
pub use run::{dst_face, run};
pub use scenes::{ConfigFileError, MergeSettings, Scene, ScenesError};
pub use tuner::Tuner;
pub use video::{EncodeOptions, Preset, Rational, VideoError};
