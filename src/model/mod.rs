//! The SAEHD models, their losses and the optimizer.

pub mod adversarial;
pub mod arch;
pub mod blocks;
pub mod checkpoint;
pub mod decoder;
pub mod dfl_names;
pub mod discriminator;
pub mod encoder;
pub mod folder;
pub mod inter;
pub mod layout;
pub mod loss;
pub mod onnx_export;
pub mod optim;
pub mod precision;
pub mod profiler;
pub mod saehd;
pub mod summary;
pub mod xseg;
