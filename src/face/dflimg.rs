//! Metadata inside face image files, so a face carries its own alignment wherever the user
//! copies it. DFL embeds a pickle in a JPEG APP15 segment (`DFLIMG/DFLJPG.py`);
//! we embed JSON, readable by any tool:
//!
//! - JPEG: an APP15 segment right after SOI, payload `DFLJSON\0` + UTF-8 JSON.
//! - PNG: an `iTXt` chunk with keyword `dfl` (uncompressed), right before `IEND`.

/// The JPEG marker of our segment: APP15, as DFL uses.
const JPEG_APP15: u8 = 0xEF;
/// Our APP15 payloads start with this, to tell them from DFL's pickles.
const JPEG_SIGNATURE: &[u8] = b"DFLJSON\0";
/// A JPEG segment's length field counts itself (2 bytes) and allows at most 65535.
const JPEG_MAX_PAYLOAD: usize = 65535 - 2;
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
    /// The metadata does not fit one JPEG segment.
    #[error("metadata of {0} bytes does not fit a JPEG segment (64 KiB at most)")]
    TooLarge(usize),
}

/// Returns `image` (JPEG or PNG bytes) with `json` embedded, replacing earlier dfl metadata.
///
/// # Errors
/// `UnknownFormat`, `Malformed`, or `TooLarge` for JPEG metadata over 64 KiB.
pub fn embed(image: &[u8], json: &[u8]) -> Result<Vec<u8>, DflImgError> {
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
/// end-of-image marker, a PNG without its `IEND` chunk).
pub fn read(image: &[u8]) -> Result<Option<Vec<u8>>, DflImgError> {
    if image.starts_with(&[0xFF, 0xD8]) {
        let found = jpeg_segment(image)?;
        if !image.ends_with(&[0xFF, 0xD9]) {
            return Err(DflImgError::Truncated("JPEG"));
        }
        Ok(found.map(|(start, end)| image[start + JPEG_SIGNATURE.len()..end].to_vec()))
    } else if image.starts_with(PNG_SIGNATURE) {
        if !png_chunks(image)?.iter().any(|(kind, ..)| kind == b"IEND") {
            return Err(DflImgError::Truncated("PNG"));
        }
        Ok(png_chunk(image)?.map(|c| c.text.to_vec()))
    } else {
        Err(DflImgError::UnknownFormat)
    }
}

fn embed_jpeg(jpeg: &[u8], json: &[u8]) -> Result<Vec<u8>, DflImgError> {
    let payload_len = JPEG_SIGNATURE.len() + json.len();
    if payload_len > JPEG_MAX_PAYLOAD {
        return Err(DflImgError::TooLarge(json.len()));
    }
    // Drop an earlier segment of ours, wherever it sits.
    let (head, tail) = match jpeg_segment(jpeg)? {
        Some((start, end)) => (&jpeg[..start - 4], &jpeg[end..]),
        None => (jpeg, &jpeg[jpeg.len()..]),
    };
    let mut out = Vec::with_capacity(head.len() + tail.len() + payload_len + 4);
    out.extend_from_slice(&head[..2]); // SOI
    out.extend_from_slice(&[0xFF, JPEG_APP15]);
    let len = u16::try_from(payload_len + 2).expect("invariant: checked against the maximum");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(JPEG_SIGNATURE);
    out.extend_from_slice(json);
    out.extend_from_slice(&head[2..]);
    out.extend_from_slice(tail);
    Ok(out)
}

/// Finds our APP15 segment: the byte range of its payload (after the length field). Every
/// header segment is walked, so a file whose headers are broken after ours is refused as a
/// whole (it would not survive being written back).
fn jpeg_segment(jpeg: &[u8]) -> Result<Option<(usize, usize)>, DflImgError> {
    let bad = |offset| DflImgError::Malformed { format: "JPEG", offset };
    let mut pos = 2;
    let mut found = None;
    loop {
        let marker = *jpeg.get(pos + 1).ok_or(bad(pos))?;
        if jpeg[pos] != 0xFF {
            return Err(bad(pos));
        }
        // Start of scan or end of image: the headers are over.
        if marker == 0xDA || marker == 0xD9 {
            return Ok(found);
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
        if found.is_none() && marker == JPEG_APP15 && jpeg[start..end].starts_with(JPEG_SIGNATURE) {
            found = Some((start, end));
        }
        pos = end;
    }
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
            embed(&encoded(".jpg"), &vec![b' '; 70_000]),
            Err(DflImgError::TooLarge(_))
        ));
    }
}
