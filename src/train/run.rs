//! A training run: resolve the config (first run or resume), load the latest checkpoint set,
//! feed the trainer from both facesets, check, save, preview; save or stop when asked (Ctrl-C,
//! or another process through `control.json`), stop at the target iteration or after a given
//! number of iterations, always saving before returning.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Device, Tensor};

use super::holdout::{HOLDOUT_EVERY, HOLDOUT_MAX, HeldOut, HoldoutError};
use super::memory;
use super::preview::{PreviewTensors, write_eval_plot, write_loss_plot, write_preview};
use super::sampler::{
    Batch, ColorReference, FaceCache, SampleConfig, SampleError, SampleSet, SampleSetError,
    Sampler, SamplerOptions, Shard, make_batch,
};
use super::trainer::{Check, SideTensors, TrainError, Trainer};
use crate::color::ColorTransfer;
use crate::distributed::{Group, GroupError, ReduceOp};
use crate::face::identity::{Embedding, RecognizerPool, SFaceModel};
use crate::faceset::scores::{self, ScoreCache};
use crate::faceset::{Faceset, FacesetError};
use crate::img::ImageWriteError;
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::folder::config::compare;
use crate::model::folder::control::{CONTROL_FILE, ControlWatch};
use crate::model::folder::{
    EvalPoint, FolderError, FrozenOptionChanged, LiveWriter, LossPoint, ModelFolder, TrainConfig,
    TrainMask, TrainState, WEIGHTS_FILE,
};
use crate::model::optim::OptimError;
use crate::model::saehd::Part;
use crate::progress::{NoProgress, Progress};
use crate::workspace::{Side, Workspace, WorkspaceError};

/// Iterations between loss read-backs (and divergence checks).
pub const CHECK_EVERY: u64 = 10;
/// Samples per side in the preview grid.
const PREVIEW_ROWS: usize = 4;

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Another run holds what this one needs.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Every check of this run rolled the weights back: nothing was learnt, nothing saved.
    #[error(
        "every step of this run gave a non-finite or spiking loss, so nothing was saved (model {name} stays at iteration {iteration}); lower the learning rate (--lr is {lr:e}; DFL's default is {default_lr:e}) or turn on --clip-grad true"
    )]
    NothingLearned {
        /// The model.
        name: String,
        /// The iteration the model stays at.
        iteration: u64,
        /// This run's learning rate.
        lr: f64,
        /// The default learning rate.
        default_lr: f64,
    },
    /// The batch does not fit in the host's memory.
    #[error(transparent)]
    TooBig(#[from] memory::TooBig),
    /// A training batch could not be copied to the GPU.
    #[error(transparent)]
    Copy(#[from] crate::device::CopyError),
    /// A step ran out of the device's memory.
    #[error(
        "a training step ran out of memory on {device} at batch {batch}; nothing since the last save is kept: pass a smaller --batch-size (half, {half}, is a start)", half = (.batch / 2).max(1)
    )]
    OutOfMemory {
        /// The device.
        device: String,
        /// The batch size.
        batch: usize,
    },
    /// The model name or workspace is unusable.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// A resumed run changed a frozen option.
    #[error(transparent)]
    Frozen(#[from] FrozenOptionChanged),
    /// The options do not make a model, or `--from` names no trained model.
    #[error("{}: {reason}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// A faceset has no usable face.
    #[error(transparent)]
    Samples(#[from] SampleSetError),
    /// A sample could not be made.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// The model folder could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// A checkpoint's tensors do not fit this model.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The optimizer state does not fit.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    /// Training failed (divergence, autocast).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A collective with the other ranks failed, or they disagree on the run.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Rank 0 sent settings this rank cannot read (another dfl version).
    #[error(
        "rank {rank} cannot read rank 0's run settings ({reason}); run the same dfl build on every rank"
    )]
    RunSettings {
        /// This rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// A rank's facesets differ from rank 0's.
    #[error(
        "rank {rank}'s facesets have {mine:?} faces (src, dst) but rank 0's have {leader:?}; give every machine the same workspace facesets (copy them, or use a shared mount)"
    )]
    FacesetsDiffer {
        /// This rank.
        rank: usize,
        /// This rank's usable faces, src and dst.
        mine: (usize, usize),
        /// Rank 0's.
        leader: (usize, usize),
    },
    /// A preview could not be written.
    #[error(transparent)]
    Preview(#[from] ImageWriteError),
    /// Measuring the held-out faces failed.
    #[error(transparent)]
    Holdout(#[from] HoldoutError),
}

/// How long a run goes and how it reports.
pub struct RunOptions<'a> {
    /// The model's name (its folder under `model/`).
    pub name: &'a str,
    /// Stop after this many iterations in this run (then save), if set.
    pub iterations: Option<u64>,
    /// Stop after the step that passes this much time in this run (then save), if set.
    pub time_limit: Option<std::time::Duration>,
    /// Set from a signal handler to stop after the current step (then save); a stop request
    /// in the model's `control.json` sets it too.
    pub stop: Arc<AtomicBool>,
    /// The training device.
    pub device: Device,
    /// Iterations progress.
    pub progress: &'a dyn Progress,
    /// A new model starts from this model's weights (reuse for a new dst), if set.
    pub from: Option<&'a str>,
    /// SFace, to measure the held-out swaps' identity (`--eval-every`); `None` skips identity.
    pub sface: Option<&'a SFaceModel>,
    /// The ranks of a data-parallel run, if this is one. Rank 0 does what a single process
    /// does (and alone writes the model folder); the others train beside it.
    pub group: Option<Arc<Group>>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The iteration the model is at now.
    pub iteration: u64,
    /// Iterations run in this call.
    pub ran: u64,
    /// Whether the run continued an existing checkpoint.
    pub resumed: bool,
    /// Where the preview grid is.
    pub preview: PathBuf,
    /// Batches of this run the divergence guard rolled back.
    pub skipped_batches: u64,
    /// Face files of the facesets that are not usable faces (not trained on).
    pub skipped_faces: usize,
}

