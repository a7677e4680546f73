//! `dfl demo` end to end with a token training time: every stage runs from an empty folder to
//! result.mp4 and the eval report, a second run resumes without redoing the work, and a folder
//! that holds anything else is refused.

mod common;
use common::{dfl, stderr};

#[test]
fn the_demo_runs_every_stage_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("demo");
    let out = dfl(&ws, &["--device", "cpu", "demo", "--minutes", "0.05"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    for step in [
        "faceset synth",
        "extract src",
        "extract dst",
        "sort src",
        "train --name demo",
        "merge",
        "eval",
    ] {
        assert!(said.contains(&format!(" {step}")), "the demo prints `dfl {step}`: {said}");
    }
    assert!(ws.join("result.mp4").is_file());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.join("eval/report.json")).unwrap()).unwrap();
    assert_eq!(report["faces"], 120);
    assert!(report["identity"]["swap_to_src"]["mean"].is_number(), "{report}");
    assert!(report["expression"]["nme"]["mean"].is_number(), "{report}");
    assert!(report["expression"]["nme_inner"]["mean"].is_number(), "{report}");
    assert_eq!(report["model"]["name"], "demo");

    // A second run finds everything done: no new frames, no training.
    let again = dfl(&ws, &["--device", "cpu", "demo", "--minutes", "0.05"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(!said.contains("faceset synth") && !said.contains("train --name"), "{said}");
    assert!(stderr(&again).contains("120 done before"), "{}", stderr(&again));
}

#[test]
fn the_demo_refuses_a_folder_that_is_not_a_demo() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("my-project.txt"), b"precious").unwrap();
    let out = dfl(tmp.path(), &["--device", "cpu", "demo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not empty and not a demo workspace"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "nothing was written");
}
