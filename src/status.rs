//! `dfl status`: what each stage has produced in a workspace, and what to run next.
//!
//! Read-only: it looks at the files, never writes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::faceset::journal;
use crate::model::folder::ModelFolder;
use crate::stage_log::StageLog;
use crate::workspace::{Input, Side, Stage, Workspace, count_images};

/// Everything `dfl status` reports about one workspace.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceStatus {
    /// The workspace folder.
    pub workspace: PathBuf,
    /// Whether that folder exists.
    pub exists: bool,
    /// src then dst.
    pub sides: Vec<SideStatus>,
    /// One entry per folder under `model/`, sorted by name.
    pub models: Vec<ModelStatus>,
    /// One entry per XSeg model (folders under `xseg/`), sorted by name.
    pub xseg_models: Vec<ModelStatus>,
    /// Frames in `data_dst/merged/`.
    pub merged_frames: usize,
    /// `result.mp4`, when it exists.
    pub result_video: Option<PathBuf>,
    /// The command to run next, with a word on why.
    pub next_step: NextStep,
}

/// What one side (src or dst) has.
#[derive(Debug, Clone, Serialize)]
pub struct SideStatus {
    /// Which side.
    pub side: Side,
    /// The video or image folder extraction reads, if there is one.
    pub input: Option<Input>,
    /// Frames that extraction has finished (lines in `extract.jsonl`).
    pub frames_extracted: usize,
    /// Face images in `aligned/`.
    pub faces: usize,
    /// Face images in `aligned_trash/`.
    pub trashed_faces: usize,
    /// The method of the last sort `--undo` would revert.
    pub last_sort: Option<String>,
    /// Whether a sort was interrupted (its journal is there; the next `dfl sort` finishes it).
    pub sort_interrupted: bool,
}

/// What one model folder (SAEHD or XSeg) has.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    /// The folder name under `model/` (or `xseg/`).
    pub name: String,
    /// The iteration saved in `state.json`, if it could be read.
    pub iteration: Option<u64>,
    /// Whether `config.json` exists.
    pub has_config: bool,
}

/// The next command, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// A command line to run, or an action when none applies.
    pub command: String,
    /// Why it comes next.
    pub reason: String,
}

/// Reads the status of `ws` from disk.
pub fn read(ws: &Workspace) -> WorkspaceStatus {
    let sides: Vec<SideStatus> = Side::ALL.iter().map(|&side| side_status(ws, side)).collect();
    let models = model_statuses(&ws.models_dir());
    let xseg_models = model_statuses(&ws.xseg_models_dir());
    let merged_frames = count_images(&ws.merged_dir());
    let result_video = Some(ws.result_video()).filter(|p| p.is_file());
    let mut status = WorkspaceStatus {
        workspace: ws.root().to_owned(),
        exists: ws.exists(),
        sides,
        models,
        xseg_models,
        merged_frames,
        result_video,
        next_step: NextStep { command: String::new(), reason: String::new() },
    };
    status.next_step = next_step(ws, &status);
    status
}

fn side_status(ws: &Workspace, side: Side) -> SideStatus {
    // Entries are counted, not interpreted: extract owns the entry format.
    let frames_extracted = StageLog::read::<serde_json::Value>(&ws.stage_log(Stage::Extract, side))
        .map_or(0, |log| log.entries.len());
    SideStatus {
        side,
        input: ws.find_input(side),
        frames_extracted,
        faces: count_images(&ws.aligned_dir(side)),
        trashed_faces: count_images(&ws.aligned_trash_dir(side)),
        last_sort: last_sort(&ws.sort_history(side)),
        sort_interrupted: ws.sort_journal(side).is_file(),
    }
}

/// The `--by` of the last sort in `sort.history.jsonl`.
fn last_sort(history: &Path) -> Option<String> {
    let log = StageLog::read::<journal::Batch>(history).ok()?;
    log.entries.iter().rev().find_map(|b| match &b.action {
        journal::Action::Sort { method } => Some(method.clone()),
        journal::Action::Trash { .. } | journal::Action::Undo { .. } => None,
    })
}

fn model_statuses(dir: &Path) -> Vec<ModelStatus> {
    ModelFolder::list_in(dir)
        .into_iter()
        .map(|(name, folder)| ModelStatus {
            name,
            iteration: folder.latest_state().ok().flatten().map(|s| s.iteration),
            has_config: folder.has_config(),
        })
        .collect()
}

