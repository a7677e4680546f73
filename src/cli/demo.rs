//! `dfl demo`: the whole pipeline on the bundled samples, in one resumable command.
//!
//! Each stage runs as its own `dfl` process with the arguments a user would type (printed
//! before it runs), so the demo is exactly the tutorial and every stage resumes as usual: a
//! demo stopped at any point continues where it stopped when run again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::device;
use crate::model::folder::ModelFolder;
use crate::report::Outcome;
use crate::workspace::{Side, Workspace};

use super::GlobalArgs;

/// The file that marks a folder as a demo workspace (the demo refuses to write anywhere else).
const MARKER: &str = "demo.json";
/// The marker of a finished `faceset synth` (beside the marker, not among the src frames).
const SYNTH_DONE: &str = "demo-synth.done";
/// The model's name.
const MODEL: &str = "demo";

/// Arguments of `dfl demo`.
///
/// Makes a demo workspace from the bundled samples: src is a clip synthesised from the Obama
/// portraits (public domain) driven by the carphone clip's motion, dst is the carphone clip.
/// Then extracts both, sorts src, trains a model (small on a CPU, real on CUDA) for
/// --minutes, merges result.mp4 and evaluates it. Run it again to continue.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Total training time in minutes (across runs); later runs train only what is left.
    #[arg(long, value_name = "MIN", default_value_t = 10.0)]
    pub minutes: f64,
}

/// Runs `dfl demo`.
pub fn run(args: &DemoArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.minutes.is_finite() && args.minutes >= 0.0, "--minutes must be 0 or more");
    let ws = Workspace::new(&global.workspace);
    claim(&ws)?;
    let assets = crate::assets::Assets::from_env();
    let sample = |name: &str| assets.sample(name).map(|p| p.to_string_lossy().into_owned());
    // Resolved once (one warning on a CPU), then passed on as `cpu` or `cuda:N`.
    let resolved = device::resolve(global.device)?;
    let runner = Runner { ws: ws.root().to_owned(), device: resolved.name() };

    let src_dir = ws.side_dir(Side::Src);
    let synth_done = ws.root().join(SYNTH_DONE);
    if !synth_done.is_file() {
        let mut synth = vec!["faceset".to_owned(), "synth".to_owned()];
        for portrait in ["obama.jpg", "obama2.jpg", "obama3.jpg"] {
            synth.extend(["--portrait".to_owned(), sample(portrait)?]);
        }
        synth.extend(["--driver".to_owned(), sample("carphone_pristine.mp4")?]);
        synth.extend(["--out".to_owned(), src_dir.to_string_lossy().into_owned()]);
        runner.dfl(&synth.iter().map(String::as_str).collect::<Vec<_>>())?;
        std::fs::write(&synth_done, b"").with_context(|| format!("{}", synth_done.display()))?;
    }
    let dst_video = ws.default_video(Side::Dst);
    if !dst_video.is_file() {
        std::fs::copy(sample("carphone_pristine.mp4")?, &dst_video)
            .with_context(|| format!("{}", dst_video.display()))?;
    }
    runner.dfl(&["extract", "src"])?;
    runner.dfl(&["extract", "dst"])?;
    if !ws.sort_history(Side::Src).is_file() {
        runner.dfl(&["sort", "src", "--by", "face-yaw", "--sheet"])?;
    }
    train(&runner, &ws, resolved.device.is_cuda(), args.minutes)?;
    runner.dfl(&["merge", "--model", MODEL, "--force"])?;
    runner.dfl(&["eval"])?;

    let model = ws.model_dir(MODEL)?;
    println!("\nThe demo is done. Look at:");
    for (what, path) in [
        ("the src faces, sorted by yaw", ws.sort_sheets_dir(Side::Src).join("sheet_001.png")),
        ("training previews (src, dst, swap)", model.join("preview.png")),
        ("the loss curves", model.join("loss.png")),
        ("likeness on held-out faces", model.join("eval.png")),
        ("a merged frame", ws.merged_dir().join("00060.png")),
        ("the video", ws.result_video()),
        ("the measured result", ws.eval_dir().join("report.png")),
    ] {
        println!("  {what:36} {}", path.display());
    }
    println!(
        "Run `dfl --workspace {} demo --minutes N` again to train longer and redo the merge.",
        ws.root().display()
    );
    Ok(Outcome::Done)
}

/// Makes `ws` a demo workspace, refusing a folder that holds anything else.
fn claim(ws: &Workspace) -> anyhow::Result<()> {
    let root = ws.root();
    let marker = root.join(MARKER);
    if marker.is_file() {
        return Ok(());
    }
    let used = std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some());
    if used {
        bail!(
            "{} is not empty and not a demo workspace; give the demo its own folder with --workspace DIR",
            root.display()
        );
    }
    std::fs::create_dir_all(root).with_context(|| format!("{}", root.display()))?;
    crate::atomic::write_json_atomic(&marker, &serde_json::json!({ "demo": 1 }))
        .with_context(|| format!("{}", marker.display()))
}

/// Trains what is left of `minutes`, with sizes chosen by device.
fn train(runner: &Runner, ws: &Workspace, cuda: bool, minutes: f64) -> anyhow::Result<()> {
    // state.json alone, not the weights.
    let state = ModelFolder::open(ws, MODEL)?.latest_state().ok().flatten();
    let trained = state.as_ref().map_or(0.0, |s| s.elapsed_secs / 60.0);
    let left = minutes - trained;
    if left <= 0.01 && state.is_some() {
        log::info!("the demo model has trained {trained:.1} of {minutes} minutes");
        return Ok(());
    }
    let sizes: &[&str] = if cuda {
        // A real model: DFL's SAEHD defaults at 128 px.
        &["--model", "df", "--resolution", "128", "--batch-size", "8"]
    } else {
        // Small enough to learn something in minutes on a laptop CPU.
        &[
            "--model",
            "df",
            "--resolution",
            "64",
            "--ae-dims",
            "64",
            "--e-dims",
            "16",
            "--d-dims",
            "16",
            "--d-mask-dims",
            "16",
            "--batch-size",
            "8",
            "--lr",
            "2e-4",
        ]
    };
    let minutes_left = format!("{:.2}", left.max(0.01));
    let mut args = vec!["train", "--name", MODEL];
    args.extend_from_slice(sizes);
    args.extend(["--minutes", &minutes_left, "--eval-every", "200"]);
    runner.dfl(&args)
}

/// Runs dfl subcommands in the demo workspace.
struct Runner {
    ws: PathBuf,
    /// `cpu` or `cuda:N`.
    device: String,
}

impl Runner {
    /// Runs `dfl --workspace WS --device D ARGS…`, printing the command first; exit 0 or 1 is
    /// success.
    fn dfl(&self, args: &[&str]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding the dfl binary")?;
        println!("\n$ dfl --workspace {} {}", shown(&self.ws), args.join(" "));
        let status = Command::new(exe)
            .arg("--workspace")
            .arg(&self.ws)
            .arg("--device")
            .arg(&self.device)
            .args(args)
            .status()
            .context("starting dfl")?;
        match status.code() {
            Some(0 | 1) => Ok(()),
            _ => bail!(
                "`dfl {}` failed (see above); run `dfl demo` again to continue",
                args.join(" ")
            ),
        }
    }
}

fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
