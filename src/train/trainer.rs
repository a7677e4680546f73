//! The runtime side of training (never saved as such; options and counters live in the model
//! folder): the network, its optimizer, the discriminators its options turn on and one SAEHD
//! step, plus the divergence guard that rolls back to the last good weights in memory.
//!
//! Losses stay on the device between checks: [`Trainer::step`] only queues work, and
//! [`Trainer::check`] (called every few iterations) reads the accumulated losses back once.

use std::sync::Arc;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::discriminators::{DiscriminatorError, Discriminators, Judged, UnitState};
use crate::device::{self, MathModeError, MathModes};
use crate::distributed::{Group, GroupError, ReduceOp};
use crate::model::folder::TrainConfig;
use crate::model::layout;
use crate::model::loss::{
    LossOptions, SideBatch, background_style_loss, blur_out_mask, face_style_loss, loss_mask,
    side_loss,
};
use crate::model::optim::{OptimError, Optimizer, trainable_variables};
use crate::model::precision::{AutocastError, run_at};
use crate::model::saehd::{Part, Prediction, Saehd};

/// A loss this many times the previous checked mean counts as a divergence spike.
pub const SPIKE_FACTOR: f64 = 10.0;
/// Consecutive failed checks after which the run stops.
pub const MAX_CONSECUTIVE_ROLLBACKS: u32 = 3;

/// One side's batch on the training device.
///
/// # Shapes
/// `warped`, `target`: `[N, 3, R, R]` f32 in [0,1], BGR; `mask`, `eyes_mouth`: `[N, 1, R, R]`
/// f32 in [0,1].
#[derive(Debug)]
pub struct SideTensors {
    /// The network input (randomly warped).
    pub warped: Tensor,
    /// The reconstruction target.
    pub target: Tensor,
    /// The face mask.
    pub mask: Tensor,
    /// The eyes-and-mouth mask (used with `eyes_mouth_prio`).
    pub eyes_mouth: Tensor,
}

/// Errors that stop training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The optimizer failed.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    /// bf16 autocast failed.
    #[error(transparent)]
    Autocast(#[from] AutocastError),
    /// libtorch refused the TF32 or cuDNN benchmark setting.
    #[error(transparent)]
    MathModes(#[from] MathModeError),
    /// A discriminator failed.
    #[error(transparent)]
    Discriminator(#[from] DiscriminatorError),
    /// The loss kept diverging after rollbacks.
    #[error(
        "the loss diverged {0} checks in a row even after rolling back; lower the learning rate (--lr), pass --clip-grad true, or resume from a backup"
    )]
    Diverged(u32),
    /// A collective with the other ranks of a data-parallel run failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The ranks' weights drifted apart, which summed gradients and identical updates rule out
    /// unless a rank computes differently (another libtorch, another device kind).
    #[error(
        "the ranks' weights differ after iteration {iteration} (checksums {min} to {max}); run every rank with the same dfl build and device kind"
    )]
    RanksDiverged {
        /// The iteration checked.
        iteration: u64,
        /// The smallest rank checksum.
        min: f64,
        /// The largest rank checksum.
        max: f64,
    },
    /// A part to re-initialise is not in the model's archi.
    #[error("{archi} has no part {part}; its parts are encoder and its inters and decoders")]
    NoSuchPart {
        /// The part asked for.
        part: Part,
        /// The model's archi.
        archi: String,
    },
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// The losses are finite and sane: mean src and dst loss since the last check.
    Good {
        /// Mean src loss.
        src: f64,
        /// Mean dst loss.
        dst: f64,
    },
    /// The losses were not finite or spiked: the weights were rolled back.
    RolledBack {
        /// Iterations whose updates were undone.
        undone: u64,
    },
    /// No step since the last check.
    Idle,
}

/// A snapshot of weights and optimizer state, kept on the device: the autoencoder's, then each
/// discriminator's.
struct Snapshot {
    weights: Vec<(String, Tensor)>,
    optimizer: Vec<(String, Tensor)>,
    discriminators: Vec<UnitState>,
}

/// The network, its optimizer, the discriminators and the divergence guard.
pub struct Trainer {
    vs: VarStore,
    model: Saehd,
    optimizer: Optimizer,
    discriminators: Discriminators,
    cfg: TrainConfig,
    loss_sum: Option<(Tensor, Tensor)>,
    steps_since_check: u64,
    last_good: Snapshot,
    last_mean: Option<f64>,
    failed_checks: u32,
    /// The other ranks of a data-parallel run.
    group: Option<Arc<Group>>,
}