/// Trains the model `opts.name` in `ws` with `cfg` (or the saved options, when resuming).
///
/// # Errors
/// See [`RunError`]; whatever was saved before the error stays loadable.
pub fn run(
    cfg: &TrainConfig,
    ws: &Workspace,
    opts: &RunOptions<'_>,
) -> Result<RunReport, RunError> {
    let result = match opts.group.as_ref().filter(|g| !g.is_leader()) {
        Some(group) => work_beside_leader(ws, opts, group),
        None => lead(cfg, ws, opts),
    };
    if let (Err(e), Some(group)) = (&result, &opts.group) {
        // So that the other ranks can say why this one stopped.
        group.publish_error(&e.to_string());
    }
    result
}

/// A single process, or rank 0 of a data-parallel run: the one that owns the model folder.
fn lead(cfg: &TrainConfig, ws: &Workspace, opts: &RunOptions<'_>) -> Result<RunReport, RunError> {
    let folder = ModelFolder::open(ws, opts.name)?;
    let locks = lock_inputs(cfg, ws, &folder)?;
    let result = train(cfg, ws, opts, &folder);
    if result.is_err() {
        // A new model whose first run failed leaves no folder that looks like a model.
        folder.remove_if_never_saved();
    }
    drop(locks);
    result
}

/// The run itself, with the model and facesets locked.
fn train(
    cfg: &TrainConfig,
    ws: &Workspace,
    opts: &RunOptions<'_>,
    folder: &ModelFolder,
) -> Result<RunReport, RunError> {
    let saved = resolve_config(cfg, folder)?;
    let (stored, cfg) = (cfg.clone(), cfg.effective());
    let mut trainer = Trainer::new(&cfg, opts.device)?;
    check_memory(&cfg, &trainer, opts.device)?;
    let (mut state, resumed) = load_latest(folder, &mut trainer, gan_change(saved.as_ref(), &cfg))?;
    adapt_start(&stored, saved.as_ref(), ws, opts, &mut trainer, &mut state, resumed)?;
    let (feeds, held_out) = Feeds::start(&cfg, ws, state.iteration, opts)?;
    let skipped_faces = feeds.skipped_faces;
    let goal = opts.iterations.map(|n| state.iteration + n);
    let ranks = opts.group.as_ref().map_or(1, |g| u32::try_from(g.world()).unwrap_or(u32::MAX));
    if resumed && state.ranks.max(1) != ranks {
        log::info!(
            "the last run trained with {} rank(s), this one with {ranks}: {} samples per side per iteration instead of {} (the batch size is per rank)",
            state.ranks.max(1),
            ranks as usize * cfg.batch_size,
            state.ranks.max(1) as usize * cfg.batch_size,
        );
    }
    state.ranks = if ranks > 1 { ranks } else { 0 };
    if let Some(group) = &opts.group {
        let plan =
            RunPlan { cfg: cfg.clone(), iteration: state.iteration, goal, faces: feeds.faces };
        let plan = serde_json::to_vec(&plan)
            .map_err(|e| RunError::RunSettings { rank: group.rank(), reason: e.to_string() })?;
        group.store_set(PLAN_KEY, &plan)?;
        trainer.join(Arc::clone(group))?;
        log::info!(
            "{} ranks ({}) × batch {}: {} samples per side per iteration",
            group.world(),
            group.backend(),
            cfg.batch_size,
            group.world() * cfg.batch_size
        );
    }
    let mut good_checks = 0u64;
    let preview = feeds.preview_batches(cfg.preview_history)?;
    let mut clock =
        Clock { started: Instant::now(), before: state.elapsed_secs, last_backup: Instant::now() };
    let (mut last_save, mut last_check, first_iteration) =
        (Instant::now(), Instant::now(), state.iteration);
    let skipped_before = state.skipped_batches;
    // The bar counts this run's iterations, so its rate and ETA are this run's.
    let end = goal.or((cfg.target_iter > 0).then_some(cfg.target_iter));
    opts.progress.set_len(end.map_or(0, |e| e.saturating_sub(state.iteration)));
    let mut feeds = feeds;
    let started = Instant::now();
    let out_of_time = || opts.time_limit.is_some_and(|limit| started.elapsed() >= limit);
    let mut control = ControlWatch::start(folder);
    let (mut live, mut saved_at) = (LiveWriter::new(folder.dir()), state.iteration);
    let mut good_iteration = state.iteration;
    let looped = (|| -> Result<(), RunError> {
        loop {
            let wants = opts.stop.load(Ordering::Relaxed) || out_of_time();
            let group = opts.group.as_deref();
            if reached(&cfg, state.iteration, goal)
                || asked_to_stop(group, state.iteration, wants, opts.device)?
            {
                break;
            }
            let (src, dst) = feeds.next(opts.device)?;
            step(&mut trainer, &src, &dst, &cfg, opts.device)?;
            state.iteration += 1;
            opts.progress.inc(1);
            live.step(state.iteration, saved_at, &state.loss_history);
            if state.iteration.is_multiple_of(CHECK_EVERY) {
                let good = record_check(&mut trainer, &mut state)?;
                good_checks += u64::from(good);
                if good {
                    good_iteration = state.iteration;
                }
                // ms/iteration over the last check interval (a moving window, not the run's mean).
                let ms = last_check.elapsed().as_secs_f64() * 1000.0 / CHECK_EVERY as f64;
                last_check = Instant::now();
                if let Some(p) = state.loss_history.last() {
                    opts.progress
                        .note(&format!("src {:.4} dst {:.4}, {ms:.0} ms/it", p.src, p.dst));
                }
            }
            let asked = control.heed(&opts.stop, state.iteration);
            if asked || last_save.elapsed().as_secs_f64() >= cfg.save_every_min * 60.0 {
                save(folder, &mut trainer, &mut state, &mut clock, &preview, &stored)?;
                (last_save, saved_at) = (Instant::now(), state.iteration);
                if asked {
                    log::info!(
                        "saved at iteration {} (asked through {CONTROL_FILE})",
                        state.iteration
                    );
                }
            } else if cfg.preview_every > 0 && state.iteration % cfg.preview_every == 0 {
                write_previews(folder, &trainer, &state, &preview)?;
            }
            if let Some(held) = held_out.as_ref().filter(|_| state.iteration % cfg.eval_every == 0)
            {
                let point = held.measure(trainer.model(), opts.device, state.iteration)?;
                log::info!("{}", describe_eval(&point));
                state.eval_history.push(point);
            }
        }
        Ok(())
    })();
    if let Err(err) = looped {
        if opts.group.as_ref().is_some_and(|g| g.is_poisoned()) && good_iteration > saved_at {
            let last = LastGood { iteration: good_iteration };
            last.save(folder, &mut trainer, &mut state, &mut clock, &preview, &stored)?;
        }
        return Err(err);
    }
    good_checks += u64::from(record_check(&mut trainer, &mut state)?);
    let ran = state.iteration - first_iteration;
    if ran > 0 && good_checks == 0 {
        return Err(RunError::NothingLearned {
            name: opts.name.to_owned(),
            iteration: first_iteration,
            lr: cfg.optimizer.lr,
            default_lr: crate::model::optim::DEFAULT_LR,
        });
    }
    save(folder, &mut trainer, &mut state, &mut clock, &preview, &stored)?;
    live.write(false, state.iteration, state.iteration, &state.loss_history);
    let skipped_batches = state.skipped_batches - skipped_before;
    let preview = folder.preview_path();
    Ok(RunReport {
        iteration: state.iteration,
        ran,
        resumed,
        preview,
        skipped_batches,
        skipped_faces,
    })
}

