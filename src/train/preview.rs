//! What a user looks at in the morning: the preview grid (one row per sample: src, src→src,
//! dst, dst→dst, the swap, and the predicted masks) and the loss plot over the whole history.

use std::path::Path;

use opencv::core::{CV_8UC3, Mat, Point, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::img::{ImageWriteError, write_image};
use crate::model::folder::{EvalPoint, LossPoint};

/// One row's images; masks are broadcast to grey.
///
/// # Shapes
/// Every tensor `[N, C, R, R]` with C = 3 (BGR) or 1 (mask), f32 in [0,1], any device.
pub struct PreviewTensors<'a> {
    /// The columns, left to right: src, src→src, src→src mask, dst, dst→dst, dst→dst mask,
    /// swap (the src face on dst).
    pub columns: [&'a Tensor; 7],
}

/// Builds the grid as one BGR u8 tensor `[rows·R, 7·R, 3]` (HWC), `rows` ≤ N.
fn grid(t: &PreviewTensors<'_>, rows: i64) -> Tensor {
    let cols: Vec<Tensor> = t
        .columns
        .iter()
        .map(|c| {
            let c = c.detach().to_device(Device::Cpu).to_kind(Kind::Float).narrow(0, 0, rows);
            let c = if c.size()[1] == 1 { c.expand([-1, 3, -1, -1], false) } else { c };
            c.clamp(0.0, 1.0)
        })
        .collect();
    let rows_img = Tensor::cat(&cols, 3); // [rows, 3, R, 7R]
    let (n, ch, h, w) = rows_img.size4().expect("invariant: NCHW");
    let stacked = rows_img.permute([1, 0, 2, 3]).reshape([ch, n * h, w]); // [3, rows·R, 7R]
    (stacked.permute([1, 2, 0]) * 255.0).round().to_kind(Kind::Uint8).contiguous() // [H, W, 3]
}

/// Writes the preview grid of the first `rows` samples to `path` (PNG).
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_preview(
    path: &Path,
    tensors: &PreviewTensors<'_>,
    rows: i64,
) -> Result<(), ImageWriteError> {
    let encode_err = |source| ImageWriteError::Encode { path: path.to_owned(), source };
    let pixels = grid(tensors, rows);
    let (h, w, _) = pixels.size3().expect("invariant: HWC");
    let mut mat = Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0))
        .map_err(encode_err)?;
    let len = (h * w * 3) as usize;
    let bytes = mat.data_bytes_mut().map_err(encode_err)?;
    pixels.copy_data_u8(&mut bytes[..len], len);
    write_image(path, &mat, 0)
}

/// The loss plot's size in pixels.
const PLOT_SIZE: (i32, i32) = (900, 400);
/// Margin around the plot area.
const PLOT_MARGIN: i32 = 40;
/// src loss: blue-ish (BGR).
const SRC_COLOUR: Scalar = Scalar::new(220.0, 120.0, 30.0, 0.0);
/// dst loss: orange (BGR).
const DST_COLOUR: Scalar = Scalar::new(30.0, 140.0, 250.0, 0.0);

/// The axes' colour.
const AXIS_COLOUR: Scalar = Scalar::new(90.0, 90.0, 90.0, 0.0);

/// A white [`PLOT_SIZE`] canvas with the two axes drawn; returns it and the plot area's
/// corners `[x0, y0 (bottom), x1, y1 (top)]`.
fn plot_canvas() -> opencv::Result<(Mat, [i32; 4])> {
    let (w, h) = PLOT_SIZE;
    let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(255.0))?;
    let (x0, y0, x1, y1) = (PLOT_MARGIN, h - PLOT_MARGIN, w - PLOT_MARGIN / 2, PLOT_MARGIN / 2);
    let axis = AXIS_COLOUR;
    imgproc::line(&mut img, Point::new(x0, y0), Point::new(x1, y0), axis, 1, imgproc::LINE_AA, 0)?;
    imgproc::line(&mut img, Point::new(x0, y0), Point::new(x0, y1), axis, 1, imgproc::LINE_AA, 0)?;
    Ok((img, [x0, y0, x1, y1]))
}

