//! `dfl train`: train a DF or LIAE model on the two facesets, resumable. `--dry-run` builds the
//! network and prints its layer table.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use indicatif::MultiProgress;
use tch::{Device, nn};

use crate::assets::SFACE_FILE;
use crate::color::ColorTransfer;
use crate::device;
use crate::distributed::Group;
use crate::face::align::FaceType;
use crate::face::identity::SFaceModel;
use crate::model::arch::{Arch, default_mask_dims};
use crate::model::folder::config::MAX_BATCH_SIZE;
use crate::model::folder::{ModelFolder, TrainConfig};
use crate::model::optim::OptimizerKind;
use crate::model::precision::Precision;
use crate::model::saehd::Saehd;
use crate::model::summary::summarize;
use crate::progress::{NoProgress, Progress};
use crate::report::Outcome;
use crate::train::bench::Levers;
use crate::train::{RunOptions, run as run_training};
use crate::workspace::Workspace;

use super::GlobalArgs;
use super::launch::{self, DistArgs};
use super::progress::Bar;

/// Arguments of `dfl train`. Unset options keep the saved ones on resume, DFL's defaults on a
/// new model (shown in brackets).
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The model's name: its folder under workspace/model/ (required unless --dry-run).
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: Option<String>,
    /// Archi: df or liae, optionally with letters u, d, t (e.g. liae-ud, df-udt) [liae-ud]. New models only.
    #[arg(long, value_name = "ARCHI")]
    pub model: Option<Arch>,
    /// Face size the model works at: a multiple of 16 (32 with d), 64–640 [128]. New models only.
    #[arg(long, value_name = "PX")]
    pub resolution: Option<i64>,
    /// Bottleneck width, 32–1024 [256]. New models only.
    #[arg(long, value_name = "N")]
    pub ae_dims: Option<i64>,
    /// Encoder width, 16–256, even [64]. New models only.
    #[arg(long, value_name = "N")]
    pub e_dims: Option<i64>,
    /// Decoder width, 16–256, even [64]. New models only.
    #[arg(long, value_name = "N")]
    pub d_dims: Option<i64>,
    /// Mask decoder width, 16–256, even [d_dims/3 rounded up to even]. New models only.
    #[arg(long, value_name = "N")]
    pub d_mask_dims: Option<i64>,
    /// The crop the model works in, re-cut from the facesets [full]. New models only.
    #[arg(long, value_enum)]
    pub face_type: Option<FaceType>,
    /// Samples per side per iteration; what fits in memory is checked before training [8].
    #[arg(long, value_name = "N", value_parser = batch_size)]
    pub batch_size: Option<usize>,
    /// Learning rate, above 0 and at most 1 [5e-5].
    #[arg(long, value_name = "LR", value_parser = learning_rate)]
    pub lr: Option<f64>,
    /// Clip the gradient's global norm to 1 (DFL's clipgrad): steadier, a little slower [false].
    #[arg(long, value_name = "BOOL")]
    pub clip_grad: Option<bool>,
    /// Stop at this iteration (0 = never) [0].
    #[arg(long, value_name = "N")]
    pub target_iter: Option<u64>,
    /// Run this many iterations now, then save and exit.
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Train for this many minutes now (the step under way finishes), then save and exit.
    #[arg(long, value_name = "MIN", value_parser = positive_minutes)]
    pub minutes: Option<f64>,
    /// Save every this many minutes [25].
    #[arg(long, value_name = "MIN")]
    pub save_every: Option<f64>,
    /// Copy the latest checkpoint to model/NAME/backups/ every this many hours (0 = never) [0].
    #[arg(long, value_name = "HOURS")]
    pub backup_every: Option<f64>,
    /// Backups kept (the oldest go first) [24].
    #[arg(long, value_name = "N")]
    pub backups_kept: Option<usize>,
    /// Refresh preview.png every this many iterations [100].
    #[arg(long, value_name = "N")]
    pub preview_every: Option<u64>,
    /// Also keep every preview in model/NAME/previews/ [false].
    #[arg(long, value_name = "BOOL")]
    pub preview_history: Option<bool>,
    /// Every this many iterations, measure held-out faces (every 10th face of each side, at
    /// most 16, is then kept out of training): SSIM/PSNR of the reconstructions and the SFace
    /// identity of the swaps, logged, in state.json and plotted in eval.png (0 = off) [0].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Forward-pass precision: fp32, or bf16 autocast for CUDA GPUs [fp32].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    #[command(flatten)]
    pub levers: LeverArgs,
    #[command(flatten)]
    pub dist: DistArgs,
    /// Random warp of the inputs: on early, off late for sharpness [true].
    #[arg(long, value_name = "BOOL")]
    pub random_warp: Option<bool>,
    /// Add 300·L1 over eyes and mouth [false].
    #[arg(long, value_name = "BOOL")]
    pub eyes_mouth_prio: Option<bool>,
    /// Restrict the image losses to the blurred face mask [true].
    #[arg(long, value_name = "BOOL")]
    pub masked_training: Option<bool>,
    /// The face mask of the losses, masked training and background style: auto (a face's
    /// applied XSeg mask where it has one, the landmark hull elsewhere), xseg (every face must
    /// have one: `dfl xseg apply`) or hull [auto].
    #[arg(long, value_enum)]
    pub mask: Option<crate::model::folder::TrainMask>,
    /// Yaw-balanced sampling: profiles as often as frontal faces [false].
    #[arg(long, value_name = "BOOL")]
    pub uniform_yaw: Option<bool>,
    /// Mirror 40 % of the src samples [false].
    #[arg(long, value_name = "BOOL")]
    pub random_src_flip: Option<bool>,
    /// Mirror 40 % of the dst samples [true].
    #[arg(long, value_name = "BOOL")]
    pub random_dst_flip: Option<bool>,
    /// Learning-rate dropout: 30 % of the weights move each step, with a 500-iteration cosine
    /// (for sharpness late in training, before GAN) [false].
    #[arg(long, value_name = "BOOL")]
    pub lr_dropout: Option<bool>,
    /// The update rule: adabelief (DFL's default), rmsprop (DFL's other choice) or adam.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// GAN power, 0–5: a patch discriminator on the src reconstruction for skin texture and
    /// sharp eyes; turn on (typical 0.1) once the model is trained, with random warp off [0].
    #[arg(long, value_name = "P")]
    pub gan_power: Option<f64>,
    /// The GAN discriminator's patch size in pixels, 3–640 [resolution / 8].
    #[arg(long, value_name = "PX")]
    pub gan_patch_size: Option<i64>,
    /// The GAN discriminator's width, 4–512 [16].
    #[arg(long, value_name = "N")]
    pub gan_dims: Option<i64>,
    /// True face power, 0–1 (DF only): pull the swap toward src's likeness (typical 0.01) [0].
    #[arg(long, value_name = "P")]
    pub true_face_power: Option<f64>,
    /// Face style power, 0–100: learn dst's lighting and colour inside the mask; start small
    /// (0.001) after 10k iterations [0].
    #[arg(long, value_name = "P")]
    pub face_style_power: Option<f64>,
    /// Background style power, 0–100: learn dst's background around the face [0].
    #[arg(long, value_name = "P")]
    pub bg_style_power: Option<f64>,
    /// HSV jitter of the src input, 0–0.3 (typical 0.05) [0].
    #[arg(long, value_name = "P")]
    pub random_hsv_power: Option<f64>,
    /// Blur the targets' background outside the mask (meant for exact XSeg masks) [false].
    #[arg(long, value_name = "BOOL")]
    pub blur_out_mask: Option<bool>,
    /// Recolour src samples toward random dst faces: none, rct, lct, mkl, idt, sot [none].
    #[arg(long, value_enum)]
    pub ct_mode: Option<ColorTransfer>,
    /// Start a new model from this model's weights (its options too), re-initialising what
    /// belongs to its dst: reuse a trained src for a new dst, as DFL users do.
    #[arg(long, value_name = "MODEL")]
    pub from: Option<String>,
    /// Pretrain on one generic faceset for both sides (set false to finish pretraining) [false].
    #[arg(long, value_name = "BOOL")]
    pub pretrain: Option<bool>,
    /// The generic faceset (a folder of aligned faces) for --pretrain.
    #[arg(long, value_name = "DIR")]
    pub pretrain_faceset: Option<std::path::PathBuf>,
    /// Read options from this JSON file (the format of model/NAME/config.json; missing keys
    /// keep their defaults); flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Build the model and print its layer table and parameter count, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the table as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

