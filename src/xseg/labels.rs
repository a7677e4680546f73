//! XSeg labels in and out of a faceset: `dfl xseg labels export` writes the labels of every
//! labelled face of a side to one JSON file, `dfl xseg labels import` writes them back into
//! the face files (`docs/xseg.md` shows the format).
//!
//! A face is found by the frame it came from and its index in that frame (`source_filename`,
//! `face_index`, stored in the face's metadata): `dfl sort` renames files, so the file name
//! recorded at export is only a fallback for hand-written files that leave those out (it is
//! then matched as the file is named now or as it was named at extraction). A face that is
//! not found is reported and skipped, and the run ends with exit code 1. The content hash of
//! the file is not used: writing labels changes the file's bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::face::align::FaceType;
use crate::face::metadata::{MAX_FACE_PX, rewrite_metadata};
use crate::face::seg::{self, SegPoly};
use crate::faceset::{Face, Faceset, FacesetError};
use crate::lock::LockError;
use crate::progress::Progress;
use crate::workspace::{Side, Workspace};

/// The version of the labels file format.
pub const LABELS_VERSION: u32 = 1;
/// The largest labels file read (a faceset of 50 000 labelled faces fits).
const MAX_LABELS_FILE: u64 = 512 << 20;

/// A labels file: the labels of the faces of one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsFile {
    /// [`LABELS_VERSION`].
    pub version: u32,
    /// One entry per labelled face, in the order the faces were extracted.
    pub faces: Vec<FaceLabels>,
}

/// The labels of one face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceLabels {
    /// The face file's name at export (`00017_0.jpg`, or `00003_00017_0.jpg` after a sort).
    pub file: String,
    /// The frame the face came from (the metadata's `source_filename`); with `face_index`, how
    /// the face is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_filename: Option<String>,
    /// Which face of the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_index: Option<usize>,
    /// The face type of the crop the points are on; a face of another type is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_type: Option<FaceType>,
    /// The side in pixels of the face the points are in; they are scaled to the face's own.
    pub size: u32,
    /// The polygons, in order; empty removes the face's labels.
    pub polys: Vec<SegPoly>,
}

impl FaceLabels {
    /// The face in words, for messages: `00017_0.jpg (frame 00017, face 0)`.
    fn describe(&self) -> String {
        match (&self.source_filename, self.face_index) {
            (Some(frame), Some(index)) => format!("{} (frame {frame}, face {index})", self.file),
            _ => self.file.clone(),
        }
    }
}

/// Errors that stop an export or an import (nothing is written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    /// The side has no faces.
    #[error("no faces in {}; run `dfl extract {side}` first", .dir.display())]
    NoFaces {
        /// The aligned folder.
        dir: PathBuf,
        /// `src` or `dst`.
        side: &'static str,
    },
    /// The faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// Another run holds the faceset.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The labels file cannot be read.
    #[error("cannot read {}: {source}; check the path", .path.display())]
    Read {
        /// The labels file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The labels file is not a labels file, or breaks a rule.
    #[error("{}: {reason}; fix the file (`dfl xseg labels export` writes one), nothing was imported", .path.display())]
    BadFile {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The labels file cannot be written.
    #[error("cannot write {}: {source}; check the folder's permissions", .path.display())]
    Write {
        /// The labels file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Faces in the faceset.
    pub faces: usize,
    /// Faces with labels: the entries written.
    pub labelled: usize,
    /// Polygons written.
    pub polys: usize,
    /// Image files that are not dfl faces (logged, left as they are).
    pub unreadable: usize,
}

/// A labels entry that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLabels {
    /// The entry's face, in words.
    pub face: String,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "labels for {}: {}; skipped", self.face, self.reason)
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Faces whose file was rewritten with the new labels.
    pub written: usize,
    /// Faces that already had exactly these labels (not written).
    pub unchanged: usize,
    /// Entries not imported: the face is not in the faceset, is ambiguous, or failed.
    pub skipped: Vec<SkippedLabels>,
}

