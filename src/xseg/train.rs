//! `dfl xseg train`: train an XSeg model on the labelled faces of both sides, resumable like
//! `dfl train` (the same checkpoint sets, locks, save-on-stop and `control.json` requests), with
//! a preview grid and the held-out IoU beside the landmark hull's.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use opencv::core::{self, Mat, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::sampler::XSegSampler;
use super::samples::{LabelledFace, MaskSource, SamplesError, TrainingFaces, gather};
use crate::augment::warp::push_chw;
use crate::face::masks::iou;
use crate::img::{ImageWriteError, write_image};
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::folder::control::{CONTROL_FILE, ControlWatch};
use crate::model::folder::{
    FolderError, IouPoint, LiveWriter, LossPoint, TrainState, WEIGHTS_FILE,
};
use crate::model::optim::{
    OptimError, Optimizer, OptimizerConfig, OptimizerKind, trainable_variables,
};
use crate::model::xseg::{
    BASE_CHANNELS, XSeg, XSegConfig, XSegFolder, xseg_loss, xseg_pretrain_loss,
};
use crate::progress::Progress;
use crate::workspace::{Side, Workspace, WorkspaceError};

/// Iterations between loss read-backs.
const CHECK_EVERY: u64 = 10;
/// Seeds a new model's weights.
const XSEG_SEED: i64 = 0x5E6;
/// Faces in the preview grid.
const PREVIEW_ROWS: usize = 6;

/// Errors that stop an XSeg run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XSegRunError {
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The name is not a plain folder name.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The options are out of range or change a frozen one.
    #[error("{}: {reason}", .path.display())]
    Config {
        /// The model's config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No faces to train on.
    #[error(transparent)]
    Samples(#[from] SamplesError),
    /// The model folder could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The checkpoint does not fit the network.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The optimizer state does not fit.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    /// A sample or the preview could not be made.
    #[error("XSeg training: image error: {0}")]
    OpenCv(#[from] opencv::Error),
    /// The preview could not be written.
    #[error(transparent)]
    Preview(#[from] ImageWriteError),
    /// The loss stopped being a number.
    #[error(
        "the XSeg loss became {loss} at iteration {iteration}; nothing since the last save is kept: lower --lr (now {lr:e})"
    )]
    Diverged {
        /// The loss.
        loss: f64,
        /// The iteration.
        iteration: u64,
        /// The learning rate.
        lr: f64,
    },
}

/// How long a run goes and how it reports.
pub struct XSegRunOptions<'a> {
    /// The model's name (its folder under `xseg/`).
    pub name: &'a str,
    /// Stop after this many iterations in this run (then save), if set.
    pub iterations: Option<u64>,
    /// Set from a signal handler to stop after the current step (then save); a stop request
    /// in the model's `control.json` sets it too.
    pub stop: Arc<AtomicBool>,
    /// The training device.
    pub device: Device,
    /// Iterations progress.
    pub progress: &'a dyn Progress,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct XSegRunReport {
    /// The iteration the model is at now.
    pub iteration: u64,
    /// Iterations run in this call.
    pub ran: u64,
    /// Whether the run continued a saved model.
    pub resumed: bool,
    /// Faces trained on and held out.
    pub faces: (usize, usize),
    /// Labelled faces per side (src, dst).
    pub per_side: [usize; 2],
    /// Face files that could not be used.
    pub skipped: Vec<(PathBuf, String)>,
    /// The last held-out measurement, if any.
    pub last_iou: Option<IouPoint>,
    /// The preview grid.
    pub preview: PathBuf,
}

/// Trains the XSeg model `opts.name` in `ws` with `cfg` (or the saved frozen options).
///
/// # Errors
/// See [`XSegRunError`]; whatever was saved before stays loadable.
pub fn train(
    cfg: &XSegConfig,
    ws: &Workspace,
    opts: &XSegRunOptions<'_>,
) -> Result<XSegRunReport, XSegRunError> {
    let folder = XSegFolder::open(ws, opts.name)?;
    let mut locks = vec![folder.sets.lock()?];
    for side in Side::ALL {
        locks.push(crate::lock::shared(&ws.faceset_lock(side), &format!("the {side} faceset"))?);
    }
    let result = run(cfg, ws, opts, &folder);
    if result.is_err() {
        folder.sets.remove_if_never_saved();
    }
    drop(locks);
    result
}

