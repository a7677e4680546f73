//! The optimizers SAEHD trains with: DFL's AdaBelief (the default) and Adam, with DFL's
//! learning-rate dropout and global-norm gradient clipping, run over flat buffers.
//!
//! DFL: `core/leras/optimizers/AdaBelief.py`, `models/Model_SAEHD/Model.py`; formulas in
//! `docs/dfl-parity.md`, "Optimizer". The parameters, their gradients and the moments each live
//! in one contiguous tensor (the private `flat` module explains how the variables stay views into
//! it), so a step is about a dozen kernels whatever the number of variables.

mod flat;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Kind, TchError, Tensor, nn};

use flat::FlatParams;

use crate::distributed::{Group, GroupError, ReduceOp};

/// SAEHD's learning rate. DFL: `Model_SAEHD/Model.py`, `lr=5e-5`.
pub const DEFAULT_LR: f64 = 5e-5;
/// First-moment decay. DFL: `AdaBelief.py`, `beta_1=0.9`.
pub const DEFAULT_BETA1: f64 = 0.9;
/// RMSprop's decay ρ of the squared-gradient average. DFL: `RMSprop.py`, `rho=0.9`.
pub const RMSPROP_RHO: f64 = 0.9;
/// Second-moment decay. DFL: `AdaBelief.py`, `beta_2=0.999`.
pub const DEFAULT_BETA2: f64 = 0.999;
/// Denominator guard, float32 "resolution": SAEHD's AdaBelief ε.
pub const DEFAULT_EPS: f64 = 1e-6;
/// With lr dropout, each element's update is kept with this probability.
/// DFL: `Model_SAEHD/Model.py`, `lr_dropout = 0.3`.
pub const LR_DROPOUT_KEEP_PROB: f64 = 0.3;
/// With lr dropout, the learning rate follows a cosine with this period in iterations.
/// DFL: `Model_SAEHD/Model.py`, `lr_cos = 500`.
pub const LR_COS_PERIOD: u64 = 500;
/// SAEHD's global gradient-norm threshold when `clipgrad` is on.
/// DFL: `Model_SAEHD/Model.py`, `clipnorm = 1.0 if clipgrad else 0.0`.
pub const DFL_CLIP_GRAD_NORM: f64 = 1.0;
/// Keys the lr-dropout masks' seeds (with the step count).
const LR_DROPOUT_STREAM: u64 = 0x1D_D0F0_0D15;
/// Name of the step counter in [`Optimizer::state`].
pub const ITERATION_KEY: &str = "iteration";
/// Prefix of the first-moment tensors in [`Optimizer::state`].
const M_PREFIX: &str = "m.";
/// Prefix of the second-moment tensors in [`Optimizer::state`].
const V_PREFIX: &str = "v.";

/// Which update rule [`Optimizer`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// DFL's AdaBelief: no bias correction, ε outside the square root (SAEHD's default).
    #[default]
    #[serde(rename = "adabelief", alias = "ada_belief")]
    #[value(name = "adabelief", alias = "ada-belief")]
    AdaBelief,
    /// Standard Adam with bias correction (Kingma & Ba; as `torch.optim.Adam`).
    Adam,
    /// DFL's RMSprop (SAEHD with `adabelief` off): ρ 0.9, ε outside the square root.
    #[serde(rename = "rmsprop")]
    #[value(name = "rmsprop")]
    RmsProp,
}

/// Hyper-parameters of an [`Optimizer`]; saved with the training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator guard ε.
    pub eps: f64,
    /// DFL's lr dropout: keep each element's update with p 0.3 (and, with `lr_cos`, follow a
    /// 500-step cosine).
    pub lr_dropout: bool,
    /// With lr dropout, whether the learning rate follows the 500-step cosine (SAEHD's does;
    /// XSeg's does not). Written only when off, so SAEHD configs read as before.
    #[serde(skip_serializing_if = "is_true")]
    pub lr_cos: bool,
    /// Clip the global gradient norm to this value (DFL `clipgrad` uses 1.0, on the gradient
    /// of the loss summed over the batch).
    pub clip_grad_norm: Option<f64>,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::AdaBelief,
            lr: DEFAULT_LR,
            beta1: DEFAULT_BETA1,
            beta2: DEFAULT_BETA2,
            eps: DEFAULT_EPS,
            lr_dropout: false,
            lr_cos: true,
            clip_grad_norm: None,
        }
    }
}

impl OptimizerConfig {
    /// Checks that every hyper-parameter is in range.
    ///
    /// # Errors
    /// [`OptimError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), OptimError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let decay = |x: f64| (0.0..1.0).contains(&x);
        let checks = [
            ("lr", self.lr, positive(self.lr), "a finite value > 0"),
            ("beta1", self.beta1, decay(self.beta1), "a value in [0, 1)"),
            ("beta2", self.beta2, decay(self.beta2), "a value in [0, 1)"),
            ("eps", self.eps, positive(self.eps), "a finite value > 0"),
        ];
        let clip = self.clip_grad_norm.map(|c| ("clip_grad_norm", c, positive(c), "a value > 0"));
        match checks.into_iter().chain(clip).find(|check| !check.2) {
            Some((field, value, _, expected)) => {
                Err(OptimError::InvalidConfig { field, value, expected })
            }
            None => Ok(()),
        }
    }
}

