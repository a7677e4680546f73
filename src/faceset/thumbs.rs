//! Thumbnails of a faceset, cached beside it by the faces' content, for pages of small JPEGs
//! over 10,000 faces: a listing that reads no file, a content key per face kept in an index, and
//! one thumbnail per key.
//!
//! ```text
//! data_<side>/thumbs/              Workspace::thumbs_dir
//!   aligned.index.json             aligned/'s files: (name, size, mtime, inode) -> content key
//!   aligned_trash.index.json       the same for another faceset folder sharing the cache
//!   128px_q85/<key>.jpg            one thumbnail per content key, per size and quality
//! ```
//!
//! The key is [`content_key`] of the face file's bytes, the key of the score cache too
//! ([`super::scores`]): a renamed face (sort renames) keeps its thumbnail and its scores, an
//! edited or re-extracted one gets new ones. The index spares reading the files: a face whose
//! name, size, modification time and inode are as recorded has the recorded key, and so has a
//! renamed one (a rename keeps the inode, size and time). A face modified less than
//! [`RACY_SECS`] ago is read every time and not recorded: its time may not yet tell two writes
//! apart.
//!
//! Every file is written under a name unique to its writer and renamed into place, so two
//! processes building at once replace a file with an equal one at worst (the last writer wins).
//! A missing or damaged index is rebuilt by reading the faces again, never fatal. Thumbnails are
//! not synced to disk one by one (a cache): one cut short by a power loss fails the JPEG check
//! in [`ThumbCache::get`] and is made again.

use std::collections::{HashMap, HashSet};
use std::fs::{DirEntry, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opencv::core::{Mat, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{FacesetError, content_key};
use crate::atomic::TMP_SUFFIX;
use crate::img::{ImageReadError, encode};
use crate::progress::Progress;
use crate::workspace::{Side, Workspace, is_image_file};

/// The default longest side of a thumbnail, px: a page of 10,000 faces shows ~100 at once.
pub const THUMB_PX: u32 = 128;
/// The default JPEG quality of thumbnails: ~4 KB at 128 px, no visible blocks.
pub const THUMB_QUALITY: u8 = 85;
/// The largest thumbnail side accepted (bigger is not a thumbnail).
const MAX_THUMB_PX: u32 = 1024;
/// A face modified less than this long ago is read for its key every time: a file system's
/// clock ticks coarsely (a few ms on Linux), so two writes in one tick share a time.
pub const RACY_SECS: u64 = 2;
/// A temporary file older than this is a killed writer's leftover; [`ThumbCache::prune`]
/// removes it (a younger one may still be written).
const STALE_TMP_SECS: u64 = 3600;
/// Bumped when the index format changes: an older index is then rebuilt.
const INDEX_VERSION: u32 = 1;
/// The suffix of index files, after the faceset folder's name.
const INDEX_SUFFIX: &str = ".index.json";
/// The extension of thumbnail files.
const THUMB_EXT: &str = "jpg";

/// Errors of listing a faceset and of making or serving thumbnails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbError {
    /// The faceset folder is missing or cannot be listed.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// Thumbnail options out of range.
    #[error(
        "thumbnail size {size_px} px / quality {jpeg_quality} out of range; use 1–{MAX_THUMB_PX} px and quality 1–100"
    )]
    BadOptions {
        /// The longest side asked for.
        size_px: u32,
        /// The JPEG quality asked for.
        jpeg_quality: u8,
    },
    /// A name that is not a face file directly in the faceset folder.
    #[error("{0:?} is not a face file name; use a name from the faceset's listing")]
    NotAFace(String),
    /// The face file is not there (any more).
    #[error("{} does not exist; list the faceset again", .0.display())]
    NoSuchFace(PathBuf),
    /// The face file cannot be read.
    #[error("cannot read {}: {source}; check the file's permissions", .path.display())]
    Read {
        /// The face file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The face file is not an image OpenCV decodes.
    #[error("{source}; it has no thumbnail (move it out of the faceset if it is not a face)")]
    NotAnImage {
        /// The decoder's complaint, naming the file.
        #[source]
        source: ImageReadError,
    },
    /// OpenCV could not resize or encode the thumbnail.
    #[error("cannot make the thumbnail of {}: {source}", .path.display())]
    Encode {
        /// The face file.
        path: PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// A cache file cannot be written.
    #[error("cannot write {}: {source}; check free space and permissions", .path.display())]
    Write {
        /// The cache file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The size and quality of thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbOptions {
    /// The longest side, px; smaller faces keep their size.
    pub size_px: u32,
    /// The JPEG quality, 1–100.
    pub jpeg_quality: u8,
}

impl Default for ThumbOptions {
    fn default() -> Self {
        Self { size_px: THUMB_PX, jpeg_quality: THUMB_QUALITY }
    }
}

impl ThumbOptions {
    fn check(self) -> Result<Self, ThumbError> {
        let ok =
            (1..=MAX_THUMB_PX).contains(&self.size_px) && (1..=100).contains(&self.jpeg_quality);
        let bad = ThumbError::BadOptions { size_px: self.size_px, jpeg_quality: self.jpeg_quality };
        if ok { Ok(self) } else { Err(bad) }
    }

    /// The cache's subfolder for these options, e.g. `128px_q85`.
    fn folder(self) -> String {
        format!("{}px_q{}", self.size_px, self.jpeg_quality)
    }
}

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
    fn new(name: String, meta: &Metadata) -> Self {
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let mtime_ns = mtime.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self { name, size: meta.len(), mtime_ns, inode: inode(meta) }
    }

    /// Whether the file changed so recently that its time may not tell two writes apart.
    fn is_racy(&self, now: SystemTime) -> bool {
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

/// A face of the listing with its content key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbEntry {
    /// The face file.
    #[serde(flatten)]
    pub file: FaceFile,
    /// [`content_key`] of its bytes (also the key of its cached scores); `None` when it could
    /// not be read.
    pub key: Option<String>,
    /// Whether its thumbnail is in the cache.
    pub has_thumb: bool,
}

/// A face [`ThumbCache::build`] made no thumbnail for.
#[derive(Debug)]
pub struct FailedFace {
    /// The file name in the faceset folder.
    pub name: String,
    /// Why.
    pub error: ThumbError,
}

/// What [`ThumbCache::build`] did.
#[derive(Debug, Default)]
pub struct BuildReport {
    /// Face files listed.
    pub faces: usize,
    /// Thumbnails made.
    pub built: usize,
    /// Faces read for their key (not known from the index).
    pub hashed: usize,
    /// Faces gone between the listing and their read.
    pub vanished: usize,
    /// Faces without a thumbnail (not an image, unreadable), in name order.
    pub failed: Vec<FailedFace>,
}

/// What [`ThumbCache::prune`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Thumbnails no face uses any more, and stale temporary files.
    pub removed: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One line of the index: a face file as listed, and its content key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    file: FaceFile,
    key: String,
}

/// The index file.
#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    faces: Vec<IndexEntry>,
}