/// Refuses a batch that does not fit in the host's memory (see [`memory`]).
fn check_memory(cfg: &TrainConfig, trainer: &Trainer, device: Device) -> Result<(), RunError> {
    let Some(available) = memory::available_host_bytes() else { return Ok(()) };
    let params: i64 =
        trainer.var_store().variables().values().map(Tensor::numel).map(|n| n as i64).sum::<i64>()
            + trainer.discriminators().num_parameters();
    let need =
        memory::Need::of(cfg, params.unsigned_abs(), device, SamplerOptions::default().queue_depth);
    need.check(cfg, available)?;
    Ok(())
}

/// One training step; running out of memory on the device (which libtorch reports only by
/// failing) becomes an error that says what to lower, instead of a crash.
fn step(
    trainer: &mut Trainer,
    src: &SideTensors,
    dst: &SideTensors,
    cfg: &TrainConfig,
    device: Device,
) -> Result<(), RunError> {
    match super::catch_out_of_memory(|| trainer.step(src, dst)) {
        Some(result) => Ok(result?),
        None => Err(RunError::OutOfMemory { device: format!("{device:?}"), batch: cfg.batch_size }),
    }
}

/// Takes the model for this run alone, and the facesets it reads together with other readers
/// (so no sort renames a face under it); a pretraining faceset outside the workspace is not
/// locked.
fn lock_inputs(
    cfg: &TrainConfig,
    ws: &Workspace,
    folder: &ModelFolder,
) -> Result<Vec<crate::lock::Lock>, RunError> {
    let mut locks = vec![folder.lock()?];
    locks.extend(lock_facesets(cfg, ws)?);
    Ok(locks)
}

