//! Faces: landmarks, alignment and per-face metadata.

pub mod dlib_serialize;
pub mod shape_predictor;
