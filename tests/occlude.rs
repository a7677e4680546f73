//! The occlusion test bed on the bundled carphone clip (installed by scripts/setup.sh; a
//! missing sample fails with the setup hint): `dfl faceset occlude` writes occluded frames
//! with binary truth masks and resumes, `dfl extract` finds the faces, `occlude-labels` makes
//! their true masks and labels, `occlude-score` measures the hull mask. The exact
//! expectations (composite, truth warp, polygons, IoU) are unit tests in `src/occlude/`.

use std::path::{Path, PathBuf};

use opencv::core::{self, CV_8UC1};
use opencv::imgcodecs::{IMREAD_GRAYSCALE, IMREAD_UNCHANGED, imread};
use opencv::prelude::*;

mod common;
use common::{dfl, stderr};

const CLIP: &str = "carphone_pristine.mp4";
const FRAMES: usize = 36;

fn sample(name: &str) -> PathBuf {
    dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"))
}

fn occlude(ws: &Path, out: &Path, seed: &str) -> std::process::Output {
    let clip = sample(CLIP);
    let args = ["faceset", "occlude", "--input", clip.to_str().unwrap(), "--out"];
    let mut cmd = common::dfl_cmd(ws, &args);
    cmd.arg(out).args(["--seed", seed, "--count", "3", "--max-frames", &FRAMES.to_string()]);
    cmd.output().expect("the dfl binary runs")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn occluded_frames_truth_masks_labels_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let out = tmp.path().join("occluded");

    let run = occlude(&ws, &out, "5");
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let report = json(&out.join("occlude.json"));
    assert_eq!(report["seed"], 5);
    assert_eq!(report["occluders"].as_array().unwrap().len(), 3);
    let frames = report["frames"].as_array().unwrap();
    assert_eq!(frames.len(), FRAMES);
    let (mut covered, mut free) = (0, 0);
    for (i, frame) in frames.iter().enumerate() {
        let name = format!("{:05}", i + 1);
        assert_eq!(frame["name"], name.as_str());
        assert!(out.join(format!("frames/{name}.png")).is_file());
        let mask = imread(out.join(format!("masks/{name}.png")), IMREAD_UNCHANGED).unwrap();
        assert_eq!((mask.typ(), mask.cols(), mask.rows()), (CV_8UC1, 176, 144), "{name}");
        let set = mask.data_bytes().unwrap().iter().filter(|&&v| v == 255).count();
        let zero = mask.data_bytes().unwrap().iter().filter(|&&v| v == 0).count();
        assert_eq!(set + zero, 176 * 144, "mask {name} is binary");
        assert_eq!(frame["covered_px"], set);
        let share = set as f64 / (176.0 * 144.0);
        assert!(share < 0.15, "frame {name}: {share:.3} of the frame covered");
        if set > 0 { covered += 1 } else { free += 1 }
    }
    assert!(covered >= FRAMES / 2 && free >= 3, "{covered} covered, {free} free frames");

    // A rerun resumes (nothing to draw); another seed into the same folder is refused.
    let again = occlude(&ws, &out, "5");
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains(&format!("0 drawn now, {FRAMES} already there")));
    let other = occlude(&ws, &out, "6");
    assert_eq!(other.status.code(), Some(2));
    let err = stderr(&other);
    assert!(err.contains("seed: 5 → 6") && err.contains("another --out"), "{err}");

    // Faces of the occluded frames, their truth and labels.
    let frames_dir = out.join("frames");
    let extract = dfl(&ws, &["extract", "dst", "--input", frames_dir.to_str().unwrap()]);
    assert!(matches!(extract.status.code(), Some(0 | 1)), "{}", stderr(&extract));
    let faces = ws.join("data_dst/aligned");
    let (truth, labels) = (tmp.path().join("truth"), tmp.path().join("labels.json"));
    let args = [
        "faceset",
        "occlude-labels",
        "--truth",
        out.join("masks").to_str().unwrap(),
        "--faces",
        faces.to_str().unwrap(),
        "--count",
        "10",
        "--seed",
        "1",
        "--out-labels",
        labels.to_str().unwrap(),
        "--out-truth",
        truth.to_str().unwrap(),
    ]
    .map(str::to_owned);
    let made = common::dfl_cmd(&ws, &[]).args(&args).output().unwrap();
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let list = json(&truth.join("truth.json"));
    let list = list.as_array().unwrap();
    assert!(list.len() >= FRAMES - 2, "{} faces with a true mask", list.len());
    let shares: Vec<f64> = list
        .iter()
        .map(|f| f["occluded_px"].as_f64().unwrap() / f["hull_px"].as_f64().unwrap())
        .filter(|&s| s >= 0.02)
        .collect();
    assert!(shares.len() >= 5, "occluded faces: {shares:?}");
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!((0.08..0.4).contains(&mean), "mean occluded share of the face {mean:.3}");
    for face in list {
        let file = face["file"].as_str().unwrap().replace(".jpg", ".png");
        let mask = imread(truth.join(&file), IMREAD_GRAYSCALE).unwrap();
        let set = core::count_non_zero(&mask).unwrap();
        assert_eq!(set as u64, face["truth_px"].as_u64().unwrap(), "{file}");
    }
    let labels = json(&labels);
    assert_eq!(labels["version"], 1);
    let labelled = labels["faces"].as_array().unwrap();
    assert_eq!(labelled.len(), 10);
    for face in labelled {
        assert!(faces.join(face["file"].as_str().unwrap()).is_file());
        assert_eq!(face["size"], 256);
        let polys = face["polys"].as_array().unwrap();
        assert!(polys.iter().any(|p| p["kind"] == "include"), "{face}");
        for p in polys {
            let n = p["points"].as_array().unwrap().len();
            assert!((3..=80).contains(&n), "{n} points: not a person's clicks");
        }
    }

    // The hull mask scores below 1 where occluders cover the face.
    let score = dfl(
        &ws,
        &[
            "faceset",
            "occlude-score",
            "--truth-faces",
            truth.to_str().unwrap(),
            "--faces",
            faces.to_str().unwrap(),
        ],
    );
    assert_eq!(score.status.code(), Some(0), "{}", stderr(&score));
    let text = String::from_utf8_lossy(&score.stdout).into_owned();
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{text}"));
        line[prefix.len()..].trim().parse().unwrap()
    };
    let (all, occluded) =
        (value("landmark hull mask IoU:"), value("landmark hull mask IoU on occluded faces:"));
    assert!(occluded < all && all < 1.0 && occluded > 0.5, "{text}");
}