/// Errors of building, stepping and restoring an [`Optimizer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A hyper-parameter is out of range.
    #[error("optimizer {field} = {value} is out of range; use {expected}")]
    InvalidConfig {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What would be valid.
        expected: &'static str,
    },
    /// The optimizer was given no variables.
    #[error("the optimizer got no variables; pass the model's trainable variables")]
    NoParameters,
    /// Two variables share a name.
    #[error("variable {name:?} is listed twice; pass each trainable variable once")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A variable is not an f32 tensor on the common device.
    #[error("variable {name:?} is {got}, but the optimizer needs {expected}")]
    UnsupportedParameter {
        /// The variable.
        name: String,
        /// Its dtype and device.
        got: String,
        /// The dtype and device the optimizer holds.
        expected: String,
    },
    /// A variable does not require a gradient.
    #[error("variable {name:?} is frozen (requires_grad is off); leave it out of the optimizer")]
    NotTrainable {
        /// The variable.
        name: String,
    },
    /// A variable's shape, dtype or device changed after the optimizer was built.
    #[error(
        "variable {name:?} changed from {expected} to {got} after the optimizer was built; \
         change dtype or device before building the optimizer"
    )]
    ParameterChanged {
        /// The variable.
        name: String,
        /// Its layout when the optimizer was built.
        expected: String,
        /// Its layout now.
        got: String,
    },
    /// A saved state lacks a tensor this optimizer has.
    #[error("optimizer state has no tensor {name:?}; was it saved for a different model?")]
    MissingState {
        /// The missing tensor.
        name: String,
    },
    /// A saved state has a tensor this optimizer does not know (or has it twice).
    #[error(
        "optimizer state has an unexpected tensor {name:?}; was it saved for a different model?"
    )]
    UnexpectedState {
        /// The unknown tensor.
        name: String,
    },
    /// A saved state tensor has the wrong shape.
    #[error("optimizer state tensor {name:?} has shape {got:?}, but this model needs {expected:?}")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The shape this optimizer needs.
        expected: Vec<i64>,
        /// The shape in the state.
        got: Vec<i64>,
    },
    /// A saved state tensor has the wrong dtype or a bad value.
    #[error("optimizer state tensor {name:?} is invalid: {reason}")]
    InvalidState {
        /// The tensor.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// libtorch refused an operation.
    #[error("libtorch failed in the optimizer: {0}")]
    Torch(#[from] TchError),
    /// A collective with the other ranks of a data-parallel run failed.
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Lists a `VarStore`'s trainable variables sorted by name, as [`Optimizer::new`] takes them.
pub fn trainable_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// AdaBelief or Adam over a fixed set of variables, with DFL's lr dropout and clipping.
///
/// Building it binds the variables and their gradients to flat buffers: the variables stay the
/// same tensors (modules, `VarStore::save` and `VarStore::load` work as before), but their storage
/// moves into one `[P]` f32 tensor. Build at most one optimizer per variable set, after the model
/// has its final dtype and device. Memory: parameters, gradients, m, v and one scratch buffer
/// (two with lr dropout), 4 bytes per element each.
///
/// `step` counts iterations from 0. DFL's cosine reads its iteration variable in the same graph
/// run that increments it, with no ordering between the two; we use the count before the step,
/// so the first step runs at the full learning rate.
pub struct Optimizer {
    cfg: OptimizerConfig,
    flat: FlatParams,
    /// First moments, laid out like the parameters: `[P]` f32.
    m: Tensor,
    /// Second moments (AdaBelief: of g − m; Adam: of g): `[P]` f32.
    v: Tensor,
    /// Scratch for the update, reused every step so the CPU does not page in fresh buffers:
    /// `[P]` f32.
    work: Tensor,
    /// Scratch for the lr-dropout mask, allocated on the first step that needs it: `[P]` f32.
    noise: Option<Tensor>,
    /// Completed steps.
    iteration: u64,
    /// The other ranks of a data-parallel run, whose gradients each step sums with ours.
    group: Option<Arc<Group>>,
}

impl Optimizer {
    /// Builds an optimizer over named trainable variables (see [`trainable_variables`]).
    ///
    /// # Errors
    /// An invalid config, no variables, a duplicate name, a frozen or non-f32 variable, or
    /// variables on different devices.
    pub fn new(vars: Vec<(String, Tensor)>, cfg: OptimizerConfig) -> Result<Self, OptimError> {
        cfg.validate()?;
        let flat = FlatParams::new(vars)?;
        let m = flat.params().f_zeros_like()?;
        let (v, work) = (m.f_zeros_like()?, m.f_zeros_like()?);
        Ok(Self { cfg, flat, m, v, work, noise: None, iteration: 0, group: None })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    /// The number of completed steps (saved in [`Optimizer::state`]; drives the lr cosine).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The sum of every trained element in f64, one kernel over the flat buffer: ranks whose
    /// parameters differ anywhere have different sums (a `[]` f64 tensor on the device).
    pub fn checksum(&self) -> Tensor {
        tch::no_grad(|| self.flat.params().sum(Kind::Double))
    }

    /// The total number of trained elements.
    pub fn num_parameters(&self) -> i64 {
        self.flat.numel()
    }

    /// The learning rate the next step uses: `lr`, or with lr dropout and `lr_cos`
    /// lr·(cos(2π·iteration/500) + 1)/2.
    pub fn learning_rate(&self) -> f64 {
        if !(self.cfg.lr_dropout && self.cfg.lr_cos) {
            return self.cfg.lr;
        }
        let phase = (self.iteration % LR_COS_PERIOD) as f64 / LR_COS_PERIOD as f64;
        self.cfg.lr * ((std::f64::consts::TAU * phase).cos() + 1.0) / 2.0
    }

    /// Joins a data-parallel run: every rank takes rank 0's parameters, moments and iteration,
    /// and from then on each step sums the gradients of all ranks (one all-reduce of the flat
    /// gradient buffer) before the update, so the update is the same everywhere.
    ///
    /// Summed, not averaged: the losses are sums over the samples of a batch, so `world` ranks
    /// of batch b step exactly as one rank of batch world·b on the same samples.
    ///
    /// # Errors
    /// `Group` when a broadcast fails.
    pub fn join(&mut self, group: Arc<Group>) -> Result<(), OptimError> {
        tch::no_grad(|| -> Result<(), OptimError> {
            self.flat.sync()?;
            group.broadcast(self.flat.params(), 0, "broadcast of rank 0's weights")?;
            group.broadcast(&self.m, 0, "broadcast of rank 0's optimizer state")?;
            group.broadcast(&self.v, 0, "broadcast of rank 0's optimizer state")?;
            let iteration =
                Tensor::from_slice(&[i64::try_from(self.iteration).unwrap_or(i64::MAX)])
                    .to_device(self.m.device());
            group.broadcast(&iteration, 0, "broadcast of rank 0's iteration")?;
            self.iteration = read_iteration(&iteration)?;
            Ok(())
        })?;
        self.group = Some(group);
        Ok(())
    }

    /// Applies one update from the variables' current gradients, then counts the iteration.
    ///
    /// In a data-parallel run the gradients are first summed over the ranks. With
    /// `clip_grad_norm`, the gradients are scaled in place by c / max(‖g‖, c), where ‖g‖
    /// is the norm over all variables together. A variable without a gradient counts as zero.
    ///
    /// # Errors
    /// A variable whose shape, dtype or device changed since the optimizer was built.
    pub fn step(&mut self) -> Result<(), OptimError> {
        tch::no_grad(|| {
            self.flat.sync()?;
            if let Some(group) = &self.group {
                group.all_reduce(self.flat.grads(), ReduceOp::Sum, "gradient all-reduce")?;
            }
            if let Some(max_norm) = self.cfg.clip_grad_norm {
                clip_global_norm(self.flat.grads_mut(), max_norm)?;
            }
            match self.cfg.kind {
                OptimizerKind::AdaBelief => self.adabelief_update()?,
                OptimizerKind::Adam => self.adam_update()?,
                OptimizerKind::RmsProp => self.rmsprop_update()?,
            }
            if self.cfg.lr_dropout {
                self.drop_update()?;
            }
            let _ = self.flat.params_mut().f_sub_(&self.work)?;
            self.iteration += 1;
            Ok(())
        })
    }

    /// Zeroes the gradients of all variables (one kernel once they are bound).
    pub fn zero_grad(&mut self) {
        self.flat.zero_grads();
    }

    /// The state to checkpoint: `iteration` (`[1]` i64), then `m.<name>` and `v.<name>` per
    /// variable in name order, shaped like the variables.
    ///
    /// The moment tensors are views of the live buffers: save (or copy) them before the next
    /// step.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let iteration = i64::try_from(self.iteration).unwrap_or(i64::MAX);
        let mut state = vec![(ITERATION_KEY.to_owned(), Tensor::from_slice(&[iteration]))];
        state.extend(self.flat.named_views(&self.m, M_PREFIX));
        state.extend(self.flat.named_views(&self.v, V_PREFIX));
        state
    }

    /// Restores a state written by [`Optimizer::state`]. Strict: every name must match exactly
    /// once, with the same shape; nothing changes unless all of it is valid.
    ///
    /// # Errors
    /// A missing, unexpected or repeated name, a shape mismatch (naming the tensor and both
    /// shapes), a non-float moment, or an iteration that is not one non-negative integer.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), OptimError> {
        let targets = self.state();
        let sources = match_state(&targets, named)?;
        let iteration = read_iteration(sources[0])?;
        // The moments follow the iteration; check them all before copying any.
        let moments = || targets.iter().zip(&sources).skip(1);
        if let Some(((name, _), src)) = moments().find(|(_, src)| !src.is_floating_point()) {
            let reason = format!("dtype {:?}, expected a float dtype", src.kind());
            return Err(OptimError::InvalidState { name: name.clone(), reason });
        }
        tch::no_grad(|| {
            moments().try_for_each(|((_, dst), src)| dst.shallow_clone().f_copy_(src))
        })?;
        self.iteration = iteration;
        Ok(())
    }

    /// DFL's AdaBelief into `work`: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)(g − m)²;
    /// work = lr_t·m/(√v + ε), no bias correction. DFL: `core/leras/optimizers/AdaBelief.py`.
    fn adabelief_update(&mut self) -> Result<(), TchError> {
        let OptimizerConfig { beta1, beta2, eps, .. } = self.cfg;
        let lr = self.learning_rate();
        let (grads, m, v, work) = (self.flat.grads(), &mut self.m, &mut self.v, &mut self.work);
        let _ = m.f_lerp_(grads, 1.0 - beta1)?;
        let _ = grads.f_sub_out(work, m)?.f_square_()?; // (g − m)²
        let _ = v.f_lerp_(work, 1.0 - beta2)?;
        let _ = v.f_sqrt_out(work)?.f_add_scalar_(eps)?; // √v + ε
        let _ = m.f_div_out(work, work)?.f_mul_scalar_(lr)?;
        Ok(())
    }

    /// Adam into `work`, with bias correction: m, v of g and g²; t = iteration + 1;
    /// work = lr_t/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε), as `torch.optim.Adam`.
    fn adam_update(&mut self) -> Result<(), TchError> {
        let OptimizerConfig { beta1, beta2, eps, .. } = self.cfg;
        let lr = self.learning_rate();
        let t = self.iteration.saturating_add(1).min(i32::MAX as u64) as i32;
        let (correction1, correction2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let (grads, m, v, work) = (self.flat.grads(), &mut self.m, &mut self.v, &mut self.work);
        let _ = m.f_lerp_(grads, 1.0 - beta1)?;
        let _ = grads.f_mul_out(work, grads)?; // g²
        let _ = v.f_lerp_(work, 1.0 - beta2)?;
        let _ = v.f_sqrt_out(work)?.f_mul_scalar_(1.0 / correction2.sqrt())?.f_add_scalar_(eps)?;
        let _ = m.f_div_out(work, work)?.f_mul_scalar_(lr / correction1)?;
        Ok(())
    }

    /// DFL's RMSprop into `work`: v ← ρv + (1−ρ)g²; work = lr_t·g/(√v + ε). The first moment
    /// is not used (it stays zero). DFL: `core/leras/optimizers/RMSprop.py`.
    fn rmsprop_update(&mut self) -> Result<(), TchError> {
        let eps = self.cfg.eps;
        let lr = self.learning_rate();
        let (grads, v, work) = (self.flat.grads(), &mut self.v, &mut self.work);
        let _ = grads.f_mul_out(work, grads)?; // g²
        let _ = v.f_lerp_(work, 1.0 - RMSPROP_RHO)?;
        let _ = v.f_sqrt_out(work)?.f_add_scalar_(eps)?; // √v + ε
        let _ = grads.f_div_out(work, work)?.f_mul_scalar_(lr)?;
        Ok(())
    }

    /// DFL's lr dropout: keeps each element of `work` with probability 0.3, fresh every step.
    /// Drawn as uniform < 0.3 (same distribution, 2.6× faster than `bernoulli_` on the CPU),
    /// from libtorch's generator seeded by the step count: a resumed run draws the masks an
    /// uninterrupted one would.
    fn drop_update(&mut self) -> Result<(), TchError> {
        tch::manual_seed(i64::from_ne_bytes((LR_DROPOUT_STREAM ^ self.iteration).to_ne_bytes()));
        let noise = self.noise.get_or_insert_with(|| self.work.zeros_like());
        let _ = noise.f_uniform_(0.0, 1.0)?.f_lt_(LR_DROPOUT_KEEP_PROB)?;
        let _ = self.work.f_mul_(noise)?;
        Ok(())
    }
}

/// Scales `grads` in place by c / max(‖grads‖, c): DFL's `tf_clip_norm` over all gradients, as
/// tensor ops (no device sync). DFL: `core/leras/optimizers/AdaBelief.py`.
fn clip_global_norm(grads: &mut Tensor, max_norm: f64) -> Result<(), TchError> {
    let mut scale = grads.f_norm()?.f_clamp_min(max_norm)?.f_reciprocal()?;
    let _ = scale.f_mul_scalar_(max_norm)?;
    let _ = grads.f_mul_(&scale)?;
    Ok(())
}

/// Pairs each target name of [`Optimizer::state`] with the one source tensor of that name and
/// the same shape.
fn match_state<'a>(
    targets: &[(String, Tensor)],
    named: &'a [(String, Tensor)],
) -> Result<Vec<&'a Tensor>, OptimError> {
    let known: HashSet<&str> = targets.iter().map(|(name, _)| name.as_str()).collect();
    let mut by_name = HashMap::with_capacity(named.len());
    for (name, tensor) in named {
        if !known.contains(name.as_str()) || by_name.insert(name.as_str(), tensor).is_some() {
            return Err(OptimError::UnexpectedState { name: name.clone() });
        }
    }
    targets
        .iter()
        .map(|(name, dst)| {
            let src = *by_name
                .get(name.as_str())
                .ok_or_else(|| OptimError::MissingState { name: name.clone() })?;
            if src.size() != dst.size() {
                let (expected, got) = (dst.size(), src.size());
                return Err(OptimError::ShapeMismatch { name: name.clone(), expected, got });
            }
            Ok(src)
        })
        .collect()
}

