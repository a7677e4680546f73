//! `dfl train` end to end through the real binary on tiny models: a run saves a loadable
//! checkpoint set and previews, resumes at the saved iteration, refuses frozen-option changes,
//! survives kill -9 (during training and saves), saves on Ctrl-C, and saves or stops when another
//! process asks through `control.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use std::time::{Duration, Instant};

use dfl::model::checkpoint::read_tensors;
use dfl::model::folder::control::{Request, request};
use dfl::model::folder::{
    CODE_DISCRIMINATOR_FILE, CODE_DISCRIMINATOR_OPTIMIZER_FILE, GAN_FILE, GAN_OPTIMIZER_FILE,
    ModelFolder, TrainState, WEIGHTS_FILE,
};

mod common;
use common::{TINY, dfl, dfl_cmd, stderr, wait_for};

/// A workspace whose facesets are extracted from the bundled portraits (Obama as src, Biden and
/// the astronaut as dst).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::extracted_workspace(
        &["obama.jpg", "obama2.jpg", "obama3.jpg"],
        &["biden.jpg", "astronaut.png"],
    )
}

fn train(ws: &Path, extra: &[&str]) -> Output {
    dfl(ws, &[&["train", "--name", "m"], &TINY[..], extra].concat())
}

fn latest_state(ws: &Path) -> TrainState {
    ModelFolder::new(ws.join("model/m")).load().unwrap().expect("a checkpoint exists").state
}

