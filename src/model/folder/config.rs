//! A model's options, saved as `model/<name>/config.json` on the first run. Options that fix
//! the network (DFL asks them only on the first run) can never change; the others (DFL's
//! "override" options, `docs/dfl-parity.md`, "Options") can change on any resume, and each
//! change is logged.

use serde::{Deserialize, Serialize};

use crate::color::ColorTransfer;
use crate::face::align::FaceType;
use crate::model::arch::{ArchKind, ConfigError, ModelConfig};
use crate::model::optim::OptimizerConfig;
use crate::model::precision::Precision;

/// Where a training sample's face mask comes from (`dfl train --mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TrainMask {
    /// The landmark hull.
    Hull,
    /// The face's applied XSeg mask (`dfl xseg apply`); every face must have one.
    Xseg,
    /// The applied XSeg mask where a face has one, the hull elsewhere (as DFL does).
    #[default]
    Auto,
}

/// Every option of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The network (frozen).
    pub model: ModelConfig,
    /// The crop the model works in, re-cut from the facesets' own crops (frozen).
    pub face_type: FaceType,
    /// Seeds weights and every sample (frozen, so a resumed run continues the same stream).
    pub seed: u64,
    /// Samples per side per iteration.
    pub batch_size: usize,
    /// Optimizer, learning rate, lr dropout, gradient clipping.
    pub optimizer: OptimizerConfig,
    /// Forward-pass precision.
    pub precision: Precision,
    /// Store convolution weights and network inputs channels-last (NHWC), the layout of
    /// tensor-core convolutions (`model::layout`). Same numbers either way.
    pub channels_last: bool,
    /// Let fp32 matmuls and convolutions use TF32 tensor cores on Ampere and later GPUs.
    pub tf32: bool,
    /// cuDNN benchmark mode: the fastest algorithm per convolution shape, at up to twice the
    /// peak memory.
    pub cudnn_benchmark: bool,
    /// Restrict the image losses to the blurred face mask.
    pub masked_training: bool,
    /// Which face mask the losses, masked training and the style terms use.
    pub mask: TrainMask,
    /// Add 300·L1 over the eyes and mouth.
    pub eyes_mouth_prio: bool,
    /// Weight p/10 on the swap's background versus dst's (0 = off).
    pub bg_style_power: f64,
    /// Weight 100·p on the style of the masked swap versus the masked dst reconstruction
    /// (DFL's `face_style_power`, 0–100; 0 = off).
    pub face_style_power: f64,
    /// Weight of the patch-GAN loss on the src→src reconstruction (DFL's `gan_power`, 0–5,
    /// typical 0.1; 0 = off).
    pub gan_power: f64,
    /// The patch discriminator's target receptive field in pixels (DFL's `gan_patch_size`,
    /// 3–640); `None` takes the resolution / 8.
    pub gan_patch_size: Option<i64>,
    /// The patch discriminator's base width (DFL's `gan_dims`, 4–512).
    pub gan_dims: i64,
    /// Weight of the code discriminator that pulls src codes toward dst's (DFL's
    /// `true_face_power`, 0–1, typical 0.01; DF only; 0 = off).
    pub true_face_power: f64,
    /// HSV jitter of the src network input (DFL's `random_hsv_power`, 0–0.3; 0 = off).
    pub random_hsv_power: f64,
    /// Blur the targets' background outside the mask before the losses (DFL's
    /// `blur_out_mask`; meant for exact XSeg masks).
    pub blur_out_mask: bool,
    /// Random warp of the network inputs (off late in training for sharpness). DFL then also
    /// stops training LIAE's inter_ab; dfl trains it (`docs/dfl-parity.md`, "Quirks").
    pub random_warp: bool,
    /// Horizontal flips of src samples.
    pub random_src_flip: bool,
    /// Horizontal flips of dst samples.
    pub random_dst_flip: bool,
    /// Yaw-balanced sampling.
    pub uniform_yaw: bool,
    /// Recolour src samples toward random dst faces (DFL's `ct_mode`).
    pub ct_mode: ColorTransfer,
    /// Stop at this iteration (0 = never).
    pub target_iter: u64,
    /// Save every this many minutes.
    pub save_every_min: f64,
    /// Back up every this many hours (0 = never).
    pub backup_every_hours: f64,
    /// Backups kept.
    pub backups_kept: usize,
    /// Write the preview grid every this many iterations.
    pub preview_every: u64,
    /// Also keep every preview grid in `model/<name>/previews/` (DFL's preview history).
    pub preview_history: bool,
    /// Measure held-out faces every this many iterations (0 = off, and no face is held out).
    pub eval_every: u64,
    /// Pretrain on one generic faceset for both sides (DFL's `pretrain`).
    pub pretrain: bool,
    /// The generic faceset (a folder of aligned faces) pretraining reads.
    pub pretrain_faceset: Option<std::path::PathBuf>,
}

