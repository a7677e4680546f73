//! Drives the real `dfl` binary in a fresh temporary workspace per test.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use serde_json::Value;

mod common;
use common::{dfl_in as dfl, stderr};

fn status_json(dir: &Path, args: &[&str]) -> Value {
    let out = dfl(dir, &[&["status", "--json"], args].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status --json prints one JSON document")
}

#[test]
fn help_documents_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--workspace", "--device", "--jobs"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    // Every subcommand clap knows, at every level (`faceset info`, `faceset synth`), is listed
    // with its summary by its parent's --help and has a working --help of its own.
    let mut pending = vec![(Vec::<String>::new(), dfl::cli::Cli::command())];
    let mut seen = 0;
    while let Some((path, cmd)) = pending.pop() {
        let parent_args: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
        let parent_help =
            String::from_utf8_lossy(&dfl(tmp.path(), &parent_args).stdout).into_owned();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let about = sub.get_about().expect("every subcommand has a summary").to_string();
            let first_words: String =
                about.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
            assert!(
                parent_help.contains(sub.get_name()) && parent_help.contains(&first_words),
                "{parent_args:?} lacks {} ({first_words}):\n{parent_help}",
                sub.get_name()
            );
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_owned());
            let args: Vec<&str> = sub_path.iter().map(String::as_str).chain(["--help"]).collect();
            let out = dfl(tmp.path(), &args);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            let own = String::from_utf8_lossy(&out.stdout);
            assert!(own.contains("Usage: dfl") && own.contains(sub.get_name()), "{args:?}:\n{own}");
            seen += 1;
            pending.push((sub_path, sub.clone()));
        }
    }
    assert!(seen >= 10, "only {seen} subcommands found");
}

/// Every SAEHD option DFL lets a user change on resume has a `dfl train` flag named after it
/// (`autobackup_hour` is `--backup-every`, `write_preview_history` `--preview-history`,
/// `adabelief` `--optimizer`, `clipgrad` `--clip-grad`; `models_opt_on_gpu` has no meaning
/// here: everything lives on the training device).
#[test]
fn train_help_lists_every_option_dfl_lets_a_user_change_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["train", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--backup-every",
        "--preview-history",
        "--target-iter",
        "--random-src-flip",
        "--random-dst-flip",
        "--batch-size",
        "--masked-training",
        "--eyes-mouth-prio",
        "--uniform-yaw",
        "--blur-out-mask",
        "--optimizer",
        "--lr-dropout",
        "--random-warp",
        "--random-hsv-power",
        "--gan-power",
        "--gan-patch-size",
        "--gan-dims",
        "--true-face-power",
        "--face-style-power",
        "--bg-style-power",
        "--ct-mode",
        "--clip-grad",
        "--pretrain",
    ] {
        assert!(help.contains(&format!("{flag} <")), "dfl train --help lacks {flag}:\n{help}");
    }
}

#[test]
fn status_in_an_empty_workspace_points_at_the_src_video() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("workspace")).unwrap();
    let out = dfl(tmp.path(), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("data_src.mp4"), "{text}");

    let json = status_json(tmp.path(), &[]);
    assert_eq!(json["exists"], true);
    assert_eq!(json["sides"][0]["faces"], 0);
    assert_eq!(json["models"], Value::Array(vec![]));
    assert!(json["next_step"]["command"].as_str().unwrap().contains("data_src.mp4"));
    assert!(json["device"]["selected"].is_string());
}

#[test]
fn status_of_a_missing_workspace_says_to_create_it_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let json = status_json(tmp.path(), &["--workspace", "nowhere"]);
    assert_eq!(json["exists"], false);
    assert!(json["next_step"]["command"].as_str().unwrap().starts_with("mkdir -p"));
    assert!(!tmp.path().join("nowhere").exists());
}

#[test]
fn status_in_a_populated_workspace_counts_what_each_stage_made() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let aligned = ws.join("data_src/aligned");
    std::fs::create_dir_all(&aligned).unwrap();
    std::fs::write(ws.join("data_src.mp4"), b"not really a video").unwrap();
    for i in 1..=4 {
        std::fs::write(aligned.join(format!("{i:05}_0.jpg")), b"x").unwrap();
    }
    std::fs::create_dir_all(ws.join("data_dst")).unwrap();
    std::fs::write(ws.join("data_dst/00001.png"), b"x").unwrap();
    let folder = dfl::model::folder::ModelFolder::new(ws.join("model/df128"));
    let none: Vec<(String, tch::Tensor)> = Vec::new();
    let state = dfl::model::folder::TrainState { iteration: 42, ..Default::default() };
    folder.save(&none, &none, &[], &state).unwrap();

    // The workspace comes from DFL_WORKSPACE here.
    let out = Command::new(env!("CARGO_BIN_EXE_dfl"))
        .args(["status", "--json"])
        .current_dir(tmp.path())
        .env("DFL_WORKSPACE", &ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sides"][0]["faces"], 4);
    assert_eq!(json["sides"][0]["input"]["kind"], "video");
    assert_eq!(json["sides"][1]["input"]["kind"], "images");
    assert_eq!(json["models"][0]["name"], "df128");
    assert_eq!(json["models"][0]["iteration"], 42);
    assert_eq!(json["next_step"]["command"], "dfl extract dst");
}

