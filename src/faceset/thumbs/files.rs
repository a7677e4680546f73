//! The cache's files on disk: each written under a name unique to its writer and renamed into
//! place, and pruned when no face uses them any more.

use std::collections::HashSet;
use std::fs::{DirEntry, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{PruneReport, THUMB_EXT, index::is_content_key};
use crate::atomic::TMP_SUFFIX;

/// A temporary file older than this is a killed writer's leftover; [`super::ThumbCache::prune`]
/// removes it (a younger one may still be written).
pub(super) const STALE_TMP_SECS: u64 = 3600;

/// Writes `bytes` to `path` through a temporary name unique to this process and thread, then
/// renames it into place: two writers never share a temporary file (as `atomic::write_atomic`'s
/// one `<name>.tmp` would have them), and a reader sees the old file or a whole new one.
/// `is_durable` syncs the data before the rename.
pub(super) fn write_replacing(path: &Path, bytes: &[u8], is_durable: bool) -> io::Result<()> {
    let tmp = unique_tmp_path(path);
    let write = || -> io::Result<()> {
        let mut file = match OpenOptions::new().write(true).create(true).truncate(true).open(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?
            }
            other => other?,
        };
        file.write_all(bytes)?;
        if is_durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<path>.<pid>-<thread>.tmp`: one writer's temporary name for `path`.
fn unique_tmp_path(path: &Path) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}-{thread}{TMP_SUFFIX}", std::process::id()));
    PathBuf::from(name)
}

/// The folders directly in `dir`.
pub(super) fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let is_dir = |e: &DirEntry| e.file_type().is_ok_and(|t| t.is_dir());
    entries.flatten().filter(is_dir).map(|e| e.path()).collect()
}

/// Removes from `dir` the thumbnails whose key is not in `used`, and stale temporary files;
/// other files are not the cache's and are left alone.
pub(super) fn prune_dir(dir: &Path, used: &HashSet<String>, report: &mut PruneReport) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let stale = SystemTime::now().checked_sub(Duration::from_secs(STALE_TMP_SECS));
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        let key = name.strip_suffix(THUMB_EXT).and_then(|n| n.strip_suffix('.'));
        let is_unused = key.is_some_and(|k| is_content_key(k) && !used.contains(k));
        let is_stale_tmp = name.ends_with(TMP_SUFFIX)
            && meta.modified().ok().zip(stale).is_some_and(|(m, stale)| m < stale);
        if meta.is_file()
            && (is_unused || is_stale_tmp)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            report.removed += 1;
            report.bytes += meta.len();
        }
    }
}