/// Reads the saved step counter: one non-negative integer.
fn read_iteration(src: &Tensor) -> Result<u64, OptimError> {
    let invalid = |reason: String| OptimError::InvalidState { name: ITERATION_KEY.into(), reason };
    if src.is_floating_point() || src.kind() == Kind::Bool || src.numel() != 1 {
        return Err(invalid(format!("{:?} {:?}, expected one integer", src.kind(), src.size())));
    }
    let value = src.f_int64_value(&[0])?;
    u64::try_from(value).map_err(|_| invalid(format!("{value} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tch::Device;
    use tch::nn::Module;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// θ and the minimum c of the quadratic Σ(θ − c)², whose gradient is 2(θ − c).
    fn quadratic() -> (Tensor, Tensor) {
        let theta = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 0.0]).set_requires_grad(true);
        (theta, Tensor::from_slice(&[0.0f32, 0.0, 1.0, 0.0]))
    }

    fn backward_quadratic(opt: &mut Optimizer, theta: &Tensor, c: &Tensor) {
        opt.zero_grad();
        (theta - c).square().sum(Kind::Float).backward();
    }

    fn run_quadratic(cfg: OptimizerConfig, steps: usize) -> Vec<Vec<f64>> {
        let (theta, c) = quadratic();
        let mut opt = Optimizer::new(vec![("theta".into(), theta.shallow_clone())], cfg)
            .expect("valid optimizer");
        (0..steps)
            .map(|_| {
                backward_quadratic(&mut opt, &theta, &c);
                opt.step().expect("step");
                Vec::<f64>::try_from(&theta.to_kind(Kind::Double)).expect("1-D")
            })
            .collect()
    }

    fn assert_trajectory(got: &[Vec<f64>], expected: &[[f64; 4]]) {
        for (step, (g, e)) in got.iter().zip(expected).enumerate() {
            for (a, b) in g.iter().zip(e) {
                assert!((a - b).abs() < 2e-6, "step {}: {g:?} vs {e:?}", step + 1);
            }
        }
    }

    #[test]
    fn adabelief_matches_a_hand_computed_two_step_trajectory() {
        // f64 evaluation of the AdaBelief update with lr 0.01: step 1 for θ = 1 is g = 2, m = 0.2,
        // v = 0.001·1.8², θ −= 0.01·0.2/(√v + 1e-6). The last element sits at the minimum.
        let cfg = OptimizerConfig { lr: 0.01, ..OptimizerConfig::default() };
        let expected = [
            [0.964_864_198_826_791, -1.964_863_890_192_949, 0.535_135_183_921_790_8, 0.0],
            [0.915_290_227_657_263_9, -1.915_256_501_034_969_6, 0.584_625_137_458_301_6, 0.0],
        ];
        assert_trajectory(&run_quadratic(cfg, 2), &expected);
    }

    #[test]
    fn adam_matches_a_hand_computed_two_step_trajectory() {
        // Bias-corrected Adam, ε added to √v̂ (torch.optim.Adam), lr 0.01.
        let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr: 0.01, ..Default::default() };
        let expected = [
            [0.990_000_004_999_997_5, -1.990_000_002_499_999_3, 0.509_999_990_000_01, 0.0],
            [0.980_002_755_918_171_7, -1.980_001_342_959_471_2, 0.519_994_204_244_859_5, 0.0],
        ];
        assert_trajectory(&run_quadratic(cfg, 2), &expected);
    }

    #[test]
    fn rmsprop_matches_a_hand_computed_two_step_trajectory() {
        // DFL's RMSprop, ρ 0.9, ε outside the root, lr 0.01 (f64 evaluation).
        let cfg = OptimizerConfig { kind: OptimizerKind::RmsProp, lr: 0.01, ..Default::default() };
        let expected = [
            [0.968_377_273_398_237_2, -1.968_377_248_398_296_4, 0.531_622_676_602, 0.0],
            [0.945_788_100_505_798_2, -1.945_609_674_699_769_5, 0.553_841_389_082_946_9, 0.0],
        ];
        assert_trajectory(&run_quadratic(cfg, 2), &expected);
    }

    #[test]
    fn clipping_scales_a_big_gradient_to_norm_one() {
        for (gain, expected_norm) in [(100.0, 1.0), (0.1, 0.2)] {
            let theta = Tensor::ones([4], CPU).set_requires_grad(true);
            let cfg =
                OptimizerConfig { clip_grad_norm: Some(DFL_CLIP_GRAD_NORM), ..Default::default() };
            let mut opt = Optimizer::new(vec![("theta".into(), theta.shallow_clone())], cfg)
                .expect("valid optimizer");
            (&theta * gain).sum(Kind::Float).backward(); // g = gain, ‖g‖ = 2·gain
            opt.step().expect("step");
            let norm = theta.grad().norm().double_value(&[]);
            assert!((norm - expected_norm).abs() < 1e-6, "gain {gain}: norm {norm}");
        }
    }

    /// One step on `n` parameters with random gradients from `iteration` on: the parameters
    /// after and before, and the gradients.
    fn random_gradient_step(
        cfg: OptimizerConfig,
        n: i64,
        iteration: u64,
    ) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(0);
        let theta = Tensor::randn([n], CPU).set_requires_grad(true);
        let before = theta.detach().copy();
        let mut opt = Optimizer::new(vec![("theta".into(), theta.shallow_clone())], cfg)
            .expect("valid optimizer");
        let mut state = opt.state();
        state[0].1 = Tensor::from_slice(&[iteration as i64]);
        opt.load_state(&state).expect("own state");
        (&theta * Tensor::randn([n], CPU)).sum(Kind::Float).backward();
        opt.step().expect("step");
        (theta.detach(), before, theta.grad())
    }

    #[test]
    fn lr_dropout_moves_about_30_percent_of_the_elements() {
        let cfg = OptimizerConfig { lr: 1e-3, lr_dropout: true, ..Default::default() };
        let (after, before, _) = random_gradient_step(cfg, 10_000, 0);
        let unchanged = after.eq_tensor(&before).to_kind(Kind::Double).mean(Kind::Double);
        let unchanged = unchanged.double_value(&[]);
        assert!((0.67..0.73).contains(&unchanged), "{unchanged}");
    }

    #[test]
    fn lr_dropout_follows_the_500_step_cosine() {
        let lr = 1e-3;
        let cfg = OptimizerConfig { lr, lr_dropout: true, ..Default::default() };
        let (theta, _) = quadratic();
        let mut opt = Optimizer::new(vec![("theta".into(), theta)], cfg.clone()).expect("valid");
        for (iteration, factor) in [(0, 1.0), (125, 0.5), (250, 0.0), (375, 0.5), (500, 1.0)] {
            let mut state = opt.state();
            state[0].1 = Tensor::from_slice(&[iteration]);
            opt.load_state(&state).expect("own state");
            assert!((opt.learning_rate() - lr * factor).abs() < 1e-12, "iteration {iteration}");
        }
        // First step from zero moments, m = 0.1g and √v = √0.001·0.9|g|, at lr_t = lr/2:
        // |Δ| = lr/2 · 0.1|g| / (√0.001·0.9|g| + ε), on the ~30 % of elements that move.
        let (after, before, grad) = random_gradient_step(cfg, 1000, 125);
        let moved = (&after - &before).abs().to_kind(Kind::Double);
        let g = grad.abs().to_kind(Kind::Double);
        let full = (&g * (lr * 0.5 * 0.1)) / (&g * (0.001f64.sqrt() * 0.9) + DEFAULT_EPS);
        let kept = moved.gt(0.0);
        let error = (moved - full).abs().masked_select(&kept).max().double_value(&[]);
        assert!(error < 5e-7, "update off by {error}"); // ~2 f32 ulps of θ ~ N(0, 1)
        assert!(kept.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) < 0.4);
    }

    fn train_steps(opt: &mut Optimizer, theta: &Tensor, target: &Tensor, steps: usize, seed: i64) {
        for i in 0..steps {
            tch::manual_seed(seed + i as i64); // the lr-dropout masks
            opt.zero_grad();
            (theta - target).square().sum(Kind::Float).backward();
            opt.step().expect("step");
        }
    }

    #[test]
    fn state_round_trip_continues_bit_identically() {
        let cfg = OptimizerConfig {
            lr: 1e-2,
            lr_dropout: true,
            clip_grad_norm: Some(1.0),
            ..Default::default()
        };
        tch::manual_seed(5);
        let target = Tensor::randn([3, 5], CPU);
        let theta1 = Tensor::randn([3, 5], CPU).set_requires_grad(true);
        let mut opt1 =
            Optimizer::new(vec![("w".into(), theta1.shallow_clone())], cfg.clone()).expect("valid");
        train_steps(&mut opt1, &theta1, &target, 3, 10);
        let theta2 = theta1.detach().copy().set_requires_grad(true);
        let mut opt2 =
            Optimizer::new(vec![("w".into(), theta2.shallow_clone())], cfg).expect("valid");
        opt2.load_state(&opt1.state()).expect("same layout");
        assert_eq!(opt2.iteration(), 3);
        train_steps(&mut opt1, &theta1, &target, 2, 100);
        train_steps(&mut opt2, &theta2, &target, 2, 100);
        assert!(theta1.equal(&theta2));
        for ((n1, t1), (n2, t2)) in opt1.state().iter().zip(&opt2.state()) {
            assert!(n1 == n2 && t1.equal(t2), "{n1}");
        }
    }

    fn two_variable_optimizer() -> Optimizer {
        let vars = vec![
            ("a.weight".to_owned(), Tensor::zeros([2, 3], CPU).set_requires_grad(true)),
            ("a.bias".to_owned(), Tensor::zeros([2], CPU).set_requires_grad(true)),
        ];
        Optimizer::new(vars, OptimizerConfig::default()).expect("valid")
    }

    #[test]
    fn state_lists_iteration_then_moments_by_name() {
        let opt = two_variable_optimizer();
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        let expected = ["iteration", "m.a.bias", "m.a.weight", "v.a.bias", "v.a.weight"];
        assert_eq!(names, expected);
    }

    #[test]
    fn load_state_rejects_a_wrong_shape_naming_both_shapes() {
        let mut opt = two_variable_optimizer();
        let mut state = opt.state();
        state[2].1 = Tensor::zeros([3, 2], CPU);
        let err = opt.load_state(&state).expect_err("wrong shape").to_string();
        assert!(err.contains("\"m.a.weight\"") && err.contains("[3, 2]"), "{err}");
        assert!(err.contains("[2, 3]"), "{err}");
    }

    #[test]
    fn load_state_rejects_missing_extra_and_bad_tensors() {
        let mut opt = two_variable_optimizer();
        let mut state = opt.state();
        state.pop();
        let err = opt.load_state(&state).expect_err("missing");
        assert!(matches!(&err, OptimError::MissingState { name } if name == "v.a.weight"));
        let mut state = opt.state();
        state.push(("m.b.weight".into(), Tensor::zeros([1], CPU)));
        let err = opt.load_state(&state).expect_err("extra");
        assert!(matches!(&err, OptimError::UnexpectedState { name } if name == "m.b.weight"));
        let mut state = opt.state();
        state[0].1 = Tensor::from_slice(&[-4i64]);
        assert!(matches!(opt.load_state(&state), Err(OptimError::InvalidState { .. })));
        let mut state = opt.state();
        state[0].1 = Tensor::from_slice(&[7i64]);
        state[1].1 = Tensor::ones([2], CPU); // not `fill_`: the state tensors are live views
        state[4].1 = Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
        assert!(matches!(opt.load_state(&state), Err(OptimError::InvalidState { .. })));
        assert_eq!(opt.iteration(), 0, "a failed load changes nothing");
        let m = &opt.state()[1].1;
        assert_eq!(
            m.abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "a failed load changes nothing"
        );
    }

    #[test]
    fn config_defaults_validate_and_round_trip_through_json() {
        let cfg = OptimizerConfig::default();
        assert_eq!((cfg.kind, cfg.lr, cfg.eps), (OptimizerKind::AdaBelief, 5e-5, 1e-6));
        cfg.validate().expect("defaults are valid");
        let json = serde_json::to_string(&cfg).expect("serialise");
        assert!(json.contains("\"adabelief\""), "{json}");
        let back: OptimizerConfig = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, cfg);
        let adam: OptimizerConfig = serde_json::from_str(r#"{"kind":"adam"}"#).expect("partial");
        assert_eq!(adam.kind, OptimizerKind::Adam);
        let bad = OptimizerConfig { beta2: 1.0, ..cfg };
        let err = bad.validate().expect_err("beta2 = 1").to_string();
        assert!(err.contains("beta2"), "{err}");
    }

    /// The same update rule, one tensor at a time: the obvious implementation the flat one
    /// replaces, kept as a cross-check and as the benchmark baseline.
    struct PerTensor {
        cfg: OptimizerConfig,
        vars: Vec<Tensor>,
        m: Vec<Tensor>,
        v: Vec<Tensor>,
    }

    impl PerTensor {
        fn new(vars: Vec<Tensor>, cfg: OptimizerConfig) -> Self {
            let m: Vec<Tensor> = vars.iter().map(Tensor::zeros_like).collect();
            let v = m.iter().map(Tensor::zeros_like).collect();
            Self { cfg, vars, m, v }
        }

        /// One AdaBelief step (lr dropout without the cosine).
        fn step(&mut self) {
            let OptimizerConfig { lr, beta1, beta2, eps, .. } = self.cfg;
            tch::no_grad(|| {
                let mut grads: Vec<Tensor> = self.vars.iter().map(Tensor::grad).collect();
                if let Some(c) = self.cfg.clip_grad_norm {
                    let squares: Vec<Tensor> =
                        grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
                    let scale = Tensor::stack(&squares, 0)
                        .sum(Kind::Float)
                        .sqrt()
                        .clamp_min(c)
                        .reciprocal()
                        * c;
                    grads = grads.iter().map(|g| g * &scale).collect();
                }
                for (i, g) in grads.iter().enumerate() {
                    let _ = self.m[i].lerp_(g, 1.0 - beta1);
                    let _ = self.v[i].lerp_(&(g - &self.m[i]).square(), 1.0 - beta2);
                    let mut update = &self.m[i] / (self.v[i].sqrt() + eps) * lr;
                    if self.cfg.lr_dropout {
                        update *= update.rand_like().lt(LR_DROPOUT_KEEP_PROB);
                    }
                    let _ = self.vars[i].g_sub_(&update);
                }
            })
        }
    }

    /// `count` variables of roughly `numel` elements in total (conv-like weight/bias pairs),
    /// with gradients set to fixed random values.
    fn synthetic_model(count: usize, numel: i64) -> Vec<(String, Tensor)> {
        tch::manual_seed(11);
        let per_layer = (numel / (count as i64 / 2) / 9) as f64;
        let channels = per_layer.sqrt() as i64;
        let vars: Vec<(String, Tensor)> = (0..count / 2)
            .flat_map(|i| {
                let w = Tensor::randn([channels, channels, 3, 3], CPU) * 0.05;
                let b = Tensor::zeros([channels], CPU);
                [(format!("layer.{i:02}.weight"), w), (format!("layer.{i:02}.bias"), b)]
            })
            .map(|(name, t)| (name, t.set_requires_grad(true)))
            .collect();
        let loss: Tensor = vars
            .iter()
            .map(|(_, t)| (t * Tensor::randn_like(t)).sum(Kind::Float))
            .fold(Tensor::zeros([], CPU), |acc, x| acc + x);
        loss.backward();
        vars
    }

    fn shallow(vars: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn clone_vars(vars: &[(String, Tensor)]) -> Vec<Tensor> {
        vars.iter()
            .map(|(_, t)| {
                let copy = t.detach().copy().set_requires_grad(true);
                (&copy * t.grad()).sum(Kind::Float).backward(); // same gradient
                copy
            })
            .collect()
    }

    #[test]
    fn flat_steps_match_a_per_tensor_loop() {
        let cfg = OptimizerConfig { lr: 1e-3, clip_grad_norm: Some(1.0), ..Default::default() };
        let vars = synthetic_model(6, 3_000);
        let mut reference = PerTensor::new(clone_vars(&vars), cfg.clone());
        let mut sorted = shallow(&vars);
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut opt = Optimizer::new(vars, cfg).expect("valid");
        for _ in 0..3 {
            opt.step().expect("step");
            reference.step();
        }
        // The reference holds the variables in creation order; compare by name.
        let by_name: HashMap<_, _> = synthetic_names(6).into_iter().zip(&reference.vars).collect();
        for (name, var) in &sorted {
            assert!(var.allclose(by_name[name], 1e-6, 1e-7, false), "{name}");
        }
    }

    fn synthetic_names(count: usize) -> Vec<String> {
        (0..count / 2)
            .flat_map(|i| [format!("layer.{i:02}.weight"), format!("layer.{i:02}.bias")])
            .collect()
    }

    #[test]
    fn a_tiny_conv_net_converges() {
        tch::manual_seed(42);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::ConvConfig { padding: 1, ..Default::default() };
        let net = nn::seq()
            .add(nn::conv2d(vs.root() / "conv1", 3, 8, 3, conv))
            .add_fn(|xs| xs.leaky_relu())
            .add(nn::conv2d(vs.root() / "conv2", 8, 3, 3, conv))
            .add_fn(|xs| xs.sigmoid());
        let xs = Tensor::rand([4, 3, 8, 8], CPU);
        let target = 1.0 - &xs;
        let cfg = OptimizerConfig { lr: 1e-3, ..Default::default() };
        let mut opt = Optimizer::new(trainable_variables(&vs), cfg).expect("valid");
        let loss = || net.forward(&xs).mse_loss(&target, tch::Reduction::Mean);
        let initial = loss().double_value(&[]);
        for _ in 0..200 {
            opt.zero_grad();
            loss().backward();
            opt.step().expect("step");
        }
        let last = loss().double_value(&[]);
        assert!(last <= 0.5 * initial, "loss {initial} → {last}");
    }

    /// Milliseconds per step, after two warm-up steps.
    fn time_steps(mut step: impl FnMut(), steps: u32) -> f64 {
        step();
        step();
        let start = Instant::now();
        for _ in 0..steps {
            step();
        }
        start.elapsed().as_secs_f64() * 1e3 / f64::from(steps)
    }

    /// The middle road: gather grads with one cat, update flat moments, scatter per variable.
    fn gather_scatter_step(vars: &mut [Tensor], m: &mut Tensor, v: &mut Tensor, lr: f64) {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = vars.iter().map(|t| t.grad().reshape([-1])).collect();
            let g = Tensor::cat(&grads, 0);
            let _ = m.lerp_(&g, 0.1);
            let _ = v.lerp_(&(&g - &*m).square(), 0.001);
            let update = &*m / (v.sqrt() + 1e-6) * lr;
            let mut offset = 0;
            for t in vars.iter_mut() {
                let n = t.numel() as i64;
                let _ = t.g_sub_(&update.narrow(0, offset, n).view(t.size().as_slice()));
                offset += n;
            }
        })
    }

    /// `cargo test --lib bench_optimizer_step -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark; run by hand"]
    fn bench_optimizer_step() {
        let cfg = OptimizerConfig { lr: 1e-4, ..Default::default() };
        let vars = synthetic_model(80, 1_000_000);
        let numel: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let steps = 50;
        let mut per_tensor = PerTensor::new(clone_vars(&vars), cfg.clone());
        let per_tensor_ms = time_steps(|| per_tensor.step(), steps);
        let mut gathered = clone_vars(&vars);
        let (mut m, mut v) = (Tensor::zeros([numel], CPU), Tensor::zeros([numel], CPU));
        let gather_ms =
            time_steps(|| gather_scatter_step(&mut gathered, &mut m, &mut v, 1e-4), steps);
        let mut flat = Optimizer::new(shallow(&vars), cfg.clone()).expect("valid");
        let flat_ms = time_steps(|| flat.step().expect("step"), steps);
        let clip = OptimizerConfig { lr_dropout: true, clip_grad_norm: Some(1.0), ..cfg };
        let mut per_tensor_full = PerTensor::new(clone_vars(&vars), clip.clone());
        let per_tensor_full_ms = time_steps(|| per_tensor_full.step(), steps);
        let mut flat_full = Optimizer::new(
            vars.iter()
                .map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true)))
                .collect(),
            clip,
        )
        .expect("valid");
        let full_ms = time_steps(|| flat_full.step().expect("step"), steps);
        eprintln!(
            "{} tensors, {numel} parameters, {} threads: per-tensor {per_tensor_ms:.2} ms, \
             gather/scatter {gather_ms:.2} ms, flat {flat_ms:.2} ms, \
             with lr_dropout + clip: per-tensor {per_tensor_full_ms:.2} ms, flat {full_ms:.2} ms \
             per step",
            vars.len(),
            tch::get_num_threads()
        );
    }
}