#[test]
fn a_run_saves_previews_and_resumes_at_the_saved_iteration() {
    let (_tmp, ws) = workspace();
    let out = train(
        &ws,
        &[
            "--iterations",
            "12",
            "--ct-mode",
            "rct",
            "--preview-every",
            "5",
            "--preview-history",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = latest_state(&ws);
    assert_eq!(state.iteration, 12);
    assert_eq!(state.loss_history.iter().map(|p| p.iteration).collect::<Vec<_>>(), [10, 12]);
    for file in [
        "preview.png",
        "loss.png",
        "config.json",
        "previews/000000005.png",
        "previews/000000012.png",
    ] {
        assert!(ws.join("model/m").join(file).is_file(), "{file}");
    }
    let again = dfl(&ws, &["train", "--name", "m", "--iterations", "3"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains("resuming"), "{}", stderr(&again));
    assert_eq!(latest_state(&ws).iteration, 15);
    let status = dfl(&ws, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["models"][0]["iteration"], 15);
}

#[test]
fn changing_the_architecture_on_resume_is_refused() {
    let (_tmp, ws) = workspace();
    assert_eq!(train(&ws, &["--iterations", "1"]).status.code(), Some(0));
    let out = dfl(&ws, &["train", "--name", "m", "--resolution", "128", "--iterations", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot change on resume") && err.contains("resolution"), "{err}");
    assert_eq!(latest_state(&ws).iteration, 1, "nothing was trained or saved");

    // The same through --config: the saved file with another resolution is refused too.
    let saved = std::fs::read_to_string(ws.join("model/m/config.json")).unwrap();
    let other = ws.join("other.json");
    std::fs::write(&other, saved.replace("\"resolution\": 64", "\"resolution\": 128")).unwrap();
    let out = dfl(
        &ws,
        &["train", "--name", "m", "--config", other.to_str().unwrap(), "--iterations", "1"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot change on resume"), "{}", stderr(&out));
}

#[test]
fn kill_9_during_training_and_saves_leaves_a_checkpoint_that_resumes_exactly() {
    kill_and_resume(&[], 20);
}

#[test]
fn kill_9_with_gan_and_true_face_on_resumes_every_network_and_optimizer_exactly() {
    let files = kill_and_resume(&["--gan-power", "0.1", "--true-face-power", "0.01"], 8);
    for file in
        [GAN_FILE, GAN_OPTIMIZER_FILE, CODE_DISCRIMINATOR_FILE, CODE_DISCRIMINATOR_OPTIMIZER_FILE]
    {
        assert!(files.contains(&file.to_owned()), "{file} is in the set: {files:?}");
    }
}

/// Kills `dfl train` with `extra` options `rounds` times at random moments (in steps and in
/// saves), then checks that the latest set always loads and that resuming it reproduces every
/// tensor file of the set exactly. Returns the set's tensor files.
fn kill_and_resume(extra: &[&str], rounds: usize) -> Vec<String> {
    let (_tmp, ws) = workspace();
    let pointer = ws.join("model/m/LATEST");
    // Save about every 0.3 s, so kills land in training steps and in saves, each a random moment
    // (fixed seed) after a save.
    let mut seed = 0x5eed_u64;
    for round in 0..rounds {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay_ms = (seed >> 33) % 600;
        let mut child = dfl_cmd(
            &ws,
            &[
                &["train", "--name", "m"],
                &TINY[..],
                &["--iterations", "100000", "--save-every", "0.005"],
                extra,
            ]
            .concat(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let before = std::fs::read_to_string(&pointer).ok();
        wait_for(60, "a save", || std::fs::read_to_string(&pointer).ok() != before);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let state = latest_state(&ws); // always loadable
        eprintln!("round {round}: killed; latest checkpoint at iteration {}", state.iteration);
    }
    let folder = ModelFolder::new(ws.join("model/m"));
    let latest = folder.latest().unwrap().unwrap();
    let files = tensor_files(&latest);
    let saved: Vec<_> = files.iter().map(|f| read_tensors(&latest.join(f)).unwrap()).collect();
    let iteration = latest_state(&ws).iteration;
    // Resuming with no iterations to run loads and saves the same set again.
    let out = dfl(&ws, &[&["train", "--name", "m", "--iterations", "0"][..], extra].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_state(&ws).iteration, iteration);
    let resaved = folder.latest().unwrap().unwrap();
    assert_eq!(tensor_files(&resaved), files);
    for (file, before) in files.iter().zip(saved) {
        let after = read_tensors(&resaved.join(file)).unwrap();
        assert_eq!(before.len(), after.len(), "{file}");
        for ((name, a), (_, b)) in sorted(before).iter().zip(&sorted(after)) {
            assert!(a.equal(b), "{file}: {name} changed across resume");
        }
    }
    files
}

/// The tensor files of a checkpoint set, sorted.
fn tensor_files(set: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(set)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".safetensors"))
        .collect();
    files.sort();
    files
}

/// Reads one tensor file of the latest set of model `m`, sorted by name.
fn latest_file(ws: &Path, file: &str) -> Option<Vec<(String, tch::Tensor)>> {
    let latest = ModelFolder::new(ws.join("model/m")).latest().unwrap()?;
    let path = latest.join(file);
    path.is_file().then(|| sorted(read_tensors(&path).unwrap()))
}

fn all_equal(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
}

#[test]
fn gan_turned_on_for_a_trained_model_resumes_restarts_on_a_new_shape_and_waits_while_off() {
    let (_tmp, ws) = workspace();
    assert_eq!(train(&ws, &["--iterations", "2"]).status.code(), Some(0));
    assert!(latest_file(&ws, GAN_FILE).is_none(), "no GAN before it is turned on");

    // The usual workflow: GAN on for a model that trained without it.
    let on = dfl(&ws, &["train", "--name", "m", "--iterations", "2", "--gan-power", "0.1"]);
    assert_eq!(on.status.code(), Some(0), "{}", stderr(&on));
    let first = latest_file(&ws, GAN_FILE).expect("the GAN is saved with the set");
    let opt = latest_file(&ws, GAN_OPTIMIZER_FILE).unwrap();
    let iteration = |o: &[(String, tch::Tensor)]| {
        o.iter().find(|(n, _)| n == "iteration").unwrap().1.int64_value(&[0])
    };
    assert_eq!(iteration(&opt), 2, "two discriminator steps");

    // Resumed, it continues.
    let more = dfl(&ws, &["train", "--name", "m", "--iterations", "1", "--gan-power", "0.1"]);
    assert_eq!(more.status.code(), Some(0), "{}", stderr(&more));
    assert_eq!(iteration(&latest_file(&ws, GAN_OPTIMIZER_FILE).unwrap()), 3);

    // Off: its files wait, unchanged, in every new set.
    let off = dfl(&ws, &["train", "--name", "m", "--iterations", "1", "--gan-power", "0"]);
    assert_eq!(off.status.code(), Some(0), "{}", stderr(&off));
    let kept = latest_file(&ws, GAN_FILE).expect("kept while off");
    assert!(!all_equal(&kept, &first), "it trained one more step before");
    let waiting = latest_file(&ws, GAN_OPTIMIZER_FILE).unwrap();
    assert_eq!(iteration(&waiting), 3);

    // New dims: a fresh discriminator, said so.
    let wider = dfl(
        &ws,
        &["train", "--name", "m", "--iterations", "1", "--gan-power", "0.1", "--gan-dims", "8"],
    );
    assert_eq!(wider.status.code(), Some(0), "{}", stderr(&wider));
    assert!(stderr(&wider).contains("starts fresh"), "{}", stderr(&wider));
    assert_eq!(iteration(&latest_file(&ws, GAN_OPTIMIZER_FILE).unwrap()), 1);
    let again = dfl(
        &ws,
        &[
            "train",
            "--name",
            "m",
            "--iterations",
            "1",
            "--gan-power",
            "0.1",
            "--gan-patch-size",
            "4",
        ],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("GAN patch size and dims changed from 8 and 8 to 4 and 8"),
        "{}",
        stderr(&again)
    );

    // Merge never reads the discriminators.
    let merged = dfl(&ws, &["merge", "--model", "m", "--no-video"]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
}

fn sorted(mut v: Vec<(String, tch::Tensor)>) -> Vec<(String, tch::Tensor)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn ctrl_c_finishes_the_step_saves_and_exits_0() {
    let (_tmp, ws) = workspace();
    let child = dfl_cmd(
        &ws,
        &[
            &["train", "--name", "m"],
            &TINY[..],
            &["--iterations", "100000", "--preview-every", "1"],
        ]
        .concat(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Give it time to start training (it saves only on the 25-minute interval otherwise).
    wait_for(60, "the first preview", || ws.join("model/m/preview.png").is_file());
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(latest_state(&ws).iteration > 0);
}

/// A running `dfl`, killed when dropped: a failed test leaves no training behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long `dfl train` of model `m` (a preview after every step) with its stderr going
/// to `log`.
fn spawn_long_run(ws: &Path, log: &Path) -> Running {
    let args = [&["train", "--name", "m"], &TINY[..], &["--iterations", "100000"]].concat();
    let child = dfl_cmd(ws, &[&args[..], &["--preview-every", "1"]].concat())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

/// Waits up to `secs` seconds for `run` to exit (failing when it does not).
fn exit_within(run: &mut Running, secs: u64, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            eprintln!("{what}: exited after {:.1} s", start.elapsed().as_secs_f64());
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: still running after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number after `before` in `text` (`"stopping after iteration "` → 17).
fn number_after(text: &str, before: &str) -> u64 {
    let at = text.find(before).unwrap_or_else(|| panic!("{before:?} is not in: {text}"));
    let digits: String =
        text[at + before.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {before:?} in: {text}"))
}

/// Seconds a stop request may take: the next look at the file, the step under way and the save.
const STOP_SECS: u64 = 20;

#[test]
fn a_stop_request_in_control_json_stops_the_run_as_ctrl_c_does() {
    let (tmp, ws) = workspace();
    let folder = ModelFolder::new(ws.join("model/m"));
    let log = tmp.path().join("stderr.txt");
    let mut child = spawn_long_run(&ws, &log);
    wait_for(60, "the first preview", || folder.preview_path().is_file());
    request(&folder, Request::Stop).unwrap();
    let status = exit_within(&mut child, STOP_SECS, "a run asked to stop");
    let err = std::fs::read_to_string(&log).unwrap();
    let stopped_at = number_after(&err, "stopping after iteration ");
    assert!(err.contains("(asked through control.json)"), "{err}");
    assert_eq!(latest_state(&ws).iteration, stopped_at, "the last step is saved: {err}");
    assert_eq!(number_after(&err, "model m at iteration "), stopped_at, "{err}");

    // The same model stopped by Ctrl-C: the same exit code. The stop request above is stale
    // for this run, which goes on until the signal.
    let mut child = spawn_long_run(&ws, &log);
    let preview_before = std::fs::metadata(folder.preview_path()).unwrap().modified().unwrap();
    wait_for(60, "a new preview", || {
        std::fs::metadata(folder.preview_path()).unwrap().modified().unwrap() != preview_before
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.0.try_wait().unwrap().is_none(), "the stale stop request was ignored");
    let sent = Command::new("kill").args(["-INT", &child.0.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let ctrl_c = exit_within(&mut child, STOP_SECS, "a run stopped by Ctrl-C");
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!err.contains("asked through"), "{err}");
    assert_eq!(status.code(), ctrl_c.code(), "{err}");
    assert_eq!(status.code(), Some(0));
    assert!(latest_state(&ws).iteration > stopped_at);
}

#[test]
fn a_save_request_in_control_json_saves_while_the_run_goes_on() {
    let (tmp, ws) = workspace();
    let folder = ModelFolder::new(ws.join("model/m"));
    let log = tmp.path().join("stderr.txt");
    // Saves every 25 minutes by default: any set before the end is one asked for.
    let mut child = spawn_long_run(&ws, &log);
    wait_for(60, "the first preview", || folder.preview_path().is_file());
    assert_eq!(folder.latest().unwrap(), None, "no save yet");
    request(&folder, Request::Save).unwrap();
    // Read while the run saves: a set being replaced may be gone by the time it is read.
    let saved = || folder.latest_state().ok().flatten().map(|s| s.iteration);
    wait_for(STOP_SECS, "the asked-for save", || saved().is_some());
    let first = saved().unwrap();
    assert!(first > 0);
    // A second request: a newer set, so the run went on training after the first.
    request(&folder, Request::Save).unwrap();
    wait_for(STOP_SECS, "the second asked-for save", || saved().is_some_and(|it| it > first));
    assert!(child.0.try_wait().unwrap().is_none(), "the run goes on after a save");
    request(&folder, Request::Stop).unwrap();
    let status = exit_within(&mut child, STOP_SECS, "a run asked to stop");
    assert_eq!(status.code(), Some(0));
    let err = std::fs::read_to_string(&log).unwrap();
    let line = format!("saved at iteration {first} (asked through control.json)");
    assert!(err.contains(&line), "{err}");
}

/// The latest checkpoint's weights of model `name`, by name.
fn latest_weights(ws: &Path, name: &str) -> std::collections::HashMap<String, tch::Tensor> {
    let latest =
        ModelFolder::new(ws.join("model").join(name)).latest().unwrap().expect("a checkpoint");
    read_tensors(&latest.join(WEIGHTS_FILE)).unwrap().into_iter().collect()
}

/// Whether every weight of part `part` (e.g. `encoder`) is equal in `a` and `b`.
fn part_equal(
    a: &std::collections::HashMap<String, tch::Tensor>,
    b: &std::collections::HashMap<String, tch::Tensor>,
    part: &str,
) -> bool {
    let prefix = format!("{part}.");
    a.iter().filter(|(n, _)| n.starts_with(&prefix)).all(|(n, t)| t.equal(&b[n]))
}

#[test]
fn pretraining_then_switching_it_off_restarts_iterations_and_inters_only() {
    let (_tmp, ws) = workspace();
    // A "generic" faceset: every face of both sides in one folder.
    let generic = ws.join("generic");
    std::fs::create_dir_all(&generic).unwrap();
    for side in ["src", "dst"] {
        for entry in std::fs::read_dir(ws.join(format!("data_{side}/aligned"))).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, generic.join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = train(
        &ws,
        &[
            "--pretrain",
            "true",
            "--pretrain-faceset",
            generic.to_str().unwrap(),
            "--iterations",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(latest_state(&ws).iteration, 4);
    let pretrained = latest_weights(&ws, "m");

    let out = dfl(&ws, &["train", "--name", "m", "--pretrain", "false", "--iterations", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("pretraining switched off"), "{}", stderr(&out));
    assert_eq!(latest_state(&ws).iteration, 0, "the count restarts");
    let after = latest_weights(&ws, "m");
    assert!(
        part_equal(&pretrained, &after, "encoder")
            && part_equal(&pretrained, &after, "decoder_src")
    );
    assert!(!part_equal(&pretrained, &after, "inter"), "the inter was re-initialised");
}

#[test]
fn a_new_model_from_a_trained_one_keeps_the_encoder_and_src_decoder() {
    let (_tmp, ws) = workspace();
    assert_eq!(train(&ws, &["--iterations", "3"]).status.code(), Some(0));
    let out = dfl(&ws, &["train", "--name", "n", "--from", "m", "--iterations", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (old, new) = (latest_weights(&ws, "m"), latest_weights(&ws, "n"));
    assert!(part_equal(&old, &new, "encoder") && part_equal(&old, &new, "decoder_src"));
    assert!(!part_equal(&old, &new, "decoder_dst") && !part_equal(&old, &new, "inter"));
    let cfg = std::fs::read_to_string(ws.join("model/n/config.json")).unwrap();
    assert!(cfg.contains("\"resolution\": 64"), "the architecture comes from m: {cfg}");
}

#[test]
fn a_time_limit_stops_the_run_saves_and_exits_0() {
    let (_tmp, ws) = workspace();
    // Without the limit this run would last hours.
    let out = train(&ws, &["--iterations", "10000000", "--minutes", "0.03"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = latest_state(&ws);
    assert!(state.iteration >= 1 && state.iteration < 10_000_000, "{}", state.iteration);
    let refused = train(&ws, &["--minutes", "0"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}

#[test]
fn eval_every_measures_held_out_faces_and_plots_them() {
    let (_tmp, ws) = workspace();
    // 20+ faces per side, so every 10th can be held out.
    for (side, copies) in [("src", 7), ("dst", 10)] {
        let dir = ws.join(format!("data_{side}/aligned"));
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        for k in 1..copies {
            for name in &names {
                std::fs::copy(dir.join(name), dir.join(format!("c{k}_{}", name.to_string_lossy())))
                    .unwrap();
            }
        }
    }
    let out = train(&ws, &["--iterations", "4", "--eval-every", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("2 src and 2 dst faces held out"), "{err}");
    assert!(err.contains("held-out faces at iteration 2: src SSIM"), "{err}");
    let history = latest_state(&ws).eval_history;
    assert_eq!(history.iter().map(|p| p.iteration).collect::<Vec<_>>(), [2, 4]);
    for p in &history {
        assert!((-1.0..=1.0).contains(&p.src_ssim) && p.dst_psnr > 0.0, "{p:?}");
        let (swap, dst) = (p.swap_identity.unwrap(), p.dst_identity.unwrap());
        assert!((-1.0..=1.0).contains(&swap) && (-1.0..=1.0).contains(&dst), "{p:?}");
        // A four-iteration model draws a smooth blob: far less detail than the faces.
        let sharpness = p.src_sharpness.unwrap();
        assert!(sharpness > 0.0 && sharpness < 0.5, "{p:?}");
    }
    assert!(err.contains("sharpness vs the faces' own: src 0."), "{err}");
    assert!(ws.join("model/m/eval.png").is_file());
}
