//! Data-parallel `dfl train` through the real binary, two CPU ranks on Gloo over loopback:
//! two processes of batch 2 take the step one of batch 4 takes; Ctrl-C stops both after the
//! same step and a one-rank run resumes there; kill -9 of one rank makes the other exit naming
//! it, with the last checkpoint intact.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dfl::model::checkpoint::read_tensors;
use dfl::model::folder::{ModelFolder, TrainState, WEIGHTS_FILE};

mod common;
use common::{TINY, dfl, dfl_cmd, stderr, wait_for};

/// The tiny model's shape flags, without TINY's batch size.
fn shape() -> &'static [&'static str] {
    &TINY[..12]
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::extracted_workspace(
        &["obama.jpg", "obama2.jpg", "obama3.jpg"],
        &["biden.jpg", "astronaut.png"],
    )
}

fn latest_state(ws: &Path, name: &str) -> TrainState {
    ModelFolder::new(ws.join("model").join(name)).load().unwrap().expect("a checkpoint").state
}

fn latest_weights(ws: &Path, name: &str) -> Vec<(String, tch::Tensor)> {
    let set = ModelFolder::new(ws.join("model").join(name)).latest().unwrap().unwrap();
    let mut weights = read_tensors(&set.join(WEIGHTS_FILE)).unwrap();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

/// A running `dfl`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exit_within(run: &mut Running, secs: u64) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "still running after {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// One step through the whole pipeline (shards of the sampler, broadcast, summed gradients,
/// rank 0's save). One step only: from the second on, AdaBelief's normalisation multiplies the
/// rounding differences between batch-4 and batch-2 convolution kernels by about 3 per step,
/// so after 5 steps the weights differ by up to 1.6e-4, as much as one process of batch 4 on
/// one thread differs from itself on two (6.6e-5). Five steps to 1e-5 in one process, where
/// the kernels match, is `train::trainer`'s `two_ranks_of_batch_b_…` test.
#[test]
fn two_ranks_of_batch_2_take_the_step_one_rank_of_batch_4_takes() {
    let (_tmp, ws) = workspace();
    let one = [&["--device", "cpu", "train", "--name", "one"], shape()].concat();
    let out = dfl(&ws, &[&one[..], &["--batch-size", "4", "--iterations", "1"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let two = [&["--device", "cpu", "train", "--name", "two"], shape()].concat();
    let args = ["--batch-size", "2", "--iterations", "1", "--nproc", "2"];
    let out = dfl(&ws, &[&two[..], &args[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 ranks (Gloo) × batch 2"), "{}", stderr(&out));
    assert_eq!(latest_state(&ws, "two").iteration, 1);
    let (a, b) = (latest_weights(&ws, "one"), latest_weights(&ws, "two"));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let diff = f64::try_from((x - y).abs().max()).unwrap();
        assert!(diff <= 1e-5, "{name}: {diff}");
    }
    // The step moved the weights by far more than that.
    let out = dfl(&ws, &[&one[..], &["--iterations", "1"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let later = latest_weights(&ws, "one");
    let moved =
        later.iter().zip(&b).map(|((_, x), (_, y))| f64::try_from((x - y).abs().max()).unwrap());
    assert!(moved.fold(0.0, f64::max) > 1e-4);
}

#[test]
fn ctrl_c_stops_both_ranks_after_the_same_step_and_one_rank_resumes_there() {
    let (tmp, ws) = workspace();
    let log = tmp.path().join("two.log");
    let args = [&["--device", "cpu", "train", "--name", "m"], &TINY[..]].concat();
    let long = ["--iterations", "100000", "--preview-every", "1", "--nproc", "2"];
    let child = dfl_cmd(&ws, &[&args[..], &long[..]].concat())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut run = Running(child);
    wait_for(120, "the first preview", || ws.join("model/m/preview.png").is_file());
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(run.0.id() as libc::pid_t, libc::SIGINT) };
    let status = exit_within(&mut run, 120);
    assert_eq!(status.code(), Some(0), "{}", read(&log));
    let saved = latest_state(&ws, "m").iteration;
    assert!(saved > 0);

    let out = dfl(&ws, &[&args[..], &["--iterations", "2"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("at iteration {saved}")),
        "resumed elsewhere than {saved}: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the last run trained with 2 rank(s), this one with 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(latest_state(&ws, "m").iteration, saved + 2);
}

/// The pid of the worker of rank `rank` under the launcher `parent` (from /proc).
fn worker_pid(parent: u32, rank: usize) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid …"
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ppid: Option<u32> = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let wanted = format!("RANK={rank}");
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn killing_one_rank_stops_the_other_naming_it_and_the_model_resumes() {
    let (tmp, ws) = workspace();
    let log = tmp.path().join("two.log");
    let args = [&["--device", "cpu", "train", "--name", "m"], &TINY[..]].concat();
    // A first checkpoint at iteration 3; then a two-rank run that is killed.
    let out = dfl(&ws, &[&args[..], &["--iterations", "3"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let long = ["--iterations", "100000", "--preview-every", "1", "--nproc", "2"];
    let timeout = ["--dist-timeout", "60"];
    let child = dfl_cmd(&ws, &[&args[..], &long[..], &timeout[..]].concat())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut run = Running(child);
    // Past the first check of the two-rank run (every 10 iterations), so there is something
    // newer than iteration 3 to save.
    let live = ws.join("model/m/live.json");
    wait_for(120, "iteration 15 of the two-rank run", || {
        let text = std::fs::read_to_string(&live).unwrap_or_default();
        let progress: Option<dfl::model::folder::LiveProgress> = serde_json::from_str(&text).ok();
        progress.is_some_and(|p| p.iteration >= 15)
    });
    let pid = worker_pid(run.0.id(), 1).expect("rank 1's process");
    let killed_at = Instant::now();
    // SAFETY: kill(2) on a process of this test's launcher.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let status = exit_within(&mut run, 120);
    let text = read(&log);
    eprintln!("the launcher exited {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("rank 1 stopped answering"), "{text}");
    assert!(text.contains("rank 1 ended: killed by signal 9"), "{text}");
    assert!(killed_at.elapsed() < Duration::from_secs(60), "not within the timeout");
    // Rank 0 saved the last iteration every rank had checked before it stopped.
    let saved = latest_state(&ws, "m").iteration;
    assert!(saved >= 10 && saved.is_multiple_of(10), "saved {saved}: {text}");
    assert!(text.contains(&format!("a rank is gone: saving iteration {saved}")), "{text}");
    let out = dfl(&ws, &[&args[..], &["--iterations", "1"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_state(&ws, "m").iteration, saved + 1);
}
