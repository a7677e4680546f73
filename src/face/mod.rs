//! Faces: landmarks, alignment and per-face metadata.

pub mod align;
pub mod dflimg;
pub mod metadata;