impl Trainer {
    /// Builds a fresh network, its optimizer and the discriminators `cfg` turns on, on
    /// `device` (seeded from `cfg.seed`).
    ///
    /// # Errors
    /// `Optimizer` when an optimizer cannot be set up.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self, TrainError> {
        tch::manual_seed(i64::from_ne_bytes(cfg.seed.to_ne_bytes()));
        device::set_math_modes(MathModes { tf32: cfg.tf32, cudnn_benchmark: cfg.cudnn_benchmark })?;
        let vs = VarStore::new(device);
        let model = Saehd::new(&vs.root(), &cfg.model);
        if cfg.channels_last {
            layout::vars_to_channels_last(&vs);
        }
        let optimizer = Optimizer::new(trainable_variables(&vs), cfg.optimizer.clone())?;
        let discriminators = Discriminators::new(cfg, device)?;
        let last_good =
            Snapshot { weights: Vec::new(), optimizer: Vec::new(), discriminators: Vec::new() };
        let mut trainer = Self {
            vs,
            model,
            optimizer,
            discriminators,
            cfg: cfg.clone(),
            loss_sum: None,
            steps_since_check: 0,
            last_good,
            last_mean: None,
            failed_checks: 0,
            group: None,
        };
        trainer.save_good();
        Ok(trainer)
    }

    /// Returns the variables (weights), by name.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Returns the network.
    pub fn model(&self) -> &Saehd {
        &self.model
    }

    /// Returns the optimizer (its state is saved with each checkpoint).
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.optimizer
    }

    /// Returns the optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Returns the discriminators (their files are saved with each checkpoint set).
    pub fn discriminators(&self) -> &Discriminators {
        &self.discriminators
    }

    /// Returns the discriminators, to load saved ones.
    pub fn discriminators_mut(&mut self) -> &mut Discriminators {
        &mut self.discriminators
    }

    /// Gives every weight under the top-level `parts` (e.g. `inter`, `decoder_dst`) fresh
    /// initial values, as a new model would have, and marks the result good.
    ///
    /// # Errors
    /// `NoSuchPart` when a part is not in this model's archi (nothing is changed then).
    pub fn reinit_parts(&mut self, parts: &[Part]) -> Result<(), TrainError> {
        let kind = self.cfg.model.arch.kind;
        if let Some(&part) = parts.iter().find(|p| !Part::of(kind).contains(p)) {
            return Err(TrainError::NoSuchPart { part, archi: self.cfg.model.arch.to_string() });
        }
        let fresh_vs = VarStore::new(self.vs.device());
        let _fresh = Saehd::new(&fresh_vs.root(), &self.cfg.model);
        let fresh = fresh_vs.variables();
        let is_in_parts =
            |name: &str| parts.iter().any(|p| name.split('.').next() == Some(p.name()));
        tch::no_grad(|| {
            for (name, var) in self.vs.variables() {
                if let (true, Some(new)) = (is_in_parts(&name), fresh.get(&name)) {
                    var.shallow_clone().copy_(new);
                }
            }
        });
        self.mark_good();
        Ok(())
    }

    /// Joins a data-parallel run (after rank 0 loaded its checkpoint): every rank takes rank
    /// 0's weights, optimizer states and discriminators; from then on each optimizer step sums
    /// the gradients of all ranks, and [`Trainer::check`] decides on the losses of all ranks,
    /// so every rank keeps or rolls back the same weights.
    ///
    /// # Errors
    /// `Group` (through `Optimizer` or `Discriminator`) when a broadcast fails.
    pub fn join(&mut self, group: Arc<Group>) -> Result<(), TrainError> {
        // Every variable of the autoencoder is trained, so the optimizer's buffers are all of it.
        self.optimizer.join(Arc::clone(&group))?;
        self.discriminators.join(&group)?;
        self.group = Some(group);
        self.save_good();
        Ok(())
    }

    /// Puts back the weights, optimizer states and discriminators of the last good check (or
    /// of the start): what a run saves when it cannot go on after a rank is lost mid-step.
    ///
    /// # Errors
    /// `Optimizer` or `Discriminator` when a state does not fit (never for its own snapshot).
    pub fn roll_back(&mut self) -> Result<(), TrainError> {
        self.loss_sum = None;
        self.steps_since_check = 0;
        self.restore()
    }

    /// Marks the current weights as the last good state (after loading a checkpoint).
    pub fn mark_good(&mut self) {
        self.save_good();
    }

    /// Runs one SAEHD iteration: forward both sides, DFL's losses (with the style and
    /// adversarial terms the options turn on), backward of their sum over the batch, an
    /// optimizer step; then one step of each discriminator. Queues work only; nothing is read
    /// back.
    ///
    /// # Errors
    /// `Optimizer`, `Autocast` or `Discriminator`.
    pub fn step(&mut self, src: &SideTensors, dst: &SideTensors) -> Result<(), TrainError> {
        self.optimizer.zero_grad();
        let (device, r) = (self.vs.device(), self.cfg.model.resolution);
        let (src_target, dst_target) = if self.cfg.blur_out_mask {
            (blur_out_mask(&src.target, &src.mask, r), blur_out_mask(&dst.target, &dst.mask, r))
        } else {
            (src.target.shallow_clone(), dst.target.shallow_clone())
        };
        let (src_in, dst_in) = if self.cfg.channels_last {
            (layout::channels_last(&src.warped), layout::channels_last(&dst.warped))
        } else {
            (src.warped.shallow_clone(), dst.warped.shallow_clone())
        };
        let pred =
            run_at(self.cfg.precision, device, || self.model.train_forward(&src_in, &dst_in))?;
        let (src_src, dst_dst) =
            (as_f32_prediction(&pred.src_src), as_f32_prediction(&pred.dst_dst));
        let mut src_loss = self.side_loss(src, &src_target, &src_src);
        let dst_loss = self.side_loss(dst, &dst_target, &dst_dst);
        if self.cfg.face_style_power > 0.0 {
            // The decoder alone learns the style: its code carries no gradient.
            let swap = run_at(self.cfg.precision, device, || {
                self.model.decode_swap(&pred.codes.swap.detach())
            })?;
            let swap = as_f32_prediction(&swap);
            src_loss += face_style_loss(
                &swap.image,
                &swap.mask,
                &dst_dst.image,
                &dst_dst.mask,
                r,
                self.cfg.face_style_power,
            );
        }
        if self.cfg.bg_style_power > 0.0 {
            let swap =
                run_at(self.cfg.precision, device, || self.model.decode_swap(&pred.codes.swap))?;
            src_loss += background_style_loss(
                &as_f32(&swap.image),
                &dst_target,
                &src.mask,
                r,
                self.cfg.bg_style_power,
            );
        }
        let mut total = &src_loss + &dst_loss;
        // What the GAN compares: the images as the reconstruction losses see them.
        let (target_src_seen, src_src_seen) = if self.cfg.masked_training {
            let weight = loss_mask(&src.mask, r);
            (&src_target * &weight, &src_src.image * &weight)
        } else {
            (src_target.shallow_clone(), src_src.image.shallow_clone())
        };
        let judged = Judged {
            src_code: &pred.codes.src,
            dst_code: &pred.codes.dst,
            src_src: &src_src_seen,
            target_src: &target_src_seen,
            src_src_raw: &src_src.image,
            target_src_raw: &src_target,
            target_src_mask: &src.mask,
        };
        // The discriminators judge but do not learn from the autoencoder's objective.
        self.discriminators.set_learning(false);
        let backward = self.discriminators.generator_loss(&judged).map(|adversarial| {
            if let Some(term) = adversarial {
                total += term;
            }
            // DFL differentiates the per-sample losses' sum over the batch
            // (`docs/dfl-parity.md`, "Quirks").
            total.sum(Kind::Float).backward();
        });
        self.discriminators.set_learning(true);
        backward?;
        self.optimizer.step()?;
        self.discriminators.step(&judged)?;
        let (s, d) = (src_loss.detach().mean(Kind::Float), dst_loss.detach().mean(Kind::Float));
        self.loss_sum = Some(match self.loss_sum.take() {
            Some((acc_s, acc_d)) => (acc_s + s, acc_d + d),
            None => (s, d),
        });
        self.steps_since_check += 1;
        Ok(())
    }

    fn side_loss(&self, side: &SideTensors, target: &Tensor, pred: &Prediction) -> Tensor {
        let opts = LossOptions {
            masked_training: self.cfg.masked_training,
            eyes_mouth_prio: self.cfg.eyes_mouth_prio,
        };
        let batch = SideBatch {
            target,
            target_mask: &side.mask,
            target_eyes_mouth: Some(&side.eyes_mouth),
            pred: &pred.image,
            pred_mask: &pred.mask,
        };
        side_loss(&batch, self.cfg.model.resolution, &opts)
    }

    /// Reads the losses since the last check back (one device sync) and either keeps the new
    /// weights as the last good state or, on a non-finite or spiking loss, rolls back to it.
    ///
    /// # Errors
    /// `Diverged` after [`MAX_CONSECUTIVE_ROLLBACKS`] failed checks in a row.
    pub fn check(&mut self) -> Result<Check, TrainError> {
        let Some((acc_s, acc_d)) = self.loss_sum.take() else { return Ok(Check::Idle) };
        let n = self.steps_since_check.max(1) as f64;
        self.steps_since_check = 0;
        let (src, dst) = match &self.group {
            Some(group) => self.reduce_losses(group, &acc_s, &acc_d, n)?,
            None => (acc_s.double_value(&[]) / n, acc_d.double_value(&[]) / n),
        };
        let mean = src + dst;
        let spiked = self.last_mean.is_some_and(|last| mean > last * SPIKE_FACTOR);
        if mean.is_finite() && !spiked {
            self.failed_checks = 0;
            self.last_mean = Some(mean);
            self.save_good();
            return Ok(Check::Good { src, dst });
        }
        self.failed_checks += 1;
        if self.failed_checks >= MAX_CONSECUTIVE_ROLLBACKS {
            return Err(TrainError::Diverged(self.failed_checks));
        }
        self.restore()?;
        Ok(Check::RolledBack { undone: n as u64 })
    }

    /// The mean src and dst losses over the ranks since the last check (every rank's batch is
    /// the same size), after checking that the ranks still hold the same weights.
    fn reduce_losses(
        &self,
        group: &Group,
        acc_s: &Tensor,
        acc_d: &Tensor,
        n: f64,
    ) -> Result<(f64, f64), TrainError> {
        let losses = Tensor::stack(&[acc_s.to_kind(Kind::Double), acc_d.to_kind(Kind::Double)], 0);
        group.all_reduce(&losses, ReduceOp::Sum, "loss all-reduce")?;
        let world = group.world() as f64;
        let (src, dst) =
            (losses.double_value(&[0]) / n / world, losses.double_value(&[1]) / n / world);
        // One number per rank that any difference in any weight changes.
        let checksum = self.optimizer.checksum();
        let bounds = Tensor::stack(&[checksum.shallow_clone(), -checksum], 0);
        group.all_reduce(&bounds, ReduceOp::Max, "weight check")?;
        let (max, min) = (bounds.double_value(&[0]), -bounds.double_value(&[1]));
        if max != min {
            let iteration = self.optimizer.iteration();
            return Err(TrainError::RanksDiverged { iteration, min, max });
        }
        Ok((src, dst))
    }

    /// Copies every weight and optimizer-state tensor into the last-good buffers, on the
    /// device. The buffers are allocated once and then reused, so a check allocates nothing.
    fn save_good(&mut self) {
        let _guard = tch::no_grad_guard();
        let mut weights: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        fill_snapshot(&mut self.last_good.weights, weights);
        fill_snapshot(&mut self.last_good.optimizer, self.optimizer.state());
        let sources = self.discriminators.snapshot_sources();
        let buffers = &mut self.last_good.discriminators;
        buffers.resize_with(sources.len(), || (Vec::new(), Vec::new()));
        for ((weights, optimizer), (live_w, live_o)) in buffers.iter_mut().zip(sources) {
            fill_snapshot(weights, live_w);
            fill_snapshot(optimizer, live_o);
        }
    }

    fn restore(&mut self) -> Result<(), TrainError> {
        let live = self.vs.variables();
        tch::no_grad(|| {
            for (name, good) in &self.last_good.weights {
                if let Some(var) = live.get(name) {
                    var.shallow_clone().copy_(good);
                }
            }
        });
        self.optimizer.load_state(&self.last_good.optimizer)?;
        self.discriminators.restore(&self.last_good.discriminators)?;
        Ok(())
    }
}

