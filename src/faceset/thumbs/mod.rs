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
//!
//! The parts: the listing and the index (`index.rs`), a thumbnail from a face's bytes
//! (`image.rs`), the cache's files on disk (`files.rs`), and the cache itself here.

mod files;
mod image;
mod index;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::Metadata;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use rayon::prelude::*;
use serde::Serialize;

use self::files::{prune_dir, subfolders, write_replacing};
use self::image::is_whole_jpeg;
use self::index::{
    INDEX_SUFFIX, INDEX_VERSION, Index, IndexEntry, IndexFile, is_content_key, is_plain_name,
};
use super::{FacesetError, content_key};
use crate::img::ImageReadError;
use crate::progress::Progress;
use crate::workspace::{Side, Workspace, is_image_file};

pub use self::image::make_thumb;
pub use self::index::{FaceFile, RACY_SECS, list_faces};

/// The default longest side of a thumbnail, px: a page of 10,000 faces shows ~100 at once.
pub const THUMB_PX: u32 = 128;
/// The default JPEG quality of thumbnails: ~4 KB at 128 px, no visible blocks.
pub const THUMB_QUALITY: u8 = 85;
/// The largest thumbnail side accepted (bigger is not a thumbnail).
const MAX_THUMB_PX: u32 = 1024;
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

    /// Returns the cached thumbnail (JPEG bytes) of content key `key`, if the cache has a
    /// whole one; makes nothing.
    pub fn cached(&self, key: &str) -> Option<Vec<u8>> {
        self.read_thumb(key)
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
