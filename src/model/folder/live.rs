//! `live.json`: how far a running trainer is between checkpoint saves, for whoever watches
//! (the studio's monitor). Written atomically about once a second; never read back by the
//! trainer, so a stale or damaged file costs nothing but a wrong number on a page.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::state::LossPoint;
use crate::atomic::write_json_atomic;

/// The file's name in a model folder.
pub const LIVE_FILE: &str = "live.json";

/// The least time between two writes.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);

/// What `live.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveProgress {
    /// The trainer's process id (a watcher checks it is still alive).
    pub pid: u32,
    /// False once the run has ended (saved and stopped).
    pub running: bool,
    /// Iterations finished.
    pub iteration: u64,
    /// The iteration of the latest checkpoint set.
    pub saved_iteration: u64,
    /// Milliseconds per iteration, a moving average over the last few seconds.
    pub ms_per_iteration: f64,
    /// Loss points logged since the latest checkpoint set (the saved ones are in its
    /// `state.json`).
    pub loss_since_save: Vec<LossPoint>,
    /// When this was written, milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
}

/// Writes `live.json` for a run, at most once per [`LIVE_EVERY`], and keeps the moving average
/// of the step time.
#[derive(Debug)]
pub struct LiveWriter {
    path: PathBuf,
    last_write: Option<Instant>,
    last_step: Instant,
    ms_per_iteration: Option<f64>,
}

impl LiveWriter {
    /// A writer for the model folder `dir`.
    pub fn new(dir: &std::path::Path) -> Self {
        Self {
            path: dir.join(LIVE_FILE),
            last_write: None,
            last_step: Instant::now(),
            ms_per_iteration: None,
        }
    }

    /// Records that a step just finished; writes the file when a second has passed since the
    /// last write. `history` is the run's whole loss history (only what follows
    /// `saved_iteration` is written).
    pub fn step(&mut self, iteration: u64, saved_iteration: u64, history: &[LossPoint]) {
        let ms = self.last_step.elapsed().as_secs_f64() * 1000.0;
        self.last_step = Instant::now();
        // An exponential moving average whose memory is about ten steps.
        self.ms_per_iteration =
            Some(self.ms_per_iteration.map_or(ms, |avg| avg + (ms - avg) * 0.1));
        if self.last_write.is_none_or(|t| t.elapsed() >= LIVE_EVERY) {
            self.write(true, iteration, saved_iteration, history);
        }
    }

    /// Writes the file now (`running` false when the run ends).
    pub fn write(
        &mut self,
        running: bool,
        iteration: u64,
        saved_iteration: u64,
        history: &[LossPoint],
    ) {
        let since = history.partition_point(|p| p.iteration <= saved_iteration);
        let progress = LiveProgress {
            pid: std::process::id(),
            running,
            iteration,
            saved_iteration,
            ms_per_iteration: self.ms_per_iteration.unwrap_or(0.0),
            loss_since_save: history[since..].to_vec(),
            updated_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        // Best effort: the watcher's view is not worth stopping a run for.
        if let Err(e) = write_json_atomic(&self.path, &progress) {
            log::debug!("{}: {e}", self.path.display());
        }
        self.last_write = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(iteration: u64) -> LossPoint {
        LossPoint { iteration, src: 0.5, dst: 0.25 }
    }

    #[test]
    fn writes_the_points_after_the_save_and_at_most_once_a_second() {
        let tmp = tempfile::tempdir().unwrap();
        let mut live = LiveWriter::new(tmp.path());
        let history: Vec<LossPoint> = [10, 20, 30, 40].map(point).to_vec();
        live.step(40, 20, &history);
        let read = || -> LiveProgress {
            serde_json::from_slice(&std::fs::read(tmp.path().join(LIVE_FILE)).unwrap()).unwrap()
        };
        let first = read();
        assert_eq!(first.iteration, 40);
        assert!(first.running);
        assert_eq!(first.loss_since_save, [point(30), point(40)]);
        live.step(41, 20, &history);
        assert_eq!(read().iteration, 40, "a second write within a second");
        live.write(false, 41, 41, &history);
        let last = read();
        assert_eq!((last.iteration, last.running, last.loss_since_save.len()), (41, false, 0));
    }
}