/// Draws src and dst loss over iterations (log-scaled loss axis) and writes it to `path`.
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_loss_plot(path: &Path, history: &[LossPoint]) -> Result<(), ImageWriteError> {
    let err = |source| ImageWriteError::Encode { path: path.to_owned(), source };
    let (mut img, [x0, y0, x1, y1]) = plot_canvas().map_err(err)?;
    let axis = AXIS_COLOUR;
    let finite: Vec<&LossPoint> = history.iter().filter(|p| p.src > 0.0 && p.dst > 0.0).collect();
    if let (Some(first), Some(last)) = (finite.first(), finite.last()) {
        let logs = finite.iter().flat_map(|p| [p.src.ln(), p.dst.ln()]);
        let (lo, hi) = logs.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let span_it = (last.iteration - first.iteration).max(1) as f64;
        let span_loss = (hi - lo).max(1e-9);
        let to_px = |it: u64, loss: f64| {
            let x = f64::from(x0) + (it - first.iteration) as f64 / span_it * f64::from(x1 - x0);
            let y = f64::from(y0) - (loss.ln() - lo) / span_loss * f64::from(y0 - y1);
            Point::new(x.round() as i32, y.round() as i32)
        };
        for (pick, colour) in [(0usize, SRC_COLOUR), (1, DST_COLOUR)] {
            let pts: Vector<Point> = finite
                .iter()
                .map(|p| to_px(p.iteration, if pick == 0 { p.src } else { p.dst }))
                .collect();
            let lines = Vector::<Vector<Point>>::from_iter([pts]);
            imgproc::polylines(&mut img, &lines, false, colour, 2, imgproc::LINE_AA, 0)
                .map_err(err)?;
        }
        let label = format!(
            "iter {}..{}  src {:.4} -> {:.4}  dst {:.4} -> {:.4}  (log scale)",
            first.iteration, last.iteration, first.src, last.src, first.dst, last.dst
        );
        let text = |img: &mut Mat, s: &str, x: i32, colour: Scalar| {
            let at = Point::new(x, y1 + 15);
            let font = imgproc::FONT_HERSHEY_SIMPLEX;
            imgproc::put_text(img, s, at, font, 0.45, colour, 1, imgproc::LINE_AA, false)
        };
        text(&mut img, &label, x0 + 5, axis).map_err(err)?;
        text(&mut img, "src", x1 - 70, SRC_COLOUR).map_err(err)?;
        text(&mut img, "dst", x1 - 35, DST_COLOUR).map_err(err)?;
    }
    write_image(path, &img, 0)
}

/// Reads one plotted value of an evaluation.
type EvalValue = fn(&EvalPoint) -> Option<f64>;

