//! The metadata every aligned face file carries, and reading/writing those files.
//!
//! Names follow DFL's DFLJPG keys where DFL has the concept (`source_filename`, `source_rect`,
//! `source_landmarks`, `landmarks`, `image_to_face_mat`, `face_type`, and for XSeg
//! `seg_ie_polys` and `xseg_mask`, whose types are in [`super::seg`]).

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use serde::{Deserialize, Serialize};

use super::align::{Affine, FaceType, to_unit_square};
use super::dflimg::{self, DflImgError};
use super::landmarks::Landmarks68;
use super::seg::{self, SegPoly, XSegMask};
use crate::atomic::write_atomic;

/// The largest aligned face a file may describe.
pub const MAX_FACE_PX: u32 = 8192;
/// The largest frame side a face may come from.
const MAX_FRAME_PX: u32 = 65536;

/// The version of [`FaceMetadata`]'s layout.
pub const METADATA_VERSION: u32 = 1;

/// What an aligned face file knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceMetadata {
    /// [`METADATA_VERSION`] when written.
    pub version: u32,
    /// The frame's name (`00001` for video frame 1, the file stem for images).
    pub source_filename: String,
    /// The video file or image the frame came from.
    pub source_path: String,
    /// The frame's `[width, height]` in pixels.
    pub source_size: [u32; 2],
    /// Which face of the frame (0 = the largest).
    pub face_index: usize,
    /// How much of the head the crop shows.
    pub face_type: FaceType,
    /// The aligned image's side in pixels.
    pub size_px: u32,
    /// 68 iBUG landmarks in the aligned image.
    pub landmarks: Landmarks68,
    /// The same 68 landmarks in the frame.
    pub source_landmarks: Landmarks68,
    /// Frame → aligned image, 2×3.
    pub image_to_face_mat: Affine,
    /// The detector's box in the frame: `[x, y, w, h]`.
    pub source_rect: [f32; 4],
    /// The detector's confidence in `[0, 1]`.
    pub detector_score: f32,
    /// XSeg labels drawn on the aligned image, applied in order (absent: none). Files written
    /// before labels existed have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seg_ie_polys: Vec<SegPoly>,
    /// The mask an XSeg model predicted for the face (absent: none applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xseg_mask: Option<XSegMask>,
}

/// Aligned image file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// JPEG, smaller; quality set by `--jpeg-quality`.
    #[default]
    Jpg,
    /// PNG, lossless.
    Png,
}

impl ImageFormat {
    /// Returns the file extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpg => "jpg",
            ImageFormat::Png => "png",
        }
    }
}

/// Errors of reading or writing a face file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaceFileError {
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The face file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JPEG/PNG with our metadata.
    #[error("{}: {source}; it is not a dfl face (re-extract it, or move it out of the faceset)", .path.display())]
    Container {
        /// The face file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DflImgError,
    },
    /// The file's name is not valid UTF-8 (faces are renamed and listed by name).
    #[error("{}: the file name is not valid UTF-8; rename the file", .0.display())]
    BadName(PathBuf),
    /// The file has no dfl metadata.
    #[error("{}: no dfl metadata; it is not a dfl face (re-extract it, or move it out of the faceset)", .0.display())]
    NoMetadata(PathBuf),
    /// The metadata is not valid.
    #[error("{}: bad dfl metadata ({reason}); re-extract this face", .path.display())]
    BadMetadata {
        /// The face file.
        path: PathBuf,
        /// Why it does not parse.
        reason: String,
    },
    /// The image cannot be read or decoded.
    #[error("{0}; re-extract this face, or move it out of the faceset")]
    Image(#[from] crate::img::ImageReadError),
    /// Metadata changed by [`rewrite_metadata`] breaks a rule; the file was not written.
    #[error("{}: the new metadata is not valid ({reason}); the file was left as it was", .path.display())]
    Invalid {
        /// The face file.
        path: PathBuf,
        /// The rule it breaks.
        reason: String,
    },
    /// OpenCV could not encode or decode the image.
    #[error("{}: image codec error: {source}", .path.display())]
    Codec {
        /// The face file.
        path: PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
}

/// Encodes `face` (BGR u8) in `format`, embeds `meta`, and writes it to `path` atomically.
///
/// # Errors
/// `Codec` when OpenCV cannot encode, `Io` when the file cannot be written.
pub fn write_face(
    path: &Path,
    face: &Mat,
    meta: &FaceMetadata,
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<(), FaceFileError> {
    let codec = |source| FaceFileError::Codec { path: path.to_owned(), source };
    let params = match format {
        ImageFormat::Jpg => {
            Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(jpeg_quality)])
        }
        ImageFormat::Png => Vector::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, 3]),
    };
    let mut encoded = Vector::<u8>::new();
    imgcodecs::imencode(&format!(".{}", format.extension()), face, &mut encoded, &params)
        .map_err(codec)?;
    let json = serde_json::to_vec(meta).expect("invariant: metadata serialises");
    let bytes = dflimg::embed(encoded.as_slice(), &json)
        .map_err(|source| FaceFileError::Container { path: path.to_owned(), source })?;
    write_atomic(path, &bytes).map_err(|source| FaceFileError::Io { path: path.to_owned(), source })
}