/// Writes the labels of every labelled face of `side` to `out` (atomically), in the order
/// the faces were extracted, one face per line.
///
/// # Errors
/// `NoFaces`, `Faceset`, `Lock`, `Write`.
pub fn export_labels(
    ws: &Workspace,
    side: Side,
    out: &Path,
    progress: &dyn Progress,
) -> Result<ExportReport, LabelsError> {
    let _lock = crate::lock::shared(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let set = read_faceset(ws, side, progress)?;
    let mut faces: Vec<&Face> =
        set.faces.iter().filter(|f| !f.meta.seg_ie_polys.is_empty()).collect();
    faces.sort_by(|a, b| Face::origin_order(a, b));
    let entries: Vec<FaceLabels> = faces
        .iter()
        .map(|f| FaceLabels {
            file: f.name.clone(),
            source_filename: Some(f.meta.source_filename.clone()),
            face_index: Some(f.meta.face_index),
            face_type: Some(f.meta.face_type),
            size: f.meta.size_px,
            polys: f.meta.seg_ie_polys.clone(),
        })
        .collect();
    let bytes = to_json_lines(&entries);
    crate::atomic::write_atomic(out, &bytes)
        .map_err(|source| LabelsError::Write { path: out.to_owned(), source })?;
    Ok(ExportReport {
        faces: set.faces.len(),
        labelled: entries.len(),
        polys: entries.iter().map(|e| e.polys.len()).sum(),
        unreadable: set.skipped.len(),
    })
}

/// A labels file as JSON with one face per line, so it diffs well.
fn to_json_lines(entries: &[FaceLabels]) -> Vec<u8> {
    let mut out = format!("{{\"version\":{LABELS_VERSION},\"faces\":[").into_bytes();
    for (i, entry) in entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        // Plain data (strings, numbers, enums): serialising cannot fail.
        out.extend(serde_json::to_vec(entry).unwrap_or_default());
    }
    out.extend_from_slice(b"\n]}\n");
    out
}

