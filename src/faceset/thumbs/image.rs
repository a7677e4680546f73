//! A thumbnail from a face file's bytes: a reduced decode where the format allows it, an
//! area-averaging shrink, a JPEG.

use std::path::Path;

use opencv::core::{Mat, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use super::{THUMB_EXT, ThumbError, ThumbOptions};
use crate::img::{ImageReadError, encode};

/// Decodes a face file's bytes at the smallest size that still covers the thumbnail, shrinks
/// it to fit `size_px` (area averaging) and encodes it as JPEG.
///
/// # Errors
/// `NotAnImage` or `Encode`, naming `path`.
pub fn make_thumb(bytes: &[u8], path: &Path, options: ThumbOptions) -> Result<Vec<u8>, ThumbError> {
    make_thumb_decoded_with(bytes, path, options, decode_flags(bytes, options.size_px))
}

/// [`make_thumb`] with OpenCV's decode `flags`.
pub(super) fn make_thumb_decoded_with(
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
pub(super) fn decode_flags(bytes: &[u8], size_px: u32) -> i32 {
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
pub(super) fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
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
pub(super) fn is_whole_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9])
}
