//! Faces: landmarks, alignment and per-face metadata.

pub mod align;
pub mod dflimg;
pub mod dlib_serialize;
pub mod identity;
pub mod metadata;
pub mod pose;
pub mod shape_predictor;
pub mod sharpness;
