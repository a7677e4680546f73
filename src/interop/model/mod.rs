//! DFL SAEHD model folders in and out: `dfl model import-dfl` reads DeepFaceLab's
//! `<name>_SAEHD_data.dat` (options, iteration, loss history) and its per-part weight files
//! (`_encoder.npy`, `_inter.npy` or `_inter_AB.npy` + `_inter_B.npy`, `_decoder_src.npy` +
//! `_decoder_dst.npy` or `_decoder.npy`, and the optimizer's `_src_dst_opt.npy`) into a new
//! model folder that `dfl train` resumes at DFL's iteration and `dfl merge` uses;
//! `dfl model export-dfl` writes a model folder back in DFL's layout. Weights cross bit-exactly
//! (only their layout changes: `model::dfl_names`).
//!
//! ```text
//! module      owns
//! files       a DFL model folder's file names; reading its pickles
//! options     DFL's options dict <-> TrainConfig (what does not map is listed)
//! history     DFL's per-iteration loss history <-> our per-interval points
//! weights     per-part weight dicts <-> our named tensors
//! optimizer   src_dst_opt.npy (AdaBelief or RMSprop) <-> our optimizer state
//! import      the import, written into a temporary folder and renamed into place
//! export      the export, _data.dat written last
//! dfm         a DeepFaceLive .dfm (ONNX) of the latest checkpoint
//! ```

mod dfm;
mod error;
mod export;
mod files;
mod history;
mod import;
mod optimizer;
mod options;
mod weights;

pub use dfm::{DfmError, DfmReport, default_dfm_path, export_dfm};
pub use error::DflModelError;
pub use export::{ModelExportReport, export_dfl_model};
pub use import::{ModelImportReport, import_dfl_model};