#[test]
fn sorting_before_extracting_says_what_to_run_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["sort", "dst", "--by", "blur"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no faces to sort; run `dfl extract dst` first"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was written");
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["frobnicate"][..], &["status", "--device", "tpu"], &["extract", "left"], &[]] {
        let out = dfl(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// One past the last CUDA device (cuda:0 on a machine without one) is refused by every command,
/// also those that run no network (issue 14: `--device cuda:7` was ignored by extract).
#[test]
fn asking_for_a_cuda_device_that_is_not_there_is_a_clear_error() {
    let count = dfl::device::cuda_device_count();
    let device = format!("cuda:{count}");
    let tmp = tempfile::tempdir().unwrap();
    for command in [&["status"][..], &["extract", "src"], &["sort", "src", "--by", "blur"]] {
        let out = dfl(tmp.path(), &[&["--device", device.as_str()], command].concat());
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let err = stderr(&out);
        let why = if count == 0 { "no CUDA device" } else { "CUDA device(s) are visible" };
        assert!(err.starts_with("dfl: ") && err.contains(why), "{command:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line per error: {err}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was written");
}

#[test]
fn train_dry_run_prints_the_layer_table_and_dfls_total() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["train", "--model", "df", "--resolution", "128", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("decoder_src.upscale.0.conv"), "{text}");
    assert!(text.lines().last().unwrap().ends_with("57,538,432"), "{text}");

    let out = dfl(tmp.path(), &["train", "--model", "liae-ud", "--dry-run", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total"], 82_376_555);
    assert_eq!(json["config"]["arch"], "liae-ud");

    let bad = dfl(tmp.path(), &["train", "--model", "df-d", "--resolution", "144", "--dry-run"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("multiple of 32"), "{}", stderr(&bad));
}

/// DFL's discriminator sizes: code discriminator DF@128 6,949,633, DF@256 63,577,857,
/// DF-UD@128 2,229,505; patch discriminator R=128 233,650, R=256 946,994.
#[test]
fn train_dry_run_counts_the_discriminators_the_options_turn_on() {
    let tmp = tempfile::tempdir().unwrap();
    let counts = |archi: &str, resolution: &str| -> Vec<i64> {
        let args = [
            "train",
            "--model",
            archi,
            "--resolution",
            resolution,
            "--gan-power",
            "0.1",
            "--true-face-power",
            "0.01",
            "--dry-run",
            "--json",
        ];
        let out = dfl(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json["discriminators"].as_array().unwrap().iter().map(|d| d[1].as_i64().unwrap()).collect()
    };
    assert_eq!(counts("df", "128"), [6_949_633, 233_650]);
    assert_eq!(counts("df", "256"), [63_577_857, 946_994]);
    assert_eq!(counts("df-ud", "128"), [2_229_505, 233_650]);
    let plain = dfl(tmp.path(), &["train", "--model", "df", "--dry-run"]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(!text.contains("discriminator"), "none when both are off: {text}");
    let liae =
        dfl(tmp.path(), &["train", "--model", "liae-ud", "--true-face-power", "0.01", "--dry-run"]);
    assert_eq!(liae.status.code(), Some(2));
    assert!(
        stderr(&liae).contains("true face") && stderr(&liae).contains("DF"),
        "{}",
        stderr(&liae)
    );
}

#[test]
fn train_without_a_name_says_which_flag_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &["train", "--model", "df"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was written");
}

#[test]
fn train_reads_options_from_a_config_file_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("df.json");
    std::fs::write(&file, r#"{"model": {"arch": "df", "resolution": 256, "ae_dims": 256, "e_dims": 64, "d_dims": 64, "d_mask_dims": 22}}"#)
        .unwrap();
    let run = |extra: &[&str]| {
        let out = dfl(
            tmp.path(),
            &[&["train", "--config", file.to_str().unwrap(), "--dry-run", "--json"], extra]
                .concat(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["total"].clone()
    };
    assert_eq!(run(&[]), 95_336_320, "DF at 256 from the file");
    assert_eq!(run(&["--resolution", "128"]), 57_538_432, "the flag wins");

    std::fs::write(&file, r#"{"batch_sise": 4}"#).unwrap();
    let out = dfl(tmp.path(), &["train", "--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("df.json") && stderr(&out).contains("batch_sise"),
        "{}",
        stderr(&out)
    );
}

/// libtorch's CUDA backend is loaded at run time, not linked: commands that may compute load it
/// and libtorch registers it (no GPU is needed to see that: the backend reports the CUDA
/// runtime it was built with), while `--device cpu` and the commands that never run a network
/// leave it out of the process.
#[test]
fn the_cuda_backend_is_loaded_by_commands_that_compute_and_only_by_them() {
    let tmp = tempfile::tempdir().unwrap();
    let torch_has_cuda = Path::new(env!("DFL_LIBTORCH_LIB")).join("libtorch_cuda.so").exists();
    let backend = &status_json(tmp.path(), &[])["device"]["cuda_backend"];
    if torch_has_cuda {
        assert_eq!(backend["state"], "loaded", "{backend}");
        assert!(backend["runtime_version"].as_i64().unwrap() >= 11000, "{backend}");
    } else {
        assert_eq!(backend["state"], "unavailable", "{backend}");
    }
    // The binary does not need the library to start: it is not among its dependencies.
    let out = Command::new("readelf").args(["-d", env!("CARGO_BIN_EXE_dfl")]).output().unwrap();
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("[libtorch_cpu.so]"), "{dynamic}");
    assert!(!dynamic.contains("[libtorch_cuda.so]"), "libtorch_cuda.so is linked:\n{dynamic}");
}