/// The network, its weights' store and its optimizer.
struct Net {
    vs: VarStore,
    net: XSeg,
    opt: Optimizer,
}

fn run(
    cfg: &XSegConfig,
    ws: &Workspace,
    opts: &XSegRunOptions<'_>,
    folder: &XSegFolder,
) -> Result<XSegRunReport, XSegRunError> {
    let config_err =
        |reason: String| XSegRunError::Config { path: folder.sets.config_path(), reason };
    cfg.validate().map_err(config_err)?;
    let saved = folder.read_config()?;
    if let Some(saved) = &saved {
        for change in cfg.changes_from(saved).map_err(config_err)? {
            log::info!("option changed on resume: {change}");
        }
    }
    let faces = gather(ws, cfg.resolution, cfg.face_type, cfg.pretrain)?;
    let mut net = build(cfg, opts.device)?;
    let (mut state, resumed) = load_latest(folder, &mut net)?;
    if resumed && saved.as_ref().is_some_and(|s| s.pretrain) && !cfg.pretrain {
        log::info!("pretraining switched off: the iteration count and histories restart");
        state = TrainState::default();
    }
    describe_faces(&faces);
    let sampler = XSegSampler::new(&faces.train, cfg.batch_size, cfg.resolution, cfg.pretrain);
    let goal = opts.iterations.map(|n| state.iteration + n);
    let end = goal.or((cfg.target_iter > 0).then_some(cfg.target_iter));
    opts.progress.set_len(end.map_or(0, |e| e.saturating_sub(state.iteration)));
    let (first, started_secs, started) = (state.iteration, state.elapsed_secs, Instant::now());
    let done = |s: &TrainState| {
        opts.stop.load(Ordering::Relaxed)
            || goal.is_some_and(|g| s.iteration >= g)
            || (cfg.target_iter > 0 && s.iteration >= cfg.target_iter)
    };
    let mut losses = Losses::default();
    let mut last_save = Instant::now();
    let mut control = ControlWatch::start(&folder.sets);
    let (mut live, mut saved_at) = (LiveWriter::new(folder.sets.dir()), state.iteration);
    while !done(&state) {
        let batch = sampler.batch(state.iteration)?;
        let loss = step(&mut net, &batch.images, &batch.targets, cfg.pretrain, opts.device)?;
        let sides: Vec<Side> = batch.faces.iter().map(|&i| faces.train[i].side).collect();
        losses.add(loss, sides);
        state.iteration += 1;
        opts.progress.inc(1);
        live.step(state.iteration, saved_at, &state.loss_history);
        if state.iteration % CHECK_EVERY == 0 {
            losses.record(&mut state, cfg.lr)?;
            if let Some(p) = state.loss_history.last() {
                opts.progress.note(&format!("loss src {:.4} dst {:.4}", p.src, p.dst));
            }
        }
        if cfg.eval_every > 0 && state.iteration % cfg.eval_every == 0 && !faces.held_out.is_empty()
        {
            let point = measure(&net.net, &faces.held_out, state.iteration, opts.device)?;
            log::info!("{}", describe_iou(&point));
            state.iou_history.push(point);
        }
        let asked = control.heed(&opts.stop, state.iteration);
        if asked || last_save.elapsed().as_secs_f64() >= cfg.save_every_min * 60.0 {
            state.elapsed_secs = started_secs + started.elapsed().as_secs_f64();
            save(folder, cfg, &net, &state, &faces, opts.device)?;
            (last_save, saved_at) = (Instant::now(), state.iteration);
            if asked {
                log::info!("saved at iteration {} (asked through {CONTROL_FILE})", state.iteration);
            }
        } else if cfg.preview_every > 0 && state.iteration % cfg.preview_every == 0 {
            write_preview(folder, &net.net, &faces, opts.device, cfg.pretrain)?;
        }
    }
    losses.record(&mut state, cfg.lr)?;
    let ran = state.iteration - first;
    if !faces.held_out.is_empty()
        && state.iou_history.last().is_none_or(|p| p.iteration != state.iteration)
    {
        let point = measure(&net.net, &faces.held_out, state.iteration, opts.device)?;
        log::info!("{}", describe_iou(&point));
        state.iou_history.push(point);
    }
    state.elapsed_secs = started_secs + started.elapsed().as_secs_f64();
    save(folder, cfg, &net, &state, &faces, opts.device)?;
    live.write(false, state.iteration, state.iteration, &state.loss_history);
    Ok(XSegRunReport {
        iteration: state.iteration,
        ran,
        resumed,
        faces: (faces.train.len(), faces.held_out.len()),
        per_side: faces.per_side,
        skipped: faces.skipped,
        last_iou: state.iou_history.last().copied(),
        preview: folder.sets.preview_path(),
    })
}

