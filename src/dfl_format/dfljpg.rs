//! DeepFaceLab's face images: a JPEG (or, from older versions, a PNG) carrying the face's
//! metadata as a pickled dict.
//!
//! A JPEG is a list of segments, each `FF`, a marker byte and (for most markers) a big-endian
//! 16-bit length that counts itself, then the payload. Standalone markers (`D0`–`D7`, `01`)
//! have no length, and `FF` bytes may pad the space before a marker. The start-of-frame
//! segment (`C0` baseline, `C2` progressive, the other `Cn` rarely) gives precision, height and
//! width; start-of-scan (`DA`) is followed by the compressed pixels, so the walk stops there.
//! DeepFaceLab adds one `APP15` segment (`FF EF`) right after the file's last `APPn` segment;
//! its payload is the pickled dict. When a file has several, the last one counts, as in
//! DeepFaceLab's own reader. A single segment holds at most 65 533 bytes, which bounds the
//! metadata. dfl's own face files use APP15 too, for JSON behind an 8-byte signature
//! (`face::dflimg`); those segments are not DeepFaceLab's and are skipped.
//!
//! A PNG is an 8-byte signature, then chunks: a big-endian 32-bit length, a 4-letter type, the
//! data and a CRC. `IHDR` comes first and gives width and height; `IEND` ends the file.
//! DeepFaceLab's PNG faces carry the pickle in a private chunk before `IEND`, typed `fcWp` by
//! the versions of 2019–2020 and `jaNf` by the PNG support added back in 2021. CRCs are not
//! checked: the pickle reader is safe on any bytes.

use super::pickle::{self, PickleError, Value};

/// The JPEG marker of DeepFaceLab's metadata segment.
const APP15: u8 = 0xEF;
/// How dfl's own APP15 payloads (JSON, and its continuation parts) begin.
const DFL_JSON_SIGNATURES: [&[u8; 8]; 2] = [b"DFLJSON\0", b"DFLJSN+\0"];
/// The first bytes of every PNG file.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// The PNG chunk types that hold DeepFaceLab's pickle (2019–2020, then 2021).
const PNG_DFL_CHUNKS: [&[u8; 4]; 2] = [b"fcWp", b"jaNf"];
/// The longest chunk a PNG may declare (2^31 - 1).
const PNG_MAX_CHUNK: usize = 0x7fff_ffff;

/// The container of a face image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A JPEG, metadata in an APP15 segment.
    Jpeg,
    /// A PNG, metadata in an `fcWp` or `jaNf` chunk.
    Png,
}

/// Why a face image's container or metadata was not read. The caller adds the file's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DflImageError {
    /// Neither the JPEG nor the PNG signature.
    #[error("not a JPEG or PNG file (it starts with {head:02x?})")]
    UnknownFormat {
        /// The first bytes of the file (up to 8).
        head: Vec<u8>,
    },
    /// The file ends inside a segment or chunk, or before the pixel data.
    #[error("{container:?} file is cut short at byte {offset}")]
    Truncated {
        /// The container.
        container: Container,
        /// Where the data ran out.
        offset: usize,
    },
    /// A segment or chunk that breaks the container's rules.
    #[error("{container:?} file is malformed at byte {offset}: {reason}")]
    Malformed {
        /// The container.
        container: Container,
        /// Where the bad segment or chunk starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// No frame header (JPEG) or `IHDR` (PNG) before the pixel data.
    #[error("{container:?} file has no image size header")]
    NoSize {
        /// The container.
        container: Container,
    },
    /// The metadata payload is not a pickle this reader accepts.
    #[error("face metadata at byte {offset} is unreadable")]
    Metadata {
        /// Where the payload starts.
        offset: usize,
        /// Why the pickle was refused.
        #[source]
        source: PickleError,
    },
}