/// Reads the metadata of the face file at `path`.
///
/// # Errors
/// `Io`, `Container`, `NoMetadata` or `BadMetadata`, each naming the file.
pub fn read_metadata(path: &Path) -> Result<FaceMetadata, FaceFileError> {
    let bytes = std::fs::read(path)
        .map_err(|source| FaceFileError::Io { path: path.to_owned(), source })?;
    parse_metadata(path, &bytes)
}

/// Parses the metadata embedded in `bytes` (the contents of the face file `path`).
///
/// # Errors
/// As [`read_metadata`].
pub fn parse_metadata(path: &Path, bytes: &[u8]) -> Result<FaceMetadata, FaceFileError> {
    let json = dflimg::read(bytes)
        .map_err(|source| FaceFileError::Container { path: path.to_owned(), source })?
        .ok_or_else(|| FaceFileError::NoMetadata(path.to_owned()))?;
    let bad = |reason: String| FaceFileError::BadMetadata { path: path.to_owned(), reason };
    let meta: FaceMetadata = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    check(&meta).map_err(bad)?;
    Ok(meta)
}

/// The rules every metadata obeys, checked where it enters and before it is rewritten.
fn check(meta: &FaceMetadata) -> Result<(), String> {
    if meta.size_px == 0 || meta.size_px > MAX_FACE_PX {
        return Err(format!("size_px {} is outside 1–{MAX_FACE_PX}", meta.size_px));
    }
    let [w, h] = meta.source_size;
    if !(1..=MAX_FRAME_PX).contains(&w) || !(1..=MAX_FRAME_PX).contains(&h) {
        return Err(format!("source_size {w}×{h} is outside 1–{MAX_FRAME_PX} px"));
    }
    // Points may lie outside their image (a face cut by the frame edge), but not far.
    let near = |points: &Landmarks68, w: u32, h: u32| {
        let (w, h) = (w as f32, h as f32);
        points.iter().all(|p| (-w..=2.0 * w).contains(&p[0]) && (-h..=2.0 * h).contains(&p[1]))
    };
    if !near(&meta.landmarks, meta.size_px, meta.size_px) || !near(&meta.source_landmarks, w, h) {
        return Err("landmarks lie far outside their image".into());
    }
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    let matrix_finite = meta.image_to_face_mat.iter().flatten().all(|x| x.is_finite());
    if !matrix_finite || !finite(&meta.source_rect) || !(0.0..=1.0).contains(&meta.detector_score) {
        return Err("image_to_face_mat, source_rect or detector_score is not finite".into());
    }
    if to_unit_square(&meta.landmarks).is_none() || to_unit_square(&meta.source_landmarks).is_none()
    {
        return Err("degenerate landmarks (the face cannot be aligned)".into());
    }
    seg::validate(&meta.seg_ie_polys, meta.size_px).map_err(|e| format!("seg_ie_polys: {e}"))?;
    if let Some(mask) = &meta.xseg_mask {
        // The header only: decoding every mask would slow every faceset read.
        mask.size().map_err(|e| e.to_string())?;
        if mask.model.len() > 256 {
            return Err("xseg_mask: model name over 256 bytes".into());
        }
    }
    Ok(())
}

