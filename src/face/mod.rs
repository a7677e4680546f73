//! Faces: landmarks, alignment and per-face metadata.

pub mod align;
pub mod dflimg;
pub mod dlib_serialize;
pub mod metadata;
pub mod shape_predictor;