/// Where a face image keeps its size and metadata, found without decoding either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout<'a> {
    /// JPEG or PNG.
    pub container: Container,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The metadata payload and its offset in the file, if the file has one.
    pub payload: Option<(usize, &'a [u8])>,
}

/// A face image's size and decoded metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DflImage {
    /// JPEG or PNG.
    pub container: Container,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pickled metadata (a dict in DeepFaceLab's files); `None` for a plain image.
    pub metadata: Option<Value>,
}

/// Reads a face image's size and metadata from the file's bytes.
///
/// # Errors
///
/// [`DflImageError`] when the container is damaged or the metadata is refused.
pub fn read(bytes: &[u8]) -> Result<DflImage, DflImageError> {
    let layout = layout(bytes)?;
    let metadata = match layout.payload {
        Some((offset, payload)) => Some(
            pickle::loads(payload).map_err(|source| DflImageError::Metadata { offset, source })?,
        ),
        None => None,
    };
    let Layout { container, width, height, .. } = layout;
    Ok(DflImage { container, width, height, metadata })
}

/// Walks a JPEG's segments or a PNG's chunks; decodes nothing.
///
/// # Errors
///
/// [`DflImageError`] when the container is damaged.
pub fn layout(bytes: &[u8]) -> Result<Layout<'_>, DflImageError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_layout(bytes)
    } else if bytes.starts_with(&PNG_SIGNATURE) {
        png_layout(bytes)
    } else {
        Err(DflImageError::UnknownFormat { head: bytes[..bytes.len().min(8)].to_vec() })
    }
}

/// The largest payload one JPEG segment holds (its 16-bit length counts itself).
pub const MAX_SEGMENT_PAYLOAD: usize = 65_533;

/// Returns the file without DeepFaceLab's metadata: every APP15 segment that is not dfl's own
/// (JPEG), or every `fcWp`/`jaNf` chunk (PNG). The other bytes, the pixels among them, are
/// kept as they were.
///
/// # Errors
///
/// [`DflImageError`] when the container is damaged.
pub fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, DflImageError> {
    let layout = layout(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    let mut kept = 0;
    for (start, end) in metadata_spans(bytes, layout.container)? {
        out.extend_from_slice(&bytes[kept..start]);
        kept = end;
    }
    out.extend_from_slice(&bytes[kept..]);
    Ok(out)
}

/// Returns the JPEG `bytes` with `payload` (a pickled dict) as DeepFaceLab stores it: one
/// APP15 segment right after the last `APPn` segment, replacing any DeepFaceLab metadata.
///
/// # Errors
///
/// [`DflImageError`] when the container is damaged or not a JPEG, or the payload is longer
/// than [`MAX_SEGMENT_PAYLOAD`].
pub fn embed_jpeg(bytes: &[u8], payload: &[u8]) -> Result<Vec<u8>, DflImageError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(DflImageError::UnknownFormat { head: bytes[..bytes.len().min(8)].to_vec() });
    }
    if payload.len() > MAX_SEGMENT_PAYLOAD {
        return Err(DflImageError::Malformed {
            container: Container::Jpeg,
            offset: 0,
            reason: "the metadata is longer than one JPEG segment holds",
        });
    }
    let stripped = strip_metadata(bytes)?;
    let after_last_app = jpeg_segments(&stripped)?
        .into_iter()
        .filter(|s| (0xE0..=0xEF).contains(&s.marker))
        .map(|s| s.end)
        .max()
        .unwrap_or(2);
    let len = u16::try_from(payload.len() + 2).expect("invariant: checked above").to_be_bytes();
    Ok([&stripped[..after_last_app], &[0xFF, APP15], &len, payload, &stripped[after_last_app..]]
        .concat())
}

/// One JPEG segment before the scan: its marker and byte range, marker bytes included.
struct Segment {
    marker: u8,
    start: usize,
    end: usize,
}