/// Builds the network and its RMSprop with lr dropout (no cosine), as DFL trains XSeg.
fn build(cfg: &XSegConfig, device: Device) -> Result<Net, XSegRunError> {
    // A fixed seed: a new model starts from the same weights every time.
    tch::manual_seed(XSEG_SEED);
    let vs = VarStore::new(device);
    let net = XSeg::new(&vs.root(), cfg.resolution, 3, BASE_CHANNELS, 1);
    let opt_cfg = OptimizerConfig {
        kind: OptimizerKind::RmsProp,
        lr: cfg.lr,
        lr_dropout: cfg.lr_dropout,
        lr_cos: false,
        ..OptimizerConfig::default()
    };
    let opt = Optimizer::new(trainable_variables(&vs), opt_cfg)?;
    Ok(Net { vs, net, opt })
}

/// Prints the layer table of an XSeg model of `cfg` and returns its parameter count.
pub fn layer_table(cfg: &XSegConfig) -> (String, i64) {
    let vs = VarStore::new(Device::Cpu);
    let _net = XSeg::new(&vs.root(), cfg.resolution, 3, BASE_CHANNELS, 1);
    let mut layers: std::collections::BTreeMap<String, (Vec<String>, i64)> = Default::default();
    for (name, t) in vs.variables() {
        let (layer, leaf) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
        let entry = layers.entry(layer.to_owned()).or_default();
        entry.0.push(format!("{leaf} {:?}", t.size()));
        entry.1 += t.numel() as i64;
    }
    let mut rows: Vec<(String, Vec<String>, i64)> =
        layers.into_iter().map(|(k, (leaves, n))| (k, leaves, n)).collect();
    rows.sort_by_key(|row| layer_order(&row.0));
    let mut text = String::new();
    let mut total = 0;
    for (name, mut leaves, n) in rows {
        leaves.sort();
        text.push_str(&format!("{name:<24} {n:>12}  {}\n", leaves.join(", ")));
        total += n;
    }
    (text, total)
}

/// Encoder, bottleneck, decoder (deepest first), head: the order data flows.
fn layer_order(name: &str) -> (u32, u32, u32) {
    let block = name.split('.').next().unwrap_or(name);
    let digit =
        |i: usize| block.chars().filter(char::is_ascii_digit).nth(i).and_then(|c| c.to_digit(10));
    let (level, index) = (digit(0).unwrap_or(0), digit(1).unwrap_or(0));
    if block.starts_with("conv") {
        (0, level, index)
    } else if block.starts_with("dense") {
        (1, level, 0)
    } else if block.starts_with("up") {
        (2, 9 - level, 0)
    } else if block.starts_with("uconv") {
        (2, 9 - level, 10 - index)
    } else {
        (3, 0, 0)
    }
}

/// Loads the latest set into `net`; a new model starts at iteration 0.
fn load_latest(folder: &XSegFolder, net: &mut Net) -> Result<(TrainState, bool), XSegRunError> {
    let Some(ck) = folder.sets.load()? else {
        log::info!("new XSeg model in {}", folder.sets.dir().display());
        return Ok((TrainState::default(), false));
    };
    copy_named(&ck.dir.join(WEIGHTS_FILE), ck.weights, &net.vs.variables())?;
    net.opt.load_state(&ck.optimizer)?;
    log::info!("resuming {} at iteration {}", folder.sets.dir().display(), ck.state.iteration);
    Ok((ck.state, true))
}

/// One step; returns the per-sample losses `[N]` (not read back).
fn step(
    net: &mut Net,
    images: &Tensor,
    targets: &Tensor,
    pretrain: bool,
    device: Device,
) -> Result<Tensor, XSegRunError> {
    net.opt.zero_grad();
    let (images, targets) = (images.to_device(device), targets.to_device(device));
    let (logits, sigmoid) = net.net.forward(&images, pretrain);
    let loss = if pretrain {
        xseg_pretrain_loss(&sigmoid, &targets)
    } else {
        xseg_loss(&logits, &targets)
    };
    loss.sum(Kind::Float).backward();
    net.opt.step()?;
    Ok(loss.detach())
}

