//! `dfl status`: prints the workspace's state for people, or JSON for scripts.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use crate::device::{self, CudaBackend, DeviceInfo};
use crate::report::Outcome;
use crate::status::{self, ModelStatus, SideStatus, WorkspaceStatus};
use crate::workspace::{Input, Workspace};

use super::GlobalArgs;

/// Arguments of `dfl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON (one object) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The JSON document `dfl status --json` prints.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    dfl_version: &'static str,
    device: &'a DeviceInfo,
    #[serde(flatten)]
    workspace: &'a WorkspaceStatus,
}

/// Runs `dfl status`.
pub fn run(args: &StatusArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let device = device::info(global.device)?;
    let ws = Workspace::new(&global.workspace);
    let status = status::read(&ws);
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = StatusJson {
            dfl_version: env!("CARGO_PKG_VERSION"),
            device: &device,
            workspace: &status,
        };
        serde_json::to_writer_pretty(&mut out, &doc).context("writing status to stdout")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render(&status, &device)).context("writing status to stdout")?;
    }
    Ok(Outcome::Done)
}

/// Renders the status as aligned `label  value` lines.
fn render(status: &WorkspaceStatus, device: &DeviceInfo) -> String {
    let mut lines = vec![("workspace", workspace_line(status)), ("device", device_line(device))];
    for side in &status.sides {
        lines.push((side.side.as_str(), side_line(side)));
    }
    lines.push(("models", models_line(&status.models)));
    lines.push(("xseg", models_line(&status.xseg_models)));
    let result = match &status.result_video {
        Some(path) => path.display().to_string(),
        None => "not built".to_owned(),
    };
    lines.push(("merged", format!("{} frames; result video: {result}", status.merged_frames)));
    let next = &status.next_step;
    lines.push(("next", format!("{}  ({})", next.command, next.reason)));
    lines.into_iter().map(|(label, value)| format!("{label:<10} {value}\n")).collect()
}

fn models_line(models: &[ModelStatus]) -> String {
    if models.is_empty() {
        return "none".to_owned();
    }
    let describe = |m: &ModelStatus| match m.iteration {
        Some(it) => format!("{} (iteration {it})", m.name),
        None => m.name.clone(),
    };
    models.iter().map(describe).collect::<Vec<_>>().join(", ")
}

fn workspace_line(status: &WorkspaceStatus) -> String {
    let path = status.workspace.display();
    if status.exists { path.to_string() } else { format!("{path} (does not exist yet)") }
}

fn device_line(device: &DeviceInfo) -> String {
    if let CudaBackend::Unavailable { reason } = &device.cuda_backend {
        return format!("{} (libtorch's CUDA backend is not available: {reason})", device.selected);
    }
    match device.cuda_devices {
        0 => format!("{} (no CUDA device visible to libtorch)", device.selected),
        n => format!(
            "{} ({n} CUDA device(s), cuDNN {})",
            device.selected,
            if device.cudnn { "on" } else { "off" }
        ),
    }
}

fn side_line(side: &SideStatus) -> String {
    let input = match &side.input {
        Some(Input::Video(p)) => format!("video {}", p.display()),
        Some(Input::Images(p)) => format!("images in {}", p.display()),
        None => "no input".to_owned(),
    };
    let sorted = match (&side.last_sort, side.sort_interrupted) {
        (_, true) => "; a sort was interrupted".to_owned(),
        (Some(by), false) => format!("; sorted by {by}"),
        (None, false) => String::new(),
    };
    format!(
        "{input}; {} frames extracted, {} faces, {} in trash{sorted}",
        side.frames_extracted, side.faces, side.trashed_faces
    )
}
