//! dfl: a pair-specific face-swap workbench in the tradition of DeepFaceLab.
//!
//! The pipeline is the architecture (`docs/architecture.md`): `extract` turns videos into aligned
//! facesets, `sort` cleans them, `train` fits a DF or LIAE autoencoder, `merge` puts the src face
//! on every dst frame. Every stage persists into a [`workspace::Workspace`] and resumes.
#![warn(missing_docs)]

pub mod assets;
pub mod atomic;
pub mod augment;
pub mod cli;
pub mod color;
pub mod detect;
pub mod device;
pub mod dfl_format;
pub mod distributed;
pub mod eval;
pub mod extract;
pub mod face;
pub mod faceset;
pub mod frames;
pub mod img;
pub mod interop;
pub mod lock;
pub mod merge;
pub mod model;
pub mod occlude;
pub mod onnx;
pub mod plot;
pub mod progress;
pub mod report;
pub mod settings;
pub mod sort;
pub mod stage_log;
pub mod status;
pub mod studio;
pub mod synth;
pub mod train;
pub mod workspace;
pub mod xseg;
