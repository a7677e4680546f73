//! The discriminators a run trains beside the autoencoder, each with its own weights and
//! optimizer (same kind, learning rate, dropout and clipping as the autoencoder's):
//!
//! - **true face** (`true_face_power`, DF only): the code discriminator on the inter's output;
//! - **GAN** (`gan_power`): the U-Net patch discriminator on src→src.
//!
//! A training step first updates the autoencoder, whose objective includes each discriminator's
//! generator term (the discriminators' weights are frozen for that backward pass), then steps
//! each discriminator on the codes and reconstructions of that same forward pass, detached.
//! DFL runs a second forward pass with the updated autoencoder for the discriminator steps; we
//! reuse the first (`docs/dfl-parity.md`, "Quirks"), which saves that pass every iteration.
//!
//! On disk each discriminator is two files of the checkpoint set ([`DISCRIMINATOR_FILES`]); a
//! discriminator that is off this run keeps its files from set to set, so turning it on again
//! resumes it.

use std::path::Path;
use std::sync::Arc;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::distributed::Group;
use crate::model::adversarial::{
    code_discriminator_loss, gan_generator_loss, gan_stabilisers, patch_discriminator_loss,
    true_face_generator_loss,
};
use crate::model::checkpoint::{CheckpointError, copy_named};
use crate::model::discriminator::{
    CODE_BASE_CHANNELS, CodeDiscriminator, PatchLogits, UNetPatchDiscriminator, code_res,
};
use crate::model::folder::{
    CODE_DISCRIMINATOR_FILE, CODE_DISCRIMINATOR_OPTIMIZER_FILE, DISCRIMINATOR_FILES, GAN_FILE,
    GAN_OPTIMIZER_FILE, TrainConfig,
};
use crate::model::layout;
use crate::model::optim::{OptimError, Optimizer, trainable_variables};
use crate::model::precision::{AutocastError, Precision, run_at};

/// Tensors by name.
pub type Named = Vec<(String, Tensor)>;
/// A network's weights and its optimizer's state, by name.
pub type UnitState = (Named, Named);

/// Errors of the discriminators.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscriminatorError {
    /// An optimizer failed or its saved state does not fit.
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    /// bf16 autocast failed.
    #[error(transparent)]
    Autocast(#[from] AutocastError),
    /// A saved discriminator does not fit the one the options build.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// A network's weights and the optimizer that trains them.
struct Trained {
    vs: VarStore,
    optimizer: Optimizer,
}

impl Trained {
    /// Wraps a freshly built network; the optimizer takes every variable of `vs`.
    fn new(vs: VarStore, cfg: &TrainConfig) -> Result<Self, OptimError> {
        if cfg.channels_last {
            layout::vars_to_channels_last(&vs);
        }
        let optimizer = Optimizer::new(trainable_variables(&vs), cfg.optimizer.clone())?;
        Ok(Self { vs, optimizer })
    }

    /// Turns the weights' gradients off (while the autoencoder learns) or back on.
    fn set_learning(&self, on: bool) {
        for (_, var) in self.vs.variables() {
            let _ = var.set_requires_grad(on);
        }
    }

    /// The weights sorted by name.
    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut weights: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        weights
    }

    /// One optimizer step on `loss` (per sample; its sum is differentiated, as for the
    /// autoencoder).
    fn step(&mut self, loss: &Tensor) -> Result<(), OptimError> {
        self.optimizer.zero_grad();
        loss.sum(Kind::Float).backward();
        self.optimizer.step()
    }

    /// Loads weights and optimizer state strictly.
    fn load(
        &mut self,
        weights_file: &str,
        weights: Vec<(String, Tensor)>,
        optimizer: &[(String, Tensor)],
    ) -> Result<(), DiscriminatorError> {
        copy_named(Path::new(weights_file), weights, &self.vs.variables())?;
        self.optimizer.load_state(optimizer)?;
        Ok(())
    }
}

