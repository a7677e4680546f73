//! `dfl faceset import-dfl` and `export-dfl`: DeepFaceLab facesets (tests/fixtures/dfl_faceset,
//! written by scripts/golden/dfl_faceset.py the way DeepFaceLab writes them) come in with their
//! landmarks, matrices, labels and masks, keep their pixels, and go back out as DeepFaceLab
//! faces; imported faces train, sort and merge.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{TINY, dfl, extracted_workspace, image_files, stderr};
use dfl::dfl_format::dfljpg;
use dfl::face::dflimg;
use dfl::face::metadata::{FaceMetadata, read_metadata};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dfl_faceset")
}

fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A workspace holding the fixture's two frames as its dst input (`data_dst/*.png`).
fn workspace_with_frames() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("data_dst")).unwrap();
    for frame in ["00017.png", "00018.png"] {
        std::fs::copy(fixture().join("data_dst").join(frame), ws.join("data_dst").join(frame))
            .unwrap();
    }
    (tmp, ws)
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numbers: {other}"),
    }
}

fn assert_close(name: &str, what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what} has {} values", got.len());
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= tol, "{name}: {what} is off by {worst}");
}

/// Checks an imported face against what the fixture script says it must be.
fn check_face(name: &str, meta: &FaceMetadata, want: &Value) {
    let pts = |p: &[[f32; 2]]| p.iter().flatten().map(|&v| f64::from(v)).collect::<Vec<_>>();
    assert_close(
        name,
        "landmarks",
        &pts(meta.landmarks.points()),
        &floats(&want["landmarks"]),
        1e-4,
    );
    assert_close(
        name,
        "source_landmarks",
        &pts(meta.source_landmarks.points()),
        &floats(&want["source_landmarks"]),
        1e-4,
    );
    let mat: Vec<f64> = meta.image_to_face_mat.iter().flatten().copied().collect();
    assert_eq!(mat, floats(&want["image_to_face_mat"]), "{name}: image_to_face_mat");
    let rect: Vec<f64> = meta.source_rect.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(rect, floats(&want["source_rect"]), "{name}: source_rect");
    assert_eq!(meta.face_type.as_str(), "whole_face", "{name}");
    assert_eq!(u64::from(meta.size_px), want["size_px"].as_u64().unwrap(), "{name}");
    assert_eq!(meta.source_filename, want["source_filename"].as_str().unwrap(), "{name}");
    assert_eq!(meta.face_index as u64, want["face_index"].as_u64().unwrap(), "{name}");
    let size: Vec<f64> = meta.source_size.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(size, floats(&want["source_size"]), "{name}: source_size");
    let polys = serde_json::to_value(&meta.seg_ie_polys).unwrap();
    let want_polys = want["seg_ie_polys"].as_array().unwrap();
    assert_eq!(polys.as_array().unwrap().len(), want_polys.len(), "{name}: polygons");
    for (got, want) in polys.as_array().unwrap().iter().zip(want_polys) {
        assert_eq!(got["kind"], want["kind"], "{name}");
        assert_close(
            name,
            "polygon points",
            &floats(&got["points"]),
            &floats(&want["points"]),
            0.0,
        );
    }
    match (&meta.xseg_mask, want["mask_rows"].as_array()) {
        (None, None) => {}
        (Some(mask), Some(rows)) => {
            use opencv::prelude::*;
            let m = mask.decode().unwrap();
            for (y, row) in rows.iter().enumerate() {
                for (x, v) in row.as_array().unwrap().iter().enumerate() {
                    let got = *m.at_2d::<u8>(y as i32, x as i32).unwrap();
                    assert_eq!(u64::from(got), v.as_u64().unwrap(), "{name}: mask at {x},{y}");
                }
            }
        }
        (got, want) => panic!("{name}: mask {:?} vs {want:?}", got.is_some()),
    }
}

/// The JPEG without any metadata (DeepFaceLab's or dfl's): what "the same pixels" means.
fn bare(bytes: &[u8]) -> Vec<u8> {
    dfljpg::strip_metadata(&dflimg::strip(bytes).unwrap()).unwrap()
}

