//! A faceset: the aligned face files of one folder (`data_<side>/aligned/`), read one way for
//! every stage, plus what lives beside it: the score cache and the identity embeddings
//! ([`scores`]), and the journal that moves face files without ever losing one ([`journal`]).
//!
//! The one rule for files: only image files directly in the folder are read (`*.tmp` files
//! being written, subfolders and other files are not faces and are ignored); an image file
//! without valid dfl metadata is skipped and returned in [`Faceset::skipped`], once, for the
//! caller to report with what it means for its stage.

pub mod journal;
pub mod scores;
pub mod thumbs;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::face::metadata::{FaceFileError, FaceMetadata, parse_metadata};
use crate::progress::Progress;
use crate::workspace::{Input, VIDEO_EXTENSIONS, has_extension, is_image_file};

/// Errors that stop reading a faceset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FacesetError {
    /// The folder does not exist.
    #[error("{} does not exist; run `dfl extract` to make the faceset", .0.display())]
    Missing(PathBuf),
    /// The folder cannot be listed.
    #[error("cannot list {}: {source}; check the folder's permissions", .dir.display())]
    List {
        /// The faceset folder.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One face file of the faceset.
#[derive(Debug, Clone)]
pub struct Face {
    /// The file name in the folder now.
    pub name: String,
    /// The metadata inside the file.
    pub meta: FaceMetadata,
    /// A hash of the file's bytes: the key of its cached scores.
    pub key: String,
}

/// An image file of the folder that is not a usable dfl face.
#[derive(Debug)]
pub struct SkippedFace {
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be used.
    pub error: FaceFileError,
}

impl Face {
    /// The name extraction gave the file, `<frame>_<face index>.<ext>`: the name after sorting
    /// strips the order prefix, and the name `origname` restores.
    pub fn base_name(&self) -> String {
        let ext = Path::new(&self.name).extension().and_then(|e| e.to_str()).unwrap_or("jpg");
        format!(
            "{}_{}.{}",
            self.meta.source_filename,
            self.meta.face_index,
            ext.to_ascii_lowercase()
        )
    }

    /// The order the faces were extracted in: frame name (numbers by value), then face index.
    pub fn origin_order(a: &Face, b: &Face) -> std::cmp::Ordering {
        natural_cmp(&a.meta.source_filename, &b.meta.source_filename)
            .then(a.meta.face_index.cmp(&b.meta.face_index))
            .then_with(|| a.name.cmp(&b.name))
    }
}

/// The faces of a folder, and the image files in it that are not dfl faces.
#[derive(Debug, Default)]
pub struct Faceset {
    /// The folder.
    pub dir: PathBuf,
    /// Its dfl faces, in file-name order.
    pub faces: Vec<Face>,
    /// Image files that are not dfl faces, in file-name order: left where they are.
    pub skipped: Vec<SkippedFace>,
}

impl Faceset {
    /// Reads every image file directly in `dir` (in parallel): metadata and content key.
    ///
    /// # Errors
    /// `Missing` when `dir` does not exist, `List` when it cannot be listed.
    pub fn read(dir: &Path, progress: &dyn Progress) -> Result<Faceset, FacesetError> {
        if !dir.is_dir() {
            return Err(FacesetError::Missing(dir.to_owned()));
        }
        let list_err = |source| FacesetError::List { dir: dir.to_owned(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if is_face_file(&entry) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        progress.set_len(paths.len() as u64);
        let read: Vec<Result<Face, FaceFileError>> = paths
            .par_iter()
            .map(|path| {
                let face = read_face(path);
                progress.inc(1);
                face
            })
            .collect();
        let mut set = Faceset { dir: dir.to_owned(), ..Faceset::default() };
        for (path, r) in paths.into_iter().zip(read) {
            match r {
                Ok(face) => set.faces.push(face),
                Err(error) => set.skipped.push(SkippedFace { path, error }),
            }
        }
        Ok(set)
    }

    /// Returns the input the faces were extracted from, when they all name one that is still
    /// there: a video, or a folder of images (each face names its own image).
    pub fn source_input(&self) -> Option<Input> {
        let mut sources = self.faces.iter().map(|f| Path::new(&f.meta.source_path));
        let first = sources.next()?;
        if first.is_file() && has_extension(first, VIDEO_EXTENSIONS) {
            let all_same = self.faces.iter().all(|f| Path::new(&f.meta.source_path) == first);
            return all_same.then(|| Input::Video(first.to_owned()));
        }
        let dir = first.parent().filter(|d| d.is_dir())?;
        let all_in_dir =
            self.faces.iter().all(|f| Path::new(&f.meta.source_path).parent() == Some(dir));
        all_in_dir.then(|| Input::Images(dir.to_owned()))
    }

    /// Logs each skipped file once, with what it means for the stage (e.g. "it is not
    /// merged").
    pub fn warn_skipped(&self, consequence: &str) {
        for s in &self.skipped {
            log::warn!("{}; {consequence}", s.error);
        }
    }

    /// Returns the path of face `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.faces[i].name)
    }
}

/// Whether a folder entry is read as a face: a file with an image extension (`*.tmp` files
/// being written are not).
fn is_face_file(entry: &std::fs::DirEntry) -> bool {
    entry.file_type().is_ok_and(|t| t.is_file()) && is_image_file(&entry.path())
}

fn read_face(path: &Path) -> Result<Face, FaceFileError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FaceFileError::BadName(path.to_owned()))?
        .to_owned();
    let bytes = std::fs::read(path)
        .map_err(|source| FaceFileError::Io { path: path.to_owned(), source })?;
    let meta = parse_metadata(path, &bytes)?;
    Ok(Face { name, meta, key: content_key(&bytes) })
}