/// Takes the facesets a run reads together with other readers (so no sort renames a face
/// under it); a pretraining faceset outside the workspace is not locked.
fn lock_facesets(cfg: &TrainConfig, ws: &Workspace) -> Result<Vec<crate::lock::Lock>, RunError> {
    if cfg.pretrain {
        return Ok(Vec::new());
    }
    Side::ALL
        .into_iter()
        .map(|side| {
            let what = format!("the {side} faceset");
            Ok(crate::lock::shared(&ws.faceset_lock(side), &what)?)
        })
        .collect()
}

/// Whether the run has reached its goal (`--iterations`) or the target iteration: the same
/// answer on every rank.
fn reached(cfg: &TrainConfig, iteration: u64, goal: Option<u64>) -> bool {
    goal.is_some_and(|g| iteration >= g) || (cfg.target_iter > 0 && iteration >= cfg.target_iter)
}

/// Whether the run stops before the next iteration because someone asked (Ctrl-C, SIGTERM, a
/// stop request, the time limit: `wants` on this rank). In a data-parallel run the ranks agree,
/// so that all stop after the same iteration: one max-all-reduce of a flag, every iteration on
/// the CPU, every [`CHECK_EVERY`] iterations on a GPU, where reading the flag back waits for
/// the device and the loss check waits anyway (a stop then takes up to that many steps).
fn asked_to_stop(
    group: Option<&Group>,
    iteration: u64,
    wants: bool,
    device: Device,
) -> Result<bool, RunError> {
    let Some(group) = group else { return Ok(wants) };
    if device.is_cuda() && !iteration.is_multiple_of(CHECK_EVERY) {
        return Ok(false);
    }
    let flag = Tensor::from_slice(&[f32::from(u8::from(wants))]).to_device(device);
    group.all_reduce(&flag, ReduceOp::Max, "stop agreement")?;
    Ok(flag.double_value(&[0]) > 0.0)
}

/// The store key under which rank 0 shares the [`RunPlan`].
const PLAN_KEY: &str = "dfl/run-plan";

/// What rank 0 tells the other ranks before training: the effective options (the saved ones
/// on resume), where the run starts and ends, and the faces it found, so that every rank
/// builds the same model, samples its share of the same stream, and stops at the same time.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunPlan {
    cfg: TrainConfig,
    iteration: u64,
    goal: Option<u64>,
    faces: (usize, usize),
}

/// A rank other than 0: takes the plan from rank 0, builds the same trainer, joins (taking
/// rank 0's weights) and trains its share of every batch until the ranks agree to stop. It
/// writes nothing: the model folder is rank 0's (and may not exist on this machine).
fn work_beside_leader(
    ws: &Workspace,
    opts: &RunOptions<'_>,
    group: &Arc<Group>,
) -> Result<RunReport, RunError> {
    let rank = group.rank();
    let plan: RunPlan = serde_json::from_slice(&group.store_get(PLAN_KEY)?)
        .map_err(|e| RunError::RunSettings { rank, reason: e.to_string() })?;
    let cfg = plan.cfg;
    // This machine's facesets only: the model folder is rank 0's.
    let locks = lock_facesets(&cfg, ws)?;
    let mut trainer = Trainer::new(&cfg, opts.device)?;
    let worker_opts = RunOptions {
        sface: None,
        progress: &NoProgress,
        stop: Arc::clone(&opts.stop),
        group: opts.group.clone(),
        ..*opts
    };
    let (mut feeds, _) = Feeds::start(&cfg, ws, plan.iteration, &worker_opts)?;
    if feeds.faces != plan.faces {
        return Err(RunError::FacesetsDiffer { rank, mine: feeds.faces, leader: plan.faces });
    }
    trainer.join(Arc::clone(group))?;
    let mut iteration = plan.iteration;
    loop {
        let wants = opts.stop.load(Ordering::Relaxed);
        if reached(&cfg, iteration, plan.goal)
            || asked_to_stop(Some(group), iteration, wants, opts.device)?
        {
            break;
        }
        let (src, dst) = feeds.next(opts.device)?;
        step(&mut trainer, &src, &dst, &cfg, opts.device)?;
        iteration += 1;
        opts.progress.inc(1);
        if iteration.is_multiple_of(CHECK_EVERY) {
            trainer.check()?;
        }
    }
    trainer.check()?;
    drop(locks);
    Ok(RunReport {
        iteration,
        ran: iteration - plan.iteration,
        resumed: plan.iteration > 0,
        preview: PathBuf::new(),
        skipped_batches: 0,
        skipped_faces: feeds.skipped_faces,
    })
}