/// The segments of a JPEG up to and including start-of-scan (standalone markers included).
fn jpeg_segments(bytes: &[u8]) -> Result<Vec<Segment>, DflImageError> {
    let container = Container::Jpeg;
    let truncated = |offset| DflImageError::Truncated { container, offset };
    let (mut pos, mut segments) = (2, Vec::new());
    loop {
        let start = pos;
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        if pos == start {
            let reason = "expected a marker";
            return Err(DflImageError::Malformed { container, offset: pos, reason });
        }
        let marker = *bytes.get(pos).ok_or(truncated(pos))?;
        pos += 1;
        if matches!(marker, 0xD0..=0xD7 | 0x01 | 0xD9) {
            segments.push(Segment { marker, start, end: pos });
            if marker == 0xD9 {
                return Ok(segments);
            }
            continue;
        }
        let len = usize::from(be16(bytes, pos).ok_or(truncated(pos))?);
        if len < 2 || bytes.len() < pos + len {
            return Err(truncated(bytes.len()));
        }
        pos += len;
        segments.push(Segment { marker, start, end: pos });
        if marker == 0xDA {
            return Ok(segments);
        }
    }
}

/// The byte ranges of DeepFaceLab's metadata in a file whose layout already parsed.
fn metadata_spans(
    bytes: &[u8],
    container: Container,
) -> Result<Vec<(usize, usize)>, DflImageError> {
    Ok(match container {
        Container::Jpeg => jpeg_segments(bytes)?
            .into_iter()
            .filter(|s| {
                let body = bytes.get(s.start + 4..s.end).unwrap_or_default();
                s.marker == APP15 && !DFL_JSON_SIGNATURES.iter().any(|sig| body.starts_with(*sig))
            })
            .map(|s| (s.start, s.end))
            .collect(),
        Container::Png => {
            let (mut pos, mut spans) = (PNG_SIGNATURE.len(), Vec::new());
            // The layout walked these chunks already, so every length is in bounds.
            while let (Some(len), Some(kind)) = (be32(bytes, pos), bytes.get(pos + 4..pos + 8)) {
                let end = pos + 12 + len as usize;
                if PNG_DFL_CHUNKS.iter().any(|k| k.as_slice() == kind) {
                    spans.push((pos, end));
                }
                if kind == b"IEND" {
                    break;
                }
                pos = end;
            }
            spans
        }
    })
}

