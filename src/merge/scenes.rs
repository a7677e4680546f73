//! Per-scene merge settings: the default [`MergeConfig`] of a clip and frame ranges that are
//! merged with settings of their own, saved as `data_dst/merge.config.json`
//! ([`Workspace::merge_config`]).
//!
//! The file, as the studio's Merge page writes it (`dfl merge` reads it when no `--config` is
//! given):
//!
//! ```json
//! {
//!   "default": { "mode": "overlay", "blur": 40, ... },
//!   "scenes": [
//!     { "frames": "120..240", "settings": { "mode": "seamless", "erode": 20, ... } }
//!   ]
//! }
//! ```
//!
//! `frames` is a 1-based range as `--frames` takes it (`A..B`, `A..`, `..B` or `N`); scenes may
//! not share a frame. Keys a scene's `settings` leave out are the default's, so a hand-written
//! scene can name only what differs; the studio writes every key.
//!
//! [`Workspace::merge_config`]: crate::workspace::Workspace::merge_config

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::MergeConfig;
use super::options::FrameRange;

/// Frames merged with their own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The scene's frames (1-based, inclusive).
    pub frames: FrameRange,
    /// Their settings, complete.
    pub settings: MergeConfig,
}

/// Everything that decides how each frame of a clip is merged: the default settings and the
/// scenes that override them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeSettings {
    /// The settings of every frame outside the scenes.
    pub default: MergeConfig,
    /// Frame ranges with settings of their own, in file order, disjoint.
    pub scenes: Vec<Scene>,
}

/// Why merge settings (a config file's content, or the studio's request) are unusable. Scenes
/// are numbered from 1, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenesError {
    /// Not JSON, or not the file's shape.
    #[error("not a merge config ({0})")]
    Json(String),
    /// The default settings are unusable.
    #[error("default settings: {0}")]
    Default(String),
    /// A scene's range or settings are unusable.
    #[error("scene {number} (frames {frames}): {problem}")]
    Scene {
        /// The scene's number (1-based).
        number: usize,
        /// Its range as written.
        frames: String,
        /// What is wrong.
        problem: String,
    },
    /// Two scenes share frames.
    #[error(
        "scene {number} (frames {frames}) overlaps scene {other} (frames {other_frames}); give every frame one scene at most"
    )]
    Overlap {
        /// The later scene's number.
        number: usize,
        /// Its range.
        frames: String,
        /// The earlier scene's number.
        other: usize,
        /// Its range.
        other_frames: String,
    },
}

/// A merge config file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file's content is unusable.
    #[error("{}: {source}; fix the file or delete it (the studio's Merge page writes it)", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ScenesError,
    },
    /// The file cannot be read or written.
    #[error("cannot {action} {}: {source}; check the file and its folder's permissions", .path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The file's shape before the scenes' settings are completed from the default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    default: Map<String, Value>,
    #[serde(default)]
    scenes: Vec<RawScene>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScene {
    frames: String,
    #[serde(default)]
    settings: Map<String, Value>,
}

/// A scene as written: its range as text.
#[derive(Serialize)]
struct SceneOut<'a> {
    frames: String,
    settings: &'a MergeConfig,
}

impl Serialize for Scene {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SceneOut { frames: self.frames.to_string(), settings: &self.settings }.serialize(s)
    }
}

impl Serialize for MergeSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            default: &'a MergeConfig,
            scenes: &'a [Scene],
        }
        Out { default: &self.default, scenes: &self.scenes }.serialize(s)
    }
}

impl MergeSettings {
    /// The same settings for every frame.
    pub fn uniform(default: MergeConfig) -> Self {
        Self { default, scenes: Vec::new() }
    }

    /// Returns the settings of the 0-based frame `index`: its scene's, else the default.
    pub fn config_of(&self, index: usize) -> &MergeConfig {
        self.scene_of(index).map_or(&self.default, |(_, scene)| &scene.settings)
    }

    /// Returns the scene holding the 0-based frame `index`, with its position in
    /// [`MergeSettings::scenes`].
    pub fn scene_of(&self, index: usize) -> Option<(usize, &Scene)> {
        self.scenes.iter().enumerate().find(|(_, s)| s.frames.contains(index))
    }