/// First run: saves `cfg`. Resume: keeps the saved frozen options (refusing changes), takes the
/// overridable ones from `cfg`, and logs each change.
fn resolve_config(
    cfg: &TrainConfig,
    folder: &ModelFolder,
) -> Result<Option<TrainConfig>, RunError> {
    let config_err = |reason: String| RunError::Config { path: folder.config_path(), reason };
    let saved = folder.read_config()?;
    if let Some(old) = &saved {
        for change in compare(old, cfg)? {
            log::info!("option changed on resume: {change}");
        }
    }
    cfg.validate().map_err(|e| config_err(e.to_string()))?;
    if cfg.pretrain && cfg.pretrain_faceset.is_none() {
        return Err(config_err(
            "--pretrain needs --pretrain-faceset DIR (a folder of aligned faces)".into(),
        ));
    }
    // config.json is written with each save, so a run that saves nothing (an error, every step
    // diverged) leaves the model's options as they were.
    Ok(saved)
}

/// After loading: a model whose pretraining was just switched off restarts its iteration count
/// and its inters (DFL does; `docs/dfl-parity.md`, "Pretraining"); a new model made `--from` another takes that model's weights and
/// re-initialises what belongs to the old dst.
fn adapt_start(
    cfg: &TrainConfig,
    saved: Option<&TrainConfig>,
    ws: &Workspace,
    opts: &RunOptions<'_>,
    trainer: &mut Trainer,
    state: &mut TrainState,
    resumed: bool,
) -> Result<(), RunError> {
    let kind = cfg.model.arch.kind;
    if resumed && saved.is_some_and(|s| s.pretrain) && !cfg.pretrain {
        log::info!(
            "pretraining switched off: iteration and loss history restart, inters re-initialised"
        );
        *state = TrainState::default();
        trainer.reinit_parts(Part::inters(kind))?;
    }
    if let (false, Some(from)) = (resumed, opts.from) {
        let old = ModelFolder::open(ws, from)?;
        let Some(ck) = old.load()? else {
            return Err(RunError::Config {
                path: old.dir().to_owned(),
                reason: format!("--from {from}: that model has no checkpoint yet"),
            });
        };
        copy_named(&ck.dir.join(WEIGHTS_FILE), ck.weights, &trainer.var_store().variables())?;
        // What only ever learnt the old dst starts fresh.
        let dst_parts = Part::dst_specific(kind);
        trainer.reinit_parts(dst_parts)?;
        let names: Vec<&str> = dst_parts.iter().map(|p| p.name()).collect();
        log::info!("new model from {from}'s weights; re-initialised {}", names.join(", "));
    }
    Ok(())
}

/// Says how the GAN's discriminator changed since the last run trained it (patch size or dims),
/// if it did: DFL starts it fresh then.
fn gan_change(saved: Option<&TrainConfig>, cfg: &TrainConfig) -> Option<String> {
    let saved = saved.filter(|s| s.gan_power > 0.0 && cfg.gan_power > 0.0)?;
    let (was, now) = ((saved.gan_patch_px(), saved.gan_dims), (cfg.gan_patch_px(), cfg.gan_dims));
    (was != now).then(|| {
        format!(
            "GAN patch size and dims changed from {} and {} to {} and {}",
            was.0, was.1, now.0, now.1
        )
    })
}

/// Loads the latest checkpoint set into the trainer (with the discriminators it saved); a new
/// model starts at iteration 0.
fn load_latest(
    folder: &ModelFolder,
    trainer: &mut Trainer,
    gan_changed: Option<String>,
) -> Result<(TrainState, bool), RunError> {
    let Some(ck) = folder.load()? else {
        log::info!("new model in {}", folder.dir().display());
        return Ok((TrainState::default(), false));
    };
    let weights_path = ck.dir.join(WEIGHTS_FILE);
    copy_named(&weights_path, ck.weights, &trainer.var_store().variables())?;
    trainer.optimizer_mut().load_state(&ck.optimizer)?;
    trainer.discriminators_mut().load(ck.discriminators, gan_changed).map_err(|e| {
        // Name the set: the discriminator files are in it.
        RunError::Config { path: ck.dir.clone(), reason: e.to_string() }
    })?;
    trainer.mark_good();
    log::info!("resuming {} at iteration {}", folder.dir().display(), ck.state.iteration);
    Ok((ck.state, true))
}

