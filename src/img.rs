//! Image helpers over OpenCV `Mat` (HWC, BGR, u8): encoding, atomic image writes, warps, and
//! the intensity image dlib's predictor reads.

use std::path::Path;

use opencv::core::{BORDER_CONSTANT, Mat, Scalar, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use crate::atomic::write_atomic;
use crate::face::align::Affine;

/// Errors of encoding or writing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageWriteError {
    /// OpenCV could not encode the image.
    #[error("cannot encode {}: {source}", .path.display())]
    Encode {
        /// The target file.
        path: std::path::PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}; check free space and permissions", .path.display())]
    Io {
        /// The target file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Errors of reading an image file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageReadError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// OpenCV failed while decoding.
    #[error("cannot decode {}: {source}", .path.display())]
    Codec {
        /// The file.
        path: std::path::PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// The bytes are not an image OpenCV reads (empty, truncated or another format).
    #[error("{} is not a readable image (empty, truncated or another format)", .0.display())]
    Undecodable(std::path::PathBuf),
}

/// Reads and decodes the image file `path` (BGR u8).
///
/// # Errors
/// `Io`, `Codec` or `Undecodable`, naming the file.
pub fn read_image(path: &Path) -> Result<Mat, ImageReadError> {
    let bytes = std::fs::read(path)
        .map_err(|source| ImageReadError::Io { path: path.to_owned(), source })?;
    decode(&bytes, path)
}

/// Decodes the bytes of the image file `path` (BGR u8).
///
/// # Errors
/// `Codec` or `Undecodable`, naming the file.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Mat, ImageReadError> {
    let image = imgcodecs::imdecode(&Vector::from_slice(bytes), imgcodecs::IMREAD_COLOR)
        .map_err(|source| ImageReadError::Codec { path: path.to_owned(), source })?;
    if image.empty() {
        return Err(ImageReadError::Undecodable(path.to_owned()));
    }
    Ok(image)
}

/// PNG compression level used for every PNG dfl writes (fast, still lossless).
const PNG_COMPRESSION: i32 = 3;

/// Encodes `image` as JPEG (with `jpeg_quality`) or PNG, chosen by `extension` ("jpg"/"png").
///
/// # Errors
/// OpenCV's error.
pub fn encode(image: &Mat, extension: &str, jpeg_quality: u8) -> opencv::Result<Vec<u8>> {
    let params = if extension == "png" {
        Vector::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    } else {
        Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(jpeg_quality)])
    };
    let mut buf = Vector::<u8>::new();
    imgcodecs::imencode(&format!(".{extension}"), image, &mut buf, &params)?;
    Ok(buf.to_vec())
}

/// Encodes `image` by `path`'s extension and writes it atomically.
///
/// # Errors
/// `Encode` or `Io`, naming the file.
pub fn write_image(path: &Path, image: &Mat, jpeg_quality: u8) -> Result<(), ImageWriteError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("png").to_ascii_lowercase();
    let bytes = encode(image, &ext, jpeg_quality)
        .map_err(|source| ImageWriteError::Encode { path: path.to_owned(), source })?;
    write_atomic(path, &bytes)
        .map_err(|source| ImageWriteError::Io { path: path.to_owned(), source })
}

/// Warps `frame` by `to_face` into a `size_px`² image (Lanczos, black outside the frame).
///
/// DFL meant `INTER_LANCZOS4` but passed it into `warpAffine`'s `dst` slot, so it warps
/// bilinearly (`docs/dfl-parity.md`, "Quirks"); we use Lanczos as intended.
///
/// # Errors
/// OpenCV's error.
pub fn warp_to_face(frame: &Mat, to_face: &Affine, size_px: u32) -> opencv::Result<Mat> {
    let m = Mat::from_slice_2d(to_face)?;
    let side = i32::try_from(size_px).unwrap_or(i32::MAX);
    let mut out = Mat::default();
    imgproc::warp_affine(
        frame,
        &mut out,
        &m,
        Size::new(side, side),
        imgproc::INTER_LANCZOS4,
        BORDER_CONSTANT,
        Scalar::all(0.0),
    )?;
    Ok(out)
}

/// Returns the frame's pixels as one contiguous BGR byte slice, copying only when needed.
///
/// # Errors
/// OpenCV's error (e.g. a Mat that is not 8-bit).
pub fn bgr_bytes(image: &Mat) -> opencv::Result<std::borrow::Cow<'_, [u8]>> {
    if image.is_continuous() {
        Ok(std::borrow::Cow::Borrowed(image.data_bytes()?))
    } else {
        Ok(std::borrow::Cow::Owned(image.try_clone()?.data_bytes()?.to_vec()))
    }
}

/// Builds a `CV_32FC3` Mat from HWC BGR floats (`width·height·3` values).
///
/// # Errors
/// OpenCV's error, or a length that is not `width·height·3`.
pub fn mat_from_bgr_f32(data: &[f32], width: usize, height: usize) -> opencv::Result<Mat> {
    if data.len() != width * height * 3 {
        return Err(opencv::Error::new(
            opencv::core::StsBadSize,
            "pixel data does not match the image size",
        ));
    }
    let (rows, cols) =
        (i32::try_from(height).unwrap_or(i32::MAX), i32::try_from(width).unwrap_or(i32::MAX));
    let mut mat =
        Mat::new_rows_cols_with_default(rows, cols, opencv::core::CV_32FC3, Scalar::all(0.0))?;
    for (px, c) in mat.data_typed_mut::<opencv::core::Vec3f>()?.iter_mut().zip(data.chunks_exact(3))
    {
        *px = opencv::core::Vec3f::from([c[0], c[1], c[2]]);
    }
    Ok(mat)
}

/// Copies a `CV_32FC3` Mat out as HWC BGR floats.
///
/// # Errors
/// OpenCV's error (e.g. a Mat of another type).
pub fn bgr_f32_from_mat(mat: &Mat) -> opencv::Result<Vec<f32>> {
    let continuous = if mat.is_continuous() { mat.clone() } else { mat.try_clone()? };
    Ok(continuous.data_typed::<opencv::core::Vec3f>()?.iter().flat_map(|px| px.0).collect())
}
