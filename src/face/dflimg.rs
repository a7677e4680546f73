//! Metadata inside face image files, so a face carries its own alignment wherever the user
//! copies it. DFL embeds a pickle in a JPEG APP15 segment (`DFLIMG/DFLJPG.py`);
//! we embed JSON, readable by any tool:
//!
//! - JPEG: APP15 segments right after SOI. The first one's payload is `DFLJSON\0` + the
//!   first (up to 65525) bytes of the UTF-8 JSON. JSON that does not fit one segment (labels
//!   and an applied XSeg mask can make it larger) goes on in continuation segments, payload
//!   `DFLJSN+\0` + part number (u16, big-endian, from 1) + part count (u16, big-endian) + the
//!   next bytes. A reader concatenates the parts in order; a missing, repeated or reordered
//!   part is an error. A file written before continuation segments existed has the first
//!   segment only and reads as before. The JSON is at most [`MAX_JSON`] bytes.
//! - PNG: an `iTXt` chunk with keyword `dfl` (uncompressed), right before `IEND`.
//!
//! Embedding replaces every earlier segment or chunk of ours.

/// The JPEG marker of our segments: APP15, as DFL uses.
const JPEG_APP15: u8 = 0xEF;
/// Our first APP15 payload starts with this, to tell it from DFL's pickles.
const JPEG_SIGNATURE: &[u8] = b"DFLJSON\0";
/// Our continuation APP15 payloads start with this, then part number and part count.
const JPEG_CONTINUATION: &[u8] = b"DFLJSN+\0";
/// The bytes after [`JPEG_CONTINUATION`] before the JSON: part number and count, u16 each.
const JPEG_PART_HEADER: usize = 4;
/// A JPEG segment's length field counts itself (2 bytes) and allows at most 65535.
const JPEG_MAX_PAYLOAD: usize = 65535 - 2;
/// JSON bytes in the first segment at most.
const JPEG_FIRST_CHUNK: usize = JPEG_MAX_PAYLOAD - JPEG_SIGNATURE.len();
/// JSON bytes in a continuation segment at most.
const JPEG_NEXT_CHUNK: usize = JPEG_MAX_PAYLOAD - JPEG_CONTINUATION.len() - JPEG_PART_HEADER;
/// The largest metadata embedded or read, in bytes (JPEG and PNG): a hostile file cannot make
/// a reader hold more.
pub const MAX_JSON: usize = 16 << 20;
/// The PNG file signature.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The iTXt keyword of our chunk.
const PNG_KEYWORD: &[u8] = b"dfl";

/// Errors of embedding or reading metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DflImgError {
    /// The bytes are neither a JPEG nor a PNG.
    #[error("not a JPEG or PNG file")]
    UnknownFormat,
    /// The file's structure is broken at `offset`.
    #[error("malformed {format} at byte {offset}")]
    Malformed {
        /// "JPEG" or "PNG".
        format: &'static str,
        /// Where reading failed.
        offset: usize,
    },
    /// The file ends before its image does (a copy or a write cut short).
    #[error("truncated {0}: the file ends before its image does")]
    Truncated(&'static str),
    /// The metadata is larger than [`MAX_JSON`].
    #[error("metadata of {0} bytes is over the limit of 16 MiB")]
    TooLarge(usize),
    /// Parts of JPEG metadata split over several segments are missing (another tool dropped
    /// segments it did not know).
    #[error("the metadata has {found} of its {expected} JPEG segments")]
    Incomplete {
        /// Parts found, the first segment included.
        found: usize,
        /// Parts the segments announce.
        expected: usize,
    },
}

/// Returns `image` (JPEG or PNG bytes) with `json` embedded, replacing earlier dfl metadata.
///
/// # Errors
/// `UnknownFormat`, `Malformed`, or `TooLarge` for metadata over [`MAX_JSON`].
pub fn embed(image: &[u8], json: &[u8]) -> Result<Vec<u8>, DflImgError> {
    if json.len() > MAX_JSON {
        return Err(DflImgError::TooLarge(json.len()));
    }
    if image.starts_with(&[0xFF, 0xD8]) {
        embed_jpeg(image, json)
    } else if image.starts_with(PNG_SIGNATURE) {
        embed_png(image, json)
    } else {
        Err(DflImgError::UnknownFormat)
    }
}