/// Per-side loss sums since the last record.
#[derive(Default)]
struct Losses {
    pending: Vec<(Tensor, Vec<Side>)>,
}

impl Losses {
    fn add(&mut self, loss: Tensor, sides: Vec<Side>) {
        self.pending.push((loss, sides));
    }

    /// Reads the pending losses back (one sync per [`CHECK_EVERY`]) into the history.
    fn record(&mut self, state: &mut TrainState, lr: f64) -> Result<(), XSegRunError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut sums = [(0.0, 0usize); 2];
        for (loss, sides) in self.pending.drain(..) {
            let values: Vec<f32> = Vec::try_from(loss.to_device(Device::Cpu)).unwrap_or_default();
            for (v, side) in values.iter().zip(sides) {
                let v = f64::from(*v);
                if !v.is_finite() {
                    return Err(XSegRunError::Diverged { loss: v, iteration: state.iteration, lr });
                }
                let s = &mut sums[usize::from(side == Side::Dst)];
                s.0 += v;
                s.1 += 1;
            }
        }
        let mean = |(sum, n): (f64, usize)| if n > 0 { sum / n as f64 } else { f64::NAN };
        let (src, dst) = (mean(sums[0]), mean(sums[1]));
        // A side without faces this interval shows the other's loss, so the plot stays whole.
        let (src, dst) = match (src.is_nan(), dst.is_nan()) {
            (true, false) => (dst, dst),
            (false, true) => (src, src),
            _ => (src, dst),
        };
        state.loss_history.push(LossPoint { iteration: state.iteration, src, dst });
        Ok(())
    }
}

/// Faces of `faces` as one `[N, 3, R, R]` batch.
fn stack(faces: &[&LabelledFace], r: i64) -> Result<Tensor, XSegRunError> {
    let mut data = Vec::new();
    for f in faces {
        push_chw(&f.image, &mut data)?;
    }
    Ok(Tensor::from_slice(&data).view([faces.len() as i64, 3, r, r]))
}

/// Predicts `faces` in batches; returns `[N, 1, R, R]` sigmoid masks on the CPU.
fn predict(net: &XSeg, faces: &[&LabelledFace], device: Device) -> Result<Tensor, XSegRunError> {
    let r = i64::from(faces.first().map_or(0, |f| f.image.rows()));
    let mut out = Vec::new();
    for chunk in faces.chunks(8) {
        let batch = stack(chunk, r)?.to_device(device);
        out.push(tch::no_grad(|| net.forward(&batch, false).1).to_device(Device::Cpu));
    }
    Ok(Tensor::cat(&out, 0))
}

/// Mean IoU of the predicted masks (≥ 0.5) and of the hull masks against the labels.
fn measure(
    net: &XSeg,
    held_out: &[LabelledFace],
    iteration: u64,
    device: Device,
) -> Result<IouPoint, XSegRunError> {
    let faces: Vec<&LabelledFace> = held_out.iter().collect();
    let masks = predict(net, &faces, device)?;
    let (mut sum, mut hull_sum) = (0.0, 0.0);
    for (i, face) in held_out.iter().enumerate() {
        let predicted = to_mat(&masks.get(i as i64).ge(0.5).to_kind(Kind::Float))?;
        sum += iou(&predicted, &face.mask)?;
        hull_sum += iou(&face.hull, &face.mask)?;
    }
    let n = held_out.len() as f64;
    Ok(IouPoint { iteration, iou: sum / n, hull_iou: hull_sum / n, faces: held_out.len() })
}

/// One line about a held-out measurement.
pub fn describe_iou(p: &IouPoint) -> String {
    format!(
        "held-out labelled faces at iteration {}: XSeg IoU {:.3} (the landmark hull's {:.3}), {} faces",
        p.iteration, p.iou, p.hull_iou, p.faces
    )
}

/// `[1, R, R]` f32 → CV_32FC1.
fn to_mat(t: &Tensor) -> Result<Mat, XSegRunError> {
    let r = t.size()[1] as i32;
    let values: Vec<f32> = Vec::try_from(t.flatten(0, -1).to_kind(Kind::Float))
        .map_err(|e: tch::TchError| opencv::Error::new(core::StsError, e.to_string()))?;
    Ok(Mat::from_slice(&values)?.reshape(1, r)?.try_clone()?)
}