/// The speed options of `dfl train` and `dfl bench`: how a step runs, not what it computes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LeverArgs {
    /// Convolution weights and inputs channels-last (NHWC), the layout of tensor-core
    /// convolutions; same numbers, often faster on GPUs [false].
    #[arg(long, value_name = "BOOL")]
    pub channels_last: Option<bool>,
    /// TF32 tensor cores for fp32 matmuls and convolutions on Ampere+ GPUs [true].
    #[arg(long, value_name = "BOOL")]
    pub tf32: Option<bool>,
    /// cuDNN benchmark mode: the fastest algorithm per convolution shape, at up to twice the
    /// peak GPU memory [false].
    #[arg(long, value_name = "BOOL")]
    pub cudnn_benchmark: Option<bool>,
}

impl LeverArgs {
    /// `base` with the options given on the command line.
    pub fn over(&self, base: Levers) -> Levers {
        Levers {
            channels_last: self.channels_last.unwrap_or(base.channels_last),
            tf32: self.tf32.unwrap_or(base.tf32),
            cudnn_benchmark: self.cudnn_benchmark.unwrap_or(base.cudnn_benchmark),
        }
    }
}

impl TrainArgs {
    /// Applies the options given on the command line to `base` (saved or default).
    fn apply(&self, mut cfg: TrainConfig) -> TrainConfig {
        let m = &mut cfg.model;
        m.arch = self.model.unwrap_or(m.arch);
        m.resolution = self.resolution.unwrap_or(m.resolution);
        m.ae_dims = self.ae_dims.unwrap_or(m.ae_dims);
        m.e_dims = self.e_dims.unwrap_or(m.e_dims);
        if let Some(d) = self.d_dims {
            m.d_dims = d;
            m.d_mask_dims = default_mask_dims(d);
        }
        m.d_mask_dims = self.d_mask_dims.unwrap_or(m.d_mask_dims);
        cfg.face_type = self.face_type.unwrap_or(cfg.face_type);
        cfg.batch_size = self.batch_size.unwrap_or(cfg.batch_size);
        cfg.optimizer.lr = self.lr.unwrap_or(cfg.optimizer.lr);
        if let Some(clip) = self.clip_grad {
            cfg.optimizer.clip_grad_norm = clip.then_some(DFL_CLIP_GRAD_NORM);
        }
        cfg.target_iter = self.target_iter.unwrap_or(cfg.target_iter);
        cfg.save_every_min = self.save_every.unwrap_or(cfg.save_every_min);
        cfg.preview_every = self.preview_every.unwrap_or(cfg.preview_every);
        cfg.backup_every_hours = self.backup_every.unwrap_or(cfg.backup_every_hours);
        cfg.backups_kept = self.backups_kept.unwrap_or(cfg.backups_kept);
        cfg.preview_history = self.preview_history.unwrap_or(cfg.preview_history);
        cfg.eval_every = self.eval_every.unwrap_or(cfg.eval_every);
        cfg.precision = self.precision.unwrap_or(cfg.precision);
        self.levers.over(Levers::of(&cfg)).set_in(&mut cfg);
        cfg.random_warp = self.random_warp.unwrap_or(cfg.random_warp);
        cfg.eyes_mouth_prio = self.eyes_mouth_prio.unwrap_or(cfg.eyes_mouth_prio);
        self.apply_style(&mut cfg);
        cfg.ct_mode = self.ct_mode.unwrap_or(cfg.ct_mode);
        cfg.pretrain = self.pretrain.unwrap_or(cfg.pretrain);
        cfg.pretrain_faceset = self.pretrain_faceset.clone().or(cfg.pretrain_faceset);
        cfg
    }
}

