//! The runtime side of training (never saved as such; options and counters live in the model
//! folder): the network, its optimizer and one SAEHD step,
//! plus the divergence guard that rolls back to the last good weights in memory.
//!
//! Losses stay on the device between checks: [`Trainer::step`] only queues work, and
//! [`Trainer::check`] (called every few iterations) reads the accumulated losses back once.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::model::folder::TrainConfig;
use crate::model::loss::{LossOptions, SideBatch, background_style_loss, side_loss};
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
    /// The loss kept diverging after rollbacks.
    #[error(
        "the loss diverged {0} checks in a row even after rolling back; lower the learning rate (--lr), pass --clip-grad true, or resume from a backup"
    )]
    Diverged(u32),
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

/// A snapshot of weights and optimizer state, kept on the device.
struct Snapshot {
    weights: Vec<(String, Tensor)>,
    optimizer: Vec<(String, Tensor)>,
}

/// The network, its optimizer and the divergence guard.
pub struct Trainer {
    vs: VarStore,
    model: Saehd,
    optimizer: Optimizer,
    cfg: TrainConfig,
    loss_sum: Option<(Tensor, Tensor)>,
    steps_since_check: u64,
    last_good: Snapshot,
    last_mean: Option<f64>,
    failed_checks: u32,
}

impl Trainer {
    /// Builds a fresh network and optimizer on `device` (seeded from `cfg.seed`).
    ///
    /// # Errors
    /// `Optimizer` when the optimizer cannot be set up.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self, TrainError> {
        tch::manual_seed(i64::from_ne_bytes(cfg.seed.to_ne_bytes()));
        let vs = VarStore::new(device);
        let model = Saehd::new(&vs.root(), &cfg.model);
        let optimizer = Optimizer::new(trainable_variables(&vs), cfg.optimizer.clone())?;
        let last_good = Snapshot { weights: Vec::new(), optimizer: Vec::new() };
        let mut trainer = Self {
            vs,
            model,
            optimizer,
            cfg: cfg.clone(),
            loss_sum: None,
            steps_since_check: 0,
            last_good,
            last_mean: None,
            failed_checks: 0,
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

    /// Marks the current weights as the last good state (after loading a checkpoint).
    pub fn mark_good(&mut self) {
        self.save_good();
    }

    /// Runs one SAEHD iteration: forward both sides, DFL's losses, backward of their sum over
    /// the batch, optimizer step. Queues work only; nothing is read back.
    ///
    /// # Errors
    /// `Optimizer` or `Autocast`.
    pub fn step(&mut self, src: &SideTensors, dst: &SideTensors) -> Result<(), TrainError> {
        self.optimizer.zero_grad();
        let device = self.vs.device();
        let pred = run_at(self.cfg.precision, device, || {
            self.model.train_forward(&src.warped, &dst.warped)
        })?;
        let (src_loss, dst_loss) =
            (self.side_loss(src, &pred.src_src), self.side_loss(dst, &pred.dst_dst));
        let mut total = &src_loss + &dst_loss;
        if self.cfg.bg_style_power > 0.0 {
            let swap = run_at(self.cfg.precision, device, || self.model.swap(&dst.warped))?;
            let r = self.cfg.model.resolution;
            let bg = background_style_loss(
                &as_f32(&swap.image),
                &dst.target,
                &src.mask,
                r,
                self.cfg.bg_style_power,
            );
            total += bg;
        }
        // DFL differentiates the per-sample losses' sum over the batch (`docs/dfl-parity.md`,
        // "Quirks").
        total.sum(Kind::Float).backward();
        self.optimizer.step()?;
        let (s, d) = (src_loss.detach().mean(Kind::Float), dst_loss.detach().mean(Kind::Float));
        self.loss_sum = Some(match self.loss_sum.take() {
            Some((acc_s, acc_d)) => (acc_s + s, acc_d + d),
            None => (s, d),
        });
        self.steps_since_check += 1;
        Ok(())
    }

    fn side_loss(&self, side: &SideTensors, pred: &Prediction) -> Tensor {
        let opts = LossOptions {
            masked_training: self.cfg.masked_training,
            eyes_mouth_prio: self.cfg.eyes_mouth_prio,
        };
        let (image, mask) = (as_f32(&pred.image), as_f32(&pred.mask));
        let batch = SideBatch {
            target: &side.target,
            target_mask: &side.mask,
            target_eyes_mouth: Some(&side.eyes_mouth),
            pred: &image,
            pred_mask: &mask,
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
        let (src, dst) = (acc_s.double_value(&[]) / n, acc_d.double_value(&[]) / n);
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

    /// Copies every weight and optimizer-state tensor into the last-good buffers, on the
    /// device. The buffers are allocated once and then reused, so a check allocates nothing.
    fn save_good(&mut self) {
        let _guard = tch::no_grad_guard();
        let mut weights: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        fill_snapshot(&mut self.last_good.weights, weights);
        fill_snapshot(&mut self.last_good.optimizer, self.optimizer.state());
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
}