/// Checks the losses since the last check; returns whether they were good.
fn record_check(trainer: &mut Trainer, state: &mut TrainState) -> Result<bool, RunError> {
    match trainer.check()? {
        Check::Good { src, dst } => {
            state.loss_history.push(LossPoint { iteration: state.iteration, src, dst });
            return Ok(true);
        }
        Check::RolledBack { undone } => {
            log::warn!(
                "non-finite or spiking loss before iteration {}: rolled back {undone} iteration(s)",
                state.iteration
            );
            state.skipped_batches += undone;
        }
        Check::Idle => {}
    }
    Ok(false)
}

/// The last iteration whose losses a check found good: the state a data-parallel run saves
/// when a rank is lost (the weights then may be halfway through a step).
struct LastGood {
    iteration: u64,
}

impl LastGood {
    /// Rolls the trainer back to its last good snapshot and saves it as this iteration.
    fn save(
        &self,
        folder: &ModelFolder,
        trainer: &mut Trainer,
        state: &mut TrainState,
        clock: &mut Clock,
        preview: &PreviewBatches,
        stored: &TrainConfig,
    ) -> Result<(), RunError> {
        let at = self.iteration;
        log::warn!("a rank is gone: saving iteration {at}, the last one checked on every rank");
        trainer.roll_back()?;
        state.iteration = at;
        state.loss_history.retain(|p| p.iteration <= at);
        state.eval_history.retain(|p| p.iteration <= at);
        save(folder, trainer, state, clock, preview, stored)
    }
}

/// Training time: what earlier runs spent, plus this run's; and when the last backup was made.
struct Clock {
    started: Instant,
    before: f64,
    last_backup: Instant,
}

fn save(
    folder: &ModelFolder,
    trainer: &mut Trainer,
    state: &mut TrainState,
    clock: &mut Clock,
    preview: &PreviewBatches,
    cfg: &TrainConfig,
) -> Result<(), RunError> {
    state.elapsed_secs = clock.before + clock.started.elapsed().as_secs_f64();
    let mut weights: Vec<(String, Tensor)> = trainer.var_store().variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    // The options first: a crash between the two leaves only overridable options ahead of the
    // checkpoint (frozen ones cannot change).
    folder.write_config(cfg)?;
    let discriminators = trainer.discriminators().files();
    folder.save(&weights, &trainer.optimizer().state(), &discriminators, state)?;
    if cfg.backup_every_hours > 0.0
        && clock.last_backup.elapsed().as_secs_f64() >= cfg.backup_every_hours * 3600.0
    {
        folder.backup(cfg.backups_kept)?;
        clock.last_backup = Instant::now();
    }
    write_previews(folder, trainer, state, preview)?;
    log::info!("saved iteration {} in {}", state.iteration, folder.dir().display());
    Ok(())
}

/// Fixed, unwarped samples of both sides for the preview grid.
struct PreviewBatches {
    src: Batch,
    dst: Batch,
    /// Also keep every grid as `previews/<iteration>.png`.
    keep_history: bool,
}

fn write_previews(
    folder: &ModelFolder,
    trainer: &Trainer,
    state: &TrainState,
    p: &PreviewBatches,
) -> Result<(), RunError> {
    let _guard = tch::no_grad_guard();
    let device = trainer.var_store().device();
    let (src, dst) = (p.src.target.to_device(device), p.dst.target.to_device(device));
    let model = trainer.model();
    let (ss, dd, swap) = (model.src_src(&src), model.dst_dst(&dst), model.swap(&dst));
    let columns = [&src, &ss.image, &ss.mask, &dst, &dd.image, &dd.mask, &swap.image];
    let grid = PreviewTensors { columns };
    write_preview(&folder.preview_path(), &grid, PREVIEW_ROWS as i64)?;
    if p.keep_history {
        write_preview(&folder.preview_history_path(state.iteration), &grid, PREVIEW_ROWS as i64)?;
    }
    write_loss_plot(&folder.loss_plot_path(), &state.loss_history)?;
    if !state.eval_history.is_empty() {
        write_eval_plot(&folder.eval_plot_path(), &state.eval_history)?;
    }
    Ok(())
}

/// One line about a held-out evaluation.
fn describe_eval(p: &EvalPoint) -> String {
    let identity = match (p.swap_identity, p.dst_identity) {
        (Some(s), Some(d)) => format!("; identity to src: swap {s:.3} (dst itself {d:.3})"),
        _ => String::new(),
    };
    let sharpness = match (p.src_sharpness, p.swap_sharpness) {
        (Some(s), Some(w)) => format!("; sharpness vs the faces' own: src {s:.2}, swap {w:.2}"),
        _ => String::new(),
    };
    format!(
        "held-out faces at iteration {}: src SSIM {:.3} PSNR {:.1} dB, dst SSIM {:.3} PSNR {:.1} dB{sharpness}{identity}",
        p.iteration, p.src_ssim, p.src_psnr, p.dst_ssim, p.dst_psnr
    )
}

