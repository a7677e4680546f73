//! What a user looks at in the morning: the preview grid (one row per sample: src, src→src,
//! dst, dst→dst, the swap, and the predicted masks), the loss plot over the whole history and
//! the plot of the held-out evaluations (drawn by `crate::plot`).

use std::path::Path;

use opencv::core::{CV_8UC3, Mat, Scalar};
use opencv::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::img::{ImageWriteError, write_image};
use crate::model::folder::{EvalPoint, LossPoint};
use crate::plot::{self, Chart, Series, YScale};

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

/// The loss and evaluation plots' size in pixels (width, height).
const PLOT_SIZE: (u32, u32) = (900, 400);

/// One series of a history: its points `(iteration, value)`, `None` values left out.
fn history_series<'a, P>(
    name: &'a str,
    colour: plot::Rgb,
    history: &[P],
    value: impl Fn(&P) -> Option<(u64, f64)>,
) -> Series<'a> {
    let points = history.iter().filter_map(value).map(|(it, v)| (it as f64, v)).collect();
    Series { name, colour, points }
}

/// Draws src and dst loss over iterations (log-scaled loss axis, each curve's latest value at
/// its end) and writes it to `path`; an empty history gives a "no data yet" image.
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_loss_plot(path: &Path, history: &[LossPoint]) -> Result<(), ImageWriteError> {
    let caption = match (history.first(), history.last()) {
        (Some(a), Some(b)) if history.len() > 1 => Some(format!(
            "iterations {}–{}: src {} → {}, dst {} → {}",
            a.iteration,
            b.iteration,
            plot::format_significant(a.src, 3),
            plot::format_significant(b.src, 3),
            plot::format_significant(a.dst, 3),
            plot::format_significant(b.dst, 3),
        )),
        _ => None,
    };
    let chart = Chart {
        caption,
        x_title: "iteration",
        y_title: "loss",
        y_scale: YScale::Log,
        y_include: None,
        series: vec![
            history_series("src", plot::BLUE, history, |p| Some((p.iteration, p.src))),
            history_series("dst", plot::ORANGE, history, |p| Some((p.iteration, p.dst))),
        ],
        guides: Vec::new(),
        has_end_labels: true,
    };
    plot::write_chart(path, &chart, PLOT_SIZE)
}

/// Draws the held-out evaluations over iterations: SSIM of src → src (blue) and dst → dst
/// (orange), the SFace identity of the swapped dst faces with src (green) against that of the
/// dst faces themselves (red), and the sharpness of src → src (purple), on one axis that shows
/// at least 0 to 1; the PSNR's first and last values in the caption. Writes it to `path`.
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_eval_plot(path: &Path, history: &[EvalPoint]) -> Result<(), ImageWriteError> {
    let caption = match (history.first(), history.last()) {
        (Some(a), Some(b)) if history.len() > 1 => Some(format!(
            "held-out faces, PSNR: src {:.1} → {:.1} dB, dst {:.1} → {:.1} dB",
            a.src_psnr, b.src_psnr, a.dst_psnr, b.dst_psnr
        )),
        (Some(a), _) => Some(format!(
            "held-out faces, PSNR: src {:.1} dB, dst {:.1} dB",
            a.src_psnr, a.dst_psnr
        )),
        _ => None,
    };
    let at = |p: &EvalPoint, v: Option<f64>| v.map(|v| (p.iteration, v));
    let chart = Chart {
        caption,
        x_title: "iteration",
        y_title: "SSIM, identity (cosine), sharpness",
        y_scale: YScale::Linear,
        y_include: Some((0.0, 1.0)),
        series: vec![
            history_series("src SSIM", plot::BLUE, history, |p| at(p, Some(p.src_ssim))),
            history_series("dst SSIM", plot::ORANGE, history, |p| at(p, Some(p.dst_ssim))),
            history_series("swap identity", plot::GREEN, history, |p| at(p, p.swap_identity)),
            history_series("dst identity", plot::RED, history, |p| at(p, p.dst_identity)),
            history_series("src sharpness", plot::PURPLE, history, |p| at(p, p.src_sharpness)),
        ],
        guides: Vec::new(),
        has_end_labels: true,
    };
    plot::write_chart(path, &chart, PLOT_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::imgcodecs;
    use std::path::Path;

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

    /// A decaying loss history of `n` points, one every 10 iterations.
    fn losses(n: u64) -> Vec<LossPoint> {
        (0..n)
            .map(|i| LossPoint {
                iteration: (i + 1) * 10,
                src: 5.0 / (1.0 + i as f64),
                dst: 4.0 / (1.0 + i as f64),
            })
            .collect()
    }

    /// `n` held-out evaluations, improving; identity measured from the third on.
    fn evaluations(n: u64) -> Vec<EvalPoint> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 10.0;
                EvalPoint {
                    iteration: (i + 1) * 200,
                    src_ssim: 0.5 + t * 0.2,
                    src_psnr: 15.0 + t,
                    dst_ssim: 0.55 + t * 0.2,
                    dst_psnr: 16.0 + t,
                    src_sharpness: Some(0.1 + t * 0.3),
                    swap_sharpness: Some(0.2 + t * 0.3),
                    swap_identity: (i >= 2).then_some(0.3 + t * 0.2),
                    dst_identity: (i >= 2).then_some(-0.1),
                }
            })
            .collect()
    }

    /// Reads `path` (BGR).
    fn read(path: &Path) -> Mat {
        imgcodecs::imread(path.to_str().unwrap(), imgcodecs::IMREAD_COLOR).unwrap()
    }

    /// How many pixels of `img` are exactly `colour`.
    fn pixels_of(img: &Mat, colour: plot::Rgb) -> usize {
        let bgr = [colour[2], colour[1], colour[0]];
        img.data_bytes().unwrap().chunks_exact(3).filter(|p| *p == bgr).count()
    }

    fn size_of(img: &Mat) -> (u32, u32) {
        (img.cols() as u32, img.rows() as u32)
    }

    #[test]
    fn the_loss_plot_draws_both_curves() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("loss.png");
        write_loss_plot(&path, &losses(50)).unwrap();
        let img = read(&path);
        assert_eq!(size_of(&img), PLOT_SIZE);
        assert!(pixels_of(&img, plot::BLUE) > 300, "src curve");
        assert!(pixels_of(&img, plot::ORANGE) > 300, "dst curve");
    }

    #[test]
    fn the_eval_plot_draws_every_measured_series() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("eval.png");
        write_eval_plot(&path, &evaluations(10)).unwrap();
        let img = read(&path);
        assert_eq!(size_of(&img), PLOT_SIZE);
        for colour in [plot::BLUE, plot::ORANGE, plot::GREEN, plot::RED, plot::PURPLE] {
            assert!(pixels_of(&img, colour) > 300, "series of colour {colour:?}");
        }
    }

    #[test]
    fn an_empty_or_one_point_history_gives_a_plot_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (loss, eval) = (tmp.path().join("loss.png"), tmp.path().join("eval.png"));
        for n in [0, 1] {
            write_loss_plot(&loss, &losses(n)).unwrap();
            write_eval_plot(&eval, &evaluations(n)).unwrap();
            for img in [read(&loss), read(&eval)] {
                assert_eq!(size_of(&img), PLOT_SIZE);
                // No data: only the "no data yet" text. One point: its dot and its value.
                let src = pixels_of(&img, plot::BLUE);
                assert!(if n == 0 { src == 0 } else { src > 10 }, "{n} points: {src} src pixels");
            }
        }
    }
}