/// Reads a big-endian u16 at `at`.
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// Reads a big-endian u32 at `at`.
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Whether a marker starts a frame (`C0`–`CF` except `C4` DHT, `C8` JPG and `CC` DAC).
fn is_start_of_frame(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn jpeg_layout(bytes: &[u8]) -> Result<Layout<'_>, DflImageError> {
    let container = Container::Jpeg;
    let truncated = |offset| DflImageError::Truncated { container, offset };
    let malformed = |offset, reason| DflImageError::Malformed { container, offset, reason };
    let (mut pos, mut size, mut payload) = (2, None, None);
    loop {
        let start = pos;
        if *bytes.get(pos).ok_or(truncated(pos))? != 0xFF {
            return Err(malformed(pos, "expected a marker"));
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or(truncated(pos))?;
        pos += 1;
        match marker {
            0xD9 => break,
            0xD0..=0xD7 | 0x01 => continue,
            0x00 | 0xD8 => return Err(malformed(start, "unexpected marker before the scan")),
            _ => {}
        }
        let len = usize::from(be16(bytes, pos).ok_or(truncated(pos))?);
        if len < 2 {
            return Err(malformed(start, "segment length below 2"));
        }
        let body = bytes.get(pos + 2..pos + len).ok_or(truncated(bytes.len()))?;
        if is_start_of_frame(marker) {
            let (Some(height), Some(width)) = (be16(body, 1), be16(body, 3)) else {
                return Err(malformed(start, "frame header too short"));
            };
            size = Some((u32::from(width), u32::from(height)));
        } else if marker == APP15 && !DFL_JSON_SIGNATURES.iter().any(|s| body.starts_with(*s)) {
            payload = Some((pos + 2, body));
        }
        pos += len;
        if marker == 0xDA {
            break;
        }
    }
    let (width, height) = size.ok_or(DflImageError::NoSize { container })?;
    Ok(Layout { container, width, height, payload })
}

fn png_layout(bytes: &[u8]) -> Result<Layout<'_>, DflImageError> {
    let container = Container::Png;
    let truncated = |offset| DflImageError::Truncated { container, offset };
    let (mut pos, mut size, mut payload) = (PNG_SIGNATURE.len(), None, None);
    loop {
        let len = be32(bytes, pos).ok_or(truncated(pos))? as usize;
        if len > PNG_MAX_CHUNK {
            let reason = "chunk length above 2^31 - 1";
            return Err(DflImageError::Malformed { container, offset: pos, reason });
        }
        let kind = bytes.get(pos + 4..pos + 8).ok_or(truncated(pos))?;
        let data_end = (pos + 8).checked_add(len).ok_or(truncated(bytes.len()))?;
        let data = bytes.get(pos + 8..data_end).ok_or(truncated(bytes.len()))?;
        if bytes.len() < data_end + 4 {
            return Err(truncated(bytes.len()));
        }
        match kind {
            b"IHDR" => size = Some((be32(data, 0), be32(data, 4))),
            b"IEND" => break,
            _ if PNG_DFL_CHUNKS.iter().any(|k| k.as_slice() == kind) => {
                payload = Some((pos + 8, data));
            }
            _ => {}
        }
        pos = data_end + 4;
    }
    let Some((Some(width), Some(height))) = size else {
        return Err(DflImageError::NoSize { container });
    };
    Ok(Layout { container, width, height, payload })
}

#[cfg(test)]
mod tests {
    use super::super::pickle::tests::{
        PWNED_MARKER, error_chain, expected, first_difference, fixture, manifest, to_json,
    };
    use super::*;

    fn image_entries() -> Vec<serde_json::Value> {
        [manifest("jpeg"), manifest("png")].concat()
    }

    /// Where the JPEG's scan data starts (just after the start-of-scan header).
    fn scan_start(jpeg: &[u8]) -> usize {
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
        sos + 2 + usize::from(be16(jpeg, sos + 2).expect("a length"))
    }