/// Returns the embedded JSON of a JPEG or PNG, `None` when it has none.
///
/// # Errors
/// `UnknownFormat`, `Malformed`, or `Truncated` for a file cut short (a JPEG without its
/// end-of-image marker, a PNG without its `IEND` chunk); `Incomplete` for JPEG metadata that
/// lost some of its segments; `TooLarge` for metadata over [`MAX_JSON`].
pub fn read(image: &[u8]) -> Result<Option<Vec<u8>>, DflImgError> {
    if image.starts_with(&[0xFF, 0xD8]) {
        let found = jpeg_segments(image)?;
        if !image.ends_with(&[0xFF, 0xD9]) {
            return Err(DflImgError::Truncated("JPEG"));
        }
        Ok(found.json)
    } else if image.starts_with(PNG_SIGNATURE) {
        if !png_chunks(image)?.iter().any(|(kind, ..)| kind == b"IEND") {
            return Err(DflImgError::Truncated("PNG"));
        }
        match png_chunk(image)? {
            Some(c) if c.text.len() > MAX_JSON => Err(DflImgError::TooLarge(c.text.len())),
            found => Ok(found.map(|c| c.text.to_vec())),
        }
    } else {
        Err(DflImgError::UnknownFormat)
    }
}

/// Returns `image` (JPEG or PNG bytes) without dfl's metadata; the other bytes as they were.
///
/// # Errors
/// `UnknownFormat`, `Malformed`, `Truncated` or `Incomplete`, as [`read`].
pub fn strip(image: &[u8]) -> Result<Vec<u8>, DflImgError> {
    if image.starts_with(&[0xFF, 0xD8]) {
        let mut out = Vec::with_capacity(image.len());
        let mut pos = 0;
        for &(start, end) in &jpeg_segments(image)?.ranges {
            out.extend_from_slice(&image[pos..start]);
            pos = end;
        }
        out.extend_from_slice(&image[pos..]);
        Ok(out)
    } else if image.starts_with(PNG_SIGNATURE) {
        let mut out = image.to_vec();
        if let Some(old) = png_chunk(image)? {
            out.drain(old.start..old.end);
        }
        Ok(out)
    } else {
        Err(DflImgError::UnknownFormat)
    }
}

fn embed_jpeg(jpeg: &[u8], json: &[u8]) -> Result<Vec<u8>, DflImgError> {
    // Drop every earlier segment of ours, wherever it sits.
    let body = strip(jpeg)?;

    let first_len = json.len().min(JPEG_FIRST_CHUNK);
    let (first, rest) = json.split_at(first_len);
    let parts: Vec<&[u8]> = rest.chunks(JPEG_NEXT_CHUNK).collect();
    let count = u16::try_from(parts.len()).map_err(|_| DflImgError::TooLarge(json.len()))?;
    let mut out = Vec::with_capacity(body.len() + json.len() + 16 * (parts.len() + 1));
    out.extend_from_slice(&body[..2]); // SOI
    push_segment(&mut out, &[JPEG_SIGNATURE, first]);
    for (i, part) in parts.iter().enumerate() {
        let number = u16::try_from(i + 1).map_err(|_| DflImgError::TooLarge(json.len()))?;
        let (n, c) = (number.to_be_bytes(), count.to_be_bytes());
        push_segment(&mut out, &[JPEG_CONTINUATION, &n, &c, part]);
    }
    out.extend_from_slice(&body[2..]);
    Ok(out)
}

