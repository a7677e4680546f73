//! `dfl merge --preview FRAME`: one frame merged with the chosen settings, and a grid of the
//! face region under other mask, colour-transfer and blend choices, so settings are tuned in
//! seconds before the full run (the batch counterpart of DFL's interactive merger).

use std::path::PathBuf;

use opencv::core::{CV_8UC3, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use tch::Device;

use super::config::{BlendMode, MaskMode, MergeConfig};
use super::predict::Predictor;
use super::run::add_xseg_masks;
use super::run::{DstSide, dst_face, load_dst};
use super::{MergeError, merge_frame};
use crate::color::MergeColorTransfer;
use crate::frames::{FrameSource, Pick};
use crate::img::write_image;
use crate::model::xseg::{XSegFolder, XSegModel};
use crate::workspace::{Input, Side, Workspace};

/// Height of one grid cell's image in pixels.
const CELL_PX: i32 = 192;
/// Height of the label strip under each cell.
const LABEL_PX: i32 = 22;

/// The two files a preview writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewFiles {
    /// The whole frame merged with the chosen settings.
    pub frame: PathBuf,
    /// The face region under the alternatives, labelled.
    pub grid: PathBuf,
}

/// Merges one frame (`which`: its 1-based number or its name) with `cfg` and writes
/// `merge_preview_<frame>.png` and `merge_preview_<frame>_grid.png` into the workspace.
///
/// # Errors
/// As [`super::run`], plus `NoInput` naming the frame when it does not exist or has no face.
pub fn write_preview(
    cfg: &MergeConfig,
    ws: &Workspace,
    model: &str,
    xseg: Option<&str>,
    device: Device,
    which: &str,
    input: Option<&Input>,
) -> Result<PreviewFiles, MergeError> {
    cfg.validate()?;
    let _lock = crate::lock::shared(&ws.faceset_lock(Side::Dst), "the dst faceset")?;
    let DstSide { input, faces, .. } = load_dst(ws, input, cfg.smooth)?;
    let predictor = Predictor::load(ws, model, device)?;
    let number = which.parse::<usize>().ok();
    let mut source = FrameSource::open(&input)?;
    let found = source.next_picked(|i, name| {
        if number == Some(i + 1) || name == which { Pick::Take } else { Pick::Skip }
    });
    let no_frame = |what: &str| {
        MergeError::Preview(format!("frame {which} {what}; pick another with --preview"))
    };
    let frame = found.ok_or_else(|| no_frame("is not in the dst input"))?;
    let image = frame.image.map_err(|e| no_frame(&format!("does not decode ({e})")))?;
    let infos = faces.of(&frame.name);
    let scale_faces = |c: &MergeConfig| -> Result<Vec<_>, MergeError> {
        let (r, ft) = (predictor.resolution(), predictor.face_type());
        Ok(infos
            .iter()
            .map(|i| dst_face(&image, i, r, ft, c.output_scale(), true))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect())
    };
    let dst_faces = scale_faces(cfg)?;
    if dst_faces.is_empty() {
        return Err(no_frame("has no dst face in data_dst/aligned"));
    }
    let crops: Vec<&Mat> = dst_faces.iter().map(|f| &f.crop).collect();
    let mut predictions = predictor.predict(&crops, crops.len())?;
    // The XSeg modes: all four with an XSeg model; xseg-dst alone when every face of the frame
    // carries an applied mask.
    let xseg_model = match xseg {
        Some(name) => Some(XSegModel::load(&XSegFolder::open(ws, name)?, device)?),
        None => None,
    };
    let xseg_modes: Vec<MaskMode> = if xseg_model.is_some() {
        vec![
            MaskMode::XsegPrd,
            MaskMode::XsegDst,
            MaskMode::XsegPrdTimesDst,
            MaskMode::LearnedTimesXseg,
        ]
    } else if dst_faces.iter().all(|f| f.applied_xseg.is_some()) {
        vec![MaskMode::XsegDst]
    } else {
        Vec::new()
    };
    if let Some(widest) = xseg_modes.last() {
        let refs: Vec<&super::masked::DstFace> = dst_faces.iter().collect();
        let n = refs.len();
        add_xseg_masks(
            *widest,
            xseg_model.as_ref(),
            predictor.face_type(),
            &refs,
            &mut predictions,
            n,
        )?;
    }
    if cfg.mask_mode.needs_xseg_prd() && xseg_model.is_none()
        || cfg.mask_mode.needs_xseg_dst() && !xseg_modes.contains(&MaskMode::XsegDst)
    {
        return Err(MergeError::NeedsXSeg {
            mode: value_name(&cfg.mask_mode),
            why: " for this frame's faces".to_owned(),
        });
    }
    let merged = merge_frame(cfg, &frame.name, &image, &dst_faces, &predictions)?;
    let files = PreviewFiles {
        frame: ws.root().join(format!("merge_preview_{}.png", frame.name)),
        grid: ws.root().join(format!("merge_preview_{}_grid.png", frame.name)),
    };
    write_image(&files.frame, &merged.image, 95)?;

    let region = face_region(&image, infos.iter().map(|i| i.rect))?;
    let cell = |c: &MergeConfig, label: &str| -> Result<Mat, MergeError> {
        let faces = if c.face_scale == cfg.face_scale { None } else { Some(scale_faces(c)?) };
        let out = merge_frame(
            c,
            &frame.name,
            &image,
            faces.as_deref().unwrap_or(&dst_faces),
            &predictions,
        )?;
        Ok(labelled(&Mat::roi(&out.image, region)?.try_clone()?, label)?)
    };
    let dst_cell = labelled(&Mat::roi(&image, region)?.try_clone()?, "dst")?;
    let masks = [
        MaskMode::Full,
        MaskMode::Dst,
        MaskMode::LearnedPrd,
        MaskMode::LearnedDst,
        MaskMode::LearnedPrdTimesDst,
        MaskMode::LearnedPrdPlusDst,
    ];
    let masks: Vec<MaskMode> = masks.into_iter().chain(xseg_modes.iter().copied()).collect();
    let colours = [
        MergeColorTransfer::None,
        MergeColorTransfer::Rct,
        MergeColorTransfer::Lct,
        MergeColorTransfer::Mkl,
        MergeColorTransfer::Idt,
        MergeColorTransfer::SotM,
    ];
    let blends = [
        BlendMode::Overlay,
        BlendMode::HistMatch,
        BlendMode::Seamless,
        BlendMode::SeamlessHistMatch,
        BlendMode::RawRgb,
    ];
    let mut rows = vec![vec![dst_cell.clone(), cell(cfg, "chosen settings")?]];
    rows.push(
        std::iter::once(Ok(dst_cell.clone()))
            .chain(masks.iter().map(|&m| {
                cell(
                    &MergeConfig { mask_mode: m, ..cfg.clone() },
                    &format!("mask {}", value_name(&m)),
                )
            }))
            .collect::<Result<_, _>>()?,
    );
    rows.push(
        std::iter::once(Ok(dst_cell.clone()))
            .chain(colours.iter().map(|&c| {
                cell(
                    &MergeConfig { color_transfer: c, ..cfg.clone() },
                    &format!("ct {}", value_name(&c)),
                )
            }))
            .collect::<Result<_, _>>()?,
    );
    rows.push(
        std::iter::once(Ok(dst_cell))
            .chain(blends.iter().map(|&b| {
                cell(&MergeConfig { mode: b, ..cfg.clone() }, &format!("mode {}", value_name(&b)))
            }))
            .collect::<Result<_, _>>()?,
    );
    write_image(&files.grid, &grid(&rows)?, 95)?;
    Ok(files)
}

