//! Contact sheets: the faces in their new order as labelled thumbnails, 80 to a PNG, so a
//! person reviews thousands of faces at a glance. Rejected faces get their own sheets with a
//! red label.

use std::path::{Path, PathBuf};

use opencv::core::{CV_8UC3, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use rayon::prelude::*;

use crate::img::write_image;

/// Thumbnail side in pixels.
const THUMB_PX: i32 = 128;
/// Label strip under each thumbnail.
const LABEL_PX: i32 = 34;
/// Thumbnails per row and rows per sheet.
const COLUMNS: usize = 10;
const ROWS: usize = 8;
/// Space between cells.
const GAP: i32 = 4;

/// One cell: the face file and two lines of text.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The face image now.
    pub path: PathBuf,
    /// First line (rank and score).
    pub title: String,
    /// Second line (name, or the reason it was rejected).
    pub detail: String,
}

/// Writes `<prefix>_001.png`, `<prefix>_002.png`… into `dir`; returns the files written.
/// `rejected` draws the labels in red.
///
/// # Errors
/// OpenCV's or the OS's error naming the file.
pub fn write_sheets(
    dir: &Path,
    prefix: &str,
    cells: &[Cell],
    rejected: bool,
) -> Result<Vec<PathBuf>, SheetError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| SheetError::Io { path: dir.to_owned(), source })?;
    let per_sheet = COLUMNS * ROWS;
    cells
        .chunks(per_sheet)
        .enumerate()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(k, chunk)| {
            let path = dir.join(format!("{prefix}_{:03}.png", k + 1));
            let sheet = render(chunk, rejected)
                .map_err(|source| SheetError::OpenCv { path: path.clone(), source })?;
            write_image(&path, &sheet, 95)
                .map_err(|e| SheetError::Write { path: path.clone(), reason: e.to_string() })?;
            Ok(path)
        })
        .collect()
}

/// Removes the sheets an earlier run wrote (`sheet_*.png`, `trash_*.png`) from `dir`.
pub fn clear_sheets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("sheet_") || name.starts_with("trash_")) && name.ends_with(".png") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Errors of writing sheets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SheetError {
    /// The folder could not be made.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing failed.
    #[error("{}: {source}", .path.display())]
    OpenCv {
        /// The sheet.
        path: PathBuf,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// The PNG could not be written.
    #[error("{}: {reason}", .path.display())]
    Write {
        /// The sheet.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn render(cells: &[Cell], rejected: bool) -> opencv::Result<Mat> {
    let rows = cells.len().div_ceil(COLUMNS) as i32;
    let cols = cells.len().min(COLUMNS) as i32;
    let (cell_w, cell_h) = (THUMB_PX + GAP, THUMB_PX + LABEL_PX + GAP);
    let mut out =
        Mat::new_rows_cols_with_default(rows * cell_h, cols * cell_w, CV_8UC3, Scalar::all(24.0))?;
    let colour = if rejected {
        Scalar::new(90.0, 90.0, 255.0, 0.0)
    } else {
        Scalar::new(235.0, 235.0, 235.0, 0.0)
    };
    for (k, cell) in cells.iter().enumerate() {
        let (x, y) = ((k % COLUMNS) as i32 * cell_w, (k / COLUMNS) as i32 * cell_h);
        if let Ok(face) = opencv::imgcodecs::imread(
            cell.path.to_string_lossy().as_ref(),
            opencv::imgcodecs::IMREAD_COLOR,
        ) && !face.empty()
        {
            let mut thumb = Mat::default();
            imgproc::resize(
                &face,
                &mut thumb,
                Size::new(THUMB_PX, THUMB_PX),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
            thumb.copy_to(&mut Mat::roi_mut(&mut out, Rect::new(x, y, THUMB_PX, THUMB_PX))?)?;
        }
        put_fitted(&mut out, &cell.title, Point::new(x + 2, y + THUMB_PX + 13), colour)?;
        put_fitted(&mut out, &cell.detail, Point::new(x + 2, y + THUMB_PX + 28), colour)?;
    }
    Ok(out)
}

/// Writes `text` at `at`, shrunk to fit a thumbnail's width.
fn put_fitted(out: &mut Mat, text: &str, at: Point, colour: Scalar) -> opencv::Result<()> {
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let mut base = 0;
    let width = imgproc::get_text_size(text, font, 0.38, 1, &mut base)?.width;
    let scale = 0.38 * (f64::from(THUMB_PX - 4) / f64::from(width.max(1))).min(1.0);
    imgproc::put_text(out, text, at, font, scale, colour, 1, imgproc::LINE_AA, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheets_hold_eighty_faces_each_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let faces: Vec<Cell> = (0..81u8)
            .map(|i| {
                let path = tmp.path().join(format!("{i}.png"));
                let img = Mat::new_rows_cols_with_default(
                    64,
                    64,
                    CV_8UC3,
                    Scalar::all(f64::from(i) * 3.0),
                )
                .unwrap();
                write_image(&path, &img, 95).unwrap();
                Cell { path, title: format!("#{i}"), detail: "x".into() }
            })
            .collect();
        let out = tmp.path().join("sheets");
        let written = write_sheets(&out, "sheet", &faces, false).unwrap();
        assert_eq!(written.len(), 2);
        let first = opencv::imgcodecs::imread(
            written[0].to_string_lossy().as_ref(),
            opencv::imgcodecs::IMREAD_COLOR,
        )
        .unwrap();
        assert_eq!((first.cols(), first.rows()), (10 * 132, 8 * 166));
        // The third thumbnail (grey 6) is in the first row, third column.
        let px = first.at_2d::<opencv::core::Vec3b>(60, 2 * 132 + 60).unwrap()[0];
        assert_eq!(px, 6);
        clear_sheets(&out);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }
}
