//! `state.json`: a run's counters and histories, saved with each checkpoint. The options live
//! apart, in `config.json`: what a run was asked to do never mixes with how far it got.

use serde::{Deserialize, Serialize};

/// One logged point of the loss history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// The iteration the losses belong to.
    pub iteration: u64,
    /// Mean src loss over the logging interval.
    pub src: f64,
    /// Mean dst loss over the logging interval.
    pub dst: f64,
}

/// Counters and history of a training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainState {
    /// Iterations finished.
    pub iteration: u64,
    /// Wall-clock seconds spent training, over all runs.
    pub elapsed_secs: f64,
    /// Loss means, one point per logging interval.
    pub loss_history: Vec<LossPoint>,
    /// Batches skipped by the divergence guard (non-finite or spiking loss).
    pub skipped_batches: u64,
    /// Held-out evaluations (`--eval-every`), oldest first.
    pub eval_history: Vec<EvalPoint>,
    /// An XSeg model's held-out evaluations, oldest first (absent for SAEHD models).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub iou_history: Vec<IouPoint>,
    /// The data-parallel ranks of the last run (each with the config's batch size); 0 (not
    /// written) for a single process.
    #[serde(skip_serializing_if = "is_single")]
    pub ranks: u32,
}

fn is_single(ranks: &u32) -> bool {
    *ranks <= 1
}

/// One held-out evaluation of an XSeg model (`dfl xseg train --eval-every`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IouPoint {
    /// The iteration measured.
    pub iteration: u64,
    /// Mean intersection-over-union of the predicted (≥ 0.5) and labelled masks on the
    /// held-out labelled faces.
    pub iou: f64,
    /// The same for the landmark hull mask: what the faces get without XSeg.
    pub hull_iou: f64,
    /// How many held-out faces were measured.
    pub faces: usize,
}

/// One held-out evaluation (`dfl train --eval-every`), recorded in the training state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// The iteration measured.
    pub iteration: u64,
    /// Mean SSIM of src → src on held-out src faces.
    pub src_ssim: f64,
    /// Mean PSNR (dB) of src → src.
    pub src_psnr: f64,
    /// Mean SSIM of dst → dst on held-out dst faces.
    pub dst_ssim: f64,
    /// Mean PSNR (dB) of dst → dst.
    pub dst_psnr: f64,
    /// Sharpness of src → src against the src faces' own (Laplacian energy inside the face
    /// mask; 1 = as much fine detail as the faces, below 1 = blurrier). Absent in states saved
    /// before it was measured.
    #[serde(default)]
    pub src_sharpness: Option<f64>,
    /// The same for the swapped held-out dst faces against the dst faces' own.
    #[serde(default)]
    pub swap_sharpness: Option<f64>,
    /// Mean SFace cosine of the swapped held-out dst faces with the src mean, if measured.
    pub swap_identity: Option<f64>,
    /// The same for the held-out dst faces themselves: where the swap starts from.
    pub dst_identity: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_reads_the_iteration_dfl_status_shows() {
        let state = TrainState {
            iteration: 1200,
            elapsed_secs: 3600.5,
            loss_history: vec![LossPoint { iteration: 1000, src: 0.5, dst: 0.4 }],
            skipped_batches: 1,
            eval_history: Vec::new(),
            iou_history: Vec::new(),
            ranks: 2,
        };
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<TrainState>(&json).unwrap(), state);
        // `dfl status` reads only this key.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap()["iteration"], 1200);
        // A single-process run writes no `ranks`, so its state.json reads as before.
        let single = serde_json::to_string(&TrainState { ranks: 0, ..state }).unwrap();
        assert!(!single.contains("ranks"), "{single}");
    }
}