/// Changes the metadata of the face file at `path` with `change`, keeping its image bytes as
/// they are (the pixels are not re-encoded), and writes it back atomically. Nothing is written
/// when `change` leaves the metadata as it was. Returns whether the file was written.
///
/// The caller keeps other writers away (the faceset lock): the file is read, then replaced.
///
/// # Errors
/// As [`read_metadata`]; `Invalid` when the changed metadata breaks a rule (nothing is
/// written); `Container` when it is over the container's limit; `Io` when writing fails.
pub fn rewrite_metadata(
    path: &Path,
    change: impl FnOnce(&mut FaceMetadata),
) -> Result<bool, FaceFileError> {
    let io = |source| FaceFileError::Io { path: path.to_owned(), source };
    let bytes = std::fs::read(path).map_err(io)?;
    let before = parse_metadata(path, &bytes)?;
    let mut meta = before.clone();
    change(&mut meta);
    if meta == before {
        return Ok(false);
    }
    check(&meta).map_err(|reason| FaceFileError::Invalid { path: path.to_owned(), reason })?;
    let json = serde_json::to_vec(&meta).expect("invariant: metadata serialises");
    let out = dflimg::embed(&bytes, &json)
        .map_err(|source| FaceFileError::Container { path: path.to_owned(), source })?;
    write_atomic(path, &out).map_err(io)?;
    Ok(true)
}