/// Appends an APP15 segment whose payload is `pieces` one after the other (at most
/// [`JPEG_MAX_PAYLOAD`] bytes, as the callers split them).
fn push_segment(out: &mut Vec<u8>, pieces: &[&[u8]]) {
    let payload: usize = pieces.iter().map(|p| p.len()).sum();
    debug_assert!(payload <= JPEG_MAX_PAYLOAD);
    out.extend_from_slice(&[0xFF, JPEG_APP15]);
    // The length field counts itself; the callers keep the payload within 65533 bytes.
    let len = u16::try_from(payload + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    for piece in pieces {
        out.extend_from_slice(piece);
    }
}

/// Our segments of a JPEG: where they sit, and the JSON they carry.
#[derive(Debug, Default)]
struct JpegSegments {
    /// Every segment of ours (first and continuation), marker included, end exclusive.
    ranges: Vec<(usize, usize)>,
    /// The JSON of the first segment and its continuations, if there is a first segment.
    json: Option<Vec<u8>>,
}

/// Finds our APP15 segments. Every header segment is walked, so a file whose headers are
/// broken after ours is refused as a whole (it would not survive being written back).
///
/// The metadata is the first `DFLJSON` segment and the continuation segments after it, whose
/// part numbers must count 1, 2, … up to the count they all announce. Later `DFLJSON`
/// segments are ignored (and replaced by [`embed`]); a continuation before any `DFLJSON`
/// segment, out of order or with a different count is `Malformed`.
fn jpeg_segments(jpeg: &[u8]) -> Result<JpegSegments, DflImgError> {
    let bad = |offset| DflImgError::Malformed { format: "JPEG", offset };
    let mut pos = 2;
    let mut found = JpegSegments::default();
    // Parts read after the first segment, and the count they announce.
    let mut parts = 0usize;
    let mut expected: Option<usize> = None;
    loop {
        let marker = *jpeg.get(pos + 1).ok_or(bad(pos))?;
        if jpeg[pos] != 0xFF {
            return Err(bad(pos));
        }
        // Start of scan or end of image: the headers are over.
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len_bytes = jpeg.get(pos + 2..pos + 4).ok_or(bad(pos + 2))?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let (start, end) = (pos + 4, pos + 2 + len);
        if len < 2 {
            return Err(bad(pos + 2));
        }
        if end > jpeg.len() {
            return Err(DflImgError::Truncated("JPEG"));
        }
        let payload = &jpeg[start..end];
        if marker == JPEG_APP15 && payload.starts_with(JPEG_SIGNATURE) {
            found.ranges.push((pos, end));
            if found.json.is_none() {
                found.json = Some(payload[JPEG_SIGNATURE.len()..].to_vec());
            }
        } else if marker == JPEG_APP15 && payload.starts_with(JPEG_CONTINUATION) {
            found.ranges.push((pos, end));
            let header = payload
                .get(JPEG_CONTINUATION.len()..JPEG_CONTINUATION.len() + JPEG_PART_HEADER)
                .ok_or(bad(start))?;
            let number = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let count = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let Some(json) = found.json.as_mut() else { return Err(bad(start)) };
            if number != parts + 1 || expected.is_some_and(|e| e != count) || number > count {
                return Err(bad(start));
            }
            let part = &payload[JPEG_CONTINUATION.len() + JPEG_PART_HEADER..];
            if json.len() + part.len() > MAX_JSON {
                return Err(DflImgError::TooLarge(json.len() + part.len()));
            }
            json.extend_from_slice(part);
            parts = number;
            expected = Some(count);
        }
        pos = end;
    }
    if let Some(expected) = expected.filter(|&e| e != parts) {
        return Err(DflImgError::Incomplete { found: parts + 1, expected: expected + 1 });
    }
    Ok(found)
}

/// One PNG chunk of ours: where it sits and its text.
struct PngChunk<'a> {
    start: usize,
    end: usize,
    text: &'a [u8],
}

