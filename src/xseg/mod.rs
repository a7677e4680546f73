//! `dfl xseg`: XSeg, the trainable face segmentation. This module holds the labels a user
//! draws on faces: exporting them from a faceset to a JSON file and importing them back
//! ([`export_labels`], [`import_labels`]; `docs/xseg.md`). The labels and applied masks
//! themselves live in each face file's metadata (`crate::face::seg`).

mod apply;
mod labels;
mod sampler;
mod samples;
mod train;

pub use apply::{APPLY_BATCH, ApplyError, ApplyReport, FetchReport, apply, fetch, remove};
pub use labels::{
    ExportReport, FaceLabels, ImportReport, LABELS_VERSION, LabelsError, LabelsFile, SkippedLabels,
    export_labels, import_labels, read_labels,
};
pub use samples::{HOLDOUT_EVERY, SamplesError};
pub use train::{XSegRunError, XSegRunOptions, XSegRunReport, describe_iou, layer_table, train};