/// The name a clap value enum takes on the command line, for labels.
fn value_name<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
}

/// The frame region around all faces: their boxes' union grown by 60 %, clipped.
fn face_region(image: &Mat, rects: impl Iterator<Item = [f32; 4]>) -> opencv::Result<Rect> {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for [x, y, w, h] in rects {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + w), y1.max(y + h));
    }
    let (w, h) = (x1 - x0, y1 - y0);
    let grow = 0.3 * w.max(h);
    let (cols, rows) = (image.cols() as f32, image.rows() as f32);
    let left = (x0 - grow).clamp(0.0, cols - 1.0) as i32;
    let top = (y0 - grow).clamp(0.0, rows - 1.0) as i32;
    let right = (x1 + grow).clamp(1.0, cols) as i32;
    let bottom = (y1 + grow).clamp(1.0, rows) as i32;
    Ok(Rect::new(left, top, (right - left).max(1), (bottom - top).max(1)))
}

/// Scales `image` to [`CELL_PX`] high and writes `label` in a strip under it.
fn labelled(image: &Mat, label: &str) -> opencv::Result<Mat> {
    let w = (f64::from(image.cols()) * f64::from(CELL_PX) / f64::from(image.rows())).round() as i32;
    let mut scaled = Mat::default();
    imgproc::resize(
        image,
        &mut scaled,
        Size::new(w.max(1), CELL_PX),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut out = Mat::new_rows_cols_with_default(
        CELL_PX + LABEL_PX,
        scaled.cols(),
        CV_8UC3,
        Scalar::all(32.0),
    )?;
    scaled.copy_to(&mut Mat::roi_mut(&mut out, Rect::new(0, 0, scaled.cols(), CELL_PX))?)?;
    let white = Scalar::new(240.0, 240.0, 240.0, 0.0);
    // Long labels ("mask learned-prd*learned-dst") shrink to fit the cell.
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let mut base = 0;
    let width = imgproc::get_text_size(label, font, 0.42, 1, &mut base)?.width;
    let fit = f64::from(out.cols() - 8) / f64::from(width.max(1));
    let scale = 0.42 * fit.min(1.0);
    let at = Point::new(4, CELL_PX + 15);
    imgproc::put_text(&mut out, label, at, font, scale, white, 1, imgproc::LINE_AA, false)?;
    Ok(out)
}

/// Lays out rows of equally tall cells, left-aligned, on a dark background.
fn grid(rows: &[Vec<Mat>]) -> opencv::Result<Mat> {
    let gap = 4;
    let width =
        rows.iter().map(|r| r.iter().map(|c| c.cols() + gap).sum::<i32>()).max().unwrap_or(1);
    let cell_h = CELL_PX + LABEL_PX;
    let height = rows.len() as i32 * (cell_h + gap);
    let mut out =
        Mat::new_rows_cols_with_default(height.max(1), width.max(1), CV_8UC3, Scalar::all(16.0))?;
    for (i, row) in rows.iter().enumerate() {
        let mut x = 0;
        for c in row {
            let at = Rect::new(x, i as i32 * (cell_h + gap), c.cols(), c.rows());
            c.copy_to(&mut Mat::roi_mut(&mut out, at)?)?;
            x += c.cols() + gap;
        }
    }
    Ok(out)
}
