//! `dfl bench`: the quick run's JSON, and the one-line errors of bad flags.

mod common;

use common::{dfl, dfl_cmd, stderr};
use serde_json::Value;

#[test]
fn quick_json_times_both_networks_with_the_levers_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    // One libtorch thread: on a machine busy with other tests, OpenMP threads that wait on
    // each other make a step many times slower (the JSON is what is checked here, not speed).
    let args = ["--device", "cpu", "bench", "--quick", "--json", "--channels-last", "true"];
    let out = dfl_cmd(tmp.path(), &[&args[..], &["--tf32", "false"]].concat())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["quick"], true, "{doc:#}");
    let levers =
        serde_json::json!({"channels_last": true, "tf32": false, "cudnn_benchmark": false});
    assert_eq!(doc["levers"], levers, "the speed options are reported as run");
    assert!(doc["device"].as_str().unwrap().starts_with("cpu"), "{doc:#}");
    assert_eq!(doc["device_name"], "cpu (1 thread)", "{doc:#}");
    assert_eq!(doc["threads"], 1, "{doc:#}");
    assert_eq!(doc["dfl_version"], env!("CARGO_PKG_VERSION"));
    let configs = doc["configs"].as_array().unwrap();
    let archs: Vec<&str> = configs.iter().map(|c| c["arch"].as_str().unwrap()).collect();
    assert_eq!(archs, ["df", "liae-ud"], "{doc:#}");
    for c in configs {
        assert_eq!(c["skipped"], false, "{c:#}");
        assert_eq!(c["resolution"], 64, "{c:#}");
        assert_eq!(c["precision"], "fp32", "{c:#}");
        assert_eq!((c["steps"].as_u64(), c["warmup"].as_u64()), (Some(2), Some(1)), "{c:#}");
        assert_eq!(c["dims"]["ae"], 32, "the quick dims are reported: {c:#}");
        let batch = c["batch"].as_f64().unwrap();
        assert_eq!(batch, 2.0);
        let ms = c["ms_per_iteration"].as_f64().unwrap();
        assert!(ms.is_finite() && ms > 0.0, "{c:#}");
        let (min, max) = (c["ms_per_iteration_min"].as_f64(), c["ms_per_iteration_max"].as_f64());
        assert!(min.unwrap() <= ms && ms <= max.unwrap(), "{c:#}");
        let sps = c["samples_per_second"].as_f64().unwrap();
        let expected = batch * 1000.0 / ms;
        assert!((sps - expected).abs() <= expected * 1e-4 + 1e-3, "{sps} ≠ {expected}: {c:#}");
        let peak = c["host_peak_rss_bytes"].as_u64().unwrap();
        let rise = c["host_peak_rss_increase_bytes"].as_u64().unwrap();
        assert!(peak > 10 << 20 && rise <= peak, "{c:#}");
        assert!(c["device_peak_bytes"].is_null(), "not measured, not invented: {c:#}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing was written");
}

/// Runs `dfl bench ARGS` and returns its one-line error, checking exit 2 and empty stdout.
fn usage_error(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = dfl(tmp.path(), &[&["--device", "cpu", "bench"], args].concat());
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("dfl: "), "{err}");
    err
}

#[test]
fn zero_steps_or_an_absurd_batch_is_a_one_line_error_naming_the_flag() {
    // With --quick, so that a bench that accepted 0 would fail fast rather than run DF-128.
    let err = usage_error(&["--steps", "0", "--quick"]);
    assert!(err.contains("--steps 0") && err.contains("1 to 10000"), "{err}");
    for batch in ["0", "1025"] {
        let err = usage_error(&["--batch", batch, "--quick"]);
        assert!(err.contains(&format!("--batch {batch}")) && err.contains("1 to 1024"), "{err}");
    }
}

#[test]
fn an_unknown_config_is_a_one_line_error_listing_the_valid_ones() {
    let err = usage_error(&["--config", "df-512"]);
    for word in ["--config", "\"df-512\"", "df-128", "liae-ud-128", "df-256"] {
        assert!(err.contains(word), "{word}: {err}");
    }
}