/// Reads a face file's pixels (BGR u8).
///
/// # Errors
/// `Image` when the file cannot be read or decoded.
pub fn read_face_image(path: &Path) -> Result<Mat, FaceFileError> {
    Ok(crate::img::read_image(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC3, Scalar};
    use opencv::prelude::*;

    fn sample_meta() -> FaceMetadata {
        FaceMetadata {
            version: METADATA_VERSION,
            source_filename: "00017".into(),
            source_path: "/videos/data_src.mp4".into(),
            source_size: [176, 144],
            face_index: 1,
            face_type: FaceType::WholeFace,
            size_px: 64,
            landmarks: Landmarks68::new(std::array::from_fn(|i| {
                [i as f32 * 0.5 + (i % 7) as f32, 64.0 - i as f32 * 0.25]
            })),
            source_landmarks: Landmarks68::new(std::array::from_fn(|i| {
                [100.0 + i as f32 + (i % 5) as f32, 20.0 + i as f32 / 3.0]
            })),
            image_to_face_mat: [[1.25, -0.5, -30.0], [0.5, 1.25, 12.5]],
            source_rect: [90.5, 10.0, 60.0, 66.0],
            detector_score: 0.93,
            seg_ie_polys: Vec::new(),
            xseg_mask: None,
        }
    }

    #[test]
    fn metadata_round_trips_through_jpeg_and_png() {
        let tmp = tempfile::tempdir().unwrap();
        let face =
            Mat::new_rows_cols_with_default(64, 64, CV_8UC3, Scalar::new(30.0, 60.0, 90.0, 0.0))
                .unwrap();
        for format in [ImageFormat::Jpg, ImageFormat::Png] {
            let path = tmp.path().join(format!("00017_1.{}", format.extension()));
            write_face(&path, &face, &sample_meta(), format, 95).unwrap();
            assert_eq!(read_metadata(&path).unwrap(), sample_meta(), "{format:?}");
            let img = read_face_image(&path).unwrap();
            assert_eq!((img.rows(), img.cols()), (64, 64));
        }
    }

    #[test]
    fn files_without_valid_metadata_are_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let junk = tmp.path().join("notes.jpg");
        std::fs::write(&junk, b"not an image").unwrap();
        let err = read_metadata(&junk).unwrap_err().to_string();
        assert!(err.contains("notes.jpg") && err.contains("not a dfl face"), "{err}");

        let plain = tmp.path().join("plain.png");
        let img = Mat::new_rows_cols_with_default(8, 8, CV_8UC3, Scalar::all(0.0)).unwrap();
        imgcodecs::imwrite(plain.to_str().unwrap(), &img, &Vector::new()).unwrap();
        assert!(matches!(read_metadata(&plain), Err(FaceFileError::NoMetadata(_))));

        let bad = tmp.path().join("bad.png");
        let bytes = std::fs::read(&plain).unwrap();
        std::fs::write(&bad, dflimg::embed(&bytes, br#"{"version":1}"#).unwrap()).unwrap();
        assert!(matches!(read_metadata(&bad), Err(FaceFileError::BadMetadata { .. })));
    }

    #[test]
    fn metadata_that_cannot_describe_a_face_is_refused_where_it_is_read() {
        let path = Path::new("aligned/00017_1.jpg");
        let black = Mat::new_rows_cols_with_default(8, 8, CV_8UC3, Scalar::all(0.0)).unwrap();
        let jpeg = crate::img::encode(&black, "jpg", 90).unwrap();
        let with_json = |json: &[u8]| dflimg::embed(&jpeg, json).unwrap();
        let parse = |meta: &FaceMetadata| {
            parse_metadata(path, &with_json(&serde_json::to_vec(meta).unwrap()))
        };
        assert_eq!(parse(&sample_meta()).unwrap(), sample_meta());
        let reason = |meta: &FaceMetadata| match parse(meta) {
            Err(FaceFileError::BadMetadata { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(&FaceMetadata { size_px: 0, ..sample_meta() }),
            "size_px 0 is outside 1–8192"
        );
        let collapsed = FaceMetadata {
            landmarks: sample_meta().landmarks.map(|_| [3.0, 4.0]),
            ..sample_meta()
        };
        assert!(reason(&collapsed).contains("degenerate"));
        let mut json = serde_json::to_value(sample_meta()).unwrap();
        json["landmarks"] = serde_json::json!([[1.0, 2.0], [3.0, 4.0]]);
        let bytes = with_json(&serde_json::to_vec(&json).unwrap());
        let err = parse_metadata(path, &bytes).unwrap_err().to_string();
        assert!(err.contains("2 landmarks, 68 expected"), "{err}");
        assert!(err.contains("00017_1.jpg") && err.contains("re-extract"), "{err}");
    }

    fn labels() -> Vec<SegPoly> {
        use crate::face::seg::PolyKind;
        vec![
            SegPoly {
                kind: PolyKind::Include,
                points: vec![[4.0, 4.0], [60.0, 5.0], [32.0, 62.5]],
            },
            SegPoly {
                kind: PolyKind::Exclude,
                points: vec![[20.0, 20.0], [40.0, 20.0], [30.0, 30.0]],
            },
        ]
    }

    #[test]
    fn files_of_the_first_layout_read_without_labels_or_mask() {
        let path = Path::new("aligned/00017_1.jpg");
        let black = Mat::new_rows_cols_with_default(8, 8, CV_8UC3, Scalar::all(0.0)).unwrap();
        let jpeg = crate::img::encode(&black, "jpg", 90).unwrap();
        let json = serde_json::to_vec(&sample_meta()).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(!text.contains("seg_ie_polys") && !text.contains("xseg_mask"), "{text}");
        let meta = parse_metadata(path, &dflimg::embed(&jpeg, &json).unwrap()).unwrap();
        assert!(meta.seg_ie_polys.is_empty() && meta.xseg_mask.is_none());
        // Labels outside the face are refused where they are read.
        let mut far = serde_json::to_value(sample_meta()).unwrap();
        far["seg_ie_polys"] =
            serde_json::json!([{"kind":"include","points":[[0,0],[1000,0],[0,10]]}]);
        let bytes = dflimg::embed(&jpeg, &serde_json::to_vec(&far).unwrap()).unwrap();
        let err = parse_metadata(path, &bytes).unwrap_err().to_string();
        assert!(err.contains("seg_ie_polys: polygon 0") && err.contains("far outside"), "{err}");
    }

    #[test]
    fn rewriting_metadata_keeps_the_image_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let face =
            Mat::new_rows_cols_with_default(64, 64, CV_8UC3, Scalar::new(30.0, 60.0, 90.0, 0.0))
                .unwrap();
        // A mask large enough to need continuation segments: noise compresses badly.
        let mut noise =
            Mat::new_rows_cols_with_default(512, 512, opencv::core::CV_8UC1, Scalar::all(0.0))
                .unwrap();
        opencv::core::randu(&mut noise, &Scalar::all(0.0), &Scalar::all(255.0)).unwrap();
        let mask = XSegMask::encode("xseg", 7, &noise).unwrap();
        assert!(mask.png.len() > 30_000, "{}", mask.png.len());
        for format in [ImageFormat::Jpg, ImageFormat::Png] {
            let path = tmp.path().join(format!("00017_1.{}", format.extension()));
            write_face(&path, &face, &sample_meta(), format, 95).unwrap();
            let before = std::fs::read(&path).unwrap();
            let written = rewrite_metadata(&path, |m| {
                m.seg_ie_polys = labels();
                m.xseg_mask = Some(mask.clone());
            })
            .unwrap();
            assert!(written);
            let after = std::fs::read(&path).unwrap();
            let meta = read_metadata(&path).unwrap();
            assert_eq!(meta.seg_ie_polys, labels(), "{format:?}");
            assert_eq!(meta.xseg_mask.as_ref(), Some(&mask));
            assert_eq!(
                meta.xseg_mask.unwrap().decode().unwrap().data_bytes().unwrap(),
                noise
                    .data_bytes()
                    .unwrap()
                    .iter()
                    .map(|&v| if v >= 128 { 255 } else { 0 })
                    .collect::<Vec<u8>>()
            );
            // The image itself: the bytes from the first scan (JPEG) or the IDAT chunks (PNG)
            // on are the same, and so are the decoded pixels.
            let image_part = |bytes: &[u8]| -> Vec<u8> {
                let at = match format {
                    ImageFormat::Jpg => bytes.windows(2).position(|w| w == [0xFF, 0xDA]),
                    ImageFormat::Png => bytes.windows(4).position(|w| w == b"IDAT"),
                };
                let end = match format {
                    ImageFormat::Jpg => bytes.len(),
                    // Up to our chunk's length field.
                    ImageFormat::Png => bytes.windows(4).rposition(|w| w == b"iTXt").unwrap() - 4,
                };
                bytes[at.unwrap()..end].to_vec()
            };
            assert_eq!(image_part(&before), image_part(&after), "{format:?}");
            let pixels = |bytes: &[u8]| {
                let m = imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_COLOR)
                    .unwrap();
                m.data_bytes().unwrap().to_vec()
            };
            assert_eq!(pixels(&before), pixels(&after));
            // Unchanged metadata writes nothing; clearing brings back the first bytes.
            assert!(!rewrite_metadata(&path, |m| m.seg_ie_polys = labels()).unwrap());
            assert!(
                rewrite_metadata(&path, |m| {
                    m.seg_ie_polys.clear();
                    m.xseg_mask = None;
                })
                .unwrap()
            );
            assert_eq!(std::fs::read(&path).unwrap(), before, "{format:?}");
            // Invalid changes are refused and leave the file as it was.
            let err = rewrite_metadata(&path, |m| m.seg_ie_polys = vec![labels()[0].clone(); 4000])
                .unwrap_err();
            assert!(matches!(err, FaceFileError::Invalid { .. }), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before);
        }
    }
}
