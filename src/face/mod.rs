//! Faces: landmarks and finding them, alignment, masks, identity, pose, sharpness, and the face
//! files with their metadata and XSeg segmentation (labels, applied masks).

pub mod align;
pub mod dflimg;
pub mod dlib_serialize;
pub mod identity;
pub mod landmarks;
pub mod locate;
pub mod masks;
pub mod metadata;
pub mod pose;
pub mod seg;
pub mod shape_predictor;
pub mod sharpness;
#[cfg(test)]
pub(crate) mod testutil;
