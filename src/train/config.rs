//! A model's options, saved as `model/<name>/config.json` on the first run. Options that fix
//! the network (DFL asks them only on the first run) can never change; the others (DFL's
//! "override" options, anchors doc §3.13) can change on any resume, and each change is logged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::color::ColorTransfer;
use crate::face::align::FaceType;
use crate::model::arch::ModelConfig;
use crate::model::optim::OptimizerConfig;
use crate::model::precision::Precision;

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
    /// Restrict the image losses to the blurred face mask.
    pub masked_training: bool,
    /// Add 300·L1 over the eyes and mouth.
    pub eyes_mouth_prio: bool,
    /// Weight p/10 on the swap's background versus dst's (0 = off).
    pub bg_style_power: f64,
    /// Random warp of the network inputs (off late in training for sharpness; freezes LIAE's
    /// inter_ab).
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
    /// Pretrain on one generic faceset for both sides (DFL's `pretrain`, anchors doc §3.7).
    pub pretrain: bool,
    /// The generic faceset (a folder of aligned faces) pretraining reads.
    pub pretrain_faceset: Option<std::path::PathBuf>,
}

impl Default for TrainConfig {
    /// DFL's SAEHD defaults (anchors doc §3.13); face type `f`, batch 8.
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            face_type: FaceType::Full,
            seed: 0,
            batch_size: 8,
            optimizer: OptimizerConfig::default(),
            precision: Precision::Fp32,
            masked_training: true,
            eyes_mouth_prio: false,
            bg_style_power: 0.0,
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
    /// Returns the options a run actually uses: pretraining forces random warp off, flips on
    /// for both sides, yaw-balanced sampling, no colour transfer, no lr dropout and no
    /// background style (DFL: `Model_SAEHD/Model.py`, anchors doc §3.7).
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
        cfg
    }
}

/// The options DFL asks only when a model is created.
const FROZEN: [&str; 3] = ["model", "face_type", "seed"];

/// A resumed run tried to change an option that fixes the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "these options fix the model and cannot change on resume: {}; keep the saved values, or train a new model under another --name",
    .0.join(", ")
)]
pub struct FrozenOptionChanged(pub Vec<String>);

/// Compares a resumed run's options with the saved ones.
///
/// # Errors
/// `FrozenOptionChanged` listing each frozen option as `name: saved → now`.
///
/// Returns the changes of overridable options (to log), as `name: saved → now`.
pub fn compare(saved: &TrainConfig, now: &TrainConfig) -> Result<Vec<String>, FrozenOptionChanged> {
    let (Ok(Value::Object(saved)), Ok(Value::Object(now))) =
        (serde_json::to_value(saved), serde_json::to_value(now))
    else {
        unreachable!("invariant: TrainConfig serialises to an object");
    };
    let changed = |key: &String| saved.get(key) != now.get(key);
    let describe = |key: &String| format!("{key}: {} → {}", saved[key], now[key]);
    let frozen: Vec<String> =
        FROZEN.iter().map(|k| (*k).to_owned()).filter(changed).map(|k| describe(&k)).collect();
    if !frozen.is_empty() {
        return Err(FrozenOptionChanged(frozen));
    }
    Ok(saved.keys().filter(|k| changed(k)).map(describe).collect())
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