/// The index in memory: by name, and by (inode, size, time) for renamed files.
#[derive(Debug, Default, PartialEq)]
struct Index {
    by_name: HashMap<String, IndexEntry>,
    by_inode: HashMap<(u64, u64, u64), String>,
    is_dirty: bool,
}

impl Index {
    fn from_entries(entries: impl IntoIterator<Item = IndexEntry>) -> Self {
        let mut index = Index::default();
        for entry in entries {
            index.insert(entry);
        }
        index
    }

    fn insert(&mut self, entry: IndexEntry) {
        let f = &entry.file;
        if f.inode != 0 {
            self.by_inode.insert((f.inode, f.size, f.mtime_ns), entry.key.clone());
        }
        self.by_name.insert(f.name.clone(), entry);
    }

    /// The key of `f` if the index knows it: same name, size, time and inode, or a renamed file
    /// (same inode, size and time).
    fn key_of(&self, f: &FaceFile) -> Option<&str> {
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
    fn read(path: &Path) -> Option<Vec<IndexEntry>> {
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

/// Whether `key` is what [`content_key`] returns: 32 lower-case hex digits.
fn is_content_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is one file name (no folder, not `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// The thumbnails of one faceset folder, cached by content in a cache folder that other
/// facesets may share. Safe to use from many threads at once.
#[derive(Debug)]
pub struct ThumbCache {
    faceset_dir: PathBuf,
    cache_dir: PathBuf,
    thumbs_dir: PathBuf,
    index_path: PathBuf,
    options: ThumbOptions,
    index: Mutex<Index>,
}

/// A face file read for its key.
struct ReadFace {
    bytes: Vec<u8>,
    /// The file as it was when read (its `stat` on the open file).
    file: FaceFile,
    key: String,
}

/// What building did with one face.
enum Outcome {
    /// The index knew its key and the thumbnail was there.
    Known(String),
    /// Read for its key; `is_built` when its thumbnail had to be made.
    Read { file: FaceFile, key: String, is_built: bool },
    /// Gone since the listing.
    Vanished,
    /// No thumbnail.
    Failed(ThumbError),
}

impl ThumbCache {
    /// Opens the cache of `faceset_dir`'s thumbnails in `cache_dir` (nothing is written yet);
    /// a missing or damaged index is started again.
    ///
    /// # Errors
    /// `BadOptions` for a size or quality out of range.
    pub fn open(
        faceset_dir: &Path,
        cache_dir: &Path,
        options: ThumbOptions,
    ) -> Result<Self, ThumbError> {
        let options = options.check()?;
        let folder = faceset_dir.file_name().and_then(|n| n.to_str()).unwrap_or("faceset");
        let index_path = cache_dir.join(format!("{folder}{INDEX_SUFFIX}"));
        let index = match Index::read(&index_path) {
            Some(entries) => Index::from_entries(entries),
            None => Index { is_dirty: true, ..Index::default() },
        };
        Ok(Self {
            faceset_dir: faceset_dir.to_owned(),
            cache_dir: cache_dir.to_owned(),
            thumbs_dir: cache_dir.join(options.folder()),
            index_path,
            options,
            index: Mutex::new(index),
        })
    }

    /// Opens the cache of a side's faceset, `data_<side>/aligned`, in `data_<side>/thumbs`.
    ///
    /// # Errors
    /// As [`ThumbCache::open`].
    pub fn for_side(ws: &Workspace, side: Side, options: ThumbOptions) -> Result<Self, ThumbError> {
        Self::open(&ws.aligned_dir(side), &ws.thumbs_dir(side), options)
    }

    /// Returns the faceset folder.
    pub fn faceset_dir(&self) -> &Path {
        &self.faceset_dir
    }

    /// Returns the path of the thumbnail of content key `key` (`None` when `key` is not a
    /// content key), whether it exists or not.
    pub fn thumb_path(&self, key: &str) -> Option<PathBuf> {
        is_content_key(key).then(|| self.thumbs_dir.join(format!("{key}.{THUMB_EXT}")))
    }

    /// Lists the faceset with each face's key and whether its thumbnail exists; faces the index
    /// does not know are read (in parallel). Saves the index when it changed.
    ///
    /// # Errors
    /// `Missing` or `List` for the faceset folder. Unreadable faces have no key.
    pub fn lookup(&self) -> Result<Vec<ThumbEntry>, ThumbError> {
        let files = list_faces(&self.faceset_dir)?;
        let known = self.known_keys(&files);
        let outcomes: Vec<Outcome> = files
            .par_iter()
            .zip(known)
            .map(|(f, known)| match known {
                Some(key) => Outcome::Known(key),
                None => match self.read_face(&f.name) {
                    Ok(face) => Outcome::Read { file: face.file, key: face.key, is_built: false },
                    Err(ThumbError::NoSuchFace(_)) => Outcome::Vanished,
                    Err(e) => Outcome::Failed(e),
                },
            })
            .collect();
        self.record(&files, &outcomes);
        let present = self.present_keys();
        let entries = files.into_iter().zip(outcomes).filter_map(|(file, outcome)| {
            let key = match outcome {
                Outcome::Known(key) | Outcome::Read { key, .. } => Some(key),
                Outcome::Failed(_) => None,
                Outcome::Vanished => return None,
            };
            let has_thumb = key.as_ref().is_some_and(|k| present.contains(k));
            Some(ThumbEntry { file, key, has_thumb })
        });
        Ok(entries.collect())
    }

    /// Makes the thumbnail of every face that has none, in parallel, and saves the index.
    /// Faces that fail (not an image, unreadable) are returned, not logged: the caller says
    /// what it means for it.
    ///
    /// # Errors
    /// `Missing` or `List` for the faceset folder, `Write` when the cache folder cannot be
    /// made.
    pub fn build(&self, progress: &dyn Progress) -> Result<BuildReport, ThumbError> {
        let files = list_faces(&self.faceset_dir)?;
        self.build_files(&files, progress)
    }

    /// [`ThumbCache::build`] over a listing made earlier.
    fn build_files(
        &self,
        files: &[FaceFile],
        progress: &dyn Progress,
    ) -> Result<BuildReport, ThumbError> {
        std::fs::create_dir_all(&self.thumbs_dir)
            .map_err(|source| ThumbError::Write { path: self.thumbs_dir.clone(), source })?;
        let known = self.known_keys(files);
        let present = self.present_keys();
        progress.set_len(files.len() as u64);
        let outcomes: Vec<Outcome> = files
            .par_iter()
            .zip(known)
            .map(|(f, known)| {
                let outcome = self.build_one(f, known, &present);
                progress.inc(1);
                outcome
            })
            .collect();
        self.record(files, &outcomes);
        Ok(build_report(files, outcomes))
    }

    /// Makes face `f`'s thumbnail unless the cache has it.
    fn build_one(&self, f: &FaceFile, known: Option<String>, present: &HashSet<String>) -> Outcome {
        if let Some(key) = known.filter(|k| present.contains(k)) {
            return Outcome::Known(key);
        }
        let face = match self.read_face(&f.name) {
            Ok(face) => face,
            Err(ThumbError::NoSuchFace(_)) => return Outcome::Vanished,
            Err(e) => return Outcome::Failed(e),
        };
        let is_built = !present.contains(&face.key);
        if is_built && let Err(e) = self.make(&face) {
            return Outcome::Failed(e);
        }
        Outcome::Read { file: face.file, key: face.key, is_built }
    }

    /// Returns the thumbnail (JPEG bytes) of face `name`, making it if it is missing or cut
    /// short. The index learns the face's key in memory; the next `lookup`, `build` or
    /// [`ThumbCache::save_index`] saves it.
    ///
    /// # Errors
    /// `NotAFace` for a name that is not a face file name (or names a link or a folder, which
    /// the listing leaves out too), `NoSuchFace` when the file is not
    /// there, `Read`, `NotAnImage`, `Encode` or `Write` when the thumbnail cannot be made.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, ThumbError> {
        if !is_plain_name(name) || !is_image_file(Path::new(name)) {
            return Err(ThumbError::NotAFace(name.to_owned()));
        }
        let path = self.faceset_dir.join(name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| read_error(&path, e))?;
        if !meta.is_file() {
            return Err(ThumbError::NotAFace(name.to_owned())); // as the listing: no links, folders
        }
        let listed = FaceFile::new(name.to_owned(), &meta);
        if let Some(thumb) = self.known_keys(&[listed]).remove(0).and_then(|k| self.read_thumb(&k))
        {
            return Ok(thumb);
        }
        let face = self.read_face(name)?;
        self.remember(&face.file, &face.key);
        match self.read_thumb(&face.key) {
            Some(thumb) => Ok(thumb),
            None => self.make(&face),
        }
    }

    /// Removes the thumbnails (of every size) whose key no face uses any more, in this
    /// faceset (listed again) or in another one sharing the cache (by its saved index), and
    /// temporary files a killed writer left.
    ///
    /// # Errors
    /// As [`ThumbCache::lookup`].
    pub fn prune(&self) -> Result<PruneReport, ThumbError> {
        let mut used: HashSet<String> =
            self.lookup()?.into_iter().filter_map(|entry| entry.key).collect();
        for path in self.other_indexes() {
            used.extend(Index::read(&path).into_iter().flatten().map(|entry| entry.key));
        }
        let mut report = PruneReport::default();
        prune_dir(&self.cache_dir, &used, &mut report);
        for dir in subfolders(&self.cache_dir) {
            prune_dir(&dir, &used, &mut report);
        }
        Ok(report)
    }

    /// Writes the index if it changed since it was read or written (atomically).
    ///
    /// # Errors
    /// `Write` naming the index file.
    pub fn save_index(&self) -> Result<(), ThumbError> {
        let mut index = self.lock_index();
        if !index.is_dirty {
            return Ok(());
        }
        let mut faces: Vec<IndexEntry> = index.by_name.values().cloned().collect();
        faces.sort_unstable_by(|a, b| a.file.name.cmp(&b.file.name));
        let file = IndexFile { version: INDEX_VERSION, faces };
        let bytes = serde_json::to_vec(&file).expect("invariant: the index serialises");
        write_replacing(&self.index_path, &bytes, true)
            .map_err(|source| ThumbError::Write { path: self.index_path.clone(), source })?;
        index.is_dirty = false;
        Ok(())
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        // A panic elsewhere cannot leave the index half-changed in a way that matters: at
        // worst an entry is missing and the face is read again.
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys the index knows for `files` (none for racy files).
    fn known_keys(&self, files: &[FaceFile]) -> Vec<Option<String>> {
        let now = SystemTime::now();
        let index = self.lock_index();
        let known = |f: &FaceFile| (!f.is_racy(now)).then(|| index.key_of(f)).flatten();
        files.iter().map(|f| known(f).map(str::to_owned)).collect()
    }

    /// Makes the index the listing's faces with their keys (racy ones left out), and saves it
    /// when that changed it. A failed save is logged: the faces are read again next time.
    fn record(&self, files: &[FaceFile], outcomes: &[Outcome]) {
        let now = SystemTime::now();
        let entries = files.iter().zip(outcomes).filter_map(|(listed, outcome)| {
            let (file, key) = match outcome {
                Outcome::Known(key) => (listed, key),
                Outcome::Read { file, key, .. } => (file, key),
                Outcome::Vanished | Outcome::Failed(_) => return None,
            };
            let entry = IndexEntry { file: file.clone(), key: key.clone() };
            (!file.is_racy(now)).then_some(entry)
        });
        let fresh = Index::from_entries(entries);
        {
            let mut index = self.lock_index();
            let is_dirty = index.is_dirty || index.by_name != fresh.by_name;
            *index = Index { is_dirty, ..fresh };
        }
        if let Err(e) = self.save_index() {
            log::warn!("{e}; the faces are read again next time");
        }
    }

    /// Adds one face's key to the index in memory (unless the face is racy).
    fn remember(&self, file: &FaceFile, key: &str) {
        if file.is_racy(SystemTime::now()) {
            return;
        }
        let mut index = self.lock_index();
        let entry = IndexEntry { file: file.clone(), key: key.to_owned() };
        if index.by_name.get(&file.name) != Some(&entry) {
            index.insert(entry);
            index.is_dirty = true;
        }
    }

    /// Reads face `name` with its `stat` at the read and its key.
    fn read_face(&self, name: &str) -> Result<ReadFace, ThumbError> {
        let path = self.faceset_dir.join(name);
        let read = || -> io::Result<(Vec<u8>, Metadata)> {
            let mut file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut bytes)?;
            Ok((bytes, meta))
        };
        let (bytes, meta) = read().map_err(|e| read_error(&path, e))?;
        let key = content_key(&bytes);
        Ok(ReadFace { file: FaceFile::new(name.to_owned(), &meta), key, bytes })
    }

    /// The cached thumbnail of `key`, if it is there and a whole JPEG.
    fn read_thumb(&self, key: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.thumb_path(key)?).ok()?;
        is_whole_jpeg(&bytes).then_some(bytes)
    }

    /// Makes and writes the thumbnail of `face`; returns its bytes.
    fn make(&self, face: &ReadFace) -> Result<Vec<u8>, ThumbError> {
        let source = self.faceset_dir.join(&face.file.name);
        let thumb = make_thumb(&face.bytes, &source, self.options)?;
        let path = self.thumb_path(&face.key).expect("invariant: content_key makes a key");
        write_replacing(&path, &thumb, false)
            .map_err(|source| ThumbError::Write { path: path.clone(), source })?;
        Ok(thumb)
    }

    /// The keys of the thumbnails in the cache, from one listing of its folder.
    fn present_keys(&self) -> HashSet<String> {
        let Ok(entries) = std::fs::read_dir(&self.thumbs_dir) else { return HashSet::new() };
        let keys = entries.flatten().filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name.strip_suffix(THUMB_EXT)?.strip_suffix('.')?;
            is_content_key(key).then(|| key.to_owned())
        });
        keys.collect()
    }

    /// The index files of the other facesets sharing the cache folder.
    fn other_indexes(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.cache_dir) else { return Vec::new() };
        let is_index = |p: &PathBuf| p.to_str().is_some_and(|s| s.ends_with(INDEX_SUFFIX));
        let paths = entries.flatten().map(|e| e.path());
        paths.filter(|p| is_index(p) && *p != self.index_path).collect()
    }
}

/// The report of a build from each face's outcome.
fn build_report(files: &[FaceFile], outcomes: Vec<Outcome>) -> BuildReport {
    let mut report = BuildReport { faces: files.len(), ..BuildReport::default() };
    for (f, outcome) in files.iter().zip(outcomes) {
        match outcome {
            Outcome::Known(_) => {}
            Outcome::Read { is_built, .. } => {
                report.hashed += 1;
                report.built += usize::from(is_built);
            }
            Outcome::Vanished => report.vanished += 1,
            Outcome::Failed(error) => {
                report.failed.push(FailedFace { name: f.name.clone(), error })
            }
        }
    }
    report
}

/// `NoSuchFace` for a file that is not there, `Read` for any other error.
fn read_error(path: &Path, e: io::Error) -> ThumbError {
    match e.kind() {
        io::ErrorKind::NotFound => ThumbError::NoSuchFace(path.to_owned()),
        _ => ThumbError::Read { path: path.to_owned(), source: e },
    }
}

/// Decodes a face file's bytes at the smallest size that still covers the thumbnail, shrinks
/// it to fit `size_px` (area averaging) and encodes it as JPEG.
///
/// # Errors
/// `NotAnImage` or `Encode`, naming `path`.
pub fn make_thumb(bytes: &[u8], path: &Path, options: ThumbOptions) -> Result<Vec<u8>, ThumbError> {
    make_thumb_decoded_with(bytes, path, options, decode_flags(bytes, options.size_px))
}

/// [`make_thumb`] with OpenCV's decode `flags`.
fn make_thumb_decoded_with(
    bytes: &[u8],
    path: &Path,
    options: ThumbOptions,
    flags: i32,
) -> Result<Vec<u8>, ThumbError> {
    let not_image = |source| ThumbError::NotAnImage { source };
    let image = imgcodecs::imdecode(&Vector::from_slice(bytes), flags)
        .map_err(|source| not_image(ImageReadError::Codec { path: path.to_owned(), source }))?;
    if image.empty() {
        return Err(not_image(ImageReadError::Undecodable(path.to_owned())));
    }
    let encode_err = |source| ThumbError::Encode { path: path.to_owned(), source };
    let thumb = fit(image, options.size_px).map_err(encode_err)?;
    encode(&thumb, THUMB_EXT, options.jpeg_quality).map_err(encode_err)
}

/// OpenCV's decode flags: for a JPEG, libjpeg's scaled decode (1/2, 1/4 or 1/8 in the DCT,
/// several times faster than a full decode and a resize) at the largest reduction whose
/// image still covers `size_px`; a full colour decode otherwise.
fn decode_flags(bytes: &[u8], size_px: u32) -> i32 {
    let Some((width, height)) = jpeg_size(bytes) else { return imgcodecs::IMREAD_COLOR };
    let longest = width.max(height);
    let reductions = [
        (8, imgcodecs::IMREAD_REDUCED_COLOR_8),
        (4, imgcodecs::IMREAD_REDUCED_COLOR_4),
        (2, imgcodecs::IMREAD_REDUCED_COLOR_2),
    ];
    // libjpeg's scaled side is ceil(side / d).
    let fits = reductions.into_iter().find(|&(d, _)| longest.div_ceil(d) >= size_px);
    fits.map_or(imgcodecs::IMREAD_COLOR, |(_, flag)| flag)
}

/// The width and height of a JPEG from its frame header, without decoding it.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        while *bytes.get(i)? == 0xFF {
            i += 1; // fill bytes
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => {} // no length
            // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&marker) => {
                return Some((u32::from(be16(i + 5)?), u32::from(be16(i + 3)?)));
            }
            0xD9 | 0xDA => return None, // end of image or start of scan before any frame
            _ => i += usize::from(be16(i)?),
        }
    }
}

/// Shrinks `image` so its longest side is `size_px` (area averaging), keeping its shape; a
/// smaller image is kept as it is.
fn fit(image: Mat, size_px: u32) -> opencv::Result<Mat> {
    let (width, height) = (image.cols(), image.rows());
    let longest = width.max(height);
    let target = i32::try_from(size_px).unwrap_or(i32::MAX);
    if longest <= target {
        return Ok(image);
    }
    let scale = f64::from(target) / f64::from(longest);
    let side = |n: i32| ((f64::from(n) * scale).round() as i32).clamp(1, target);
    let mut out = Mat::default();
    let size = Size::new(side(width), side(height));
    imgproc::resize(&image, &mut out, size, 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(out)
}

/// Whether `bytes` start and end like a JPEG (a file cut short by a crash does not end so).
fn is_whole_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9])
}

/// Writes `bytes` to `path` through a temporary name unique to this process and thread, then
/// renames it into place: two writers never share a temporary file (as `atomic::write_atomic`'s
/// one `<name>.tmp` would have them), and a reader sees the old file or a whole new one.
/// `is_durable` syncs the data before the rename.
fn write_replacing(path: &Path, bytes: &[u8], is_durable: bool) -> io::Result<()> {
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
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let is_dir = |e: &DirEntry| e.file_type().is_ok_and(|t| t.is_dir());
    entries.flatten().filter(is_dir).map(|e| e.path()).collect()
}

/// Removes from `dir` the thumbnails whose key is not in `used`, and stale temporary files;
/// other files are not the cache's and are left alone.
fn prune_dir(dir: &Path, used: &HashSet<String>, report: &mut PruneReport) {
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opencv::core::{self as cv, Scalar};

    use super::*;
    use crate::face::testutil::write_faceset;
    use crate::img::read_image;
    use crate::progress::NoProgress;

    /// A faceset folder `aligned/` of `n` synthetic 256 px PNG faces and a cache folder.
    fn faceset(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let faces = tmp.path().join("aligned");
        std::fs::create_dir(&faces).unwrap();
        write_faceset(&faces, n, 256, |i| i as f64 * 0.05);
        (tmp, faces.clone(), faces.with_file_name("thumbs"))
    }

    fn open(faces: &Path, cache: &Path) -> ThumbCache {
        ThumbCache::open(faces, cache, ThumbOptions::default()).unwrap()
    }

    /// Dates the files of `dir` written in the last minute an hour back, as faces extracted
    /// before this session are: the index trusts their times.
    fn settle(dir: &Path) {
        let (now, minute) = (SystemTime::now(), Duration::from_secs(60));
        for entry in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_file()) {
            if entry.metadata().unwrap().modified().unwrap() > now - minute {
                let file = std::fs::File::options().write(true).open(entry.path()).unwrap();
                file.set_modified(now - 60 * minute).unwrap();
            }
        }
    }

    fn thumb_count(cache: &ThumbCache) -> usize {
        cache.present_keys().len()
    }

    fn decode(bytes: &[u8]) -> Mat {
        imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_COLOR).unwrap()
    }

    /// The mean absolute difference of `thumb` from `original` shrunk to its size.
    fn difference(thumb: &Mat, original: &Mat) -> f64 {
        let mut small = Mat::default();
        imgproc::resize(original, &mut small, thumb.size().unwrap(), 0.0, 0.0, imgproc::INTER_AREA)
            .unwrap();
        let mut diff = Mat::default();
        cv::absdiff(thumb, &small, &mut diff).unwrap();
        let mean: Scalar = cv::mean(&diff, &cv::no_array()).unwrap();
        (mean[0] + mean[1] + mean[2]) / 3.0
    }

    /// Writes `image` as `name` (JPEG or PNG by the name) without metadata.
    fn write_plain(dir: &Path, name: &str, image: &Mat) {
        let ext = Path::new(name).extension().unwrap().to_str().unwrap();
        std::fs::write(dir.join(name), encode(image, ext, 95).unwrap()).unwrap();
    }

    #[test]
    fn the_listing_is_by_name_and_reads_no_file() {
        let (tmp, faces, _) = faceset(3);
        std::fs::copy(faces.join("face_002.png"), faces.join("0_copy.png")).unwrap();
        std::fs::write(faces.join("notes.txt"), b"x").unwrap();
        std::fs::write(faces.join("face_003.jpg.tmp"), b"half written").unwrap();
        std::fs::create_dir(faces.join("sub")).unwrap();
        std::fs::copy(faces.join("face_000.png"), faces.join("sub/inner.png")).unwrap();
        std::fs::write(faces.join("junk.JPG"), b"not an image, still listed").unwrap();

        let files = list_faces(&faces).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["0_copy.png", "face_000.png", "face_001.png", "face_002.png", "junk.JPG"]
        );
        for f in &files {
            let meta = std::fs::metadata(faces.join(&f.name)).unwrap();
            assert_eq!(*f, FaceFile::new(f.name.clone(), &meta));
            assert_eq!(f.size, meta.len());
            let mtime = meta.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
            assert_eq!(u128::from(f.mtime_ns), mtime.as_nanos());
        }
        let inodes: HashSet<u64> = files.iter().map(|f| f.inode).collect();
        assert_eq!(inodes.len(), files.len(), "one inode per file");
        assert!(inodes.iter().all(|&i| i != 0), "{inodes:?}");
        let missing = list_faces(&tmp.path().join("nope")).unwrap_err();
        assert!(matches!(missing, ThumbError::Faceset(FacesetError::Missing(_))), "{missing}");
    }

    #[test]
    fn build_makes_one_thumbnail_per_face_of_the_right_size() {
        let (_tmp, faces, cache_dir) = faceset(2);
        let face = read_image(&faces.join("face_000.png")).unwrap();
        write_plain(&faces, "jpeg.jpg", &face);
        let mut wide = Mat::default();
        imgproc::resize(&face, &mut wide, Size::new(300, 200), 0.0, 0.0, imgproc::INTER_AREA)
            .unwrap();
        write_plain(&faces, "wide.png", &wide);
        let mut small = Mat::default();
        imgproc::resize(&face, &mut small, Size::new(64, 64), 0.0, 0.0, imgproc::INTER_AREA)
            .unwrap();
        write_plain(&faces, "small.jpg", &small);
        settle(&faces);

        let cache = open(&faces, &cache_dir);
        let report = cache.build(&NoProgress).unwrap();
        assert_eq!((report.faces, report.built, report.hashed), (5, 5, 5), "{report:?}");
        assert!(report.failed.is_empty() && report.vanished == 0, "{report:?}");
        assert_eq!(thumb_count(&cache), 5);
        let want = [
            ("face_000.png", (128, 128)),
            ("face_001.png", (128, 128)),
            ("jpeg.jpg", (128, 128)),
            ("small.jpg", (64, 64)),
            ("wide.png", (128, 85)),
        ];
        for (name, (width, height)) in want {
            let thumb = decode(&cache.get(name).unwrap());
            assert_eq!((thumb.cols(), thumb.rows()), (width, height), "{name}");
            let original = read_image(&faces.join(name)).unwrap();
            let diff = difference(&thumb, &original);
            assert!(diff < 4.0, "{name}: the thumbnail is not the face shrunk ({diff})");
        }
        let again = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        assert_eq!((again.built, again.hashed), (0, 0), "{again:?}");
        for entry in cache.lookup().unwrap() {
            let bytes = std::fs::read(faces.join(&entry.file.name)).unwrap();
            assert_eq!(entry.key, Some(content_key(&bytes)));
            assert!(entry.has_thumb);
        }
    }

    #[test]
    fn jpegs_are_decoded_at_the_smallest_size_that_covers_the_thumbnail() {
        let black = |side| {
            let m = Mat::new_rows_cols_with_default(side, side, cv::CV_8UC3, Scalar::all(0.0));
            encode(&m.unwrap(), "jpg", 90).unwrap()
        };
        let (j256, j512, j100) = (black(256), black(512), black(100));
        assert_eq!(jpeg_size(&j256), Some((256, 256)));
        assert_eq!(decode_flags(&j256, 128), imgcodecs::IMREAD_REDUCED_COLOR_2);
        assert_eq!(decode_flags(&j512, 128), imgcodecs::IMREAD_REDUCED_COLOR_4);
        assert_eq!(decode_flags(&j512, 64), imgcodecs::IMREAD_REDUCED_COLOR_8);
        assert_eq!(decode_flags(&j256, 200), imgcodecs::IMREAD_COLOR);
        assert_eq!(decode_flags(&j100, 128), imgcodecs::IMREAD_COLOR);
        assert_eq!(decode_flags(b"\x89PNG\r\n", 128), imgcodecs::IMREAD_COLOR);
        assert_eq!(jpeg_size(&j100[..20]), None, "a cut header");
    }

    #[test]
    fn a_renamed_face_keeps_its_thumbnail_without_being_read() {
        let (_tmp, faces, cache_dir) = faceset(3);
        settle(&faces);
        let cache = open(&faces, &cache_dir);
        assert_eq!(cache.build(&NoProgress).unwrap().built, 3);
        let before = cache.get("face_001.png").unwrap();
        std::fs::rename(faces.join("face_001.png"), faces.join("00009_face.png")).unwrap();

        let cache = open(&faces, &cache_dir); // as another process would
        let report = cache.build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 0), "{report:?}");
        assert_eq!(thumb_count(&cache), 3);
        assert_eq!(cache.get("00009_face.png").unwrap(), before);

        // A copy is another file: read for its key, which has its thumbnail already.
        std::fs::copy(faces.join("face_002.png"), faces.join("copy.png")).unwrap();
        settle(&faces);
        let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 1), "{report:?}");
    }

    #[test]
    fn an_edited_face_gets_a_new_thumbnail_and_prune_drops_the_old() {
        let (_tmp, faces, cache_dir) = faceset(3);
        settle(&faces);
        let cache = open(&faces, &cache_dir);
        cache.build(&NoProgress).unwrap();
        let before = cache.get("face_000.png").unwrap();
        let mut flipped = Mat::default();
        cv::flip(&read_image(&faces.join("face_000.png")).unwrap(), &mut flipped, 1).unwrap();
        // Rewritten in place (same inode), then dated like the others.
        write_plain(&faces, "face_000.png", &flipped);
        settle(&faces);

        let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (1, 1), "{report:?}");
        let after = cache.get("face_000.png").unwrap();
        assert_ne!(after, before);
        assert!(difference(&decode(&after), &flipped) < 4.0, "the thumbnail shows the edit");
        assert_eq!(thumb_count(&cache), 4, "the old thumbnail stays until pruned");
        let pruned = cache.prune().unwrap();
        assert_eq!(pruned.removed, 1, "{pruned:?}");
        assert_eq!(pruned.bytes, before.len() as u64);
        assert_eq!(thumb_count(&cache), 3);
        assert_eq!(cache.prune().unwrap(), PruneReport::default());
    }

    #[test]
    fn prune_keeps_what_another_faceset_uses_and_stale_temporaries_go() {
        let (tmp, faces, cache_dir) = faceset(3);
        let trash = tmp.path().join("aligned_trash");
        std::fs::create_dir(&trash).unwrap();
        settle(&faces);
        let cache = open(&faces, &cache_dir);
        cache.build(&NoProgress).unwrap();
        std::fs::rename(faces.join("face_002.png"), trash.join("face_002.png")).unwrap();
        let trash_cache = open(&trash, &cache_dir);
        assert_eq!(trash_cache.build(&NoProgress).unwrap().built, 0, "shared by content");
        let stale = cache_dir.join("128px_q85/x.jpg.1-2.tmp");
        let fresh = cache_dir.join("128px_q85/y.jpg.1-2.tmp");
        std::fs::write(&stale, b"x").unwrap();
        std::fs::write(&fresh, b"y").unwrap();
        let file = std::fs::File::options().write(true).open(&stale).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(STALE_TMP_SECS + 60)).unwrap();

        assert_eq!(cache.prune().unwrap().removed, 1, "only the stale temporary");
        assert!(!stale.exists() && fresh.exists());
        assert_eq!(thumb_count(&cache), 3, "the trash face keeps its thumbnail");
    }

    #[test]
    fn a_damaged_or_missing_index_is_rebuilt() {
        let (_tmp, faces, cache_dir) = faceset(3);
        settle(&faces);
        let cache = open(&faces, &cache_dir);
        cache.build(&NoProgress).unwrap();
        let index = cache_dir.join("aligned.index.json");
        let good = std::fs::read_to_string(&index).unwrap();
        assert_eq!(Index::read(&index).map(|e| e.len()), Some(3));
        let bad_key = good.replacen("\"key\":\"", "\"key\":\"../../", 1);
        for damaged in ["{\"version\":1,\"fa", "", &bad_key] {
            std::fs::write(&index, damaged).unwrap();
            let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
            assert_eq!((report.built, report.hashed), (0, 3), "{damaged:?}: {report:?}");
            assert_eq!(std::fs::read_to_string(&index).unwrap(), good, "rewritten whole");
        }
        std::fs::remove_file(&index).unwrap();
        let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 3), "{report:?}");
        assert_eq!(Index::read(&index).map(|e| e.len()), Some(3));
    }

    #[test]
    fn a_junk_file_is_reported_and_the_rest_built() {
        let (_tmp, faces, cache_dir) = faceset(2);
        std::fs::write(faces.join("junk.jpg"), b"not an image").unwrap();
        let png = std::fs::read(faces.join("face_000.png")).unwrap();
        std::fs::write(faces.join("cut.png"), &png[..png.len() / 8]).unwrap();
        let cache = open(&faces, &cache_dir);
        let report = cache.build(&NoProgress).unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(failed, ["cut.png", "junk.jpg"], "{report:?}");
        assert!(report.failed.iter().all(|f| matches!(f.error, ThumbError::NotAnImage { .. })));
        let message = report.failed[1].error.to_string();
        assert!(message.contains("junk.jpg") && message.contains("move it out"), "{message}");
        assert_eq!((report.faces, report.built), (4, 2));
        assert!(matches!(cache.get("junk.jpg"), Err(ThumbError::NotAnImage { .. })));
        assert!(matches!(cache.get("../aligned/face_000.png"), Err(ThumbError::NotAFace(_))));
        assert!(matches!(cache.get("notes.txt"), Err(ThumbError::NotAFace(_))));
        assert!(matches!(cache.get("gone.png"), Err(ThumbError::NoSuchFace(_))));
        std::os::unix::fs::symlink(faces.join("face_000.png"), faces.join("link.png")).unwrap();
        assert!(matches!(cache.get("link.png"), Err(ThumbError::NotAFace(_))));
        let entries = cache.lookup().unwrap();
        let junk = entries.iter().find(|e| e.file.name == "junk.jpg").unwrap();
        assert!(junk.key.is_some() && !junk.has_thumb, "{junk:?}");
    }

    #[test]
    fn a_face_gone_mid_build_is_skipped() {
        let (_tmp, faces, cache_dir) = faceset(3);
        let files = list_faces(&faces).unwrap();
        std::fs::remove_file(faces.join("face_001.png")).unwrap();
        let cache = open(&faces, &cache_dir);
        let report = cache.build_files(&files, &NoProgress).unwrap();
        assert_eq!((report.vanished, report.built), (1, 2), "{report:?}");
        assert!(report.failed.is_empty());
    }

    #[test]
    fn a_face_written_just_now_is_read_every_time() {
        let (_tmp, faces, cache_dir) = faceset(2);
        let cache = open(&faces, &cache_dir);
        assert_eq!(cache.build(&NoProgress).unwrap().built, 2);
        let report = cache.build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 2), "{report:?}");
        assert_eq!(Index::read(&cache_dir.join("aligned.index.json")).map(|e| e.len()), Some(0));
    }

    #[test]
    fn two_builders_at_once_leave_whole_files() {
        let (_tmp, faces, cache_dir) = faceset(24);
        settle(&faces);
        for round in 0..4 {
            let _ = std::fs::remove_dir_all(&cache_dir);
            let (a, b) = (open(&faces, &cache_dir), open(&faces, &cache_dir));
            let start = std::sync::Barrier::new(2);
            let build = |cache: &ThumbCache| {
                start.wait();
                let got = cache.get("face_011.png").map(|_| ());
                (cache.build(&NoProgress).unwrap(), got)
            };
            let (ra, rb) = std::thread::scope(|s| {
                let ra = s.spawn(|| build(&a));
                let rb = s.spawn(|| build(&b));
                (ra.join().unwrap(), rb.join().unwrap())
            });
            for (report, got) in [ra, rb] {
                assert!(
                    report.failed.is_empty() && got.is_ok(),
                    "round {round}: {report:?} {got:?}"
                );
            }
            assert_eq!(thumb_count(&a), 24);
            for entry in a.lookup().unwrap() {
                let path = a.thumb_path(entry.key.as_deref().unwrap()).unwrap();
                assert!(is_whole_jpeg(&std::fs::read(path).unwrap()), "{entry:?}");
            }
            let index = Index::read(&cache_dir.join("aligned.index.json"));
            assert_eq!(index.map(|e| e.len()), Some(24));
            let files = walkdir::WalkDir::new(&cache_dir).into_iter().flatten();
            let tmp: Vec<_> =
                files.filter(|e| e.path().to_string_lossy().ends_with(".tmp")).collect();
            assert!(tmp.is_empty(), "round {round}: {tmp:?}");
        }
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let (_tmp, faces, cache_dir) = faceset(0);
        for (size_px, jpeg_quality) in [(0, 85), (128, 0), (128, 101), (MAX_THUMB_PX + 1, 85)] {
            let options = ThumbOptions { size_px, jpeg_quality };
            let err = ThumbCache::open(&faces, &cache_dir, options).unwrap_err();
            assert!(matches!(err, ThumbError::BadOptions { .. }), "{err}");
        }
        let cache = ThumbCache::open(&faces, &cache_dir, ThumbOptions::default()).unwrap();
        assert_eq!(cache.thumb_path("../x"), None);
        let key = content_key(b"x");
        assert_eq!(cache.thumb_path(&key), Some(cache_dir.join(format!("128px_q85/{key}.jpg"))));
    }

    /// The benchmark of `scripts/bench/thumbs.sh`: `DFL_BENCH_FACESET=DIR DFL_BENCH_CACHE=DIR
    /// [DFL_BENCH_ROUNDS=3] cargo test --release --lib bench_thumbs -- --ignored --nocapture`.
    /// Renames every face of DIR and back; removes the cache folder.
    #[test]
    #[ignore = "benchmark; run by scripts/bench/thumbs.sh"]
    fn bench_thumbs() {
        let env = |name: &str| std::env::var(name).ok();
        let faces = PathBuf::from(env("DFL_BENCH_FACESET").expect("DFL_BENCH_FACESET"));
        let cache_dir = PathBuf::from(env("DFL_BENCH_CACHE").expect("DFL_BENCH_CACHE"));
        let rounds: usize = env("DFL_BENCH_ROUNDS").and_then(|r| r.parse().ok()).unwrap_or(3);
        let n = list_faces(&faces).unwrap().len();
        println!("thumbs: {n} faces, {} rayon threads", rayon::current_num_threads());
        for round in 1..=rounds {
            let t = Instant::now();
            let _ = std::fs::remove_dir_all(&cache_dir);
            // The last round's writes and removals reach the disk before this round is timed.
            std::process::Command::new("sync").status().unwrap();
            println!("thumbs: (cache removed and synced in {:.1} s)", t.elapsed().as_secs_f64());
            let t = Instant::now();
            let report = open(&faces, &cache_dir).build(&NoProgress).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(report.built, n, "{report:?}");
            println!(
                "thumbs: cold build {secs:.2} s = {:.0} faces/s (round {round})",
                n as f64 / secs
            );
        }
        bench_decode(&faces);
        bench_warm(&faces, &cache_dir, rounds);
        bench_size(&cache_dir);
        bench_renamed(&faces, &cache_dir);
        std::fs::remove_file(cache_dir.join("aligned.index.json")).unwrap();
        let ms = time_ms(|| open(&faces, &cache_dir).lookup().unwrap().len());
        println!("thumbs: lookup without an index (reads and hashes every face) {ms:.0} ms");
        std::fs::remove_dir_all(&cache_dir).unwrap();
    }

    fn time_ms(f: impl FnOnce() -> usize) -> f64 {
        let t = Instant::now();
        std::hint::black_box(f());
        t.elapsed().as_secs_f64() * 1e3
    }

    /// One thread making thumbnails from bytes in memory, and decoding alone, with the reduced
    /// decode and with a full one.
    fn bench_decode(faces: &Path) {
        let files = list_faces(faces).unwrap();
        let sample: Vec<Vec<u8>> =
            files.iter().take(240).map(|f| std::fs::read(faces.join(&f.name)).unwrap()).collect();
        let options = ThumbOptions::default();
        let flags = |bytes: &[u8], full: bool| {
            if full { imgcodecs::IMREAD_COLOR } else { decode_flags(bytes, options.size_px) }
        };
        let rate = |f: &dyn Fn(&[u8]) -> usize| {
            let t = Instant::now();
            let n: usize = (0..4).flat_map(|_| &sample).map(|b| f(b)).sum();
            std::hint::black_box(n);
            (4 * sample.len()) as f64 / t.elapsed().as_secs_f64()
        };
        for full in [false, true, false, true] {
            let thumb = rate(&|b| {
                make_thumb_decoded_with(b, faces, options, flags(b, full)).unwrap().len()
            });
            let decode = rate(&|b| {
                imgcodecs::imdecode(&Vector::from_slice(b), flags(b, full)).unwrap().cols() as usize
            });
            let how = if full { "full decode + resize" } else { "reduced decode" };
            println!(
                "thumbs: one thread, {} faces in memory, {how}: make_thumb {thumb:.0} faces/s, \
                 decode alone {decode:.0} faces/s",
                sample.len()
            );
        }
    }

    fn bench_warm(faces: &Path, cache_dir: &Path, rounds: usize) {
        for round in 1..=rounds {
            let list = time_ms(|| list_faces(faces).unwrap().len());
            let lookup = time_ms(|| {
                let entries = open(faces, cache_dir).lookup().unwrap();
                assert!(entries.iter().all(|e| e.has_thumb));
                entries.len()
            });
            let build = time_ms(|| open(faces, cache_dir).build(&NoProgress).unwrap().built);
            let cache = open(faces, cache_dir);
            let names: Vec<String> =
                list_faces(faces).unwrap().into_iter().map(|f| f.name).collect();
            let get = time_ms(|| names.iter().map(|name| cache.get(name).unwrap().len()).sum());
            println!(
                "thumbs: warm listing {list:.0} ms; open + lookup (index, listing, keys, \
                 thumbnails present) {lookup:.0} ms; build with nothing to do {build:.0} ms; \
                 get every thumbnail, one thread {get:.0} ms (round {round})"
            );
        }
    }

    fn bench_size(cache_dir: &Path) {
        let files = walkdir::WalkDir::new(cache_dir).into_iter().flatten();
        let (mut thumbs, mut bytes, mut on_disk) = (0, 0, 0);
        for entry in files.filter(|e| e.path().extension().is_some_and(|x| x == THUMB_EXT)) {
            let meta = entry.metadata().unwrap();
            thumbs += 1;
            bytes += meta.len();
            on_disk += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        }
        let index = std::fs::metadata(cache_dir.join("aligned.index.json")).unwrap().len();
        println!(
            "thumbs: cache {thumbs} thumbnails, {:.1} MB ({:.1} KB each; {:.1} MB on disk), \
             index {:.2} MB",
            bytes as f64 / 1e6,
            bytes as f64 / 1e3 / f64::from(thumbs),
            on_disk as f64 / 1e6,
            index as f64 / 1e6
        );
    }

    /// Renames every face (as a sort does), looks up and builds, renames them back.
    fn bench_renamed(faces: &Path, cache_dir: &Path) {
        let names: Vec<String> = list_faces(faces).unwrap().into_iter().map(|f| f.name).collect();
        let renamed = |name: &str| faces.join(format!("r_{name}"));
        for name in &names {
            std::fs::rename(faces.join(name), renamed(name)).unwrap();
        }
        let lookup = time_ms(|| open(faces, cache_dir).lookup().unwrap().len());
        let report = open(faces, cache_dir).build(&NoProgress).unwrap();
        assert_eq!((report.built, report.hashed), (0, 0), "{report:?}");
        println!("thumbs: open + lookup after renaming every face {lookup:.0} ms (nothing read)");
        for name in &names {
            std::fs::rename(renamed(name), faces.join(name)).unwrap();
        }
    }
}