/// One side's faces, their pixel cache and how samples are made of them.
type SideFeed = (Arc<SampleSet>, Arc<FaceCache>, SampleConfig);

/// Both sides' samplers.
struct Feeds {
    src: Sampler,
    dst: Sampler,
    src_set: SideFeed,
    dst_set: SideFeed,
    /// Face files of either faceset that are not usable faces.
    skipped_faces: usize,
    /// The usable faces of each side, src and dst (held-out ones included).
    faces: (usize, usize),
}

impl Feeds {
    /// Starts both samplers; with `cfg.eval_every` also splits off and prepares the held-out
    /// faces.
    fn start(
        cfg: &TrainConfig,
        ws: &Workspace,
        iteration: u64,
        opts: &RunOptions<'_>,
    ) -> Result<(Self, Option<HeldOut>), RunError> {
        let (mut src_loaded, src_skipped) = load_side(cfg, ws, Side::Src)?;
        let (mut dst_loaded, dst_skipped) = load_side(cfg, ws, Side::Dst)?;
        let faces = (src_loaded.faces().len(), dst_loaded.faces().len());
        check_masks(cfg, ws, &src_loaded, &dst_loaded)?;
        // Pretraining reads one faceset for both sides: its skipped files count once.
        let skipped_faces = if cfg.pretrain { src_skipped } else { src_skipped + dst_skipped };
        let held_out = if cfg.eval_every > 0 && !cfg.pretrain {
            hold_out(cfg, ws, &mut src_loaded, &mut dst_loaded, opts.sface)?
        } else {
            None
        };
        let (dst_faces, dst_cache) = (Arc::new(dst_loaded), Arc::new(FaceCache::default()));
        // Src samples are recoloured toward random dst faces (DFL's ct_mode); dst never is.
        let reference =
            ColorReference { faceset: Arc::clone(&dst_faces), cache: Arc::clone(&dst_cache) };
        let src_faces = Arc::new(src_loaded.recolor_toward(reference));
        let seed = cfg.seed.wrapping_mul(2);
        let shard = opts.group.as_ref().map_or_else(Shard::default, |g| Shard {
            rank: u32::try_from(g.rank()).unwrap_or(u32::MAX),
            ranks: u32::try_from(g.world()).unwrap_or(u32::MAX),
        });
        let src_sample = SampleConfig {
            random_hsv_power: cfg.random_hsv_power as f32,
            shard,
            ..sample_config(cfg, cfg.random_src_flip, seed, cfg.ct_mode)
        };
        let src_set = (src_faces, Arc::new(FaceCache::default()), src_sample);
        let dst_sample = SampleConfig {
            shard,
            ..sample_config(cfg, cfg.random_dst_flip, seed + 1, ColorTransfer::None)
        };
        let dst_set = (dst_faces, dst_cache, dst_sample);
        let pin = opts.device.is_cuda().then_some(opts.device);
        let options = || SamplerOptions { threads: 1, pin_memory: pin, ..Default::default() };
        let start = |(f, c, s): &SideFeed| {
            Sampler::start(f.clone(), c.clone(), *s, cfg.batch_size, iteration, options())
        };
        let (src, dst) = (start(&src_set)?, start(&dst_set)?);
        let feeds = Self { src, dst, src_set, dst_set, skipped_faces, faces };
        Ok((feeds, held_out))
    }

    fn next(&mut self, device: Device) -> Result<(SideTensors, SideTensors), RunError> {
        let ended = || SampleError::WorkerStopped;
        let src = self.src.next().ok_or_else(ended)??;
        let dst = self.dst.next().ok_or_else(ended)??;
        Ok((to_side(src, device)?, to_side(dst, device)?))
    }

    fn preview_batches(&self, keep_history: bool) -> Result<PreviewBatches, RunError> {
        let still = |(f, c, s): &SideFeed| {
            let s = SampleConfig {
                random_warp: false,
                random_flip: false,
                random_hsv_power: 0.0,
                ..*s
            };
            make_batch(f, c, &s, 0, PREVIEW_ROWS)
        };
        Ok(PreviewBatches { src: still(&self.src_set)?, dst: still(&self.dst_set)?, keep_history })
    }
}

/// Loads one side's faces (pretraining reads one generic faceset for both sides); files that
/// are not usable faces are reported once.
fn load_side(
    cfg: &TrainConfig,
    ws: &Workspace,
    side: Side,
) -> Result<(SampleSet, usize), RunError> {
    let dir = cfg
        .pretrain_faceset
        .clone()
        .filter(|_| cfg.pretrain)
        .unwrap_or_else(|| ws.aligned_dir(side));
    let set = Faceset::read(&dir, &NoProgress)?;
    if !(cfg.pretrain && side == Side::Dst) {
        set.warn_skipped("it is not trained on");
    }
    Ok((SampleSet::new(&set)?, set.skipped.len()))
}

