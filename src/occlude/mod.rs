//! `dfl faceset occlude`: an occlusion test bed for XSeg. It paints moving occluders (hands,
//! microphone-like bars, blobs) over every frame of a clip and writes, beside each occluded
//! frame, the exact mask of the pixels it painted, so a face segmenter can be measured
//! against the truth (`docs/occlusion-testbed.md`).
//!
//! - [`plan`]: the seeded occluders (shape, colour, path across the middle of the frame, time
//!   slot); [`render`]: one frame's composite and truth mask, hard-edged so the mask is exact.
//! - [`labels`]: the truth in aligned-face space (landmark hull minus occluder) and polygon
//!   labels made from it as a person would click them.
//! - [`score`]: IoU of masks, and the share of occluder pixels a merge kept.
//!
//! The run ([`occlude`]) is resumable like every stage: each PNG is written atomically, a
//! rerun with the same settings skips frames whose frame and mask both exist, other settings
//! are refused, and `occlude.json` is written last.

mod labels;
mod plan;
mod render;
mod score;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;
use serde::Serialize;

use crate::frames::{FrameSource, FramesError, Pick, for_each_frame};
use crate::img::{ImageWriteError, write_image};
use crate::progress::Progress;
use crate::report::StageReport;
use crate::settings::{SettingsError, check_settings};
use crate::workspace::Input;

pub use labels::{
    FaceTruth, LabelFace, LabelKind, LabelPoly, LabelsError, LabelsFile, LabelsReport,
    TRUTH_LIST_FILE, TruthOptions, mask_to_polys, polys_to_mask, truth_and_labels, truth_file_name,
};
pub use plan::{Occluder, OccluderKind};
pub use render::{Occluded, occlude_frame};
pub use score::{
    KeptReport, MaskError, ScoreError, ScoreReport, iou, merged_kept_share, occluder_kept_share,
    score_faces,
};

/// The version of the generator: a change of how occluders are planned or drawn bumps it, so
/// output of another version is not resumed.
pub const OCCLUDE_VERSION: u32 = 1;
/// The folder of the occluded frames inside `--out`.
pub const FRAMES_DIR: &str = "frames";
/// The folder of the truth masks inside `--out`.
pub const MASKS_DIR: &str = "masks";
/// The run's description, written last.
pub const REPORT_FILE: &str = "occlude.json";
/// The run's settings, written first.
const SETTINGS_FILE: &str = "occlude.settings.json";
/// JPEG quality argument of `write_image` (unused for PNG).
const UNUSED_JPEG_QUALITY: u8 = 95;

/// Settings of one occlude run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OccludeConfig {
    /// The seed of the plan and the textures.
    pub seed: u64,
    /// How many occluders (2 or 3, by seed, when `None`).
    pub count: Option<usize>,
    /// Use only the first this many frames (all when `None`).
    pub max_frames: Option<usize>,
}

/// What identifies a run's output: a rerun with other settings would mix two clips.
#[derive(Debug, Serialize)]
struct SavedSettings<'a> {
    version: u32,
    input: &'a Path,
    seed: u64,
    count: Option<usize>,
    frames: usize,
}

/// One frame of the output.
#[derive(Debug, Clone, Serialize)]
pub struct OccludedFrame {
    /// The frame name (`00001`, or the input image's stem).
    pub name: String,
    /// Indices (into [`OccludeReport::occluders`]) of the occluders scheduled on it.
    pub occluders: Vec<usize>,
    /// Pixels covered by an occluder.
    pub covered_px: usize,
    /// `covered_px` over the frame's pixels.
    pub covered_share: f64,
}

/// `occlude.json`: what a run made.
#[derive(Debug, Clone, Serialize)]
pub struct OccludeReport {
    /// [`OCCLUDE_VERSION`].
    pub version: u32,
    /// The seed.
    pub seed: u64,
    /// The input clip.
    pub input: PathBuf,
    /// The frames the plan spans.
    pub frames_planned: usize,
    /// What the masks mean.
    pub truth: &'static str,
    /// The occluders.
    pub occluders: Vec<Occluder>,
    /// Every frame written (this run's and an earlier run's), in input order.
    pub frames: Vec<OccludedFrame>,
    /// Counts of this run.
    #[serde(skip)]
    pub stage: StageReport,
}

