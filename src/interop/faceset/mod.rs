//! DeepFaceLab facesets in and out: `dfl faceset import-dfl` reads DFLJPG/DFLPNG faces (a
//! folder, or a `faceset.pak`) into a dfl faceset, and `dfl faceset export-dfl` writes a dfl
//! faceset back as DFLJPG files, so a user can go back to DeepFaceLab at any time.

mod dict;
mod export;
mod frames;
mod import;
mod pak;

pub use export::{ExportError, ExportOptions, ExportReport, export_dfl};
pub use import::{IMPORTED_MASK_MODEL, ImportError, ImportOptions, ImportReport, import_dfl};
pub use pak::PakError;