    /// Returns every distinct set of settings in use: the default, then each scene's.
    pub fn configs(&self) -> impl Iterator<Item = &MergeConfig> {
        std::iter::once(&self.default).chain(self.scenes.iter().map(|s| &s.settings))
    }

    /// Returns the landmark-smoothing radii in use (`smooth` of the default and the scenes).
    pub fn smooth_radii(&self) -> BTreeSet<u32> {
        self.configs().map(|c| c.smooth).collect()
    }

    /// Checks every setting's range and that no two scenes share a frame.
    ///
    /// # Errors
    /// The first problem, naming the scene.
    pub fn validate(&self) -> Result<(), ScenesError> {
        self.default.validate().map_err(|e| ScenesError::Default(e.to_string()))?;
        for (i, scene) in self.scenes.iter().enumerate() {
            scene.settings.validate().map_err(|e| ScenesError::Scene {
                number: i + 1,
                frames: scene.frames.to_string(),
                problem: e.to_string(),
            })?;
            if let Some(j) = self.scenes[..i].iter().position(|s| s.frames.overlaps(&scene.frames))
            {
                return Err(ScenesError::Overlap {
                    number: i + 1,
                    frames: scene.frames.to_string(),
                    other: j + 1,
                    other_frames: self.scenes[j].frames.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Reads settings from the file's JSON and validates them. A scene's missing keys are the
    /// default's.
    ///
    /// # Errors
    /// [`ScenesError`] naming the first problem.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ScenesError> {
        let raw: RawSettings =
            serde_json::from_slice(bytes).map_err(|e| ScenesError::Json(e.to_string()))?;
        let default: MergeConfig = serde_json::from_value(Value::Object(raw.default))
            .map_err(|e| ScenesError::Default(e.to_string()))?;
        let default_keys = match serde_json::to_value(&default) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut scenes = Vec::with_capacity(raw.scenes.len());
        for (i, raw) in raw.scenes.into_iter().enumerate() {
            let problem = |problem: String| ScenesError::Scene {
                number: i + 1,
                frames: raw.frames.clone(),
                problem,
            };
            let frames: FrameRange = raw.frames.parse().map_err(problem)?;
            let mut keys = default_keys.clone();
            keys.extend(raw.settings);
            let settings: MergeConfig =
                serde_json::from_value(Value::Object(keys)).map_err(|e| problem(e.to_string()))?;
            scenes.push(Scene { frames, settings });
        }
        let settings = Self { default, scenes };
        settings.validate()?;
        Ok(settings)
    }

    /// Reads the merge config file at `path`; `None` when there is none.
    ///
    /// # Errors
    /// `Io` when it cannot be read, `Invalid` naming the file and the problem.
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigFileError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigFileError::Io { action: "read", path: path.to_owned(), source });
            }
        };
        Self::from_json(&bytes)
            .map(Some)
            .map_err(|source| ConfigFileError::Invalid { path: path.to_owned(), source })
    }