impl Default for TrainConfig {
    /// DFL's SAEHD defaults (`docs/dfl-parity.md`, "Options"); face type `f`, batch 8.
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            face_type: FaceType::Full,
            seed: 0,
            batch_size: 8,
            optimizer: OptimizerConfig::default(),
            precision: Precision::Fp32,
            channels_last: false,
            tf32: true,
            cudnn_benchmark: false,
            masked_training: true,
            mask: TrainMask::Auto,
            eyes_mouth_prio: false,
            bg_style_power: 0.0,
            face_style_power: 0.0,
            gan_power: 0.0,
            gan_patch_size: None,
            gan_dims: DEFAULT_GAN_DIMS,
            true_face_power: 0.0,
            random_hsv_power: 0.0,
            blur_out_mask: false,
            random_warp: true,
            random_src_flip: false,
            random_dst_flip: true,
            uniform_yaw: false,
            ct_mode: ColorTransfer::None,
            target_iter: 0,
            save_every_min: 25.0,
            backup_every_hours: 0.0,
            backups_kept: 24,
            preview_every: 100,
            preview_history: false,
            eval_every: 0,
            pretrain: false,
            pretrain_faceset: None,
        }
    }
}

impl TrainConfig {
    /// Returns the patch discriminator's target receptive field: `gan_patch_size`, else
    /// DFL's default of the resolution / 8.
    pub fn gan_patch_px(&self) -> i64 {
        self.gan_patch_size.unwrap_or(self.model.resolution / 8)
    }

    /// Returns the options a run actually uses: pretraining forces random warp off, flips on
    /// for both sides, yaw-balanced sampling, no colour transfer or HSV jitter, no lr dropout,
    /// no face or background style, no GAN and no true face (DFL: `models/Model_SAEHD/Model.py`;
    /// `docs/dfl-parity.md`, "Pretraining").
    pub fn effective(&self) -> TrainConfig {
        if !self.pretrain {
            return self.clone();
        }
        let mut cfg = self.clone();
        cfg.random_warp = false;
        cfg.random_src_flip = true;
        cfg.random_dst_flip = true;
        cfg.uniform_yaw = true;
        cfg.ct_mode = ColorTransfer::None;
        cfg.optimizer.lr_dropout = false;
        cfg.bg_style_power = 0.0;
        cfg.face_style_power = 0.0;
        cfg.gan_power = 0.0;
        cfg.true_face_power = 0.0;
        cfg.random_hsv_power = 0.0;
        cfg
    }
}

/// DFL's default width of the patch discriminator.
pub const DEFAULT_GAN_DIMS: i64 = 16;
/// The largest GAN power DFL allows.
const MAX_GAN_POWER: f64 = 5.0;
/// The largest HSV jitter DFL allows.
const MAX_RANDOM_HSV_POWER: f64 = 0.3;

/// The largest batch any run takes (far beyond what fits a GPU at any SAEHD resolution; the
/// memory check sets the real limit).
pub const MAX_BATCH_SIZE: usize = 1 << 16;

