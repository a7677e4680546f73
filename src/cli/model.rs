//! `dfl model`: a model folder in and out of DeepFaceLab's SAEHD layout.

use std::path::PathBuf;

use crate::interop::{
    DfmReport, ModelExportReport, ModelImportReport, default_dfm_path, export_dfl_model,
    export_dfm, import_dfl_model,
};
use crate::model::folder::ModelFolder;
use crate::report::Outcome;
use crate::workspace::Workspace;

use super::GlobalArgs;

/// Arguments of `dfl model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// The model tools.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Import a DeepFaceLab SAEHD model (options, iteration, loss history, weights and
    /// optimizer state) as a new model that `dfl train` resumes and `dfl merge` uses.
    ImportDfl(ImportDflArgs),
    /// Write a model as a DeepFaceLab SAEHD model (`<NAME>_SAEHD_data.dat` and `.npy` files).
    ExportDfl(ExportDflArgs),
    /// Write a model as a DeepFaceLive `.dfm` (ONNX, opset 12, any batch size): the swapped
    /// face and both masks from a dst face, for real-time use; made by dfl, no Python needed.
    ExportDfm(ExportDfmArgs),
}

/// Arguments of `dfl model export-dfm`.
#[derive(Debug, clap::Args)]
pub struct ExportDfmArgs {
    /// The model to export (`model/<NAME>` in the workspace).
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: String,
    /// The file to write [model/<NAME>/<NAME>_SAEHD_model.dfm]; DeepFaceLive lists a model
    /// by its file name, so give it one you will recognise.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `dfl model import-dfl`.
#[derive(Debug, clap::Args)]
pub struct ImportDflArgs {
    /// DeepFaceLab's model folder (`workspace/model`), holding `<N>_SAEHD_data.dat`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The new model's name (`model/<NAME>` in the workspace; must not exist yet).
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: String,
    /// Which DFL model of DIR, when it holds several (the N of `<N>_SAEHD_data.dat`).
    #[arg(long, value_name = "N")]
    pub dfl_name: Option<String>,
}

/// Arguments of `dfl model export-dfl`.
#[derive(Debug, clap::Args)]
pub struct ExportDflArgs {
    /// The model to export (`model/<NAME>` in the workspace).
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: String,
    /// The folder to write DeepFaceLab's files into (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The DFL model name, `<N>_SAEHD_…` [the model's name].
    #[arg(long, value_name = "N")]
    pub dfl_name: Option<String>,
}

/// Runs `dfl model`.
///
/// # Errors
/// Any fatal error, naming the file involved.
pub fn run(args: &ModelArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    match &args.command {
        ModelCommand::ImportDfl(a) => run_import(a, global),
        ModelCommand::ExportDfl(a) => run_export(a, global),
        ModelCommand::ExportDfm(a) => run_export_dfm(a, global),
    }
}

fn run_import(args: &ImportDflArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let folder = ModelFolder::open(&ws, &args.name)?;
    let report = import_dfl_model(&args.dir, args.dfl_name.as_deref(), &folder)?;
    print_import(&report, &args.name);
    Ok(Outcome::Done)
}

fn print_import(r: &ModelImportReport, name: &str) {
    if !r.not_mapped.is_empty() {
        log::warn!(
            "DFL options with no dfl counterpart, not carried over: {}",
            r.not_mapped.join(", ")
        );
    }
    if !r.not_imported.is_empty() {
        let files: Vec<String> = r.not_imported.iter().map(|p| p.display().to_string()).collect();
        log::warn!(
            "not imported (the discriminators start fresh if GAN or true face training runs): {}",
            files.join(", ")
        );
    }
    if let Some(why) = &r.optimizer_reset {
        log::warn!(
            "optimizer state not imported ({why}); training resumes with fresh optimizer moments"
        );
    }
    println!(
        "imported DFL model {} into {}: {} weights at iteration {}; resume with `dfl train --name {name}`",
        r.dfl_name,
        r.folder.display(),
        r.weights,
        r.iteration
    );
}

fn run_export(args: &ExportDflArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let folder = ModelFolder::open(&ws, &args.name)?;
    let dfl_name = args.dfl_name.as_deref().unwrap_or(&args.name);
    let report = export_dfl_model(&folder, &args.out, dfl_name)?;
    print_export(&report, args);
    Ok(Outcome::Done)
}

fn print_export(r: &ModelExportReport, args: &ExportDflArgs) {
    if !r.not_exported.is_empty() {
        log::warn!(
            "options DFL's SAEHD cannot express, not carried over: {}",
            r.not_exported.join(", ")
        );
    }
    if let Some(why) = &r.optimizer_skipped {
        log::warn!("no optimizer file written: {why}");
    }
    println!(
        "exported model {} at iteration {} to {} ({} files)",
        args.name,
        r.iteration,
        args.out.display(),
        r.files.len()
    );
}

fn run_export_dfm(args: &ExportDfmArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let folder = ModelFolder::open(&ws, &args.name)?;
    let out = args.out.clone().unwrap_or_else(|| default_dfm_path(&folder));
    let r: DfmReport = export_dfm(&folder, &out)?;
    println!(
        "wrote {} ({:.1} MB): {} at {} px, iteration {}, from {}; copy it into DeepFaceLive's dfm_models folder",
        r.path.display(),
        r.bytes as f64 / 1e6,
        r.arch,
        r.resolution,
        r.iteration,
        r.checkpoint.display()
    );
    Ok(Outcome::Done)
}