/// Reads and checks a labels file: its version, and every entry's size and polygons (at
/// their own size). Entries naming the same face twice are refused.
///
/// # Errors
/// `Read`, `BadFile`.
pub fn read_labels(path: &Path) -> Result<LabelsFile, LabelsError> {
    let read_err = |source| LabelsError::Read { path: path.to_owned(), source };
    let bad = |reason: String| LabelsError::BadFile { path: path.to_owned(), reason };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_LABELS_FILE {
        return Err(bad(format!("{len} bytes, over the limit of {} MiB", MAX_LABELS_FILE >> 20)));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let file: LabelsFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a labels file: {e}")))?;
    if file.version != LABELS_VERSION {
        return Err(bad(format!(
            "version {} is not {LABELS_VERSION}, the version this dfl reads",
            file.version
        )));
    }
    let mut seen = HashSet::new();
    for (i, entry) in file.faces.iter().enumerate() {
        let at = |reason: String| bad(format!("faces[{i}] ({}): {reason}", entry.describe()));
        if entry.size == 0 || entry.size > MAX_FACE_PX {
            return Err(at(format!("size {} is outside 1–{MAX_FACE_PX}", entry.size)));
        }
        seg::validate(&entry.polys, entry.size).map_err(|e| at(e.to_string()))?;
        let key = match (&entry.source_filename, entry.face_index) {
            (Some(frame), Some(index)) => format!("frame {frame}, face {index}"),
            (None, None) => format!("file {}", entry.file),
            _ => return Err(at("source_filename and face_index go together".into())),
        };
        if !seen.insert(key.clone()) {
            return Err(at(format!("a second entry for {key}")));
        }
    }
    Ok(file)
}

/// Writes the labels of `file` into the faces of `side`, one face file at a time (each
/// rewritten atomically, its pixels untouched; scaled to the face's size). A face that already
/// has these labels is not written, so running it again changes nothing. Faces the file does
/// not name keep their labels.
///
/// # Errors
/// `Read` or `BadFile` (checked before anything is written), `NoFaces`, `Faceset`, `Lock`.
/// A face that is not found or cannot be written is skipped and listed in the report.
pub fn import_labels(
    ws: &Workspace,
    side: Side,
    file: &Path,
    progress: &dyn Progress,
) -> Result<ImportReport, LabelsError> {
    let labels = read_labels(file)?;
    if !ws.side_dir(side).is_dir() {
        return Err(no_faces(ws, side));
    }
    let _lock = crate::lock::exclusive(&ws.faceset_lock(side), &format!("the {side} faceset"))?;
    let set = read_faceset(ws, side, progress)?;
    let index = FaceIndex::new(&set);
    let mut report = ImportReport::default();
    for entry in &labels.faces {
        let skip = |reason: String| SkippedLabels { face: entry.describe(), reason };
        let face = match index.find(entry) {
            Ok(i) => i,
            Err(reason) => {
                report.skipped.push(skip(reason));
                continue;
            }
        };
        let meta = &set.faces[face].meta;
        if let Some(ft) = entry.face_type.filter(|&ft| ft != meta.face_type) {
            report.skipped.push(skip(format!(
                "drawn on a {} crop, the face {} is a {} crop",
                ft.as_str(),
                set.faces[face].name,
                meta.face_type.as_str()
            )));
            continue;
        }
        let polys = seg::scaled(&entry.polys, entry.size, meta.size_px);
        match rewrite_metadata(&set.path(face), |m| m.seg_ie_polys = polys) {
            Ok(true) => report.written += 1,
            Ok(false) => report.unchanged += 1,
            Err(err) => report.skipped.push(skip(err.to_string())),
        }
    }
    Ok(report)
}

fn no_faces(ws: &Workspace, side: Side) -> LabelsError {
    LabelsError::NoFaces { dir: ws.aligned_dir(side), side: side.as_str() }
}

fn read_faceset(
    ws: &Workspace,
    side: Side,
    progress: &dyn Progress,
) -> Result<Faceset, LabelsError> {
    let set = match Faceset::read(&ws.aligned_dir(side), progress) {
        Err(FacesetError::Missing(_)) => return Err(no_faces(ws, side)),
        other => other?,
    };
    set.warn_skipped("its labels are left as they are");
    if set.faces.is_empty() {
        return Err(no_faces(ws, side));
    }
    Ok(set)
}

/// The faces of a faceset by frame and face index, by file name, and by extraction name.
struct FaceIndex<'a> {
    set: &'a Faceset,
    by_origin: HashMap<(&'a str, usize), Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
}

impl<'a> FaceIndex<'a> {
    fn new(set: &'a Faceset) -> Self {
        let mut by_origin: HashMap<(&str, usize), Vec<usize>> = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, face) in set.faces.iter().enumerate() {
            by_origin
                .entry((&face.meta.source_filename, face.meta.face_index))
                .or_default()
                .push(i);
            by_name.entry(face.name.clone()).or_default().push(i);
            let base = face.base_name();
            if base != face.name {
                by_name.entry(base).or_default().push(i);
            }
        }
        FaceIndex { set, by_origin, by_name }
    }

    /// The face an entry names, or why there is none.
    fn find(&self, entry: &FaceLabels) -> Result<usize, String> {
        let dir = self.set.dir.display();
        let found = match (&entry.source_filename, entry.face_index) {
            (Some(frame), Some(index)) => self.by_origin.get(&(frame.as_str(), index)),
            _ => self.by_name.get(&entry.file),
        };
        match found.map(Vec::as_slice) {
            None | Some([]) => Err(format!("no such face in {dir}")),
            Some([one]) => Ok(*one),
            Some(several) => {
                // Copies of one face: the one still named as at export, if any.
                if let Some(&same) = several.iter().find(|&&i| self.set.faces[i].name == entry.file)
                {
                    return Ok(same);
                }
                let names: Vec<&str> =
                    several.iter().map(|&i| self.set.faces[i].name.as_str()).collect();
                Err(format!("several faces in {dir} match it ({})", names.join(", ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::metadata::read_metadata;
    use crate::face::seg::PolyKind;
    use crate::face::testutil::write_faceset;
    use crate::progress::NoProgress;

    /// A workspace whose src faceset has 3 synthetic 64 px faces, frames 00001…00003.
    fn workspace() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        let dir = ws.aligned_dir(Side::Src);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, path) in write_faceset(&dir, 3, 64, |_| 0.0).iter().enumerate() {
            let frame = format!("{:05}", i + 1);
            rewrite_metadata(path, |m| m.source_filename = frame.clone()).unwrap();
            std::fs::rename(path, dir.join(format!("{frame}_0.png"))).unwrap();
        }
        (tmp, ws)
    }

    fn triangle(kind: PolyKind, k: f32) -> SegPoly {
        SegPoly { kind, points: vec![[k, k], [4.0 * k, k], [2.0 * k, 3.0 * k]] }
    }

    fn entry(file: &str, frame: Option<&str>, size: u32, polys: Vec<SegPoly>) -> FaceLabels {
        FaceLabels {
            file: file.into(),
            source_filename: frame.map(str::to_owned),
            face_index: frame.map(|_| 0),
            face_type: None,
            size,
            polys,
        }
    }

    fn write_labels(path: &Path, faces: Vec<FaceLabels>) {
        std::fs::write(path, to_json_lines(&faces)).unwrap();
    }

    #[test]
    fn import_finds_faces_by_frame_scales_points_and_is_idempotent() {
        let (tmp, ws) = workspace();
        let dir = ws.aligned_dir(Side::Src);
        // Sorting renamed frame 2's face; the entry still finds it by frame and face index.
        std::fs::rename(dir.join("00002_0.png"), dir.join("00007_00002_0.png")).unwrap();
        let labels = tmp.path().join("labels.json");
        write_labels(
            &labels,
            vec![
                entry("00002_0.png", Some("00002"), 128, vec![triangle(PolyKind::Include, 8.0)]),
                entry("00003_0.png", None, 64, vec![triangle(PolyKind::Exclude, 2.0)]),
                entry("00009_0.png", Some("00009"), 64, vec![triangle(PolyKind::Include, 2.0)]),
            ],
        );
        let report = import_labels(&ws, Side::Src, &labels, &NoProgress).unwrap();
        assert_eq!((report.written, report.unchanged), (2, 0));
        assert_eq!(report.skipped.len(), 1);
        let line = report.skipped[0].to_string();
        assert!(
            line.contains("00009_0.png (frame 00009, face 0)") && line.contains("no such face"),
            "{line}"
        );
        let meta = read_metadata(&dir.join("00007_00002_0.png")).unwrap();
        assert_eq!(meta.seg_ie_polys, vec![triangle(PolyKind::Include, 4.0)], "128 px → 64 px");
        assert_eq!(read_metadata(&dir.join("00003_0.png")).unwrap().seg_ie_polys.len(), 1);
        assert!(read_metadata(&dir.join("00001_0.png")).unwrap().seg_ie_polys.is_empty());

        let bytes = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let before = bytes("00003_0.png");
        let again = import_labels(&ws, Side::Src, &labels, &NoProgress).unwrap();
        assert_eq!((again.written, again.unchanged, again.skipped.len()), (0, 2, 1));
        assert_eq!(bytes("00003_0.png"), before, "nothing rewritten");

        // Export lists the labelled faces in extraction order, under their current names.
        let out = tmp.path().join("out.json");
        let exported = export_labels(&ws, Side::Src, &out, &NoProgress).unwrap();
        assert_eq!((exported.faces, exported.labelled, exported.polys), (3, 2, 2));
        let file = read_labels(&out).unwrap();
        let names: Vec<&str> = file.faces.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["00007_00002_0.png", "00003_0.png"]);
        assert_eq!(file.faces[0].size, 64);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 4, "one face per line: {text}");
    }

    #[test]
    fn a_bad_labels_file_is_refused_before_anything_is_written() {
        let (tmp, ws) = workspace();
        let path = tmp.path().join("labels.json");
        let far =
            SegPoly { kind: PolyKind::Include, points: vec![[0.0, 0.0], [500.0, 0.0], [0.0, 5.0]] };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "not a labels file"),
            (br#"{"version":2,"faces":[]}"#.to_vec(), "version 2"),
            (
                to_json_lines(&[entry("a.png", Some("00001"), 64, vec![far])]),
                "faces[0] (a.png (frame 00001, face 0)): polygon 0",
            ),
            (to_json_lines(&[entry("a.png", None, 0, vec![])]), "size 0"),
            (
                to_json_lines(&[
                    entry("a.png", Some("00001"), 64, vec![]),
                    entry("b.png", Some("00001"), 64, vec![]),
                ]),
                "a second entry for frame 00001, face 0",
            ),
        ];
        let files = || {
            let mut all: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(ws.aligned_dir(Side::Src))
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (p.clone(), std::fs::read(p).unwrap()))
                .collect();
            all.sort();
            all
        };
        let before = files();
        for (bytes, words) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = import_labels(&ws, Side::Src, &path, &NoProgress).unwrap_err().to_string();
            assert!(err.contains("labels.json") && err.contains(words), "{words}: {err}");
        }
        assert_eq!(before, files());
        let missing = import_labels(&ws, Side::Dst, &tmp.path().join("nope.json"), &NoProgress);
        assert!(matches!(missing, Err(LabelsError::Read { .. })));
    }
}
