//! Stage settings saved beside the outputs they produced, so a resumed run with different
//! settings refuses to mix two kinds of output unless the user passes `--force`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::atomic::write_json_atomic;

/// Errors of checking a stage's saved settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The saved settings differ from this run's.
    #[error(
        "{} holds outputs made with other settings ({}); rerun with the saved settings, \
         or pass --force to continue with the new ones",
        .path.display(), .changes.join(", ")
    )]
    Mismatch {
        /// The saved settings file.
        path: PathBuf,
        /// One `name: saved → now` entry per changed setting.
        changes: Vec<String>,
    },
    /// The saved settings file is not readable JSON.
    #[error("cannot read settings {}: {reason}; delete it if the outputs beside it are yours to keep, or pass --force", .path.display())]
    Corrupt {
        /// The saved settings file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The settings file could not be written.
    #[error("cannot write settings {}; check the folder's permissions", .path.display())]
    Write {
        /// The settings file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What [`check_settings`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum SettingsCheck {
    /// No settings were saved yet; this run's are now saved.
    Saved,
    /// The saved settings equal this run's.
    Same,
    /// The settings differed and `force` replaced them; one entry per change.
    Replaced(Vec<String>),
}

/// Compares `current` with the settings saved at `path`, saving them when there are none.
///
/// # Errors
/// `Mismatch` when they differ and `force` is false; `Corrupt` for an unreadable file (unless
/// `force`); `Write` when saving fails.
pub fn check_settings<T: Serialize>(
    path: &Path,
    current: &T,
    force: bool,
) -> Result<SettingsCheck, SettingsError> {
    let current = serde_json::to_value(current)
        .map_err(|e| SettingsError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    let saved = match std::fs::read(path) {
        Ok(bytes) => Some(serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(e.to_string())),
    };
    let outcome = match saved {
        None => SettingsCheck::Saved,
        Some(Ok(saved)) if saved == current => return Ok(SettingsCheck::Same),
        Some(Ok(saved)) => {
            let changes = describe_changes(&saved, &current);
            if !force {
                return Err(SettingsError::Mismatch { path: path.to_owned(), changes });
            }
            SettingsCheck::Replaced(changes)
        }
        Some(Err(reason)) if !force => {
            return Err(SettingsError::Corrupt { path: path.to_owned(), reason });
        }
        Some(Err(reason)) => SettingsCheck::Replaced(vec![format!("unreadable file ({reason})")]),
    };
    write_json_atomic(path, &current)
        .map_err(|source| SettingsError::Write { path: path.to_owned(), source })?;
    Ok(outcome)
}

/// Lists the top-level keys whose values differ, as `key: saved → now`.
fn describe_changes(saved: &Value, current: &Value) -> Vec<String> {
    let (Value::Object(saved), Value::Object(current)) = (saved, current) else {
        return vec![format!("{saved} → {current}")];
    };
    let mut keys: Vec<&String> = saved.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| saved.get(*k) != current.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), Value::to_string);
            format!("{k}: {} → {}", show(saved.get(k)), show(current.get(k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Extract {
        face_type: &'static str,
        size: u32,
    }

    #[test]
    fn first_run_saves_then_same_settings_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("extract.settings.json");
        let s = Extract { face_type: "whole_face", size: 256 };
        assert_eq!(check_settings(&path, &s, false).unwrap(), SettingsCheck::Saved);
        assert_eq!(check_settings(&path, &s, false).unwrap(), SettingsCheck::Same);
    }

    #[test]
    fn changed_settings_are_refused_with_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("extract.settings.json");
        check_settings(&path, &Extract { face_type: "whole_face", size: 256 }, false).unwrap();
        let before = std::fs::read(&path).unwrap();

        let err = check_settings(&path, &Extract { face_type: "whole_face", size: 512 }, false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("size: 256 → 512"), "{msg}");
        assert!(msg.contains("--force"), "{msg}");
        assert!(!msg.contains("face_type"), "unchanged settings are not listed: {msg}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "a refusal changes nothing");
    }

    #[test]
    fn force_replaces_the_saved_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.json");
        check_settings(&path, &Extract { face_type: "full", size: 256 }, false).unwrap();
        let new = Extract { face_type: "head", size: 256 };
        let check = check_settings(&path, &new, true).unwrap();
        assert_eq!(check, SettingsCheck::Replaced(vec![r#"face_type: "full" → "head""#.into()]));
        assert_eq!(check_settings(&path, &new, false).unwrap(), SettingsCheck::Same);
    }

    #[test]
    fn a_corrupt_settings_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = check_settings(&path, &Extract { face_type: "full", size: 1 }, false);
        assert!(matches!(err, Err(SettingsError::Corrupt { .. })));
        assert!(check_settings(&path, &Extract { face_type: "full", size: 1 }, true).is_ok());
    }
}