/// The cache key of a file's bytes: 128 bits of BLAKE3, in hex.
pub fn content_key(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_owned()
}

/// Compares names with their digit runs by value: `frame9` < `frame10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                let db = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
                let (na, nb) = (a[..da].trim_start_matches('0'), b[..db].trim_start_matches('0'));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb)).then(da.cmp(&db));
                if ord.is_ne() {
                    return ord;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut names = vec!["frame10", "frame9", "frame09", "a", "frame1b", "frame1a"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["a", "frame1a", "frame1b", "frame9", "frame09", "frame10"]);
    }

    #[test]
    fn one_rule_for_every_file_in_the_folder() {
        use crate::face::testutil::write_faceset;
        use crate::progress::NoProgress;
        let tmp = tempfile::tempdir().unwrap();
        let faces = write_faceset(tmp.path(), 3, 32, |_| 0.0);
        std::fs::write(tmp.path().join("junk.jpg"), b"not an image").unwrap();
        std::fs::write(tmp.path().join("half_written.jpg.tmp"), b"x").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::copy(&faces[0], tmp.path().join("sub/inside.png")).unwrap();

        let set = Faceset::read(tmp.path(), &NoProgress).unwrap();
        let names: Vec<&str> = set.faces.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["face_000.png", "face_001.png", "face_002.png"], "faces in name order");
        let skipped: Vec<_> = set.skipped.iter().map(|s| s.path.clone()).collect();
        assert_eq!(skipped, [tmp.path().join("junk.jpg")], "only image files that are not faces");
        assert_eq!(set.path(1), faces[1]);
        assert_eq!(set.faces[0].key, content_key(&std::fs::read(&faces[0]).unwrap()));

        let missing = Faceset::read(&tmp.path().join("nope"), &NoProgress).unwrap_err();
        assert!(matches!(missing, FacesetError::Missing(_)), "{missing}");
        assert!(missing.to_string().contains("dfl extract"), "{missing}");
    }

    #[test]
    fn keys_depend_on_the_bytes_only() {
        assert_eq!(content_key(b"abc"), content_key(b"abc"));
        assert_ne!(content_key(b"abc"), content_key(b"abd"));
        assert_eq!(content_key(b"abc").len(), 32);
    }
}