/// Copies `live` into `buf` in place when their names and shapes line up, else replaces `buf`
/// with fresh copies.
fn fill_snapshot(buf: &mut Vec<(String, Tensor)>, live: Vec<(String, Tensor)>) {
    let same = buf.len() == live.len()
        && buf
            .iter()
            .zip(&live)
            .all(|((a, x), (b, y))| a == b && x.size() == y.size() && x.kind() == y.kind());
    if same {
        for ((_, dst), (_, src)) in buf.iter_mut().zip(&live) {
            dst.copy_(src);
        }
    } else {
        *buf = live.into_iter().map(|(n, t)| (n, t.copy())).collect();
    }
}

/// Returns `xs` in float32 (bf16 autocast outputs are bfloat16; losses run in fp32).
fn as_f32(xs: &Tensor) -> Tensor {
    if xs.kind() == Kind::Float { xs.shallow_clone() } else { xs.to_kind(Kind::Float) }
}

fn as_f32_prediction(p: &Prediction) -> Prediction {
    Prediction { image: as_f32(&p.image), mask: as_f32(&p.mask) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::ModelConfig;

    const R: i64 = 32;

    fn config() -> TrainConfig {
        let model = ModelConfig {
            arch: "df-ud".parse().unwrap(),
            resolution: R,
            ae_dims: 16,
            e_dims: 4,
            d_dims: 4,
            d_mask_dims: 4,
        };
        let mut cfg =
            TrainConfig { model, batch_size: 2, eyes_mouth_prio: true, ..Default::default() };
        cfg.optimizer.lr = 5e-4;
        cfg
    }

    fn side(seed: i64) -> SideTensors {
        tch::manual_seed(seed);
        let opts = (Kind::Float, Device::Cpu);
        let image = Tensor::rand([2, 3, R, R], opts);
        SideTensors {
            warped: image.shallow_clone(),
            target: image,
            mask: Tensor::ones([2, 1, R, R], opts),
            eyes_mouth: Tensor::zeros([2, 1, R, R], opts),
        }
    }

    fn weights(t: &Trainer) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            t.var_store().variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn steps_train_and_checks_report_finite_means() {
        let mut t = Trainer::new(&config(), Device::Cpu).unwrap();
        let (src, dst) = (side(1), side(2));
        t.step(&src, &dst).unwrap();
        let Check::Good { src: first, .. } = t.check().unwrap() else {
            panic!("a sane first step")
        };
        for _ in 0..30 {
            t.step(&src, &dst).unwrap();
        }
        let Check::Good { src: later, .. } = t.check().unwrap() else { panic!("sane steps") };
        assert!(later < first, "the src loss fell: {first} → {later}");
        assert_eq!(t.check().unwrap(), Check::Idle);
    }

    #[test]
    fn channels_last_trains_to_the_same_weights_in_nhwc() {
        let cfg = |channels_last| TrainConfig { channels_last, gan_power: 0.1, ..config() };
        let mut nchw = Trainer::new(&cfg(false), Device::Cpu).unwrap();
        let mut nhwc = Trainer::new(&cfg(true), Device::Cpu).unwrap();
        // The same start whatever other tests did to libtorch's global generator meanwhile.
        nhwc.vs.copy(&nchw.vs).unwrap();
        nhwc.discriminators.restore(&nchw.discriminators.snapshot_sources()).unwrap();
        let (src, dst) = (side(1), side(2));
        let train = |t: &mut Trainer| {
            for _ in 0..3 {
                t.step(&src, &dst).unwrap();
            }
            let Check::Good { src: loss, .. } = t.check().unwrap() else { panic!("sane steps") };
            loss
        };
        let (nchw_loss, nhwc_loss) = (train(&mut nchw), train(&mut nhwc));
        assert!((nchw_loss - nhwc_loss).abs() < 1e-5 * nchw_loss.abs(), "{nchw_loss} {nhwc_loss}");
        let convs = nhwc.var_store().variables().into_iter().filter(|(_, v)| v.dim() == 4);
        let mut count = 0;
        for (name, var) in convs {
            let wide = var.size()[2] > 1;
            if wide {
                assert!(layout::is_channels_last(&var) && !var.is_contiguous(), "{name}");
                assert!(layout::is_channels_last(&var.grad()), "{name}'s gradient");
                count += 1;
            }
        }
        assert!(count > 5, "{count} convolution weights checked");
        for ((name, a), (_, b)) in weights(&nchw).iter().zip(&weights(&nhwc)) {
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            let scale = f64::try_from(a.abs().max()).unwrap();
            assert!(diff <= 1e-5 * scale.max(1.0), "{name}: {diff} of {scale}");
        }
    }

    /// The autoencoder's gradients by name (as the last optimizer step used them).
    fn grads(t: &Trainer) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            t.var_store().variables().into_iter().map(|(n, t)| (n, t.grad().copy())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Rows `range` of every tensor of a side's batch.
    fn rows(side: &SideTensors, range: std::ops::Range<i64>) -> SideTensors {
        let cut = |t: &Tensor| t.narrow(0, range.start, range.end - range.start).copy();
        SideTensors {
            warped: cut(&side.warped),
            target: cut(&side.target),
            mask: cut(&side.mask),
            eyes_mouth: cut(&side.eyes_mouth),
        }
    }

    fn batch(seed: i64, n: i64) -> SideTensors {
        tch::manual_seed(seed);
        let opts = (Kind::Float, Device::Cpu);
        SideTensors {
            warped: Tensor::rand([n, 3, R, R], opts),
            target: Tensor::rand([n, 3, R, R], opts),
            mask: Tensor::rand([n, 1, R, R], opts).gt(0.3).to_kind(Kind::Float),
            eyes_mouth: Tensor::rand([n, 1, R, R], opts).gt(0.8).to_kind(Kind::Float),
        }
    }

    #[test]
    fn two_ranks_of_batch_b_train_to_the_weights_of_one_rank_of_batch_2b() {
        use crate::distributed::{Rendezvous, free_local_port};
        // GAN on, so the discriminator's optimizer is covered too. (Not clipping: it would
        // scale a wrongly reduced gradient back to the same norm and hide the error.)
        let cfg = TrainConfig { gan_power: 0.1, ..config() };
        let (b, steps) = (2i64, 5);
        let batches: Vec<(SideTensors, SideTensors)> =
            (0..steps).map(|i| (batch(10 + i, 2 * b), batch(20 + i, 2 * b))).collect();
        let mut single = Trainer::new(&cfg, Device::Cpu).unwrap();
        let mut rank0 = Trainer::new(&cfg, Device::Cpu).unwrap();
        rank0.vs.copy(&single.vs).unwrap();
        rank0.discriminators.restore(&single.discriminators.snapshot_sources()).unwrap();
        rank0.mark_good();
        let initial = weights(&rank0);
        // Rank 1 starts from other weights: joining gives it rank 0's.
        let rank1 = Trainer::new(&TrainConfig { seed: 7, ..cfg.clone() }, Device::Cpu).unwrap();

        for (src, dst) in &batches {
            single.step(src, dst).unwrap();
        }
        let Check::Good { src: single_loss, .. } = single.check().unwrap() else { panic!() };

        let port = free_local_port().unwrap();
        let ranks = std::thread::scope(|s| {
            let handles: Vec<_> = [rank0, rank1]
                .into_iter()
                .enumerate()
                .map(|(rank, mut trainer)| {
                    let mine = rank as i64 * b..(rank as i64 + 1) * b;
                    let slices: Vec<(SideTensors, SideTensors)> = batches
                        .iter()
                        .map(|(src, dst)| (rows(src, mine.clone()), rows(dst, mine.clone())))
                        .collect();
                    s.spawn(move || {
                        let rendezvous = Rendezvous {
                            master_addr: "127.0.0.1".into(),
                            master_port: port,
                            rank,
                            world: 2,
                            timeout: std::time::Duration::from_secs(60),
                            interface: None,
                        };
                        let group = Group::join(rendezvous, Device::Cpu).unwrap();
                        trainer.join(Arc::new(group)).unwrap();
                        for (src, dst) in &slices {
                            trainer.step(src, dst).unwrap();
                        }
                        let Check::Good { src: loss, .. } = trainer.check().unwrap() else {
                            panic!("sane steps")
                        };
                        (weights(&trainer), loss, trainer.optimizer().iteration(), grads(&trainer))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        let reference = weights(&single);
        let reference_grads = grads(&single);
        for (rank, (weights, loss, iteration, grads)) in ranks.iter().enumerate() {
            assert_eq!(*iteration, steps as u64, "rank {rank}");
            // The step used the sum of both ranks' gradients: what one rank of batch 2b gets.
            for ((name, a), (_, b)) in reference_grads.iter().zip(grads) {
                let diff = f64::try_from((a - b).abs().max()).unwrap();
                let scale = f64::try_from(a.abs().max()).unwrap();
                assert!(diff <= 1e-3 * scale, "rank {rank} ∇{name}: {diff} of {scale}");
            }
            let tolerance = 1e-5 * single_loss.abs();
            assert!(
                (loss - single_loss).abs() <= tolerance,
                "rank {rank}: {loss} vs {single_loss}"
            );
            for ((name, a), (_, b)) in reference.iter().zip(weights) {
                let diff = f64::try_from((a - b).abs().max()).unwrap();
                let scale = f64::try_from(a.abs().max()).unwrap();
                assert!(diff <= 1e-5 * scale.max(1.0), "rank {rank} {name}: {diff} of {scale}");
            }
        }
        for ((name, a), (_, b)) in ranks[0].0.iter().zip(&ranks[1].0) {
            assert!(a.equal(b), "{name} differs between the ranks");
        }
        let moved = reference.iter().zip(&initial).any(|((_, a), (_, b))| !a.equal(b));
        assert!(moved, "training changed nothing");
    }

    #[test]
    fn an_injected_nan_rolls_back_to_the_last_good_weights_and_training_continues() {
        let mut t = Trainer::new(&config(), Device::Cpu).unwrap();
        let (src, dst) = (side(1), side(2));
        t.step(&src, &dst).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }));
        let good = weights(&t);
        let good_iteration = t.optimizer().iteration();

        let poisoned = SideTensors { target: src.target.full_like(f64::NAN), ..side(1) };
        t.step(&poisoned, &dst).unwrap();
        t.step(&src, &dst).unwrap(); // NaN weights now: every later step is garbage too
        assert_eq!(t.check().unwrap(), Check::RolledBack { undone: 2 });
        for ((name, now), (_, before)) in weights(&t).iter().zip(&good) {
            assert!(now.equal(before), "{name} was not restored");
        }
        assert_eq!(t.optimizer().iteration(), good_iteration, "optimizer state restored too");

        t.step(&src, &dst).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }), "training goes on");
    }

    #[test]
    fn reinit_changes_only_the_named_parts() {
        let mut t = Trainer::new(&config(), Device::Cpu).unwrap();
        let before = weights(&t);
        t.reinit_parts(&[Part::Inter, Part::DecoderDst]).unwrap();
        for ((name, now), (_, was)) in weights(&t).iter().zip(&before) {
            let reset = name.starts_with("inter.") || name.starts_with("decoder_dst.");
            let is_bias = name.ends_with("bias"); // zero before and after
            assert_eq!(now.equal(was), !reset || is_bias, "{name}");
        }
    }

    #[test]
    fn a_part_the_archi_does_not_have_is_refused_and_nothing_changes() {
        let mut t = Trainer::new(&config(), Device::Cpu).unwrap();
        let before = weights(&t);
        let err = t.reinit_parts(&[Part::Inter, Part::InterB]).unwrap_err().to_string();
        assert!(err.contains("no part inter_b"), "{err}");
        for ((name, now), (_, was)) in weights(&t).iter().zip(&before) {
            assert!(now.equal(was), "{name} changed");
        }
    }

    #[test]
    fn background_style_power_adds_a_finite_term() {
        let cfg = TrainConfig { bg_style_power: 10.0, ..config() };
        let mut t = Trainer::new(&cfg, Device::Cpu).unwrap();
        t.step(&side(1), &side(2)).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }));
    }

    #[test]
    fn repeated_divergence_stops_the_run() {
        let mut t = Trainer::new(&config(), Device::Cpu).unwrap();
        let (src, dst) = (side(1), side(2));
        let poisoned = SideTensors { target: src.target.full_like(f64::NAN), ..side(1) };
        let mut outcome = Ok(Check::Idle);
        for _ in 0..MAX_CONSECUTIVE_ROLLBACKS {
            t.step(&poisoned, &dst).unwrap();
            outcome = t.check();
        }
        assert!(matches!(outcome, Err(TrainError::Diverged(3))), "{outcome:?}");
    }

    /// The discriminators' weights and optimizer states, by file.
    fn discriminator_files(t: &Trainer) -> Vec<(String, Vec<(String, Tensor)>)> {
        t.discriminators()
            .files()
            .into_iter()
            .map(|(f, v)| (f, v.into_iter().map(|(n, t)| (n, t.copy())).collect()))
            .collect()
    }

    fn adversarial() -> TrainConfig {
        let mut cfg = TrainConfig { gan_power: 0.1, true_face_power: 0.01, ..config() };
        cfg.model.arch = "df".parse().unwrap();
        cfg
    }

    #[test]
    fn gan_and_true_face_train_their_discriminators_beside_the_autoencoder() {
        let mut t = Trainer::new(&adversarial(), Device::Cpu).unwrap();
        let before = discriminator_files(&t);
        let names: Vec<&str> = before.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "code_discriminator.safetensors",
                "code_discriminator_optimizer.safetensors",
                "gan.safetensors",
                "gan_optimizer.safetensors"
            ]
        );
        let g_before = weights(&t);
        t.step(&side(1), &side(2)).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }));
        for ((file, was), (_, now)) in before.iter().zip(&discriminator_files(&t)) {
            let moved = was.iter().zip(now).filter(|((_, a), (_, b))| !a.equal(b)).count();
            assert!(moved * 2 > was.len(), "{file}: only {moved} of {} tensors moved", was.len());
        }
        let g_after = weights(&t);
        let g_moved = g_before.iter().zip(&g_after).filter(|((_, a), (_, b))| !a.equal(b));
        assert!(g_moved.count() > g_before.len() / 2);
    }

    #[test]
    fn the_generator_terms_change_the_autoencoders_step() {
        // Same seed, same batch: with GAN and true face on, the autoencoder's update differs.
        let (src, dst) = (side(1), side(2));
        let mut plain =
            Trainer::new(&TrainConfig { model: adversarial().model, ..config() }, Device::Cpu)
                .unwrap();
        let mut adv = Trainer::new(&adversarial(), Device::Cpu).unwrap();
        // The same start whatever other tests did to libtorch's global generator meanwhile.
        adv.vs.copy(&plain.vs).unwrap();
        adv.mark_good();
        let start = weights(&plain);
        for ((name, a), (_, b)) in start.iter().zip(&weights(&adv)) {
            assert!(a.equal(b), "{name}: both start from the same weights");
        }
        plain.step(&src, &dst).unwrap();
        adv.step(&src, &dst).unwrap();
        let differ = weights(&plain)
            .iter()
            .zip(&weights(&adv))
            .filter(|((_, a), (_, b))| !a.equal(b))
            .count();
        assert!(differ > 0, "the adversarial terms reached the autoencoder");
    }

    #[test]
    fn a_rollback_restores_the_discriminators_too() {
        let mut t = Trainer::new(&adversarial(), Device::Cpu).unwrap();
        let (src, dst) = (side(1), side(2));
        t.step(&src, &dst).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }));
        let good = discriminator_files(&t);
        let poisoned = SideTensors { target: src.target.full_like(f64::NAN), ..side(1) };
        t.step(&poisoned, &dst).unwrap();
        assert!(matches!(t.check().unwrap(), Check::RolledBack { undone: 1 }));
        for ((file, was), (_, now)) in good.iter().zip(&discriminator_files(&t)) {
            for ((name, a), (_, b)) in was.iter().zip(now) {
                assert!(a.equal(b), "{file}: {name} not restored");
            }
        }
    }

    #[test]
    fn face_style_and_blur_out_mask_train() {
        let cfg = TrainConfig { face_style_power: 10.0, blur_out_mask: true, ..config() };
        let mut t = Trainer::new(&cfg, Device::Cpu).unwrap();
        t.step(&side(1), &side(2)).unwrap();
        assert!(matches!(t.check().unwrap(), Check::Good { .. }));
    }

    /// One whole step with GAN, true face, face and background style (and blur-out-mask or
    /// clipping) against the PyTorch reference (`scripts/golden/saehd_gan_reference.py`), for
    /// each optimizer: every weight of the autoencoder and of both discriminators after the
    /// step, to 1e-5.
    #[test]
    fn a_step_with_every_adversarial_and_style_term_matches_pytorch_for_each_optimizer() {
        use crate::model::checkpoint::{copy_named, read_tensors};
        use crate::model::optim::OptimizerKind;
        use std::collections::HashMap;

        let cases = [
            ("adabelief", OptimizerKind::AdaBelief, true, true, None, 4),
            ("rmsprop", OptimizerKind::RmsProp, true, false, Some(1.0), 11),
            ("adam", OptimizerKind::Adam, false, true, None, 4),
        ];
        for (case, kind, masked_training, blur_out_mask, clip, patch) in cases {
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/data/golden/saehd_gan/{case}.safetensors"));
            let g: HashMap<String, Tensor> = read_tensors(&path).unwrap().into_iter().collect();
            let prefixed = |prefix: &str| -> Vec<(String, Tensor)> {
                let mut v: Vec<(String, Tensor)> = g
                    .iter()
                    .filter_map(|(k, t)| {
                        k.strip_prefix(prefix).map(|n| (n.to_owned(), t.shallow_clone()))
                    })
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            let mut cfg = TrainConfig {
                model: crate::model::arch::ModelConfig {
                    arch: "df".parse().unwrap(),
                    resolution: R,
                    ae_dims: 16,
                    e_dims: 4,
                    d_dims: 2,
                    d_mask_dims: 2,
                },
                batch_size: 2,
                eyes_mouth_prio: true,
                masked_training,
                blur_out_mask,
                gan_power: 0.1,
                gan_patch_size: Some(patch),
                gan_dims: 4,
                true_face_power: 0.01,
                face_style_power: 5.0,
                bg_style_power: 10.0,
                ..Default::default()
            };
            cfg.optimizer.kind = kind;
            cfg.optimizer.lr = 1e-3;
            cfg.optimizer.clip_grad_norm = clip;
            let mut t = Trainer::new(&cfg, Device::Cpu).unwrap();
            copy_named(&path, prefixed("w."), &t.var_store().variables()).unwrap();
            // The reference's discriminator weights, with this trainer's fresh optimizer states.
            let files: Vec<(String, Vec<(String, Tensor)>)> = t
                .discriminators()
                .files()
                .into_iter()
                .map(|(file, tensors)| match file.as_str() {
                    "gan.safetensors" => (file, prefixed("gan.")),
                    "code_discriminator.safetensors" => (file, prefixed("code.")),
                    _ => (file, tensors.into_iter().map(|(n, t)| (n, t.copy())).collect()),
                })
                .collect();
            t.discriminators_mut().load(files, None).unwrap();
            let input = |name: &str| g[&format!("in.{name}")].shallow_clone();
            let side = |s: &str| SideTensors {
                warped: input(&format!("warped_{s}")),
                target: input(&format!("target_{s}")),
                mask: input(&format!("mask_{s}")),
                eyes_mouth: input(&format!("em_{s}")),
            };
            t.step(&side("src"), &side("dst")).unwrap();
            let Check::Good { src, dst } = t.check().unwrap() else {
                panic!("{case}: a sane step")
            };
            let mean = |name: &str| g[name].mean(Kind::Float).double_value(&[]);
            assert!((src - mean("loss.src")).abs() < 1e-4, "{case}: src loss {src}");
            assert!((dst - mean("loss.dst")).abs() < 1e-4, "{case}: dst loss {dst}");
            // Gradients to 1e-5 relative to their largest value (they are sums over the batch),
            // weights to 1e-5.
            let check = |what: &str, live: &[(String, Tensor)], want: Vec<(String, Tensor)>| {
                assert_eq!(live.len(), want.len(), "{case} {what}");
                let live: HashMap<&str, &Tensor> =
                    live.iter().map(|(n, t)| (n.as_str(), t)).collect();
                for (name, w) in want {
                    let scale = w.abs().max().double_value(&[]).max(1.0);
                    let diff = (live[name.as_str()] - &w).abs().max().double_value(&[]);
                    assert!(diff <= 1e-5 * scale, "{case} {what} {name}: max |Δ| {diff:e}");
                }
            };
            let grads = |named: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
                named.iter().map(|(n, t)| (n.clone(), t.grad())).collect()
            };
            let g_weights: Vec<(String, Tensor)> = t.var_store().variables().into_iter().collect();
            let by_file: HashMap<String, Vec<(String, Tensor)>> =
                t.discriminators().files().into_iter().collect();
            let (gan, code) =
                (&by_file["gan.safetensors"], &by_file["code_discriminator.safetensors"]);
            check("autoencoder gradient", &grads(&g_weights), prefixed("grad."));
            check("patch discriminator gradient", &grads(gan), prefixed("grad_gan."));
            check("code discriminator gradient", &grads(code), prefixed("grad_code."));
            check("autoencoder", &g_weights, prefixed("step."));
            check("patch discriminator", gan, prefixed("step_gan."));
            check("code discriminator", code, prefixed("step_code."));
            // The step moved the discriminators (so the comparison is not vacuous).
            let moved = (&by_file["gan.safetensors"][0].1
                - &g[&format!("gan.{}", by_file["gan.safetensors"][0].0)])
                .abs()
                .max()
                .double_value(&[]);
            assert!(moved > 1e-4, "{case}: the patch discriminator moved only {moved:e}");
        }
    }

    /// Step time with GAN and true face off and on, interleaved so the machine's drift hits
    /// both alike; `DFL_BENCH_MODEL=df128|demo`, `DFL_BENCH_ROUNDS` (default 3). Run by
    /// `scripts/bench/gan_step.sh`:
    /// `cargo test --release --lib bench_adversarial_step -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark; run by hand"]
    fn bench_adversarial_step() {
        use crate::model::arch::ModelConfig;
        let model = std::env::var("DFL_BENCH_MODEL").unwrap_or_else(|_| "df128".into());
        let rounds: usize =
            std::env::var("DFL_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
        let model_cfg = match model.as_str() {
            "demo" => ModelConfig {
                arch: "df".parse().unwrap(),
                resolution: 64,
                ae_dims: 64,
                e_dims: 16,
                d_dims: 16,
                d_mask_dims: 16,
            },
            _ => ModelConfig { arch: "df".parse().unwrap(), resolution: 128, ..Default::default() },
        };
        let r = model_cfg.resolution;
        let off = TrainConfig {
            model: model_cfg,
            batch_size: 8,
            eyes_mouth_prio: true,
            ..Default::default()
        };
        let configs = [
            ("off", off.clone()),
            ("GAN 0.1", TrainConfig { gan_power: 0.1, ..off.clone() }),
            (
                "GAN 0.1 + true face 0.01",
                TrainConfig { gan_power: 0.1, true_face_power: 0.01, ..off.clone() },
            ),
        ];
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(0);
        let batch = || {
            let image = Tensor::rand([8, 3, r, r], opts);
            let mask = Tensor::rand([8, 1, r, r], opts).gt(0.3).to_kind(Kind::Float);
            let em = Tensor::rand([8, 1, r, r], opts).gt(0.9).to_kind(Kind::Float);
            SideTensors { warped: image.shallow_clone(), target: image, mask, eyes_mouth: em }
        };
        let (src, dst) = (batch(), batch());
        let mut trainers: Vec<Trainer> =
            configs.iter().map(|(_, c)| Trainer::new(c, Device::Cpu).unwrap()).collect();
        for t in &mut trainers {
            t.step(&src, &dst).unwrap(); // warm-up: allocators, first binding of the gradients
            t.check().unwrap();
        }
        let mut times = vec![Vec::new(); trainers.len()];
        for _ in 0..rounds {
            for (t, times) in trainers.iter_mut().zip(&mut times) {
                let start = std::time::Instant::now();
                t.step(&src, &dst).unwrap();
                t.check().unwrap(); // reads the loss back: the step's work is done
                times.push(start.elapsed().as_secs_f64());
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let base = median(&mut times[0].clone());
        for ((name, _), times) in configs.iter().zip(&mut times) {
            let t = median(times);
            eprintln!(
                "dfl (tch) {model} batch 8, {name}: {t:.3} s/step (median of {rounds}), {:.2}x off ({} threads)",
                t / base,
                tch::get_num_threads()
            );
        }
    }
}