/// Logs how many faces of each side train on an applied XSeg mask; with `--mask xseg`, refuses
/// a faceset where some faces have none.
fn check_masks(
    cfg: &TrainConfig,
    ws: &Workspace,
    src: &SampleSet,
    dst: &SampleSet,
) -> Result<(), RunError> {
    if cfg.mask == TrainMask::Hull {
        return Ok(());
    }
    for (side, set) in [(Side::Src, src), (Side::Dst, dst)] {
        let total = set.faces().len();
        let with = set.faces().iter().filter(|f| f.xseg_mask.is_some()).count();
        if cfg.mask == TrainMask::Xseg && with < total {
            return Err(RunError::Config {
                path: ws.aligned_dir(side),
                reason: format!(
                    "--mask xseg: {} of {total} faces have no applied XSeg mask; run `dfl xseg apply {side} --name XSEG_MODEL`, or train with --mask auto",
                    total - with
                ),
            });
        }
        if with > 0 || cfg.mask == TrainMask::Xseg {
            log::info!(
                "{side}: {with} of {total} faces train on their XSeg mask, {} on the landmark hull",
                total - with
            );
        }
    }
    Ok(())
}

/// How samples of one side are made.
fn sample_config(cfg: &TrainConfig, flip: bool, seed: u64, ct_mode: ColorTransfer) -> SampleConfig {
    SampleConfig {
        resolution_px: u32::try_from(cfg.model.resolution).unwrap_or(u32::MAX),
        face_type: cfg.face_type,
        random_warp: cfg.random_warp,
        random_flip: flip,
        eyes_mouth: cfg.eyes_mouth_prio,
        uniform_yaw: cfg.uniform_yaw,
        seed,
        ct_mode,
        random_hsv_power: 0.0,
        mask: cfg.mask,
        shard: Shard::default(),
    }
}

/// Moves every 10th face of each side (at most 16) out of training and prepares them for
/// `--eval-every`; `None` (with a warning) when a side has too few faces.
fn hold_out(
    cfg: &TrainConfig,
    ws: &Workspace,
    src: &mut SampleSet,
    dst: &mut SampleSet,
    sface: Option<&SFaceModel>,
) -> Result<Option<HeldOut>, RunError> {
    let held = (
        src.split_holdout(HOLDOUT_EVERY, HOLDOUT_MAX),
        dst.split_holdout(HOLDOUT_EVERY, HOLDOUT_MAX),
    );
    let (Some(src), Some(dst)) = held else {
        log::warn!(
            "--eval-every needs {} faces on each side to hold some out; not evaluating",
            2 * HOLDOUT_EVERY
        );
        return Ok(None);
    };
    log::info!("{} src and {} dst faces held out for evaluation", src.len(), dst.len());
    let still = sample_config(cfg, false, 0, ColorTransfer::None);
    Ok(Some(HeldOut::new(&src, &dst, &still, src_identity(ws, sface))?))
}

/// The src faceset's mean SFace embedding and recognizers, for held-out identity; `None` (with
/// a warning) without SFace, or when a src face cannot be embedded.
fn src_identity(ws: &Workspace, sface: Option<&SFaceModel>) -> Option<(Embedding, RecognizerPool)> {
    let sface = sface?;
    let attempt = || -> Result<_, String> {
        let set =
            Faceset::read(&ws.aligned_dir(Side::Src), &NoProgress).map_err(|e| e.to_string())?;
        let mut cache = ScoreCache::open(&ws.face_scores(Side::Src));
        let embeddings =
            scores::embeddings(&set, &mut cache, sface, &NoProgress).map_err(|e| e.to_string())?;
        let mean = Embedding::mean(&embeddings).ok_or("the src faceset has no faces")?;
        Ok((mean, RecognizerPool::new(sface.clone())))
    };
    attempt().map_err(|e| log::warn!("held-out identity is not measured: {e}")).ok()
}

/// Moves a batch to the device. On CUDA the copies go on a side stream, so that they overlap
/// the step already queued; the sampler's batches are pinned, so they do not block the CPU.
///
/// # Errors
/// `Copy` when libtorch refuses a side-stream copy.
fn to_side(batch: Batch, device: Device) -> Result<SideTensors, RunError> {
    let side_stream = match device {
        Device::Cuda(n) => crate::device::cuda_runtime().ok().map(|runtime| (runtime, n)),
        _ => None,
    };
    let move_ = |t: Tensor| match side_stream {
        Some((runtime, n)) => runtime.copy_on_side_stream(&t, n),
        None => Ok(t.to_device_(device, tch::Kind::Float, true, false)),
    };
    Ok(SideTensors {
        warped: move_(batch.warped)?,
        target: move_(batch.target)?,
        mask: move_(batch.mask)?,
        eyes_mouth: move_(batch.eyes_mouth)?,
    })
}
