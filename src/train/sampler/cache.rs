//! A bounded, thread-safe LRU of decoded face images, so a faceset of tens of thousands of
//! faces is decoded once per pass without holding all of it in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use opencv::core::Mat;
use opencv::prelude::*;

use crate::face::metadata::{FaceFileError, read_face_image};

/// The default budget: 1 GiB holds about 5,400 decoded 256² faces (192 KiB each).
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// Decoded faces (BGR u8 `Mat`s) keyed by path, evicting the least recently used beyond a byte
/// budget. Shared by all sampler threads.
#[derive(Debug)]
pub struct FaceCache {
    capacity_bytes: usize,
    inner: Mutex<Lru>,
}

/// The LRU's state: entries with their last-use stamp, and stamps in use order.
#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<PathBuf, (Arc<Mat>, u64)>,
    by_use: BTreeMap<u64, PathBuf>,
    next_stamp: u64,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// How a cache has been used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Faces held now.
    pub len: usize,
    /// Bytes of pixel data held now.
    pub bytes: usize,
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that decoded the file.
    pub misses: u64,
}

impl Default for FaceCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}

impl FaceCache {
    /// Creates an empty cache that holds at most `capacity_bytes` of pixel data.
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, inner: Mutex::new(Lru::default()) }
    }

    /// Returns the byte budget.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Returns the decoded face at `path`, decoding it on a miss.
    ///
    /// The file is decoded outside the lock, so two threads missing the same face may both
    /// decode it; the second insert is dropped. A face larger than the whole budget is returned
    /// but not kept.
    ///
    /// # Errors
    /// The decode error, naming the file.
    pub fn get_or_load(&self, path: &Path) -> Result<Arc<Mat>, FaceFileError> {
        if let Some(face) = self.lock().touch(path) {
            return Ok(face);
        }
        let face = Arc::new(read_face_image(path)?);
        let bytes = mat_bytes(&face);
        let mut lru = self.lock();
        lru.misses += 1;
        if bytes <= self.capacity_bytes && !lru.entries.contains_key(path) {
            lru.insert(path.to_owned(), Arc::clone(&face), bytes);
            lru.evict_to(self.capacity_bytes);
        }
        Ok(face)
    }

    /// Returns the current size and hit counts.
    pub fn stats(&self) -> CacheStats {
        let lru = self.lock();
        CacheStats { len: lru.entries.len(), bytes: lru.bytes, hits: lru.hits, misses: lru.misses }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding the lock cannot leave the maps inconsistent with each other in a
        // way that matters more than losing the cache, so a poisoned lock is simply reused.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Lru {
    /// Returns the entry for `path` and marks it most recently used.
    fn touch(&mut self, path: &Path) -> Option<Arc<Mat>> {
        let stamp = self.next_stamp;
        let (face, old) = self.entries.get_mut(path)?;
        let face = Arc::clone(face);
        let old = std::mem::replace(old, stamp);
        self.next_stamp += 1;
        if let Some(key) = self.by_use.remove(&old) {
            self.by_use.insert(stamp, key);
        }
        self.hits += 1;
        Some(face)
    }

    fn insert(&mut self, path: PathBuf, face: Arc<Mat>, bytes: usize) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_use.insert(stamp, path.clone());
        self.entries.insert(path, (face, stamp));
        self.bytes += bytes;
    }

    /// Drops least recently used entries until at most `capacity` bytes are held.
    fn evict_to(&mut self, capacity: usize) {
        while self.bytes > capacity {
            let Some((_, path)) = self.by_use.pop_first() else { break };
            if let Some((face, _)) = self.entries.remove(&path) {
                self.bytes -= mat_bytes(&face);
            }
        }
    }
}

/// Returns the pixel bytes of `mat`.
fn mat_bytes(mat: &Mat) -> usize {
    mat.total() * mat.elem_size().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::sampler::testutil::write_faceset;

    #[test]
    fn the_cache_stays_under_its_budget_and_evicts_the_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = write_faceset(tmp.path(), 6, 32, |_| 0.0);
        let face_bytes = 32 * 32 * 3;
        let cache = FaceCache::new(3 * face_bytes + 10);
        for p in &paths {
            cache.get_or_load(p).unwrap();
            assert!(cache.stats().bytes <= cache.capacity_bytes(), "{:?}", cache.stats());
        }
        let stats = cache.stats();
        assert_eq!((stats.len, stats.bytes, stats.misses, stats.hits), (3, 3 * face_bytes, 6, 0));
        // The last three are held; touching #3 makes #4 the oldest, which the next miss evicts.
        cache.get_or_load(&paths[3]).unwrap();
        cache.get_or_load(&paths[0]).unwrap();
        cache.get_or_load(&paths[3]).unwrap();
        cache.get_or_load(&paths[5]).unwrap();
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (3, 7), "{stats:?}");
        cache.get_or_load(&paths[4]).unwrap();
        assert_eq!(cache.stats().misses, 8, "#4 was evicted");
    }

    #[test]
    fn a_face_larger_than_the_budget_is_returned_but_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = write_faceset(tmp.path(), 1, 32, |_| 0.0);
        let cache = FaceCache::new(100);
        let face = cache.get_or_load(&paths[0]).unwrap();
        assert_eq!((face.rows(), face.cols()), (32, 32));
        assert_eq!(cache.stats().len, 0);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let cache = FaceCache::default();
        let err = cache.get_or_load(Path::new("/nonexistent/face_7.jpg")).unwrap_err();
        assert!(err.to_string().contains("face_7.jpg"), "{err}");
    }
}