/// The options of this run: a config file, or the saved ones, or `--from`'s, or DFL's
/// defaults, with the flags applied and checked.
fn resolve_options(args: &TrainArgs, ws: &Workspace, name: &str) -> anyhow::Result<TrainConfig> {
    let folder = ModelFolder::open(ws, name)?;
    let saved = folder.read_config()?;
    let is_new = saved.is_none();
    let base = match (&args.config, saved, &args.from) {
        (Some(file), _, _) => read_config(file)?,
        (None, Some(saved), _) => saved,
        (None, None, Some(from)) => {
            ModelFolder::open(ws, from)?.read_config()?.with_context(|| {
                format!("--from {from}: workspace/model/{from} has no config.json; train it first")
            })?
        }
        (None, None, None) => TrainConfig::default(),
    };
    let cfg = args.apply(base);
    let origin = match &args.config {
        Some(file) => file.clone(),
        None => folder.config_path(),
    };
    let context = || format!("{} (or a flag)", origin.display());
    if is_new {
        cfg.model.validate().with_context(context)?;
    }
    cfg.validate().with_context(context)?;
    Ok(cfg)
}

/// Runs `dfl train`.
pub fn run(args: &TrainArgs, global: &GlobalArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    if args.dry_run {
        return dry_run(args);
    }
    let name = args
        .name
        .as_deref()
        .context("--name NAME is required: the model's folder under workspace/model/")?;
    let ws = Workspace::new(&global.workspace);
    let rendezvous = launch::worker_rendezvous(&args.dist)?;
    if rendezvous.is_none() && args.dist.launches() {
        let cuda = device::resolve(global.device)?.device.is_cuda();
        return launch::supervise(&args.dist, cuda);
    }
    let mut device = device::resolve(global.device)?.device;
    let group = match rendezvous {
        Some((rendezvous, local_rank)) => {
            if device.is_cuda() {
                device = Device::Cuda(local_rank);
            }
            Some(Arc::new(Group::join(rendezvous, device)?))
        }
        None => None,
    };
    // Ranks other than 0 take their options from rank 0; this machine may not have the model.
    let cfg = match &group {
        Some(g) if !g.is_leader() => TrainConfig::default(),
        _ => resolve_options(args, &ws, name)?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }
    opencv::core::set_num_threads(1).context("setting OpenCV's thread count")?;
    let leader = group.as_ref().is_none_or(|g| g.is_leader());
    let bar = Bar::new(bars, "iterations");
    let progress: &dyn Progress = if leader { &bar } else { &NoProgress };
    let from = args.from.as_deref();
    let time_limit = args.minutes.map(|m| std::time::Duration::from_secs_f64(m * 60.0));
    let sface = (cfg.eval_every > 0).then(load_sface).flatten();
    let opts = RunOptions {
        name,
        iterations: args.iterations,
        time_limit,
        stop,
        device,
        progress,
        from,
        sface: sface.as_ref(),
        group,
    };
    let report = run_training(&cfg, &ws, &opts)?;
    drop(bar);
    if !leader {
        return Ok(Outcome::Done);
    }
    log::info!(
        "model {name} at iteration {} ({} this run); preview: {}",
        report.iteration,
        report.ran,
        report.preview.display()
    );
    if report.skipped_batches > 0 {
        log::warn!(
            "{} batch(es) of this run were rolled back (non-finite or spiking loss); if it recurs, lower --lr or pass --clip-grad true",
            report.skipped_batches
        );
    }
    let skipped = report.skipped_batches > 0 || report.skipped_faces > 0;
    Ok(if skipped { Outcome::DoneWithSkips } else { Outcome::Done })
}