/// What the truth masks hold (recorded in `occlude.json`).
const TRUTH_DEFINITION: &str = "masks/<frame>.png is 255 exactly where an occluder was painted \
     into frames/<frame>.png (hard edges, no anti-aliasing) and 0 elsewhere";

/// Why an occlude run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OccludeError {
    /// The input does not open.
    #[error(transparent)]
    Input(#[from] FramesError),
    /// The input has no frames.
    #[error("{} has no frames; pass a video or a folder of images", .0.display())]
    NoFrames(PathBuf),
    /// The output folder holds another run's output.
    #[error(
        "{} holds the output of another occlude run ({}); choose another --out or delete that folder",
        .dir.display(), .changes.join(", ")
    )]
    OtherRun {
        /// The output folder.
        dir: PathBuf,
        /// One `name: saved → now` entry per changed setting.
        changes: Vec<String>,
    },
    /// The output folder holds frames not written by occlude.
    #[error(
        "{} already holds frames or masks but no {SETTINGS_FILE}; choose another --out or delete that folder",
        .0.display()
    )]
    ForeignOutput(PathBuf),
    /// The saved settings cannot be read or written.
    #[error("{0}")]
    Settings(SettingsError),
    /// The output folder cannot be created or listed.
    #[error("cannot prepare output folder {}: {source}; check the path and permissions", .path.display())]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An occluded frame or mask cannot be written.
    #[error(transparent)]
    Write(#[from] ImageWriteError),
    /// Drawing a frame failed.
    #[error("drawing occluders on frame {frame} of {}: {source}", .input.display())]
    Render {
        /// The input.
        input: PathBuf,
        /// The frame name.
        frame: String,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// A mask written by an earlier run cannot be read.
    #[error("cannot read mask {}; delete it so the frame is drawn again", .0.display())]
    ReadMask(PathBuf),
    /// `occlude.json` cannot be written.
    #[error("cannot write {}: {source}; check free space and permissions", .path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Paints the occluders planned for `cfg.seed` over every frame of `input` (or the first
/// `cfg.max_frames`) and writes `out_dir/frames/<frame>.png`, `out_dir/masks/<frame>.png`
/// and, last, `out_dir/occlude.json`. Frames whose frame and mask an earlier run with the same
/// settings wrote are not drawn again.
///
/// # Errors
/// [`OccludeError`]: an input that does not open or has no frames, an output folder of another
/// run, a file that cannot be written — each naming the file. A frame that does not decode is
/// logged and skipped (counted in [`OccludeReport::stage`]).
pub fn occlude(
    input: &Input,
    out_dir: &Path,
    cfg: &OccludeConfig,
    progress: &dyn Progress,
) -> Result<OccludeReport, OccludeError> {
    let mut source = FrameSource::open(input)?;
    let frames = match cfg.max_frames {
        Some(max) => source.len_hint().min(max),
        None => source.len_hint(),
    };
    if frames == 0 {
        return Err(OccludeError::NoFrames(input.path().to_owned()));
    }
    let (frames_dir, masks_dir) = (out_dir.join(FRAMES_DIR), out_dir.join(MASKS_DIR));
    check_out_dir(out_dir, input, cfg, frames)?;
    for dir in [&frames_dir, &masks_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|source| OccludeError::OutDir { path: dir.clone(), source })?;
    }
    let occluders = plan::plan(cfg.seed, cfg.count, frames);
    let done = |name: &str| {
        masks_dir.join(format!("{name}.png")).is_file()
            && frames_dir.join(format!("{name}.png")).is_file()
    };
    let already: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let mut written: BTreeMap<usize, (String, usize, usize)> = BTreeMap::new();
    let mut stage = StageReport::default();
    progress.set_len(frames as u64);
    let pick = |index: usize, name: &str| {
        if index >= frames {
            Pick::Stop
        } else if done(name) {
            already.lock().unwrap_or_else(PoisonError::into_inner).push((index, name.to_owned()));
            progress.inc(1);
            Pick::Skip
        } else {
            Pick::Take
        }
    };
    let work = |frame: &crate::frames::Frame| -> Result<Option<(usize, usize)>, OccludeError> {
        let Ok(image) = &frame.image else { return Ok(None) };
        let render_err = |source| OccludeError::Render {
            input: input.path().to_owned(),
            frame: frame.name.clone(),
            source,
        };
        let out = occlude_frame(image, &occluders, frame.index).map_err(render_err)?;
        write_image(
            &frames_dir.join(format!("{}.png", frame.name)),
            &out.image,
            UNUSED_JPEG_QUALITY,
        )?;
        write_image(
            &masks_dir.join(format!("{}.png", frame.name)),
            &out.mask,
            UNUSED_JPEG_QUALITY,
        )?;
        Ok(Some((out.covered_px, pixels(image))))
    };
    for_each_frame(&mut source, pick, work, |frame, result| {
        progress.inc(1);
        match result? {
            Some((covered, total)) => {
                stage.done += 1;
                written.insert(frame.index, (frame.name.clone(), covered, total));
            }
            None => {
                let why = frame.image.as_ref().err().map_or("", String::as_str);
                log::warn!("skipping frame {} of {}: {why}", frame.name, input.path().display());
                stage.skipped += 1;
            }
        }
        Ok::<(), OccludeError>(())
    })?;
    source.warn_if_truncated();
    for (index, name) in already.into_inner().unwrap_or_else(PoisonError::into_inner) {
        let path = masks_dir.join(format!("{name}.png"));
        let (covered, total) = count_mask(&path)?;
        stage.already_done += 1;
        written.insert(index, (name, covered, total));
    }
    let report = OccludeReport {
        version: OCCLUDE_VERSION,
        seed: cfg.seed,
        input: input.path().to_owned(),
        frames_planned: frames,
        truth: TRUTH_DEFINITION,
        frames: written
            .into_iter()
            .map(|(index, (name, covered_px, total))| OccludedFrame {
                name,
                occluders: (0..occluders.len()).filter(|&k| occluders[k].active(index)).collect(),
                covered_px,
                covered_share: covered_px as f64 / total.max(1) as f64,
            })
            .collect(),
        occluders,
        stage,
    };
    let path = out_dir.join(REPORT_FILE);
    crate::atomic::write_json_atomic(&path, &report)
        .map_err(|source| OccludeError::Report { path, source })?;
    Ok(report)
}

/// Refuses an output folder that holds another run's output; saves this run's settings.
fn check_out_dir(
    out_dir: &Path,
    input: &Input,
    cfg: &OccludeConfig,
    frames: usize,
) -> Result<(), OccludeError> {
    let settings_path = out_dir.join(SETTINGS_FILE);
    let has_pngs = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
    };
    if !settings_path.exists()
        && (has_pngs(&out_dir.join(FRAMES_DIR)) || has_pngs(&out_dir.join(MASKS_DIR)))
    {
        return Err(OccludeError::ForeignOutput(out_dir.to_owned()));
    }
    std::fs::create_dir_all(out_dir)
        .map_err(|source| OccludeError::OutDir { path: out_dir.to_owned(), source })?;
    let settings = SavedSettings {
        version: OCCLUDE_VERSION,
        input: input.path(),
        seed: cfg.seed,
        count: cfg.count,
        frames,
    };
    match check_settings(&settings_path, &settings, false) {
        Ok(_) => Ok(()),
        Err(SettingsError::Mismatch { changes, .. }) => {
            Err(OccludeError::OtherRun { dir: out_dir.to_owned(), changes })
        }
        Err(err) => Err(OccludeError::Settings(err)),
    }
}