fn embed_png(png: &[u8], json: &[u8]) -> Result<Vec<u8>, DflImgError> {
    let mut body = png.to_vec();
    if let Some(old) = png_chunk(png)? {
        body.drain(old.start..old.end);
    }
    let iend = png_chunks(&body)?
        .into_iter()
        .find(|(kind, ..)| kind == b"IEND")
        .map(|(_, start, _)| start)
        .ok_or(DflImgError::Malformed { format: "PNG", offset: body.len() })?;
    // iTXt: keyword, NUL, compression flag 0, method 0, empty language, NUL, empty
    // translated keyword, NUL, text.
    let mut data = Vec::with_capacity(PNG_KEYWORD.len() + 5 + json.len());
    data.extend_from_slice(PNG_KEYWORD);
    data.extend_from_slice(&[0, 0, 0, 0, 0]);
    data.extend_from_slice(json);
    let mut chunk = Vec::with_capacity(data.len() + 12);
    let len = u32::try_from(data.len()).map_err(|_| DflImgError::TooLarge(json.len()))?;
    chunk.extend_from_slice(&len.to_be_bytes());
    chunk.extend_from_slice(b"iTXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    body.splice(iend..iend, chunk);
    Ok(body)
}

/// Lists the chunks as (type, start, end) byte ranges, end exclusive.
fn png_chunks(png: &[u8]) -> Result<Vec<([u8; 4], usize, usize)>, DflImgError> {
    let bad = |offset| DflImgError::Malformed { format: "PNG", offset };
    let mut chunks = Vec::new();
    let mut pos = PNG_SIGNATURE.len();
    while pos < png.len() {
        let header = png.get(pos..pos + 8).ok_or(bad(pos))?;
        let len = usize::try_from(u32::from_be_bytes([header[0], header[1], header[2], header[3]]))
            .map_err(|_| bad(pos))?;
        let kind = [header[4], header[5], header[6], header[7]];
        let end = pos.checked_add(12 + len).ok_or(bad(pos))?;
        if end > png.len() {
            return Err(DflImgError::Truncated("PNG"));
        }
        chunks.push((kind, pos, end));
        pos = end;
        if &kind == b"IEND" {
            break;
        }
    }
    Ok(chunks)
}

fn png_chunk(png: &[u8]) -> Result<Option<PngChunk<'_>>, DflImgError> {
    for (kind, start, end) in png_chunks(png)? {
        let data = &png[start + 8..end - 4];
        let prefix_len = PNG_KEYWORD.len() + 5;
        if &kind == b"iTXt"
            && data.len() >= prefix_len
            && data.starts_with(PNG_KEYWORD)
            && data[PNG_KEYWORD.len()] == 0
        {
            return Ok(Some(PngChunk { start, end, text: &data[prefix_len..] }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
    use opencv::imgcodecs;
    use opencv::prelude::*;

    fn encoded(ext: &str) -> Vec<u8> {
        let img =
            Mat::new_rows_cols_with_default(24, 32, CV_8UC3, Scalar::new(10.0, 200.0, 90.0, 0.0))
                .unwrap();
        let mut buf = Vector::<u8>::new();
        imgcodecs::imencode(ext, &img, &mut buf, &Vector::new()).unwrap();
        buf.to_vec()
    }

    fn decodes_to_same_pixels(a: &[u8], b: &[u8]) -> bool {
        let dec = |bytes: &[u8]| {
            imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_COLOR).unwrap()
        };
        let (ma, mb) = (dec(a), dec(b));
        ma.data_bytes().unwrap() == mb.data_bytes().unwrap()
    }

    #[test]
    fn jpeg_round_trip_keeps_pixels_and_replaces_old_metadata() {
        let jpeg = encoded(".jpg");
        assert_eq!(read(&jpeg).unwrap(), None);
        let once = embed(&jpeg, br#"{"face_index":0}"#).unwrap();
        assert_eq!(read(&once).unwrap().as_deref(), Some(&br#"{"face_index":0}"#[..]));
        let twice = embed(&once, br#"{"face_index":1}"#).unwrap();
        assert_eq!(read(&twice).unwrap().as_deref(), Some(&br#"{"face_index":1}"#[..]));
        assert_eq!(twice.len(), once.len(), "the old segment was replaced, not kept");
        assert!(decodes_to_same_pixels(&jpeg, &twice));
    }

    /// Found by fuzzing (`fuzz/`, target `dflimg_embed`): a segment length that points into the
    /// middle of the next segment was read as ours, and the file written back did not read.
    #[test]
    fn a_segment_length_that_breaks_the_headers_is_malformed() {
        let with = embed(&encoded(".jpg"), br#"{"a":1}"#).unwrap();
        assert!(read(&with).unwrap().is_some());
        let mut broken = with.clone();
        broken[5] = broken[5].wrapping_add(3); // our segment's length, low byte
        assert!(matches!(read(&broken), Err(DflImgError::Malformed { .. })));
    }

    #[test]
    fn a_file_cut_short_is_truncated_not_a_face() {
        for ext in [".jpg", ".png"] {
            let whole = embed(&encoded(ext), b"{}").unwrap();
            assert!(read(&whole).unwrap().is_some(), "{ext}");
            let cut = &whole[..whole.len() - 20];
            assert!(matches!(read(cut), Err(DflImgError::Truncated(_))), "{ext}");
        }
    }

    #[test]
    fn png_round_trip_keeps_pixels_and_valid_crcs() {
        let png = encoded(".png");
        let with = embed(&embed(&png, b"{}").unwrap(), br#"{"a":1}"#).unwrap();
        assert_eq!(read(&with).unwrap().as_deref(), Some(&br#"{"a":1}"#[..]));
        for (_, start, end) in png_chunks(&with).unwrap() {
            let crc = u32::from_be_bytes(with[end - 4..end].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&with[start + 4..end - 4]));
        }
        assert!(decodes_to_same_pixels(&png, &with));
    }

    #[test]
    fn junk_and_truncated_files_are_errors_not_panics() {
        assert_eq!(read(b"hello"), Err(DflImgError::UnknownFormat));
        let jpeg = embed(&encoded(".jpg"), b"{}").unwrap();
        assert!(read(&jpeg[..5]).is_err());
        let png = embed(&encoded(".png"), b"{}").unwrap();
        for cut in [9, 20, 40] {
            assert!(read(&png[..cut]).is_err() || read(&png[..cut]).unwrap().is_none());
        }
        assert!(matches!(
            embed(&encoded(".jpg"), &vec![b' '; MAX_JSON + 1]),
            Err(DflImgError::TooLarge(_))
        ));
    }

    /// JSON of `len` bytes: a string of varied text, so misplaced parts would show.
    fn long_json(len: usize) -> Vec<u8> {
        let mut json = b"{\"a\":\"".to_vec();
        json.extend((0..len - 8).map(|i| b'a' + (i % 26) as u8));
        json.extend_from_slice(b"\"}");
        json
    }

    /// Our segments of `jpeg` as (start, end) byte ranges, marker included.
    fn ours(jpeg: &[u8]) -> Vec<(usize, usize)> {
        jpeg_segments(jpeg).unwrap().ranges
    }

    #[test]
    fn large_metadata_splits_over_segments_and_reads_back_whole() {
        let jpeg = encoded(".jpg");
        let json = long_json(300_000);
        let with = embed(&jpeg, &json).unwrap();
        assert_eq!(ours(&with).len(), 5, "300 000 bytes take a first segment and 4 more");
        assert_eq!(read(&with).unwrap().as_deref(), Some(&json[..]));
        assert!(decodes_to_same_pixels(&jpeg, &with));
        // Replacing removes every old segment: a small JSON leaves one.
        let small = embed(&with, br#"{"b":2}"#).unwrap();
        assert_eq!(ours(&small).len(), 1);
        assert_eq!(read(&small).unwrap().as_deref(), Some(&br#"{"b":2}"#[..]));
        assert_eq!(small, embed(&jpeg, br#"{"b":2}"#).unwrap());
        // Exactly one full first segment has no continuation; one byte more has one.
        for (len, segments) in [(JPEG_FIRST_CHUNK, 1), (JPEG_FIRST_CHUNK + 1, 2)] {
            let json = long_json(len);
            let with = embed(&jpeg, &json).unwrap();
            assert_eq!(ours(&with).len(), segments, "{len}");
            assert_eq!(read(&with).unwrap().as_deref(), Some(&json[..]), "{len}");
        }
    }

    #[test]
    fn a_file_of_the_single_segment_format_still_reads() {
        // Written by hand as the first format did: SOI, APP15 `DFLJSON\0` + JSON, the rest.
        let jpeg = encoded(".jpg");
        let json = br#"{"face_index":3}"#;
        let mut old = jpeg[..2].to_vec();
        old.extend_from_slice(&[0xFF, 0xEF]);
        old.extend_from_slice(&u16::try_from(2 + 8 + json.len()).unwrap().to_be_bytes());
        old.extend_from_slice(b"DFLJSON\0");
        old.extend_from_slice(json);
        old.extend_from_slice(&jpeg[2..]);
        assert_eq!(read(&old).unwrap().as_deref(), Some(&json[..]));
        assert_eq!(embed(&old, json).unwrap(), old, "written back byte for byte");
    }

    #[test]
    fn lost_or_cut_continuation_segments_are_errors_not_panics() {
        let with = embed(&encoded(".jpg"), &long_json(200_000)).unwrap();
        let segments = ours(&with);
        assert_eq!(segments.len(), 4);
        // Cut inside the last continuation segment.
        let (start, end) = segments[3];
        let cut = &with[..start + (end - start) / 2];
        assert_eq!(read(cut), Err(DflImgError::Truncated("JPEG")));
        // A continuation dropped by another tool: the middle one, then the last one.
        for (dropped, expect_incomplete) in [(2, false), (3, true)] {
            let (start, end) = segments[dropped];
            let mut lost = with[..start].to_vec();
            lost.extend_from_slice(&with[end..]);
            match read(&lost) {
                Err(DflImgError::Incomplete { found: 3, expected: 4 }) => {
                    assert!(expect_incomplete)
                }
                Err(DflImgError::Malformed { .. }) => assert!(!expect_incomplete),
                other => panic!("segment {dropped} dropped: {other:?}"),
            }
        }
        // A continuation without its first segment.
        let (start, end) = segments[0];
        let mut headless = with[..start].to_vec();
        headless.extend_from_slice(&with[end..]);
        assert!(matches!(read(&headless), Err(DflImgError::Malformed { .. })));
        // A continuation too short for its part header.
        let mut short = with[..2].to_vec();
        short.extend_from_slice(&[0xFF, 0xEF, 0, 12]);
        short.extend_from_slice(b"DFLJSN+\0\0\x01");
        short.extend_from_slice(&with[2..]);
        assert!(matches!(read(&short), Err(DflImgError::Malformed { .. })));
    }
}