    /// Validates the settings and writes them to `path` atomically (a reader sees the old file
    /// or the new one, never a mix).
    ///
    /// # Errors
    /// `Invalid` for settings out of range or overlapping scenes (nothing is written); `Io`.
    pub fn save(&self, path: &Path) -> Result<(), ConfigFileError> {
        self.validate()
            .map_err(|source| ConfigFileError::Invalid { path: path.to_owned(), source })?;
        crate::atomic::write_json_atomic(path, self).map_err(|source| ConfigFileError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::config::BlendMode;

    #[test]
    fn scenes_read_back_and_missing_keys_come_from_the_default() {
        let json = br#"{
            "default": {"blur": 40, "erode": 10},
            "scenes": [
                {"frames": "5..9", "settings": {"mode": "original"}},
                {"frames": "12", "settings": {"blur": 0, "smooth": 2}},
                {"frames": "30.."}
            ]
        }"#;
        let s = MergeSettings::from_json(json).unwrap();
        assert_eq!(s.default.blur, 40);
        assert_eq!(s.scenes[0].frames, FrameRange { first: Some(5), last: Some(9) });
        assert_eq!(s.scenes[0].settings.mode, BlendMode::Original);
        assert_eq!((s.scenes[0].settings.blur, s.scenes[0].settings.erode), (40, 10));
        assert_eq!(s.scenes[1].settings.blur, 0);
        assert_eq!(s.scenes[2].settings, s.default);
        // 0-based frame 4 is frame 5.
        assert_eq!(s.config_of(3), &s.default);
        assert_eq!(s.config_of(4).mode, BlendMode::Original);
        assert_eq!(s.config_of(11).smooth, 2);
        assert_eq!(s.config_of(12), &s.default);
        assert_eq!(s.config_of(1000), &s.scenes[2].settings);
        assert_eq!(s.smooth_radii().into_iter().collect::<Vec<_>>(), [0, 2]);

        // What is written reads back the same, every key spelled out.
        let written = serde_json::to_vec(&s).unwrap();
        assert_eq!(MergeSettings::from_json(&written).unwrap(), s);
        let value: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(value["scenes"][1]["frames"], "12");
        assert_eq!(value["scenes"][2]["frames"], "30..");
        assert_eq!(value["scenes"][0]["settings"]["erode"], 10);
        // An empty file object is the defaults, no scenes.
        assert_eq!(MergeSettings::from_json(b"{}").unwrap(), MergeSettings::default());
    }

    #[test]
    fn bad_files_are_refused_naming_the_scene() {
        let err = |json: &str| MergeSettings::from_json(json.as_bytes()).unwrap_err().to_string();
        let e = err(r#"{"scenes": [{"frames": "1..3"}, {"frames": "3..8"}]}"#);
        assert!(e.contains("scene 2 (frames 3..8) overlaps scene 1 (frames 1..3)"), "{e}");
        let e = err(r#"{"scenes": [{"frames": "..10"}, {"frames": "20"}, {"frames": "5.."}]}"#);
        assert!(e.contains("scene 3 (frames 5..) overlaps scene 1"), "{e}");
        let e = err(r#"{"scenes": [{"frames": "4", "settings": {"erode": 999}}]}"#);
        assert!(e.starts_with("scene 1 (frames 4): erode = 999 is outside"), "{e}");
        let e = err(r#"{"scenes": [{"frames": "9..2"}]}"#);
        assert!(e.starts_with("scene 1 (frames 9..2): `9..2` is not a frame range"), "{e}");
        let e = err(r#"{"scenes": [{"frames": "1", "settings": {"blurr": 3}}]}"#);
        assert!(e.contains("scene 1") && e.contains("blurr"), "{e}");
        let e = err(r#"{"default": {"mode": "sideways"}}"#);
        assert!(e.starts_with("default settings:") && e.contains("sideways"), "{e}");
        let e = err(r#"{"default": {"blur": -1}}"#);
        assert!(e.starts_with("default settings: blur = -1"), "{e}");
        assert!(err(r#"{"scenes": 3}"#).starts_with("not a merge config"));
        assert!(err(r#"{"defaults": {}}"#).contains("defaults"));
        assert!(err("not json").starts_with("not a merge config"));
        // Adjacent scenes share no frame.
        assert!(
            MergeSettings::from_json(br#"{"scenes": [{"frames": "1..3"}, {"frames": "4..8"}]}"#)
                .is_ok()
        );
    }

    #[test]
    fn the_file_is_written_atomically_and_a_bad_one_is_named_in_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("merge.config.json");
        assert_eq!(MergeSettings::load(&path).unwrap(), None);
        let mut s = MergeSettings::uniform(MergeConfig { blur: 12, ..MergeConfig::default() });
        s.scenes.push(Scene {
            frames: "2..3".parse().unwrap(),
            settings: MergeConfig { mode: BlendMode::Original, ..MergeConfig::default() },
        });
        s.save(&path).unwrap();
        assert_eq!(MergeSettings::load(&path).unwrap(), Some(s.clone()));

        // Overlapping scenes are not written.
        let before = std::fs::read(&path).unwrap();
        let mut bad = s.clone();
        bad.scenes.push(Scene { frames: "3".parse().unwrap(), settings: MergeConfig::default() });
        assert!(bad.save(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);

        std::fs::write(&path, br#"{"scenes": [{"frames": "2", "settings": {"blur": 500}}]}"#)
            .unwrap();
        let e = MergeSettings::load(&path).unwrap_err().to_string();
        assert!(e.contains("merge.config.json: scene 1 (frames 2): blur = 500"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