impl TrainConfig {
    /// Checks every option once, where it enters (the command line, `--config`, a saved
    /// `config.json` someone edited): finite, in range, so nothing downstream sees absurd values.
    ///
    /// # Errors
    /// A `ConfigError` naming the option and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate_dims()?;
        let bad = |what: String| Err(ConfigError::new(what));
        let o = &self.optimizer;
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad(format!("batch_size {} is outside 1–{MAX_BATCH_SIZE}", self.batch_size));
        }
        if !(o.lr.is_finite() && o.lr > 0.0 && o.lr <= 1.0) {
            return bad(format!("lr {} is not above 0 and at most 1", o.lr));
        }
        for (name, v) in [("beta1", o.beta1), ("beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("{name} {v} is outside [0, 1)"));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return bad(format!("eps {} is not a positive number", o.eps));
        }
        if let Some(c) = o.clip_grad_norm.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return bad(format!("clip_grad_norm {c} is not a positive number"));
        }
        for (name, v, max) in [
            ("bg_style_power", self.bg_style_power, 100.0),
            ("face_style_power", self.face_style_power, 100.0),
            ("gan_power", self.gan_power, MAX_GAN_POWER),
            ("true_face_power", self.true_face_power, 1.0),
            ("random_hsv_power", self.random_hsv_power, MAX_RANDOM_HSV_POWER),
        ] {
            if !(0.0..=max).contains(&v) {
                return bad(format!("{name} {v} is outside 0–{max}"));
            }
        }
        if let Some(p) = self.gan_patch_size.filter(|p| !(3..=640).contains(p)) {
            return bad(format!("gan_patch_size {p} is outside 3–640"));
        }
        if !(4..=512).contains(&self.gan_dims) {
            return bad(format!("gan_dims {} is outside 4–512", self.gan_dims));
        }
        if self.true_face_power > 0.0 && self.model.arch.kind == ArchKind::Liae {
            return bad(
                "true face (--true-face-power) is for DF models only: LIAE has no shared inter code to judge; set it to 0"
                    .to_owned(),
            );
        }
        for (name, v) in [
            ("save_every_min", self.save_every_min),
            ("backup_every_hours", self.backup_every_hours),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} {v} is not a number of 0 or more"));
            }
        }
        if self.backups_kept == 0 {
            return bad("backups_kept 0: keep at least 1".to_owned());
        }
        Ok(())
    }
}

/// A resumed run tried to change an option that fixes the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "these options fix the model and cannot change on resume: {}; keep the saved values, or train a new model under another --name",
    .0.join(", ")
)]
pub struct FrozenOptionChanged(pub Vec<String>);

/// One option's change, as `name: saved → now` (values as they are written in `config.json`).
fn change<T: PartialEq + Serialize>(name: &str, saved: &T, now: &T) -> Option<String> {
    let show = |v: &T| serde_json::to_string(v).unwrap_or_else(|e| format!("<{e}>"));
    (saved != now).then(|| format!("{name}: {} → {}", show(saved), show(now)))
}

