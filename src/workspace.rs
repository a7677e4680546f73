//! The workspace folder: the only place that builds paths under it (`docs/architecture.md`).
//!
//! ```text
//! workspace/
//!   data_src.mp4 | data_src/<images>      input video, or a folder of images
//!   data_src/frames/                      decoded frames (only with --keep-frames)
//!   data_src/aligned/                     aligned faces, metadata inside each file
//!   data_src/aligned_debug/               frames with boxes and landmarks drawn
//!   data_src/aligned_trash/               what sort rejected (restorable)
//!   data_src/<stage>.jsonl                append-only stage log
//!   data_src/<stage>.settings.json        the settings that produced the stage's outputs
//!   data_src/sort.history.jsonl           every sort (for --undo); sort.journal.json while one runs
//!   data_src/sort.scores.jsonl            face scores and embeddings, cached by content
//!   data_src/sort_sheets/                 contact sheets
//!   data_src/thumbs/                      face thumbnails, cached by content (`faceset::thumbs`)
//!   data_dst…                             the same for dst, plus data_dst/merged/
//!   model/<name>/                         one trained model (`model::folder`)
//!   result.mp4                            the merged video with dst's audio
//!   eval/                                 the report of `dfl eval`
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File extensions (lower case) of input videos, in the order they are looked for.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg"];

/// File extensions (lower case) read as images, for input folders and faceset files.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// Which of the two people a stage works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The person whose face the user wants to see.
    Src,
    /// The footage whose face gets replaced.
    Dst,
}

impl Side {
    /// Both sides, src first.
    pub const ALL: [Side; 2] = [Side::Src, Side::Dst];

    /// Returns `"src"` or `"dst"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dst => "dst",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pipeline stage that keeps a log and settings in a side's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `dfl extract`: frames to aligned faces.
    Extract,
    /// `dfl sort`: reorder and clean a faceset.
    Sort,
    /// `dfl merge`: swapped faces back into the dst frames.
    Merge,
}

impl Stage {
    /// Returns the stage's name as used in file names and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Sort => "sort",
            Stage::Merge => "merge",
        }
    }
}

/// Where a side's input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum Input {
    /// A video file such as `workspace/data_src.mp4`.
    Video(PathBuf),
    /// A folder of images such as `workspace/data_src/`.
    Images(PathBuf),
}

impl Input {
    /// Returns the video file or image folder.
    pub fn path(&self) -> &Path {
        match self {
            Input::Video(p) | Input::Images(p) => p,
        }
    }

    /// Takes a path the user gave (`--input`): a folder is an image folder, a file a video.
    /// The path is made absolute, so what is recorded from it still names it from elsewhere.
    ///
    /// # Errors
    /// `Missing` when nothing is there, `SingleImage` for one image file.
    pub fn from_path(path: &Path) -> Result<Input, InputError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if path.is_dir() {
            Ok(Input::Images(path))
        } else if path.is_file() && is_image_file(&path) && !has_extension(&path, VIDEO_EXTENSIONS)
        {
            Err(InputError::SingleImage(path))
        } else if path.exists() {
            Ok(Input::Video(path))
        } else {
            Err(InputError::Missing(path))
        }
    }
}

/// A `--input` that cannot be read as frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Nothing is at the path.
    #[error("input {} does not exist; pass --input with a video file or an image folder", .0.display())]
    Missing(PathBuf),
    /// The path is one image, not a folder of them.
    #[error("{} is a single image; put images in a folder and pass the folder", .0.display())]
    SingleImage(PathBuf),
}

