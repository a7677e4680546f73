//! XSeg, the trainable face segmenter: the network and its losses ([`net`]), a model's folder
//! and options ([`folder`]), and a trained model loaded for inference ([`predict`]).

pub mod folder;
mod net;
pub mod predict;

pub use folder::{XSegConfig, XSegFolder};
pub use net::{
    BASE_CHANNELS, DEFAULT_RESOLUTION, DOWNSCALES, XSeg, check_resolution, xseg_loss,
    xseg_pretrain_loss,
};
pub use predict::{FaceIn, XSegError, XSegModel};