/// True face: the code discriminator and its weight in the generator's objective.
struct TrueFace {
    net: CodeDiscriminator,
    trained: Trained,
    power: f64,
}

/// GAN: the patch discriminator and its weight.
struct Gan {
    net: UNetPatchDiscriminator,
    trained: Trained,
    power: f64,
}

/// What the discriminators judge in one step, from the autoencoder's forward pass.
///
/// # Shapes
/// `src_code`, `dst_code`: the inter's codes `[N, A, 2L, 2L]`; `src_src`, `target_src`:
/// `[N, 3, R, R]` as the image losses compare them (multiplied by the loss mask with masked
/// training); `src_src_raw`, `target_src_raw`: the same without the mask; `target_src_mask`:
/// `[N, 1, R, R]`.
pub struct Judged<'a> {
    /// The src code (true face's fake).
    pub src_code: &'a Tensor,
    /// The dst code (true face's real).
    pub dst_code: &'a Tensor,
    /// src→src as the losses see it (the GAN's fake).
    pub src_src: &'a Tensor,
    /// The src target as the losses see it (the GAN's real).
    pub target_src: &'a Tensor,
    /// src→src unmasked (the stabilisers').
    pub src_src_raw: &'a Tensor,
    /// The src target unmasked.
    pub target_src_raw: &'a Tensor,
    /// The src target's mask.
    pub target_src_mask: &'a Tensor,
}

/// The discriminators a run's options turn on.
pub struct Discriminators {
    true_face: Option<TrueFace>,
    gan: Option<Gan>,
    /// Saved files of discriminators that are off this run, carried into each new set.
    dormant: Vec<(String, Vec<(String, Tensor)>)>,
    precision: Precision,
    device: Device,
    masked_training: bool,
    resolution: i64,
}

