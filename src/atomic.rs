//! Crash-safe file writes: write a temporary file beside the target, then rename it into place.
//!
//! A reader sees either the old file or the complete new one, never a half-written file: a crash
//! (power loss, `kill -9`) before the rename leaves the old file as it was plus a stale
//! `<name>.tmp`, which the next write of the same file overwrites and every stage ignores.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The suffix of temporary files; stages skip files that end with it.
pub const TMP_SUFFIX: &str = ".tmp";

/// A file being written under a temporary name; [`AtomicFile::commit`] puts it in place.
///
/// Dropping it without `commit` (an error or a panic part-way) removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates `<target>.tmp` (truncating a stale one), making the parent folder if needed.
    ///
    /// # Errors
    /// The OS error of creating the folder or the file.
    pub fn create(target: impl Into<PathBuf>) -> io::Result<Self> {
        let target = target.into();
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = tmp_path(&target);
        let file = File::create(&tmp)?;
        Ok(Self { target, tmp, writer: Some(BufWriter::new(file)) })
    }

    /// Returns the final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Returns the temporary path being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, syncs and renames the temporary file onto the target.
    ///
    /// # Errors
    /// The OS error of flushing, syncing or renaming; the target is then unchanged.
    pub fn commit(mut self) -> io::Result<()> {
        let writer = self.writer.take().expect("invariant: the writer is present until commit");
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        sync_parent(&self.target);
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().expect("invariant: the writer is present until commit").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("invariant: the writer is present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Returns `<path>.tmp`, the temporary name used while `path` is written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Writes `bytes` to `path` atomically.
///
/// # Errors
/// The OS error; `path` is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically.
///
/// # Errors
/// The OS error; `path` is then unchanged.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Makes a rename durable by syncing the folder that holds it (best effort: some file systems
/// refuse to open folders for syncing, and the rename itself is already atomic).
fn sync_parent(path: &Path) {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(Ok(dir)) = parent.map(File::open) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/settings.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        write_atomic(&path, b"old state").unwrap();

        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half of the new st").unwrap();
        file.flush().unwrap();
        // A crash: no commit, no destructor.
        std::mem::forget(file);

        assert_eq!(std::fs::read(&path).unwrap(), b"old state");
        assert_eq!(std::fs::read(tmp_path(&path)).unwrap(), b"half of the new st");

        // The next run overwrites the stale temporary and lands the complete file.
        write_atomic(&path, b"new state").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new state");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn an_error_part_way_removes_the_temporary_and_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("face.jpg");
        write_atomic(&path, b"old").unwrap();
        {
            let mut file = AtomicFile::create(&path).unwrap();
            file.write_all(b"partial").unwrap();
            // Dropped without commit, as when `?` returns early.
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn json_is_pretty_with_a_final_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.json");
        write_json_atomic(&path, &serde_json::json!({"size": 256})).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"size\": 256\n}\n");
    }
}