    #[test]
    fn fixtures_give_their_size_and_metadata() {
        let entries: Vec<_> =
            image_entries().into_iter().filter(|e| e["error"].is_null()).collect();
        assert_eq!(entries.len(), 4);
        for entry in entries {
            let name = entry["file"].as_str().expect("file name");
            let image =
                read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", error_chain(&e)));
            let size = (u64::from(image.width), u64::from(image.height));
            assert_eq!(Some(size), entry["width"].as_u64().zip(entry["height"].as_u64()), "{name}");
            let want_png = entry["kind"] == "png";
            assert_eq!(image.container == Container::Png, want_png, "{name}");
            match (entry["expect"].as_str(), &image.metadata) {
                (None, None) => {}
                (Some(want), Some(meta)) => {
                    if let Some(diff) = first_difference(&to_json(meta), &expected(want), "") {
                        panic!("{name}: metadata differs at {diff}");
                    }
                }
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_hostile_payload_is_refused_and_nothing_runs() {
        let _ = std::fs::remove_file(PWNED_MARKER);
        for entry in image_entries().into_iter().filter(|e| e["error"].is_string()) {
            let name = entry["file"].as_str().expect("file name");
            let err = read(&fixture(name)).expect_err(name);
            let chain = error_chain(&err);
            assert!(chain.contains(entry["error"].as_str().expect("error")), "{name}: {chain}");
            assert!(matches!(err, DflImageError::Metadata { .. }), "{name}: {chain}");
        }
        assert!(!std::path::Path::new(PWNED_MARKER).exists(), "a hostile pickle ran");
    }

    #[test]
    fn every_truncation_errors_until_the_pixels() {
        for entry in image_entries() {
            let name = entry["file"].as_str().expect("file name");
            let data = fixture(name);
            let complete = if entry["kind"] == "jpeg" { scan_start(&data) } else { data.len() };
            for len in 0..data.len() {
                let result = read(&data[..len]);
                assert!(
                    result.is_err() || len >= complete,
                    "{name} cut to {len} bytes was accepted"
                );
            }
        }
    }

    #[test]
    fn a_progressive_frame_header_gives_the_size_too() {
        let mut jpeg = fixture("face.jpg");
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline header");
        jpeg[sof + 1] = 0xC2;
        let image = read(&jpeg).expect("progressive");
        assert_eq!((image.width, image.height), (24, 16));
        assert!(image.metadata.is_some());
    }

    #[test]
    fn fill_bytes_and_standalone_markers_are_skipped() {
        let plain = fixture("plain.jpg");
        let padded = [&plain[..2], b"\xff\xff\xff\xd0", &plain[2..]].concat();
        let l = layout(&padded).expect("padded");
        assert_eq!((l.width, l.height, l.payload), (24, 16, None));
    }

    #[test]
    fn the_last_app15_segment_counts() {
        let face = fixture("face.jpg");
        let app15 = |payload: &[u8]| {
            let len = u16::try_from(payload.len() + 2).expect("short payload").to_be_bytes();
            [&[0xFF, APP15], &len[..], payload].concat()
        };
        let twice = [&face[..2], &app15(b"\x80\x04N.")[..], &face[2..]].concat();
        assert!(
            read(&twice)
                .expect("first is ignored")
                .metadata
                .is_some_and(|m| m.get("landmarks").is_some())
        );
        let sos = face.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
        let last = [&face[..sos], &app15(b"\x80\x04K\x07.")[..], &face[sos..]].concat();
        assert_eq!(read(&last).expect("second counts").metadata, Some(Value::Int(7)));
    }

    #[test]
    fn dfl_json_segments_are_not_deepfacelab_metadata() {
        let ours = |signature: &[u8]| {
            let payload = [signature, b"{}"].concat();
            let len = u16::try_from(payload.len() + 2).expect("short payload").to_be_bytes();
            [&[0xFF, APP15], &len[..], &payload].concat()
        };
        for signature in DFL_JSON_SIGNATURES {
            let plain = fixture("plain.jpg");
            let only_ours = [&plain[..2], &ours(signature), &plain[2..]].concat();
            assert_eq!(read(&only_ours).expect("dfl's own face").metadata, None);
            let face = fixture("face.jpg");
            let both = [&face[..2], &ours(signature), &face[2..]].concat();
            let meta = read(&both).expect("both").metadata.expect("DeepFaceLab's metadata");
            assert_eq!(meta.get("face_type").and_then(Value::as_str), Some("whole_face"));
        }
    }

    #[test]
    fn junk_is_refused_cleanly() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\xff",
            b"\xff\xd8",
            b"\xff\xd8\xff",
            b"\xff\xd8\xff\xe0\x00",
            b"\xff\xd8\xff\xe0\x00\x01",
            b"\xff\xd8\x00\x00",
            b"\xff\xd8\xff\xd9",
            b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff IHDR",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IEND\x00\x00\x00\x00",
        ];
        for bytes in cases {
            assert!(read(bytes).is_err(), "{bytes:?} was accepted");
        }
        let err = read(b"GIF89a").expect_err("a GIF");
        assert!(err.to_string().starts_with("not a JPEG or PNG file"), "{err}");
        let no_size = read(b"\xff\xd8\xff\xd9").expect_err("no frame header");
        assert!(matches!(no_size, DflImageError::NoSize { container: Container::Jpeg }));
    }
}