impl TrainArgs {
    /// Applies the sampling, optimizer, GAN and style overrides.
    fn apply_style(&self, cfg: &mut TrainConfig) {
        cfg.masked_training = self.masked_training.unwrap_or(cfg.masked_training);
        cfg.mask = self.mask.unwrap_or(cfg.mask);
        cfg.uniform_yaw = self.uniform_yaw.unwrap_or(cfg.uniform_yaw);
        cfg.random_src_flip = self.random_src_flip.unwrap_or(cfg.random_src_flip);
        cfg.random_dst_flip = self.random_dst_flip.unwrap_or(cfg.random_dst_flip);
        cfg.optimizer.lr_dropout = self.lr_dropout.unwrap_or(cfg.optimizer.lr_dropout);
        cfg.optimizer.kind = self.optimizer.unwrap_or(cfg.optimizer.kind);
        cfg.gan_power = self.gan_power.unwrap_or(cfg.gan_power);
        cfg.gan_patch_size = self.gan_patch_size.or(cfg.gan_patch_size);
        cfg.gan_dims = self.gan_dims.unwrap_or(cfg.gan_dims);
        cfg.true_face_power = self.true_face_power.unwrap_or(cfg.true_face_power);
        cfg.face_style_power = self.face_style_power.unwrap_or(cfg.face_style_power);
        cfg.bg_style_power = self.bg_style_power.unwrap_or(cfg.bg_style_power);
        cfg.random_hsv_power = self.random_hsv_power.unwrap_or(cfg.random_hsv_power);
        cfg.blur_out_mask = self.blur_out_mask.unwrap_or(cfg.blur_out_mask);
    }
}