impl Discriminators {
    /// Builds the discriminators `cfg` (the run's effective options) turns on, with fresh
    /// weights from the current seed, on `device`.
    ///
    /// # Errors
    /// `Optimizer` when an optimizer cannot be set up.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self, DiscriminatorError> {
        let true_face = if cfg.true_face_power > 0.0 {
            let vs = VarStore::new(device);
            let (a, res) = (cfg.model.ae_dims, code_res(&cfg.model));
            let net = CodeDiscriminator::new(&vs.root(), a, res, CODE_BASE_CHANNELS);
            Some(TrueFace { net, trained: Trained::new(vs, cfg)?, power: cfg.true_face_power })
        } else {
            None
        };
        let gan = if cfg.gan_power > 0.0 {
            let vs = VarStore::new(device);
            let net = UNetPatchDiscriminator::new(&vs.root(), cfg.gan_patch_px(), 3, cfg.gan_dims);
            Some(Gan { net, trained: Trained::new(vs, cfg)?, power: cfg.gan_power })
        } else {
            None
        };
        Ok(Self {
            true_face,
            gan,
            dormant: Vec::new(),
            precision: cfg.precision,
            device,
            masked_training: cfg.masked_training,
            resolution: cfg.model.resolution,
        })
    }

    /// The number of trained parameters over all discriminators.
    pub fn num_parameters(&self) -> i64 {
        self.units().map(|t| t.optimizer.num_parameters()).sum()
    }

    fn units(&self) -> impl Iterator<Item = &Trained> {
        self.true_face.iter().map(|t| &t.trained).chain(self.gan.iter().map(|g| &g.trained))
    }

    /// Joins a data-parallel run: each discriminator takes rank 0's weights and optimizer state,
    /// and sums its gradients over the ranks at every step (see [`Optimizer::join`]).
    ///
    /// # Errors
    /// `Optimizer` when a collective fails.
    pub fn join(&mut self, group: &Arc<Group>) -> Result<(), DiscriminatorError> {
        for unit in self.units_mut() {
            unit.optimizer.join(Arc::clone(group))?;
        }
        Ok(())
    }

    fn units_mut(&mut self) -> impl Iterator<Item = &mut Trained> {
        self.true_face
            .iter_mut()
            .map(|t| &mut t.trained)
            .chain(self.gan.iter_mut().map(|g| &mut g.trained))
    }

    /// Freezes the discriminators' weights while the autoencoder's objective is differentiated
    /// (so that backward pass computes no gradient for them), or unfreezes them.
    pub fn set_learning(&self, on: bool) {
        self.units().for_each(|t| t.set_learning(on));
    }

    /// The generator's adversarial terms per sample (`[N]`), or `None` with both off: true
    /// face's BCE of the src code against "real", GAN's BCE of src→src against "real" on both
    /// heads, and with masked training the GAN's stabilisers.
    ///
    /// # Errors
    /// `Autocast`.
    pub fn generator_loss(
        &self,
        judged: &Judged<'_>,
    ) -> Result<Option<Tensor>, DiscriminatorError> {
        let mut terms = Vec::new();
        if let Some(tf) = &self.true_face {
            let logits = self.forward(|| judged.src_code.apply(&tf.net))?;
            terms.push(true_face_generator_loss(&logits, tf.power));
        }
        if let Some(gan) = &self.gan {
            let logits = self.forward(|| gan.net.forward(judged.src_src))?;
            terms.push(gan_generator_loss(&logits, gan.power));
            if self.masked_training {
                terms.push(gan_stabilisers(
                    judged.src_src_raw,
                    judged.target_src_raw,
                    judged.target_src_mask,
                    self.resolution,
                ));
            }
        }
        Ok(terms.into_iter().reduce(|a, b| a + b))
    }

    /// One step of each discriminator on what the autoencoder produced (detached): the code
    /// discriminator on dst codes (real) and src codes (fake), the patch discriminator on the
    /// src target (real) and src→src (fake). Each judges its real and fake halves in one batch.
    ///
    /// # Errors
    /// `Optimizer` or `Autocast`.
    pub fn step(&mut self, judged: &Judged<'_>) -> Result<(), DiscriminatorError> {
        let (precision, device) = (self.precision, self.device);
        if let Some(tf) = &mut self.true_face {
            let codes = Tensor::cat(&[judged.dst_code.detach(), judged.src_code.detach()], 0);
            let logits = run_at(precision, device, || codes.apply(&tf.net))?;
            let (real, fake) = halves(&logits);
            tf.trained.step(&code_discriminator_loss(&real, &fake))?;
        }
        if let Some(gan) = &mut self.gan {
            let images = Tensor::cat(&[judged.target_src.detach(), judged.src_src.detach()], 0);
            let logits = run_at(precision, device, || gan.net.forward(&images))?;
            let ((center_real, center_fake), (pixel_real, pixel_fake)) =
                (halves(&logits.center), halves(&logits.pixel));
            let real = PatchLogits { center: center_real, pixel: pixel_real };
            let fake = PatchLogits { center: center_fake, pixel: pixel_fake };
            gan.trained.step(&patch_discriminator_loss(&real, &fake))?;
        }
        Ok(())
    }

    fn forward<T>(&self, f: impl FnOnce() -> T) -> Result<T, AutocastError> {
        run_at(self.precision, self.device, f)
    }

    /// The files to save with a checkpoint set: each active discriminator's weights and
    /// optimizer state, and the saved files of those that are off this run, unchanged.
    pub fn files(&self) -> Vec<(String, Vec<(String, Tensor)>)> {
        let mut files = Vec::new();
        if let Some(tf) = &self.true_face {
            files.push((CODE_DISCRIMINATOR_FILE.to_owned(), tf.trained.weights()));
            let state = tf.trained.optimizer.state();
            files.push((CODE_DISCRIMINATOR_OPTIMIZER_FILE.to_owned(), state));
        }
        if let Some(gan) = &self.gan {
            files.push((GAN_FILE.to_owned(), gan.trained.weights()));
            files.push((GAN_OPTIMIZER_FILE.to_owned(), gan.trained.optimizer.state()));
        }
        let copy = |tensors: &Vec<(String, Tensor)>| {
            tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
        };
        files.extend(self.dormant.iter().map(|(file, tensors)| (file.clone(), copy(tensors))));
        files
    }

    /// Loads the saved discriminators of a checkpoint set into the active ones and keeps the
    /// others' files to carry forward. A discriminator saved without its optimizer state (or
    /// the reverse) starts fresh.
    ///
    /// The GAN starts fresh, with a logged note, when `gan_changed` says its patch size or dims
    /// changed since it was saved, or when its saved weights do not fit the network the options
    /// build (a change made while it was off); DFL re-initialises it on such a change too.
    ///
    /// # Errors
    /// `Checkpoint` or `Optimizer` when the saved code discriminator does not fit (its shape
    /// follows options that cannot change, so the file is not this model's).
    pub fn load(
        &mut self,
        files: Vec<(String, Vec<(String, Tensor)>)>,
        gan_changed: Option<String>,
    ) -> Result<(), DiscriminatorError> {
        let mut files: std::collections::BTreeMap<String, Vec<(String, Tensor)>> =
            files.into_iter().collect();
        let mut take =
            |weights: &str, optimizer: &str| match (files.remove(weights), files.remove(optimizer))
            {
                (Some(w), Some(o)) => Some((w, o)),
                _ => None,
            };
        let saved_tf = self
            .true_face
            .is_some()
            .then(|| take(CODE_DISCRIMINATOR_FILE, CODE_DISCRIMINATOR_OPTIMIZER_FILE))
            .flatten();
        let saved_gan = self.gan.is_some().then(|| take(GAN_FILE, GAN_OPTIMIZER_FILE)).flatten();
        if let (Some(tf), Some((weights, optimizer))) = (&mut self.true_face, saved_tf) {
            tf.trained.load(CODE_DISCRIMINATOR_FILE, weights, &optimizer)?;
        }
        if let (Some(gan), Some((weights, optimizer))) = (&mut self.gan, saved_gan) {
            if let Some(change) = gan_changed {
                log::info!("{change}: the GAN's discriminator starts fresh");
            } else {
                // Loading checks every tensor before it copies any: a misfit leaves it fresh.
                let live = gan.trained.vs.variables();
                match copy_named(Path::new(GAN_FILE), weights, &live) {
                    Ok(()) => gan.trained.optimizer.load_state(&optimizer)?,
                    Err(e) => log::info!(
                        "the saved GAN discriminator does not fit the current --gan-patch-size and --gan-dims ({e}): it starts fresh"
                    ),
                }
            }
        }
        debug_assert!(files.keys().all(|f| DISCRIMINATOR_FILES.contains(&f.as_str())));
        self.dormant = files.into_iter().collect();
        Ok(())
    }

    /// Every weight and optimizer-state tensor, for the divergence guard's snapshot: per
    /// discriminator, its weights and its optimizer state.
    pub(super) fn snapshot_sources(&self) -> Vec<UnitState> {
        self.units().map(|t| (t.weights(), t.optimizer.state())).collect()
    }

    /// Restores every discriminator from a snapshot taken by [`Self::snapshot_sources`].
    ///
    /// # Errors
    /// `Optimizer` when the state does not fit (it always does: it was taken from them).
    pub(super) fn restore(&mut self, snapshot: &[UnitState]) -> Result<(), OptimError> {
        for (trained, (weights, optimizer)) in self.units_mut().zip(snapshot) {
            let live = trained.vs.variables();
            tch::no_grad(|| {
                for (name, good) in weights {
                    if let Some(var) = live.get(name) {
                        var.shallow_clone().copy_(good);
                    }
                }
            });
            trained.optimizer.load_state(optimizer)?;
        }
        Ok(())
    }
}

/// Splits a batch judged as `[real; fake]` into its halves.
fn halves(xs: &Tensor) -> (Tensor, Tensor) {
    let n = xs.size()[0] / 2;
    (xs.narrow(0, 0, n), xs.narrow(0, n, n))
}
