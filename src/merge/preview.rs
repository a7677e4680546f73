//! One frame merged under any settings, and a grid of the face region under other mask,
//! colour-transfer and blend choices: `dfl merge --preview FRAME` writes them so settings are
//! tuned in seconds before the full run, and the studio's merge tuner draws them live (the
//! batch and the web counterparts of DFL's interactive merger).

use std::path::{Path, PathBuf};

use opencv::core::{CV_8UC3, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use tch::Device;

use super::config::{BlendMode, MaskMode, MergeConfig};
use super::faces::DstFaceInfo;
use super::masked::{DstFace, FacePrediction};
use super::predict::Predictor;
use super::run::add_xseg_masks;
use super::run::{DstSide, dst_face, load_dst};
use super::scenes::MergeSettings;
use super::{MergeError, MergedFrame, merge_frame};
use crate::color::MergeColorTransfer;
use crate::face::align::{FaceType, transform_mat_scaled};
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

/// Merges one frame (`which`: its 1-based number or its name) with its settings (its scene's,
/// else the default) and writes `merge_preview_<frame>.png` and `merge_preview_<frame>_grid.png`
/// into the workspace.
///
/// # Errors
/// As [`super::run`], plus `Preview` naming the frame when it does not exist or has no face.
pub fn write_preview(
    settings: &MergeSettings,
    ws: &Workspace,
    model: &str,
    xseg: Option<&str>,
    device: Device,
    which: &str,
    input: Option<&Input>,
) -> Result<PreviewFiles, MergeError> {
    settings.validate()?;
    let _lock = crate::lock::shared(&ws.faceset_lock(Side::Dst), "the dst faceset")?;
    let DstSide { input, mut faces, .. } = load_dst(ws, input)?;
    let predictor = Predictor::load(ws, model, device)?;
    let xseg_model = match xseg {
        Some(name) => Some(XSegModel::load(&XSegFolder::open(ws, name)?, device)?),
        None => None,
    };
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
    let cfg = settings.config_of(frame.index);
    if let Some((i, scene)) = settings.scene_of(frame.index) {
        log::info!(
            "frame {} is in scene {} (frames {}): merged with that scene's settings",
            frame.name,
            i + 1,
            scene.frames
        );
    }
    faces.smooth(cfg.smooth);
    let infos = faces.at(cfg.smooth).of(&frame.name);
    let swap = FrameSwap::predict(
        &frame.name,
        image,
        infos,
        input.path(),
        &predictor,
        xseg_model.as_ref(),
    )?;
    if swap.face_count() == 0 {
        return Err(no_frame("has no dst face in data_dst/aligned"));
    }
    let merged = swap.merge(cfg)?;
    let files = PreviewFiles {
        frame: ws.root().join(format!("merge_preview_{}.png", frame.name)),
        grid: ws.root().join(format!("merge_preview_{}_grid.png", frame.name)),
    };
    write_image(&files.frame, &merged.image, 95)?;
    write_image(&files.grid, &swap.grid(cfg)?, 95)?;
    Ok(files)
}

/// One dst frame with its faces cropped and predicted once, ready to be merged under any
/// settings: moving a slider costs a merge, not a forward pass.
///
/// The crops, and so the predictions, depend on the frame and the (smoothed) landmarks only;
/// `face_scale` moves where the prediction is pasted back, which [`FrameSwap::merge`] redoes.
#[derive(Debug)]
pub struct FrameSwap {
    name: String,
    image: Mat,
    /// The faces that could be cropped, with their predictions, in the same order.
    infos: Vec<DstFaceInfo>,
    faces: Vec<DstFace>,
    predictions: Vec<FacePrediction>,
    /// Boxes of every face of the frame `[x, y, w, h]`, for the grid's region.
    rects: Vec<[f32; 4]>,
    /// The XSeg mask modes this frame can be merged with.
    xseg_modes: Vec<MaskMode>,
    resolution: i32,
    face_type: FaceType,
}

impl FrameSwap {
    /// Crops the faces `infos` of frame `name` (`image`, BGR u8, from `input`) and predicts
    /// their swaps; with `xseg`, also every XSeg mask (else the applied masks, when each face
    /// carries one).
    ///
    /// # Errors
    /// `FrameSize` when the frame is not the size its faces were extracted at; the model's or
    /// OpenCV's errors.
    pub fn predict(
        name: &str,
        image: Mat,
        infos: &[DstFaceInfo],
        input: &Path,
        predictor: &Predictor,
        xseg: Option<&XSegModel>,
    ) -> Result<Self, MergeError> {
        let size = [image.cols() as u32, image.rows() as u32];
        if let Some(info) = infos.iter().find(|f| f.source_size != size) {
            return Err(MergeError::FrameSize {
                frame: name.to_owned(),
                input: input.to_owned(),
                got: size,
                want: info.source_size,
            });
        }
        let (r, face_type) = (predictor.resolution(), predictor.face_type());
        let (mut kept, mut faces) = (Vec::new(), Vec::new());
        for info in infos {
            if let Some(face) = dst_face(&image, info, r, face_type, 1.0, true)? {
                kept.push(info.clone());
                faces.push(face);
            }
        }
        let crops: Vec<&Mat> = faces.iter().map(|f| &f.crop).collect();
        let mut predictions = predictor.predict(&crops, crops.len().max(1))?;
        // The XSeg modes: all four with an XSeg model; xseg-dst alone when every face of the
        // frame carries an applied mask.
        let xseg_modes: Vec<MaskMode> = if xseg.is_some() {
            vec![
                MaskMode::XsegPrd,
                MaskMode::XsegDst,
                MaskMode::XsegPrdTimesDst,
                MaskMode::LearnedTimesXseg,
            ]
        } else if !faces.is_empty() && faces.iter().all(|f| f.applied_xseg.is_some()) {
            vec![MaskMode::XsegDst]
        } else {
            Vec::new()
        };
        if let Some(&widest) = xseg_modes.last() {
            let refs: Vec<&DstFace> = faces.iter().collect();
            let n = refs.len();
            add_xseg_masks(&vec![widest; n], xseg, face_type, &refs, &mut predictions, n)?;
        }
        Ok(Self {
            name: name.to_owned(),
            image,
            infos: kept,
            faces,
            predictions,
            rects: infos.iter().map(|i| i.rect).collect(),
            xseg_modes,
            resolution: r,
            face_type,
        })
    }

    /// Returns the frame's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the dst frame as decoded (BGR u8).
    pub fn image(&self) -> &Mat {
        &self.image
    }

    /// Returns how many faces are swapped in the frame.
    pub fn face_count(&self) -> usize {
        self.faces.len()
    }

    /// Returns the XSeg mask modes this frame can be merged with (all four with an XSeg
    /// model, `xseg-dst` when every face carries an applied mask, else none).
    pub fn xseg_modes(&self) -> &[MaskMode] {
        &self.xseg_modes
    }

    /// Merges the frame with `cfg` (its `smooth` is the caller's: the faces are already
    /// smoothed or not).
    ///
    /// # Errors
    /// `Config` for a setting out of range, `NeedsXSeg` for an XSeg mask mode this frame
    /// cannot show, or a merge error.
    pub fn merge(&self, cfg: &MergeConfig) -> Result<MergedFrame, MergeError> {
        cfg.validate()?;
        let needs_model = cfg.mask_mode.needs_xseg_prd()
            && !self.xseg_modes.contains(&MaskMode::XsegPrd)
            || cfg.mask_mode.needs_xseg_dst() && !self.xseg_modes.contains(&MaskMode::XsegDst);
        if needs_model && self.face_count() > 0 {
            return Err(MergeError::NeedsXSeg {
                mode: value_name(&cfg.mask_mode),
                why: " for this frame's faces".to_owned(),
            });
        }
        let scaled = if cfg.face_scale == 0 { None } else { Some(self.faces_at_scale(cfg)?) };
        let faces = scaled.as_deref().unwrap_or(&self.faces);
        merge_frame(cfg, &self.name, &self.image, faces, &self.predictions)
    }

    /// The faces pasted back at `cfg`'s face scale: the same crops, other output matrices.
    fn faces_at_scale(&self, cfg: &MergeConfig) -> Result<Vec<DstFace>, MergeError> {
        let side = self.resolution as u32;
        let mut out = Vec::with_capacity(self.faces.len());
        for (face, info) in self.faces.iter().zip(&self.infos) {
            let scaled =
                transform_mat_scaled(&info.landmarks, side, self.face_type, cfg.output_scale());
            let applied_xseg = face.applied_xseg.as_ref().map(Mat::try_clone).transpose()?;
            out.push(DstFace {
                face_mat: face.face_mat,
                output_mat: scaled.unwrap_or(face.output_mat),
                crop: face.crop.try_clone()?,
                landmarks: face.landmarks,
                applied_xseg,
            });
        }
        Ok(out)
    }

    /// Draws the face region merged with `cfg` and under each alternative mask mode (the XSeg
    /// ones this frame can show), colour transfer and blend mode, one row each, beside the dst
    /// region; labelled cells [`CELL_PX`] high. With mode `original` (which shows no swap) the
    /// mask and colour rows are drawn in mode `overlay`.
    ///
    /// # Errors
    /// As [`FrameSwap::merge`]; `Preview` when the frame has no face.
    pub fn grid(&self, cfg: &MergeConfig) -> Result<Mat, MergeError> {
        if self.rects.is_empty() {
            return Err(MergeError::Preview(format!(
                "frame {} has no dst face in data_dst/aligned; pick another frame",
                self.name
            )));
        }
        let region = face_region(&self.image, self.rects.iter().copied())?;
        let cell = |c: &MergeConfig, label: &str| -> Result<Mat, MergeError> {
            let out = self.merge(c)?;
            Ok(labelled(&Mat::roi(&out.image, region)?.try_clone()?, label)?)
        };
        let dst_cell = labelled(&Mat::roi(&self.image, region)?.try_clone()?, "dst")?;
        let masks = [
            MaskMode::Full,
            MaskMode::Dst,
            MaskMode::LearnedPrd,
            MaskMode::LearnedDst,
            MaskMode::LearnedPrdTimesDst,
            MaskMode::LearnedPrdPlusDst,
        ];
        let masks: Vec<MaskMode> =
            masks.into_iter().chain(self.xseg_modes.iter().copied()).collect();
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
        let shown = if cfg.mode == BlendMode::Original {
            MergeConfig { mode: BlendMode::Overlay, ..cfg.clone() }
        } else {
            cfg.clone()
        };
        let cfg = &shown;
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
                    cell(
                        &MergeConfig { mode: b, ..cfg.clone() },
                        &format!("mode {}", value_name(&b)),
                    )
                }))
                .collect::<Result<_, _>>()?,
        );
        Ok(grid(&rows)?)
    }
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