fn pixels(image: &Mat) -> usize {
    usize::try_from(image.rows()).unwrap_or(0) * usize::try_from(image.cols()).unwrap_or(0)
}

/// Returns the pixels set in the mask file and its pixel count.
fn count_mask(path: &Path) -> Result<(usize, usize), OccludeError> {
    let bad = || OccludeError::ReadMask(path.to_owned());
    let mask = imgcodecs::imread(path, imgcodecs::IMREAD_GRAYSCALE).map_err(|_| bad())?;
    if mask.empty() {
        return Err(bad());
    }
    let covered = opencv::core::count_non_zero(&mask).map_err(|_| bad())?;
    Ok((usize::try_from(covered).unwrap_or(0), pixels(&mask)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use opencv::core::{CV_8UC3, Scalar, Vector};

    /// A folder of `n` small gradient frames named f000, f001, ….
    fn clip(dir: &Path, n: usize) -> Input {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..n {
            let mut m = Mat::new_rows_cols_with_default(72, 88, CV_8UC3, Scalar::all(0.0)).unwrap();
            for (k, px) in m.data_bytes_mut().unwrap().iter_mut().enumerate() {
                *px = ((k * 7 + i * 13) % 251) as u8;
            }
            let path = dir.join(format!("f{i:03}.png"));
            imgcodecs::imwrite(path.to_str().unwrap(), &m, &Vector::new()).unwrap();
        }
        Input::Images(dir.to_owned())
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "png"))
            .map(|p| {
                (p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_seed_gives_the_same_files_and_frame_names_follow_the_input() {
        let tmp = tempfile::tempdir().unwrap();
        let input = clip(&tmp.path().join("in"), 12);
        let cfg = OccludeConfig { seed: 4, count: Some(2), max_frames: None };
        let a = occlude(&input, &tmp.path().join("a"), &cfg, &NoProgress).unwrap();
        occlude(&input, &tmp.path().join("b"), &cfg, &NoProgress).unwrap();
        assert_eq!(snapshot(&tmp.path().join("a")), snapshot(&tmp.path().join("b")));
        assert_eq!(a.frames.len(), 12);
        assert_eq!(a.frames[3].name, "f003");
        assert!(tmp.path().join("a/frames/f003.png").is_file());
        assert!(tmp.path().join("a/masks/f011.png").is_file());
        assert!(tmp.path().join("a").join(REPORT_FILE).is_file());
        assert!(a.frames.iter().any(|f| f.covered_px > 0));
        assert!(a.frames.iter().any(|f| f.occluders.is_empty()));
        let other = OccludeConfig { seed: 5, ..cfg };
        occlude(&input, &tmp.path().join("c"), &other, &NoProgress).unwrap();
        assert_ne!(snapshot(&tmp.path().join("a")), snapshot(&tmp.path().join("c")));
    }

    #[test]
    fn a_rerun_skips_written_frames_and_redoes_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let input = clip(&tmp.path().join("in"), 8);
        let out = tmp.path().join("out");
        let cfg = OccludeConfig { seed: 9, count: None, max_frames: Some(6) };
        let first = occlude(&input, &out, &cfg, &NoProgress).unwrap();
        assert_eq!((first.stage.done, first.frames.len()), (6, 6));
        let before = snapshot(&out);
        // A crash after frame f002's picture but before its mask, and a lost f004.
        std::fs::remove_file(out.join("masks/f002.png")).unwrap();
        std::fs::remove_file(out.join("frames/f004.png")).unwrap();
        // A marker: a skipped frame is not rewritten.
        let marker = out.join("frames/f000.png");
        let mtime = std::fs::metadata(&marker).unwrap().modified().unwrap();
        let second = occlude(&input, &out, &cfg, &NoProgress).unwrap();
        assert_eq!((second.stage.done, second.stage.already_done), (2, 4));
        assert_eq!(snapshot(&out), before, "the same bytes as an uninterrupted run");
        assert_eq!(std::fs::metadata(&marker).unwrap().modified().unwrap(), mtime);
        let covered: Vec<usize> = second.frames.iter().map(|f| f.covered_px).collect();
        assert_eq!(covered, first.frames.iter().map(|f| f.covered_px).collect::<Vec<_>>());
    }

    #[test]
    fn another_seed_into_the_same_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let input = clip(&tmp.path().join("in"), 3);
        let out = tmp.path().join("out");
        let cfg = OccludeConfig { seed: 1, count: None, max_frames: None };
        occlude(&input, &out, &cfg, &NoProgress).unwrap();
        let err = occlude(&input, &out, &OccludeConfig { seed: 2, ..cfg }, &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(err.contains("seed: 1 → 2") && err.contains("another --out"), "{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
        std::fs::remove_file(out.join(SETTINGS_FILE)).unwrap();
        let err = occlude(&input, &out, &cfg, &NoProgress).unwrap_err().to_string();
        assert!(err.contains("no occlude.settings.json"), "{err}");
    }
}