/// Draws the held-out evaluations over iterations: SSIM of src → src (blue) and dst → dst
/// (orange), and the SFace identity of the swapped dst faces with src (green) against that of
/// the dst faces themselves (red), on one axis from −0.2 to 1; writes it to `path`.
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_eval_plot(path: &Path, history: &[EvalPoint]) -> Result<(), ImageWriteError> {
    let err = |source| ImageWriteError::Encode { path: path.to_owned(), source };
    let (mut img, [x0, y0, x1, y1]) = plot_canvas().map_err(err)?;
    let axis = AXIS_COLOUR;
    let (Some(first), Some(last)) = (history.first(), history.last()) else {
        return write_image(path, &img, 0);
    };
    let span_it = (last.iteration - first.iteration).max(1) as f64;
    let to_px = |it: u64, v: f64| {
        let x = f64::from(x0) + (it - first.iteration) as f64 / span_it * f64::from(x1 - x0);
        let y = f64::from(y0) - (v.clamp(-0.2, 1.0) + 0.2) / 1.2 * f64::from(y0 - y1);
        Point::new(x.round() as i32, y.round() as i32)
    };
    let zero = to_px(first.iteration, 0.0).y;
    imgproc::line(
        &mut img,
        Point::new(x0, zero),
        Point::new(x1, zero),
        Scalar::all(210.0),
        1,
        imgproc::LINE_8,
        0,
    )
    .map_err(err)?;
    let identity = Scalar::new(60.0, 170.0, 40.0, 0.0);
    let dst_identity = Scalar::new(50.0, 50.0, 220.0, 0.0);
    let sharpness = Scalar::new(160.0, 60.0, 160.0, 0.0);
    let series: [(EvalValue, Scalar, &str); 5] = [
        (|p| Some(p.src_ssim), SRC_COLOUR, "src SSIM"),
        (|p| Some(p.dst_ssim), DST_COLOUR, "dst SSIM"),
        (|p| p.swap_identity, identity, "swap identity"),
        (|p| p.dst_identity, dst_identity, "dst identity"),
        (|p| p.src_sharpness, sharpness, "src sharpness"),
    ];
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    for (k, (value, colour, name)) in series.iter().enumerate() {
        let pts: Vector<Point> =
            history.iter().filter_map(|p| value(p).map(|v| to_px(p.iteration, v))).collect();
        if pts.is_empty() {
            continue;
        }
        let lines = Vector::<Vector<Point>>::from_iter([pts]);
        imgproc::polylines(&mut img, &lines, false, *colour, 2, imgproc::LINE_AA, 0)
            .map_err(err)?;
        let at = Point::new(x0 + 5 + 120 * k as i32, y1 + 15);
        imgproc::put_text(&mut img, name, at, font, 0.45, *colour, 1, imgproc::LINE_AA, false)
            .map_err(err)?;
    }
    let label = format!(
        "held-out faces, iter {}..{}: PSNR src {:.1} -> {:.1} dB, dst {:.1} -> {:.1} dB (axis -0.2..1)",
        first.iteration,
        last.iteration,
        first.src_psnr,
        last.src_psnr,
        first.dst_psnr,
        last.dst_psnr
    );
    imgproc::put_text(
        &mut img,
        &label,
        Point::new(x0 + 5, y1 + 35),
        font,
        0.42,
        axis,
        1,
        imgproc::LINE_AA,
        false,
    )
    .map_err(err)?;
    write_image(path, &img, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::imgcodecs;

    #[test]
    fn the_grid_has_one_row_per_sample_and_seven_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("preview.png");
        let img = Tensor::ones([3, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.5;
        let mask = Tensor::zeros([3, 1, 8, 8], (Kind::Float, Device::Cpu));
        let t = PreviewTensors { columns: [&img, &img, &mask, &img, &img, &mask, &img] };
        write_preview(&path, &t, 2).unwrap();
        let read = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert_eq!((read.rows(), read.cols()), (16, 56));
        let px = read.at_2d::<opencv::core::Vec3b>(0, 0).unwrap();
        assert_eq!(px.0, [128, 128, 128]);
        let mask_px = read.at_2d::<opencv::core::Vec3b>(0, 20).unwrap();
        assert_eq!(mask_px.0, [0, 0, 0]);
    }

    #[test]
    fn the_loss_plot_draws_both_curves() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("loss.png");
        let history: Vec<LossPoint> = (0..50)
            .map(|i| LossPoint {
                iteration: i * 10,
                src: 5.0 / (1.0 + i as f64),
                dst: 4.0 / (1.0 + i as f64),
            })
            .collect();
        write_loss_plot(&path, &history).unwrap();
        let read = imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap();
        assert_eq!((read.cols(), read.rows()), PLOT_SIZE);
        write_loss_plot(&path, &[]).unwrap(); // an empty history is an empty plot, not an error
    }
}