fn save(
    folder: &XSegFolder,
    cfg: &XSegConfig,
    net: &Net,
    state: &TrainState,
    faces: &TrainingFaces,
    device: Device,
) -> Result<(), XSegRunError> {
    let mut weights: Vec<(String, Tensor)> = net.vs.variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    folder.write_config(cfg)?;
    folder.sets.save(&weights, &net.opt.state(), &[], state)?;
    write_preview(folder, &net.net, faces, device, cfg.pretrain)?;
    log::info!("saved iteration {} in {}", state.iteration, folder.sets.dir().display());
    Ok(())
}

/// The preview grid: a row per face (held-out faces first): the face, the face with its label
/// (red) and the face with the prediction (green); pretraining shows the reconstruction.
fn write_preview(
    folder: &XSegFolder,
    net: &XSeg,
    faces: &TrainingFaces,
    device: Device,
    pretrain: bool,
) -> Result<(), XSegRunError> {
    let shown: Vec<&LabelledFace> =
        faces.held_out.iter().chain(faces.train.iter()).take(PREVIEW_ROWS).collect();
    let r = i64::from(shown.first().map_or(0, |f| f.image.rows()));
    let batch = stack(&shown, r)?.to_device(device);
    let predicted = tch::no_grad(|| net.forward(&batch, pretrain).1).to_device(Device::Cpu);
    let mut rows = core::Vector::<Mat>::new();
    for (i, face) in shown.iter().enumerate() {
        let prediction = to_mat(&predicted.get(i as i64))?;
        let cells: [Mat; 3] = if pretrain {
            [face.image.try_clone()?, grey_bgr(&face.mask)?, grey_bgr(&prediction)?]
        } else {
            [
                face.image.try_clone()?,
                overlay(&face.image, &face.mask, [0.0, 0.0, 1.0])?,
                overlay(&face.image, &prediction, [0.0, 1.0, 0.0])?,
            ]
        };
        let mut row = Mat::default();
        core::hconcat(&core::Vector::<Mat>::from_iter(cells), &mut row)?;
        rows.push(row);
    }
    let mut grid = Mat::default();
    core::vconcat(&rows, &mut grid)?;
    let mut bytes = Mat::default();
    grid.convert_to(&mut bytes, core::CV_8UC3, 255.0, 0.0)?;
    if bytes.rows() < 256 {
        let scale = (256 / bytes.rows().max(1)).max(1);
        let mut big = Mat::default();
        let size = Size::new(bytes.cols() * scale, bytes.rows() * scale);
        imgproc::resize(&bytes, &mut big, size, 0.0, 0.0, imgproc::INTER_NEAREST)?;
        bytes = big;
    }
    write_image(&folder.sets.preview_path(), &bytes, 0)?;
    Ok(())
}

/// `img` with `mask` tinted `colour` (BGR, 0..1) at half strength.
fn overlay(img: &Mat, mask: &Mat, colour: [f64; 3]) -> Result<Mat, XSegRunError> {
    let tint = Mat::new_rows_cols_with_default(
        img.rows(),
        img.cols(),
        core::CV_32FC3,
        Scalar::new(colour[0], colour[1], colour[2], 0.0),
    )?;
    let mut half = Mat::default();
    core::add_weighted_def(img, 0.5, &tint, 0.5, 0.0, &mut half)?;
    Ok(crate::augment::degrade::blend_masked(img, &half, mask)?)
}

/// A one-channel f32 image as grey BGR.
fn grey_bgr(m: &Mat) -> Result<Mat, XSegRunError> {
    Ok(crate::augment::degrade::to_channels(m, 3)?)
}

fn describe_faces(faces: &TrainingFaces) {
    let what = match faces.source {
        MaskSource::Labels => "labelled faces",
        MaskSource::Applied => "faces with an applied XSeg mask (no face has labels)",
        MaskSource::None => "faces (pretraining: no labels needed)",
    };
    log::info!(
        "{} {what}: {} src, {} dst; {} trained on, {} held out",
        faces.train.len() + faces.held_out.len(),
        faces.per_side[0],
        faces.per_side[1],
        faces.train.len(),
        faces.held_out.len()
    );
    for (path, why) in &faces.skipped {
        log::warn!("{}: skipped ({why})", path.display());
    }
}
