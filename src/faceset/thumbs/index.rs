//! The faceset folder as its listing shows it, and the index that maps each listed face file
//! to its content key without reading it: a face whose name, size, modification time and inode
//! are as recorded has the recorded key, and so has a renamed one (a rename keeps the inode,
//! size and time).

use std::collections::HashMap;
use std::fs::{DirEntry, Metadata};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ThumbError;
use crate::faceset::FacesetError;
use crate::workspace::is_image_file;

/// A face modified less than this long ago is read for its key every time: a file system's
/// clock ticks coarsely (a few ms on Linux), so two writes in one tick share a time.
pub const RACY_SECS: u64 = 2;
/// Bumped when the index format changes: an older index is then rebuilt.
pub(super) const INDEX_VERSION: u32 = 1;
/// The suffix of index files, after the faceset folder's name.
pub(super) const INDEX_SUFFIX: &str = ".index.json";

/// A face file as the folder's listing shows it, without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaceFile {
    /// The file name in the faceset folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, ns since the Unix epoch (0 when the system has none).
    pub mtime_ns: u64,
    /// Its inode number (0 where the system has none): kept by a rename.
    pub inode: u64,
}

impl FaceFile {
    pub(super) fn new(name: String, meta: &Metadata) -> Self {
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let mtime_ns = mtime.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self { name, size: meta.len(), mtime_ns, inode: inode(meta) }
    }

    /// Whether the file changed so recently that its time may not tell two writes apart.
    pub(super) fn is_racy(&self, now: SystemTime) -> bool {
        let settled = now.checked_sub(Duration::from_secs(RACY_SECS)).unwrap_or(UNIX_EPOCH);
        let settled_ns = settled.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        u128::from(self.mtime_ns) >= settled_ns
    }
}

#[cfg(unix)]
fn inode(meta: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &Metadata) -> u64 {
    0
}

/// Lists the face files directly in `dir` by name, from the folder's listing and one `stat`
/// each (no file is read): files with an image extension (`*.tmp` files being written,
/// subfolders, other files and names that are not UTF-8 are not faces).
///
/// # Errors
/// `Missing` when `dir` does not exist, `List` when it cannot be listed.
pub fn list_faces(dir: &Path) -> Result<Vec<FaceFile>, ThumbError> {
    let list_err = |source| FacesetError::List { dir: dir.to_owned(), source };
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FacesetError::Missing(dir.to_owned()),
        _ => list_err(e),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        if let Some(file) = face_file(&entry.map_err(list_err)?) {
            files.push(file);
        }
    }
    files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The entry as a face file, if it is one (and still there for its `stat`).
fn face_file(entry: &DirEntry) -> Option<FaceFile> {
    let name = entry.file_name().into_string().ok()?;
    let is_file = entry.file_type().is_ok_and(|t| t.is_file());
    if !is_file || !is_image_file(Path::new(&name)) {
        return None;
    }
    Some(FaceFile::new(name, &entry.metadata().ok()?))
}

/// One line of the index: a face file as listed, and its content key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IndexEntry {
    /// The face file as listed.
    #[serde(flatten)]
    pub file: FaceFile,
    /// Its content key.
    pub key: String,
}

/// The index file.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IndexFile {
    /// [`INDEX_VERSION`] when written.
    pub version: u32,
    /// Every face, by name.
    pub faces: Vec<IndexEntry>,
}

/// The index in memory: by name, and by (inode, size, time) for renamed files.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Index {
    /// The entries by file name.
    pub by_name: HashMap<String, IndexEntry>,
    /// The keys by (inode, size, time).
    pub by_inode: HashMap<(u64, u64, u64), String>,
    /// Whether it changed since it was read or written.
    pub is_dirty: bool,
}

impl Index {
    /// The index of `entries`.
    pub(super) fn from_entries(entries: impl IntoIterator<Item = IndexEntry>) -> Self {
        let mut index = Index::default();
        for entry in entries {
            index.insert(entry);
        }
        index
    }

    /// Adds or replaces the entry of a face.
    pub(super) fn insert(&mut self, entry: IndexEntry) {
        let f = &entry.file;
        if f.inode != 0 {
            self.by_inode.insert((f.inode, f.size, f.mtime_ns), entry.key.clone());
        }
        self.by_name.insert(f.name.clone(), entry);
    }

    /// The key of `f` if the index knows it: same name, size, time and inode, or a renamed file
    /// (same inode, size and time).
    pub(super) fn key_of(&self, f: &FaceFile) -> Option<&str> {
        let same = |e: &&IndexEntry| {
            (e.file.size, e.file.mtime_ns, e.file.inode) == (f.size, f.mtime_ns, f.inode)
        };
        if let Some(entry) = self.by_name.get(&f.name).filter(same) {
            return Some(&entry.key);
        }
        let renamed = (f.inode != 0).then(|| self.by_inode.get(&(f.inode, f.size, f.mtime_ns)));
        renamed.flatten().map(String::as_str)
    }

    /// Reads an index file; `None` when it is missing, damaged or of another version.
    pub(super) fn read(path: &Path) -> Option<Vec<IndexEntry>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("cannot read {}: {e}; it is rebuilt", path.display());
                return None;
            }
        };
        let file = serde_json::from_slice::<IndexFile>(&bytes).ok();
        let valid = file.filter(|f| f.version == INDEX_VERSION && f.faces.iter().all(is_valid));
        if valid.is_none() {
            log::warn!("{} is damaged or from another version; it is rebuilt", path.display());
        }
        valid.map(|f| f.faces)
    }
}

/// Whether an index entry names a plain file and a well-formed key (both become paths).
fn is_valid(entry: &IndexEntry) -> bool {
    is_content_key(&entry.key) && is_plain_name(&entry.file.name)
}

/// Whether `key` is what [`content_key`](crate::faceset::content_key) returns: 32 lower-case hex digits.
pub(super) fn is_content_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is one file name (no folder, not `.` or `..`).
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}
