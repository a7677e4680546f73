//! Append-only JSON-lines logs: one line per finished item, written after the item's outputs
//! exist, so a re-run trusts the log to skip finished work.
//!
//! A crash in the middle of an append leaves a torn last line. Readers skip lines that do not
//! parse (and say how many), and the next append starts on a fresh line, so one torn entry never
//! hides the entries after it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of reading or appending a stage log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageLogError {
    /// The log could not be opened, read or written.
    #[error("cannot access stage log {}; check its permissions or move it away", .path.display())]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// An open stage log that entries are appended to.
#[derive(Debug)]
pub struct StageLog {
    path: PathBuf,
    file: File,
}

/// The entries read back from a log.
#[derive(Debug)]
pub struct LogEntries<T> {
    /// The entries that parsed, in file order.
    pub entries: Vec<T>,
    /// Lines that did not parse (a torn last line after a crash, or hand edits).
    pub bad_lines: usize,
}

/// Reads the finished entries of a resumable stage's log after its settings were checked.
///
/// When `check` says the settings were replaced (`--force`), every item is redone: the old log
/// is kept beside as `<log>.replaced`, not deleted, and `redo` says what happens ("re-extracting
/// every frame"). Unreadable lines are reported and their items redone.
///
/// # Errors
/// `Io` when the log cannot be set aside or read.
pub fn resume_entries<T: DeserializeOwned>(
    path: &Path,
    check: &crate::settings::SettingsCheck,
    redo: &str,
) -> Result<Vec<T>, StageLogError> {
    if let crate::settings::SettingsCheck::Replaced(changes) = check {
        log::warn!("settings changed ({}): {redo}", changes.join(", "));
        let mut old = path.as_os_str().to_owned();
        old.push(".replaced");
        if path.exists() {
            std::fs::rename(path, &old)
                .map_err(|source| StageLogError::Io { path: path.to_owned(), source })?;
        }
    }
    let entries = StageLog::read::<T>(path)?;
    if entries.bad_lines > 0 {
        log::warn!(
            "{}: {} unreadable line(s) ignored; those frames are redone",
            path.display(),
            entries.bad_lines
        );
    }
    Ok(entries.entries)
}

impl StageLog {
    /// Opens `path` for appending, creating it (and its folder) if needed.
    ///
    /// # Errors
    /// `Io` when the file cannot be opened or repaired.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StageLogError> {
        let path = path.into();
        let io_err = |source| StageLogError::Io { path: path.clone(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut file =
            OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(io_err)?;
        if ends_without_newline(&mut file).map_err(io_err)? {
            file.write_all(b"\n").map_err(io_err)?;
        }
        Ok(Self { path, file })
    }

    /// Returns the log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as a single JSON line and flushes it to the OS.
    ///
    /// # Errors
    /// `Io` when the line cannot be written.
    pub fn append<T: Serialize>(&mut self, entry: &T) -> Result<(), StageLogError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| StageLogError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        // One write call per line: appends from one process never interleave inside a line.
        self.file
            .write_all(&line)
            .map_err(|source| StageLogError::Io { path: self.path.clone(), source })
    }

    /// Reads every entry of the log at `path`; a missing file has no entries.
    ///
    /// # Errors
    /// `Io` when the file exists but cannot be read.
    pub fn read<T: DeserializeOwned>(path: &Path) -> Result<LogEntries<T>, StageLogError> {
        let io_err = |source| StageLogError::Io { path: path.to_owned(), source };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(LogEntries { entries: Vec::new(), bad_lines: 0 });
            }
            Err(e) => return Err(io_err(e)),
        };
        let mut entries = Vec::new();
        let mut bad_lines = 0;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io_err)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(entry) => entries.push(entry),
                Err(_) => bad_lines += 1,
            }
        }
        Ok(LogEntries { entries, bad_lines })
    }
}

fn ends_without_newline(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Frame {
        frame: String,
        faces: u32,
    }

    fn frame(name: &str, faces: u32) -> Frame {
        Frame { frame: name.into(), faces }
    }

    #[test]
    fn appends_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data_src/extract.jsonl");
        StageLog::open(&path).unwrap().append(&frame("00001", 1)).unwrap();
        StageLog::open(&path).unwrap().append(&frame("00002", 0)).unwrap();
        let read = StageLog::read::<Frame>(&path).unwrap();
        assert_eq!(read.entries, vec![frame("00001", 1), frame("00002", 0)]);
        assert_eq!(read.bad_lines, 0);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_later_appends_still_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("extract.jsonl");
        StageLog::open(&path).unwrap().append(&frame("00001", 1)).unwrap();
        // A crash half-way through the second append.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"frame\":\"000")
            .unwrap();

        StageLog::open(&path).unwrap().append(&frame("00003", 2)).unwrap();
        let read = StageLog::read::<Frame>(&path).unwrap();
        assert_eq!(read.entries, vec![frame("00001", 1), frame("00003", 2)]);
        assert_eq!(read.bad_lines, 1);
    }

    #[test]
    fn a_missing_log_is_empty() {
        let read = StageLog::read::<Frame>(Path::new("/nonexistent/x.jsonl")).unwrap();
        assert!(read.entries.is_empty());
    }
}