/// Errors about the workspace itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// The model name cannot be used as a folder name.
    #[error(
        "model name {name:?} is not usable as a folder name; use letters, digits, '-', '_' or '.'"
    )]
    BadModelName {
        /// The name as given.
        name: String,
    },
    /// The workspace path exists but is not a folder.
    #[error("workspace {} is not a folder; pass --workspace DIR with a folder", .0.display())]
    NotADir(PathBuf),
    /// The workspace folder could not be created.
    #[error("cannot create workspace {}; check the path and its permissions", .path.display())]
    Create {
        /// The workspace root.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Typed paths into one workspace folder.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Wraps `root` without touching the disk.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Wraps `root`, creating the folder if it does not exist yet.
    ///
    /// # Errors
    /// `NotADir` when `root` is a file, `Create` when the folder cannot be made.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, WorkspaceError> {
        let ws = Self::new(root);
        if ws.root.exists() && !ws.root.is_dir() {
            return Err(WorkspaceError::NotADir(ws.root));
        }
        std::fs::create_dir_all(&ws.root)
            .map_err(|source| WorkspaceError::Create { path: ws.root.clone(), source })?;
        Ok(ws)
    }

    /// Returns the workspace folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns whether the workspace folder exists.
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    /// Returns `data_src` or `data_dst`: the side's folder (also its image-input folder).
    pub fn side_dir(&self, side: Side) -> PathBuf {
        self.root.join(format!("data_{side}"))
    }

    /// Returns the default video input, `data_src.mp4` or `data_dst.mp4`.
    pub fn default_video(&self, side: Side) -> PathBuf {
        self.video_with_extension(side, VIDEO_EXTENSIONS[0])
    }

    fn video_with_extension(&self, side: Side, ext: &str) -> PathBuf {
        self.root.join(format!("data_{side}.{ext}"))
    }

    /// Finds the side's input: `data_<side>.<video ext>` first, else images in `data_<side>/`.
    pub fn find_input(&self, side: Side) -> Option<Input> {
        let video = VIDEO_EXTENSIONS
            .iter()
            .map(|ext| self.video_with_extension(side, ext))
            .find(|p| p.is_file());
        if let Some(video) = video {
            return Some(Input::Video(video));
        }
        let dir = self.side_dir(side);
        has_images(&dir).then_some(Input::Images(dir))
    }

    /// Returns `data_<side>/frames`: decoded frames, kept only when the user asks.
    pub fn frames_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("frames")
    }

    /// Returns `data_<side>/aligned`: the faceset.
    pub fn aligned_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("aligned")
    }

    /// Returns `data_<side>/aligned_debug`: frames with detections drawn.
    pub fn aligned_debug_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("aligned_debug")
    }

    /// Returns `data_<side>/aligned_trash`: faces that sort rejected, restorable.
    pub fn aligned_trash_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("aligned_trash")
    }

    /// Returns `data_<side>/<stage>.jsonl`, the stage's append-only log.
    pub fn stage_log(&self, stage: Stage, side: Side) -> PathBuf {
        self.side_dir(side).join(format!("{}.jsonl", stage.as_str()))
    }

    /// Returns `data_<side>/<stage>.settings.json`, the settings behind the stage's outputs.
    pub fn stage_settings(&self, stage: Stage, side: Side) -> PathBuf {
        self.side_dir(side).join(format!("{}.settings.json", stage.as_str()))
    }

    /// Returns `data_dst/merged`: the merged frames.
    pub fn merged_dir(&self) -> PathBuf {
        self.side_dir(Side::Dst).join("merged")
    }

    /// Returns `data_dst/merged_mask`: where each merged frame's blend mask goes (`--masks`).
    pub fn merged_mask_dir(&self) -> PathBuf {
        self.side_dir(Side::Dst).join("merged_mask")
    }

    /// Returns `data_dst/merged/<frame>.png`: the merged image of frame `frame`.
    pub fn merged_frame(&self, frame: &str) -> PathBuf {
        self.merged_dir().join(format!("{frame}.png"))
    }

    /// Returns `data_dst/merged_mask/<frame>.png`: the blend mask of frame `frame`.
    pub fn merged_mask(&self, frame: &str) -> PathBuf {
        self.merged_mask_dir().join(format!("{frame}.png"))
    }

    /// Returns `data_<side>/sort.history.jsonl`: every sort and undo of the faceset, for
    /// `--undo`.
    pub fn sort_history(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("sort.history.jsonl")
    }

    /// Returns `data_<side>/sort.journal.json`: the batch of renames under way (present only
    /// while a sort or undo runs, or after one was interrupted).
    pub fn sort_journal(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("sort.journal.json")
    }

    /// Returns `data_<side>/.sort-staging`: where a sort's files wait between its two phases.
    pub fn sort_staging_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join(".sort-staging")
    }

    /// Returns `data_<side>/sort.scores.jsonl`: scores and embeddings of the faces, cached by
    /// file content.
    pub fn face_scores(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("sort.scores.jsonl")
    }

    /// Returns `data_<side>/sort_sheets`: contact sheets of the faceset.
    pub fn sort_sheets_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("sort_sheets")
    }

    /// Returns `data_<side>/thumbs`: thumbnails of the side's facesets, cached by content.
    pub fn thumbs_dir(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("thumbs")
    }

    /// Returns `data_<side>/faceset.lock`: held by whatever writes the faceset (extract, sort)
    /// alone, and by whatever reads it (train, merge, eval) together.
    pub fn faceset_lock(&self, side: Side) -> PathBuf {
        self.side_dir(side).join("faceset.lock")
    }

    /// Returns `data_dst/merge.lock`: held by `dfl merge` while it writes the merged frames.
    pub fn merge_lock(&self) -> PathBuf {
        self.side_dir(Side::Dst).join("merge.lock")
    }

    /// Returns `data_dst/merge.config.json`: the merge settings chosen for the clip (a default
    /// and per-scene settings), which `dfl merge` uses when no `--config` is given and the
    /// studio's Merge page writes.
    pub fn merge_config(&self) -> PathBuf {
        self.side_dir(Side::Dst).join("merge.config.json")
    }

    /// Returns `eval`: where `dfl eval` writes its report.
    pub fn eval_dir(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// Returns `path` as it is best saved in a stage's settings: relative to the workspace
    /// when it is inside it (so a moved or renamed workspace still matches), else absolute.
    pub fn portable(&self, path: &Path) -> PathBuf {
        let absolute = |p: &Path| {
            p.canonicalize().unwrap_or_else(|_| std::path::absolute(p).unwrap_or(p.to_owned()))
        };
        let (path, root) = (absolute(path), absolute(&self.root));
        match path.strip_prefix(&root) {
            Ok(inside) => inside.to_owned(),
            Err(_) => path,
        }
    }

    /// Returns `model`: the folder holding every trained model.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("model")
    }

    /// Returns `model/<name>` for a model name that is a plain folder name.
    ///
    /// # Errors
    /// `BadModelName` for an empty name, a name with a path separator, or `.`/`..`.
    pub fn model_dir(&self, name: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.models_dir().join(plain_name(name)?))
    }

    /// Returns `xseg`: the folder holding every XSeg model.
    pub fn xseg_models_dir(&self) -> PathBuf {
        self.root.join("xseg")
    }

    /// Returns `xseg/<name>` for an XSeg model name that is a plain folder name.
    ///
    /// # Errors
    /// As [`Workspace::model_dir`].
    pub fn xseg_dir(&self, name: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.xseg_models_dir().join(plain_name(name)?))
    }

    /// Returns `result.mp4`: the merged video with dst's sound.
    pub fn result_video(&self) -> PathBuf {
        self.root.join("result.mp4")
    }
}