#[test]
fn a_deepfacelab_faceset_imports_with_landmarks_matrices_labels_and_pixels_intact() {
    let (_tmp, ws) = workspace_with_frames();
    let source = fixture().join("data_dst/aligned");
    let before = image_files(&source);
    let import =
        |ws: &Path| dfl(ws, &["faceset", "import-dfl", source.to_str().unwrap(), "--side", "dst"]);
    let out = import(&ws);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "two files are not faces: {err}");
    assert!(err.contains("notes.jpg") && err.contains("no DeepFaceLab metadata"), "{err}");
    assert!(err.contains("cut_0.jpg"), "{err}");
    assert!(err.contains("imported 3 faces"), "{err}");

    let aligned = ws.join("data_dst/aligned");
    let imported = image_files(&aligned);
    assert_eq!(imported.keys().collect::<Vec<_>>(), ["00017_0.jpg", "00017_1.jpg", "00018_0.jpg"]);
    for (name, want) in expected() {
        let meta = read_metadata(&aligned.join(&name)).unwrap();
        check_face(&name, &meta, &want);
        let frame = ws.join("data_dst").join(format!("{}.png", meta.source_filename));
        assert_eq!(Path::new(&meta.source_path), std::path::absolute(frame).unwrap(), "{name}");
        assert_eq!(bare(&imported[&name]), bare(&before[&name]), "{name}: the pixels changed");
    }
    assert_eq!(image_files(&source), before, "the DeepFaceLab files were modified");

    // A rerun finds everything done and changes nothing.
    let again = import(&ws);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("imported 0 faces") && stderr(&again).contains("3 already there")
    );
    assert_eq!(image_files(&aligned), imported);
}