fn next_step(ws: &Workspace, status: &WorkspaceStatus) -> NextStep {
    let step = |command: String, reason: String| NextStep { command, reason };
    if !status.exists {
        return step(
            format!("mkdir -p {}", ws.root().display()),
            "the workspace folder does not exist yet; create it and put data_src.mp4 in it"
                .to_owned(),
        );
    }
    if let Some(side) = status.sides.iter().find(|s| s.sort_interrupted) {
        let s = side.side;
        return step(
            format!("dfl sort {s} --undo"),
            format!(
                "a sort of the {s} faceset was interrupted: --undo finishes and reverts it, any `dfl sort {s} --by …` finishes it first"
            ),
        );
    }
    for side in &status.sides {
        if side.faces > 0 {
            continue;
        }
        let s = side.side;
        return match &side.input {
            None => step(
                format!("put a video at {}", ws.default_video(s).display()),
                format!(
                    "no {s} input yet: a video data_{s}.mp4 (or images in data_{s}/) is needed"
                ),
            ),
            Some(input) => step(
                format!("dfl extract {s}"),
                format!("{} has no aligned faces yet", input.path().display()),
            ),
        };
    }
    let Some(model) = status.models.first() else {
        return step(
            "dfl train --model df --name NAME".to_owned(),
            "both facesets are extracted; train a model on them".to_owned(),
        );
    };
    if status.merged_frames == 0 || status.result_video.is_none() {
        return step(
            format!("dfl merge --model {}", model.name),
            format!("model {} exists; merge it onto the dst frames", model.name),
        );
    }
    step(
        format!("open {}", ws.result_video().display()),
        "the merged video is ready (train longer and merge again to improve it)".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_workspace_asks_for_the_src_video() {
        let tmp = tempfile::tempdir().unwrap();
        let status = read(&Workspace::new(tmp.path()));
        assert!(status.exists);
        assert!(status.models.is_empty());
        assert!(status.next_step.command.contains("data_src.mp4"), "{:?}", status.next_step);
    }

    #[test]
    fn a_missing_workspace_says_to_create_it() {
        let tmp = tempfile::tempdir().unwrap();
        let status = read(&Workspace::new(tmp.path().join("nope")));
        assert!(!status.exists);
        assert!(status.next_step.command.starts_with("mkdir -p"), "{:?}", status.next_step);
    }

    #[test]
    fn counts_faces_frames_and_models() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        std::fs::write(ws.default_video(Side::Src), b"video").unwrap();
        std::fs::create_dir_all(ws.aligned_dir(Side::Src)).unwrap();
        for name in ["00001_0.jpg", "00002_0.jpg", "00002_1.jpg", "00003_0.jpg.tmp"] {
            std::fs::write(ws.aligned_dir(Side::Src).join(name), b"x").unwrap();
        }
        std::fs::write(ws.stage_log(Stage::Extract, Side::Src), "{\"frame\":1}\n{\"frame\":2}\n")
            .unwrap();
        let folder = ModelFolder::open(&ws, "m1").unwrap();
        let none: Vec<(String, tch::Tensor)> = Vec::new();
        let state = crate::model::folder::TrainState { iteration: 1200, ..Default::default() };
        folder.save(&none, &none, &[], &state).unwrap();
        let xseg = crate::model::xseg::XSegFolder::open(&ws, "generic").unwrap();
        let state = crate::model::folder::TrainState { iteration: 300, ..Default::default() };
        xseg.sets.save(&none, &none, &[], &state).unwrap();

        let status = read(&ws);
        let src = &status.sides[0];
        assert_eq!((src.faces, src.frames_extracted), (3, 2));
        assert_eq!(src.input, Some(Input::Video(ws.default_video(Side::Src))));
        assert_eq!(status.models.len(), 1, "XSeg models are not SAEHD models");
        assert_eq!(status.models[0].iteration, Some(1200));
        assert_eq!(status.xseg_models[0].name, "generic");
        assert_eq!(status.xseg_models[0].iteration, Some(300));
        assert_eq!(
            status.next_step.command,
            format!("put a video at {}", ws.default_video(Side::Dst).display())
        );
    }
}