/// Loads SFace for the held-out identity of `--eval-every`; without it (with a warning) the
/// evaluation measures reconstructions only.
fn load_sface() -> Option<SFaceModel> {
    let loaded = crate::assets::Assets::from_env()
        .model(SFACE_FILE)
        .map_err(anyhow::Error::from)
        .and_then(|path| Ok(SFaceModel::load(&path)?));
    loaded.map_err(|e| log::warn!("held-out identity is not measured: {e:#}")).ok()
}

/// Reads a `TrainConfig` JSON file (unknown keys are refused, missing ones take defaults).
fn read_config(path: &std::path::Path) -> anyhow::Result<TrainConfig> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid dfl train config; fix it (see model/NAME/config.json for the format)", path.display()))
}

fn dry_run(args: &TrainArgs) -> anyhow::Result<Outcome> {
    let base = match &args.config {
        Some(file) => read_config(file)?,
        None => TrainConfig::default(),
    };
    let train_cfg = args.apply(base);
    train_cfg.validate()?;
    let cfg = train_cfg.model;
    cfg.validate()?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = tch::no_grad(|| Saehd::new(&vs.root(), &cfg));
    let mut summary = summarize(&vs, &cfg);
    summary.discriminators = crate::model::discriminator::parameter_counts(&train_cfg);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(Outcome::Done)
}

/// The gradient norm DFL's `clipgrad` clips to.
const DFL_CLIP_GRAD_NORM: f64 = 1.0;

/// Parses `--batch-size`: 1 to [`MAX_BATCH_SIZE`].
fn batch_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a batch size from 1 to {MAX_BATCH_SIZE}")),
    }
}

/// Parses `--lr`: a finite number above 0, at most 1.
fn learning_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(lr) if lr.is_finite() && lr > 0.0 && lr <= 1.0 => Ok(lr),
        _ => Err(format!(
            "{text:?} is not a learning rate above 0 and at most 1 (DFL's default is 5e-5)"
        )),
    }
}

/// Parses `--minutes`: a positive, finite number.
fn positive_minutes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
        _ => Err(format!("{text:?} is not a positive number of minutes")),
    }
}
