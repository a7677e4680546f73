//! The faces of an `aligned/` folder as sorting sees them: file name, metadata, content key.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::face::metadata::{FaceFileError, FaceMetadata, parse_metadata};
use crate::progress::Progress;
use crate::workspace::is_image_file;

/// One face file of the faceset.
#[derive(Debug, Clone)]
pub struct Face {
    /// The file name in `aligned/` now.
    pub name: String,
    /// The metadata inside the file.
    pub meta: FaceMetadata,
    /// A hash of the file's bytes: the key of its cached scores.
    pub key: String,
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
    /// Its dfl faces, by file name.
    pub faces: Vec<Face>,
    /// Image files that are not dfl faces (name, why): left where they are, and reported.
    pub skipped: Vec<(String, FaceFileError)>,
}

impl Faceset {
    /// Reads every image file directly in `dir` (in parallel): metadata and content key.
    ///
    /// # Errors
    /// The OS error when `dir` cannot be listed.
    pub fn read(dir: &Path, progress: &dyn Progress) -> std::io::Result<Faceset> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && is_image_file(&e.path()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        progress.set_len(names.len() as u64);
        let read: Vec<(String, Result<Face, FaceFileError>)> = names
            .into_par_iter()
            .map(|name| {
                let face = read_face(dir, &name);
                progress.inc(1);
                (name, face)
            })
            .collect();
        let mut set = Faceset { dir: dir.to_owned(), ..Faceset::default() };
        for (name, r) in read {
            match r {
                Ok(face) => set.faces.push(face),
                Err(e) => set.skipped.push((name, e)),
            }
        }
        Ok(set)
    }

    /// Returns the path of face `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.faces[i].name)
    }
}

fn read_face(dir: &Path, name: &str) -> Result<Face, FaceFileError> {
    let path = dir.join(name);
    let bytes =
        std::fs::read(&path).map_err(|source| FaceFileError::Io { path: path.clone(), source })?;
    let meta = parse_metadata(&path, &bytes)?;
    Ok(Face { name: name.to_owned(), meta, key: content_key(&bytes) })
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
    fn keys_depend_on_the_bytes_only() {
        assert_eq!(content_key(b"abc"), content_key(b"abc"));
        assert_ne!(content_key(b"abc"), content_key(b"abd"));
        assert_eq!(content_key(b"abc").len(), 32);
    }
}