#[test]
fn a_faceset_pak_imports_like_its_folder() {
    let (_tmp, ws) = workspace_with_frames();
    let pak = fixture().join("packed/faceset.pak");
    let frames = ws.join("data_dst");
    let out = dfl(&ws, &["faceset", "import-dfl", pak.to_str().unwrap(), "--side", "src"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("imported 3 faces"), "{err}");
    let aligned = ws.join("data_src/aligned");
    for (name, want) in expected() {
        let meta = read_metadata(&aligned.join(&name)).unwrap();
        // No src frames: the frame is looked for above the pack, not found, and its size is
        // the least that holds the face.
        assert_eq!(meta.source_path, format!("{}.png", meta.source_filename), "{name}");
        assert!(meta.source_size[0] < 720 && meta.source_size[1] < 720, "{name}");
        assert!(err.contains("3 faces: their frame was"), "{err}");
        let mut with_frames = meta.clone();
        with_frames.source_size = [720, 480];
        check_face(&name, &with_frames, &want);
    }
    // Given the frames, the pack's faces are the folder's, byte for byte but for the path.
    let out =
        dfl(&ws, &["faceset", "import-dfl", pak.to_str().unwrap(), "--side", "dst", "--frames"]);
    assert_eq!(out.status.code(), Some(2), "--frames needs a value: {}", stderr(&out));
    let out = dfl(
        &ws,
        &[
            "faceset",
            "import-dfl",
            pak.to_str().unwrap(),
            "--side",
            "dst",
            "--frames",
            frames.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (name, want) in expected() {
        check_face(&name, &read_metadata(&ws.join("data_dst/aligned").join(&name)).unwrap(), &want);
    }
}

#[test]
fn junk_sources_exit_2_with_one_line_naming_them() {
    let (_tmp, ws) = workspace_with_frames();
    let junk = ws.join("junk.pak");
    std::fs::write(&junk, b"not a pack at all, just some bytes").unwrap();
    let missing = ws.join("nowhere");
    let empty = ws.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (from, says) in [
        (&junk, "not a DeepFaceLab faceset.pak"),
        (&missing, "not a folder of DeepFaceLab faces"),
        (&empty, "no face files"),
    ] {
        let out = dfl(&ws, &["faceset", "import-dfl", from.to_str().unwrap(), "--side", "src"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(says) && err.contains(from.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    assert!(
        !ws.join("data_src/aligned").exists()
            || image_files(&ws.join("data_src/aligned")).is_empty()
    );

    // A DeepFaceLab workspace used as the dfl workspace: its aligned folder is not imported
    // into itself (the originals would be replaced).
    let in_place = ws.join("data_dst/aligned");
    std::fs::create_dir_all(&in_place).unwrap();
    let original = fixture().join("data_dst/aligned/00017_0.jpg");
    std::fs::copy(&original, in_place.join("00017_0.jpg")).unwrap();
    let out = dfl(&ws, &["faceset", "import-dfl", in_place.to_str().unwrap(), "--side", "dst"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("move DeepFaceLab's folder aside"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(in_place.join("00017_0.jpg")).unwrap(),
        std::fs::read(&original).unwrap()
    );
}

#[test]
fn an_exported_faceset_reads_as_deepfacelab_faces_and_comes_back_identical_then_trains_sorts_and_merges()
 {
    let (_tmp, ws) = extracted_workspace(&["obama.jpg", "obama2.jpg"], &["biden.jpg"]);
    let out_root = ws.parent().unwrap().join("dfl-export");
    for side in ["src", "dst"] {
        let out_dir = out_root.join(side);
        let out = dfl(
            &ws,
            &["faceset", "export-dfl", "--side", side, "--out", out_dir.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let originals = image_files(&ws.join(format!("data_{side}/aligned")));
        let exported = image_files(&out_dir);
        assert_eq!(exported.len(), originals.len(), "{side}");
        for (name, bytes) in &exported {
            // DeepFaceLab's reader takes every APP15 segment as a pickle: only its own may be left.
            assert!(dflimg::read(bytes).unwrap().is_none(), "{name}: dfl metadata left in it");
            let dict = dfljpg::read(bytes).unwrap().metadata.expect("DeepFaceLab metadata");
            for key in [
                "face_type",
                "landmarks",
                "source_filename",
                "source_rect",
                "source_landmarks",
                "image_to_face_mat",
            ] {
                assert!(dict.get(key).is_some(), "{name}: no {key}");
            }
            assert_eq!(bare(bytes), bare(&originals[name]), "{name}: the pixels changed");
        }
        // A rerun writes nothing new and overwrites nothing.
        let again = dfl(
            &ws,
            &["faceset", "export-dfl", "--side", side, "--out", out_dir.to_str().unwrap()],
        );
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert!(stderr(&again).contains("exported 0 faces"), "{}", stderr(&again));
        assert_eq!(image_files(&out_dir), exported);
    }

    // A second workspace with the same frames imports the exported faces back.
    let ws2 = ws.parent().unwrap().join("ws2");
    for side in ["src", "dst"] {
        std::fs::create_dir_all(ws2.join(format!("data_{side}"))).unwrap();
        for (name, bytes) in image_files(&ws.join(format!("data_{side}"))) {
            std::fs::write(ws2.join(format!("data_{side}")).join(name), bytes).unwrap();
        }
        let from = out_root.join(side);
        let out = dfl(&ws2, &["faceset", "import-dfl", from.to_str().unwrap(), "--side", side]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let a = ws.join(format!("data_{side}/aligned"));
        let b = ws2.join(format!("data_{side}/aligned"));
        let names: Vec<_> = image_files(&a).into_keys().collect();
        assert_eq!(image_files(&b).into_keys().collect::<Vec<_>>(), names);
        for name in names {
            let (mut m1, m2) =
                (read_metadata(&a.join(&name)).unwrap(), read_metadata(&b.join(&name)).unwrap());
            m1.source_path = m2.source_path.clone();
            m1.detector_score = m2.detector_score;
            assert_eq!(m1, m2, "{side} {name}: metadata changed on the way");
        }
    }
    let train =
        [&["-q", "--device", "cpu", "train", "--name", "m"], &TINY[..], &["--iterations", "2"]]
            .concat();
    let out = dfl(&ws2, &train);
    assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));
    let out = dfl(&ws2, &["sort", "src", "--by", "blur"]);
    assert_eq!(out.status.code(), Some(0), "sort: {}", stderr(&out));
    let out = dfl(&ws2, &["--device", "cpu", "merge", "--model", "m"]);
    assert_eq!(out.status.code(), Some(0), "merge: {}", stderr(&out));
    assert!(ws2.join("data_dst/merged").read_dir().unwrap().count() > 0, "nothing merged");
}

#[test]
fn an_import_killed_midway_leaves_only_whole_faces_and_a_rerun_finishes_it() {
    let (_tmp, ws) = workspace_with_frames();
    let source = ws.parent().unwrap().join("dfl-aligned");
    std::fs::create_dir_all(&source).unwrap();
    let face = std::fs::read(fixture().join("data_dst/aligned/00017_0.jpg")).unwrap();
    const FACES: usize = 600;
    for i in 0..FACES {
        std::fs::write(source.join(format!("{i:05}.jpg")), &face).unwrap();
    }
    let aligned = ws.join("data_dst/aligned");
    for round in 0..3 {
        let mut child = common::dfl_cmd(
            &ws,
            &["-q", "faceset", "import-dfl", source.to_str().unwrap(), "--side", "dst"],
        )
        .spawn()
        .unwrap();
        let target = 40 + round * 150;
        common::wait_for(120, "some faces imported", || image_files(&aligned).len() >= target);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let written = image_files(&aligned);
        assert!(written.len() < FACES, "round {round}: the import finished before the kill");
        for name in written.keys() {
            read_metadata(&aligned.join(name))
                .unwrap_or_else(|e| panic!("round {round}: {name} is not a whole face: {e}"));
        }
    }
    let out = dfl(&ws, &["faceset", "import-dfl", source.to_str().unwrap(), "--side", "dst"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(image_files(&aligned).len(), FACES);
    assert!(stderr(&out).contains("already there"), "{}", stderr(&out));
}