/// Compares a resumed run's options with the saved ones, field by field.
///
/// The options DFL asks only when a model is created (the network, the face type and the seed)
/// are frozen; every other option may change on resume.
///
/// # Errors
/// `FrozenOptionChanged` listing each frozen option as `name: saved → now`.
///
/// Returns the changes of overridable options (to log), as `name: saved → now`.
pub fn compare(saved: &TrainConfig, now: &TrainConfig) -> Result<Vec<String>, FrozenOptionChanged> {
    // Destructured so that a new option cannot be forgotten here.
    let TrainConfig {
        model,
        face_type,
        seed,
        batch_size,
        optimizer,
        precision,
        channels_last,
        tf32,
        cudnn_benchmark,
        masked_training,
        mask,
        eyes_mouth_prio,
        bg_style_power,
        face_style_power,
        gan_power,
        gan_patch_size,
        gan_dims,
        true_face_power,
        random_hsv_power,
        blur_out_mask,
        random_warp,
        random_src_flip,
        random_dst_flip,
        uniform_yaw,
        ct_mode,
        target_iter,
        save_every_min,
        backup_every_hours,
        backups_kept,
        preview_every,
        preview_history,
        eval_every,
        pretrain,
        pretrain_faceset,
    } = now;
    let frozen: Vec<String> = [
        change("model", &saved.model, model),
        change("face_type", &saved.face_type, face_type),
        change("seed", &saved.seed, seed),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !frozen.is_empty() {
        return Err(FrozenOptionChanged(frozen));
    }
    Ok([
        change("batch_size", &saved.batch_size, batch_size),
        change("optimizer", &saved.optimizer, optimizer),
        change("precision", &saved.precision, precision),
        change("channels_last", &saved.channels_last, channels_last),
        change("tf32", &saved.tf32, tf32),
        change("cudnn_benchmark", &saved.cudnn_benchmark, cudnn_benchmark),
        change("masked_training", &saved.masked_training, masked_training),
        change("mask", &saved.mask, mask),
        change("eyes_mouth_prio", &saved.eyes_mouth_prio, eyes_mouth_prio),
        change("bg_style_power", &saved.bg_style_power, bg_style_power),
        change("face_style_power", &saved.face_style_power, face_style_power),
        change("gan_power", &saved.gan_power, gan_power),
        change("gan_patch_size", &saved.gan_patch_size, gan_patch_size),
        change("gan_dims", &saved.gan_dims, gan_dims),
        change("true_face_power", &saved.true_face_power, true_face_power),
        change("random_hsv_power", &saved.random_hsv_power, random_hsv_power),
        change("blur_out_mask", &saved.blur_out_mask, blur_out_mask),
        change("random_warp", &saved.random_warp, random_warp),
        change("random_src_flip", &saved.random_src_flip, random_src_flip),
        change("random_dst_flip", &saved.random_dst_flip, random_dst_flip),
        change("uniform_yaw", &saved.uniform_yaw, uniform_yaw),
        change("ct_mode", &saved.ct_mode, ct_mode),
        change("target_iter", &saved.target_iter, target_iter),
        change("save_every_min", &saved.save_every_min, save_every_min),
        change("backup_every_hours", &saved.backup_every_hours, backup_every_hours),
        change("backups_kept", &saved.backups_kept, backups_kept),
        change("preview_every", &saved.preview_every, preview_every),
        change("preview_history", &saved.preview_history, preview_history),
        change("eval_every", &saved.eval_every, eval_every),
        change("pretrain", &saved.pretrain, pretrain),
        change("pretrain_faceset", &saved.pretrain_faceset, pretrain_faceset),
    ]
    .into_iter()
    .flatten()
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_file_round_trips_and_fills_defaults() {
        let cfg = TrainConfig { batch_size: 4, ..Default::default() };
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        let partial: TrainConfig = serde_json::from_str(r#"{"batch_size": 2}"#).unwrap();
        assert_eq!(partial.target_iter, 0);
        assert!(
            serde_json::from_str::<TrainConfig>(r#"{"batch_sise": 2}"#).is_err(),
            "typos are refused"
        );
    }

    #[test]
    fn pretraining_forces_dfls_overrides() {
        let cfg = TrainConfig { pretrain: true, ct_mode: ColorTransfer::Rct, ..Default::default() };
        let run = cfg.effective();
        assert!(!run.random_warp && run.random_src_flip && run.uniform_yaw);
        assert_eq!(run.ct_mode, ColorTransfer::None);
        assert_eq!(TrainConfig::default().effective(), TrainConfig::default());
    }

    #[test]
    fn frozen_options_are_refused_and_others_listed() {
        let saved = TrainConfig::default();
        let mut now = saved.clone();
        now.batch_size = 16;
        now.random_warp = false;
        assert_eq!(
            compare(&saved, &now).unwrap(),
            ["batch_size: 8 → 16", "random_warp: true → false"]
        );
        now.model.resolution = 256;
        now.face_type = FaceType::WholeFace;
        let err = compare(&saved, &now).unwrap_err().to_string();
        assert!(
            err.contains("model:") && err.contains("face_type: \"full\" → \"whole_face\""),
            "{err}"
        );
        assert!(err.contains("--name"), "{err}");
    }
}
