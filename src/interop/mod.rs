//! DeepFaceLab interop: `dfl faceset import-dfl`/`export-dfl` (DFLJPG/DFLPNG faces and
//! `faceset.pak` in, DFLJPG out), `dfl model import-dfl`/`export-dfl` (a SAEHD model folder in
//! DFL's layout, weights in TensorFlow layouts) and `dfl model export-dfm` (an ONNX file in
//! DeepFaceLive's contract). The formats themselves are read and written by `dfl_format`.

mod faceset;
mod model;

pub use faceset::{
    ExportError, ExportOptions, ExportReport, IMPORTED_MASK_MODEL, ImportError, ImportOptions,
    ImportReport, PakError, export_dfl, import_dfl,
};
pub use model::{
    DflModelError, DfmError, DfmReport, ModelExportReport, ModelImportReport, default_dfm_path,
    export_dfl_model, export_dfm, import_dfl_model,
};