/// Returns `name` when it is a plain folder name: not empty, not `.`/`..`, only ASCII letters,
/// digits and `-_.`.
fn plain_name(name: &str) -> Result<&str, WorkspaceError> {
    let is_plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if is_plain { Ok(name) } else { Err(WorkspaceError::BadModelName { name: name.to_owned() }) }
}

/// Returns whether `path` has one of `extensions` (compared in lower case).
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

/// Returns whether `path` is an image file by its name (temporary `*.tmp` files are not).
pub fn is_image_file(path: &Path) -> bool {
    has_extension(path, IMAGE_EXTENSIONS)
}

fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_file()) && is_image_file(&e.path()))
    })
}

/// Counts the image files directly in `dir` (0 when it does not exist).
pub fn count_images(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && is_image_file(&e.path()))
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_dfl_layout() {
        let ws = Workspace::new("/w");
        assert_eq!(ws.side_dir(Side::Src), Path::new("/w/data_src"));
        assert_eq!(ws.default_video(Side::Dst), Path::new("/w/data_dst.mp4"));
        assert_eq!(ws.aligned_dir(Side::Src), Path::new("/w/data_src/aligned"));
        assert_eq!(ws.aligned_debug_dir(Side::Dst), Path::new("/w/data_dst/aligned_debug"));
        assert_eq!(ws.aligned_trash_dir(Side::Src), Path::new("/w/data_src/aligned_trash"));
        assert_eq!(ws.thumbs_dir(Side::Dst), Path::new("/w/data_dst/thumbs"));
        assert_eq!(ws.frames_dir(Side::Src), Path::new("/w/data_src/frames"));
        assert_eq!(ws.stage_log(Stage::Extract, Side::Src), Path::new("/w/data_src/extract.jsonl"));
        assert_eq!(
            ws.stage_settings(Stage::Merge, Side::Dst),
            Path::new("/w/data_dst/merge.settings.json")
        );
        assert_eq!(ws.merged_dir(), Path::new("/w/data_dst/merged"));
        assert_eq!(ws.merged_frame("00007"), Path::new("/w/data_dst/merged/00007.png"));
        assert_eq!(ws.merged_mask("00007"), Path::new("/w/data_dst/merged_mask/00007.png"));
        assert_eq!(ws.sort_history(Side::Src), Path::new("/w/data_src/sort.history.jsonl"));
        assert_eq!(ws.sort_journal(Side::Dst), Path::new("/w/data_dst/sort.journal.json"));
        assert_eq!(ws.face_scores(Side::Src), Path::new("/w/data_src/sort.scores.jsonl"));
        assert_eq!(ws.sort_sheets_dir(Side::Src), Path::new("/w/data_src/sort_sheets"));
        assert_eq!(ws.eval_dir(), Path::new("/w/eval"));
        assert_eq!(ws.faceset_lock(Side::Src), Path::new("/w/data_src/faceset.lock"));
        assert_eq!(ws.merge_lock(), Path::new("/w/data_dst/merge.lock"));
        assert_eq!(ws.model_dir("df128").unwrap(), Path::new("/w/model/df128"));
        assert_eq!(ws.result_video(), Path::new("/w/result.mp4"));
    }

    #[test]
    fn model_names_cannot_escape_the_model_folder() {
        let ws = Workspace::new("/w");
        for bad in ["", ".", "..", "../x", "a/b", "a b", "/abs"] {
            assert!(ws.model_dir(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(ws.model_dir("liae-ud_256.v2").is_ok());
    }

    #[test]
    fn input_prefers_a_video_then_an_image_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        assert_eq!(ws.find_input(Side::Src), None);

        std::fs::create_dir_all(ws.side_dir(Side::Src)).unwrap();
        std::fs::write(ws.side_dir(Side::Src).join("notes.txt"), "x").unwrap();
        assert_eq!(ws.find_input(Side::Src), None, "a folder without images is no input");

        std::fs::write(ws.side_dir(Side::Src).join("00001.PNG"), "x").unwrap();
        assert_eq!(ws.find_input(Side::Src), Some(Input::Images(ws.side_dir(Side::Src))));

        let mkv = tmp.path().join("data_src.mkv");
        std::fs::write(&mkv, "x").unwrap();
        assert_eq!(ws.find_input(Side::Src), Some(Input::Video(mkv)));
        assert_eq!(ws.find_input(Side::Dst), None);
    }

    #[test]
    fn saved_paths_inside_the_workspace_survive_moving_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("data_src.mp4"), b"x").unwrap();
        let saved = Workspace::new(&a).portable(&a.join("data_src.mp4"));
        assert_eq!(saved, Path::new("data_src.mp4"));
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(Workspace::new(&b).portable(&b.join("data_src.mp4")), saved);
        let outside = tmp.path().join("clip.mp4");
        std::fs::write(&outside, b"x").unwrap();
        assert_eq!(Workspace::new(&b).portable(&outside), outside.canonicalize().unwrap());
    }

    #[test]
    fn an_input_path_is_a_folder_of_images_or_a_video() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(Input::from_path(tmp.path()), Ok(Input::Images(tmp.path().to_owned())));
        let clip = tmp.path().join("clip.mkv");
        std::fs::write(&clip, b"x").unwrap();
        assert_eq!(Input::from_path(&clip), Ok(Input::Video(clip)));
        let photo = tmp.path().join("me.jpg");
        std::fs::write(&photo, b"x").unwrap();
        assert!(matches!(Input::from_path(&photo), Err(InputError::SingleImage(_))));
        let err = Input::from_path(&tmp.path().join("nope.mp4")).unwrap_err().to_string();
        assert!(err.contains("nope.mp4") && err.contains("--input"), "{err}");
    }

    #[test]
    fn counts_only_images() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["a.jpg", "b.png", "c.jpg.tmp", "d.txt"] {
            std::fs::write(tmp.path().join(name), "x").unwrap();
        }
        assert_eq!(count_images(tmp.path()), 2);
        assert_eq!(count_images(&tmp.path().join("missing")), 0);
    }
}
