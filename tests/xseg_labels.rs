//! `dfl xseg labels export|import` through the real binary, on a synthetic faceset: labels
//! land in the face files and survive `dfl sort` and `--undo` (which rename the files), an
//! export imported elsewhere gives the same export, a face the file names but the faceset
//! lacks is one error line and exit 1, and a file that is not a labels file is exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dfl::face::align::{ALIGN_POINTS, FaceType, MEAN_FACE};
use dfl::face::landmarks::Landmarks68;
use dfl::face::metadata::{
    FaceMetadata, ImageFormat, METADATA_VERSION, read_metadata, rewrite_metadata, write_face,
};
use dfl::face::seg::{PolyKind, SegPoly, XSegMask};
use opencv::core::{CV_8UC1, CV_8UC3, Mat, Scalar};
use serde_json::{Value, json};

mod common;
use common::{dfl, stderr};

/// Faces in the synthetic faceset.
const FACES: usize = 6;
/// Their side in pixels.
const SIZE: u32 = 64;

/// A workspace whose src faceset has [`FACES`] faces `00001_0.jpg`…, each a flat colour of
/// its own brightness (so `sort --by brightness` reverses them).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let aligned = ws.join("data_src/aligned");
    std::fs::create_dir_all(&aligned).unwrap();
    // The mean face in the middle of the crop; the jaw and lips on a circle around it.
    let landmarks = Landmarks68::new(std::array::from_fn(|i| {
        match ALIGN_POINTS.iter().position(|&p| p == i) {
            Some(k) => {
                [(12.0 + 40.0 * MEAN_FACE[k][0]) as f32, (12.0 + 40.0 * MEAN_FACE[k][1]) as f32]
            }
            None => {
                let t = i as f32 * 0.37;
                [32.0 + 24.0 * t.cos(), 32.0 + 24.0 * t.sin()]
            }
        }
    }));
    for i in 1..=FACES {
        let meta = FaceMetadata {
            version: METADATA_VERSION,
            source_filename: format!("{i:05}"),
            source_path: "/videos/data_src.mp4".into(),
            source_size: [400, 400],
            face_index: 0,
            face_type: FaceType::WholeFace,
            size_px: SIZE,
            landmarks,
            source_landmarks: landmarks,
            image_to_face_mat: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            source_rect: [0.0, 0.0, 64.0, 64.0],
            detector_score: 0.9,
            seg_ie_polys: Vec::new(),
            xseg_mask: None,
        };
        let grey = 200.0 - 30.0 * i as f64;
        let image = Mat::new_rows_cols_with_default(64, 64, CV_8UC3, Scalar::all(grey)).unwrap();
        write_face(&aligned.join(format!("{i:05}_0.jpg")), &image, &meta, ImageFormat::Jpg, 90)
            .unwrap();
    }
    (tmp, ws)
}

fn aligned(ws: &Path) -> PathBuf {
    ws.join("data_src/aligned")
}

/// The labels of every face, by frame: what must survive renames.
fn labels_by_frame(ws: &Path) -> BTreeMap<String, Vec<SegPoly>> {
    std::fs::read_dir(aligned(ws))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .map(|p| {
            let meta = read_metadata(&p).unwrap();
            (meta.source_filename, meta.seg_ie_polys)
        })
        .collect()
}

/// File names in the aligned folder, sorted.
fn names(ws: &Path) -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir(aligned(ws))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    all.sort();
    all
}

/// Labels drawn on a 128 px copy of face `frame` (so they are halved on import).
fn entry(frame: usize, k: f32) -> Value {
    json!({
        "file": format!("{frame:05}_0.jpg"),
        "source_filename": format!("{frame:05}"),
        "face_index": 0,
        "size": 128,
        "polys": [
            {"kind": "include", "points": [[8.0, 8.0], [120.0, 8.0], [64.0, 120.0]]},
            {"kind": "exclude", "points": [[k, k], [k + 20.0, k], [k, k + 20.0]]},
        ],
    })
}

/// What the labels of [`entry`] are on a 64 px face.
fn expected(k: f32) -> Vec<SegPoly> {
    let half = |points: &[[f32; 2]]| points.iter().map(|p| [p[0] / 2.0, p[1] / 2.0]).collect();
    vec![
        SegPoly {
            kind: PolyKind::Include,
            points: half(&[[8.0, 8.0], [120.0, 8.0], [64.0, 120.0]]),
        },
        SegPoly { kind: PolyKind::Exclude, points: half(&[[k, k], [k + 20.0, k], [k, k + 20.0]]) },
    ]
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

fn run_ok(ws: &Path, args: &[&str]) -> String {
    let out = dfl(ws, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn labels_survive_sort_and_undo_and_show_in_faceset_info() {
    let (tmp, ws) = workspace();
    let file = tmp.path().join("labels.json");
    write_json(&file, &json!({"version": 1, "faces": [entry(2, 30.0), entry(5, 50.0)]}));
    let err = run_ok(&ws, &["xseg", "labels", "import", "--side", "src", file.to_str().unwrap()]);
    assert!(err.contains("labels of 2 face(s) written"), "{err}");
    let want: BTreeMap<String, Vec<SegPoly>> = (1..=FACES)
        .map(|i| {
            let polys = match i {
                2 => expected(30.0),
                5 => expected(50.0),
                _ => Vec::new(),
            };
            (format!("{i:05}"), polys)
        })
        .collect();
    assert_eq!(labels_by_frame(&ws), want);

    let before = names(&ws);
    run_ok(&ws, &["sort", "src", "--by", "brightness"]);
    let sorted = names(&ws);
    assert_ne!(sorted, before, "sort renamed the files");
    assert!(sorted.iter().all(|n| n.len() == "00000_00001_0.jpg".len()), "{sorted:?}");
    assert_eq!(labels_by_frame(&ws), want, "labels moved with their faces");
    run_ok(&ws, &["sort", "src", "--undo"]);
    assert_eq!(names(&ws), before);
    assert_eq!(labels_by_frame(&ws), want, "and back");

    // `faceset info` counts the labels and describes an applied mask without its PNG.
    let face = aligned(&ws).join("00002_0.jpg");
    let mask = Mat::new_rows_cols_with_default(32, 32, CV_8UC1, Scalar::all(255.0)).unwrap();
    let mask = XSegMask::encode("xseg_test", 500, &mask).unwrap();
    let png_len = mask.png.len();
    assert!(rewrite_metadata(&face, |m| m.xseg_mask = Some(mask)).unwrap());
    let out = dfl(&ws, &["faceset", "info", face.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(line["source_filename"], "00002");
    let labels = &line["seg_ie_polys"];
    assert_eq!((labels["polygons"].as_u64(), labels["points"].as_u64()), (Some(2), Some(6)));
    assert_eq!((labels["include"].as_u64(), labels["exclude"].as_u64()), (Some(1), Some(1)));
    assert_eq!(labels["polys"][1]["kind"], "exclude");
    assert_eq!(
        line["xseg_mask"],
        json!({"model": "xseg_test", "iteration": 500, "size": 32, "bytes": png_len})
    );
    assert!(!text.contains("iVBOR"), "no base64 PNG: {text}");
}

#[test]
fn an_export_imported_elsewhere_exports_the_same_and_a_rerun_changes_nothing() {
    let (tmp, first) = workspace();
    let labels = tmp.path().join("labels.json");
    write_json(&labels, &json!({"version": 1, "faces": [entry(4, 10.0), entry(1, 40.0)]}));
    run_ok(&first, &["xseg", "labels", "import", "--side", "src", labels.to_str().unwrap()]);
    run_ok(&first, &["sort", "src", "--by", "brightness"]);
    let a = tmp.path().join("a.json");
    run_ok(&first, &["xseg", "labels", "export", "--side", "src", a.to_str().unwrap()]);
    let exported: Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    let frames: Vec<&str> = exported["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["source_filename"].as_str().unwrap())
        .collect();
    assert_eq!(frames, ["00001", "00004"], "labelled faces only, in extraction order");

    let (_tmp2, second) = workspace();
    run_ok(&second, &["xseg", "labels", "import", "--side", "src", a.to_str().unwrap()]);
    assert_eq!(labels_by_frame(&second), labels_by_frame(&first));
    let files_before: Vec<Vec<u8>> =
        names(&second).iter().map(|n| std::fs::read(aligned(&second).join(n)).unwrap()).collect();
    let err = run_ok(&second, &["xseg", "labels", "import", "--side", "src", a.to_str().unwrap()]);
    assert!(err.contains("0 face(s) written, 2 already up to date"), "{err}");
    let files_after: Vec<Vec<u8>> =
        names(&second).iter().map(|n| std::fs::read(aligned(&second).join(n)).unwrap()).collect();
    assert_eq!(files_before, files_after, "a rerun rewrites nothing");

    // The second faceset was not sorted, so only the file names differ.
    let b = tmp.path().join("b.json");
    run_ok(&second, &["xseg", "labels", "export", "--side", "src", b.to_str().unwrap()]);
    let strip = |path: &Path| {
        let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for face in v["faces"].as_array_mut().unwrap() {
            face.as_object_mut().unwrap().remove("file");
        }
        v
    };
    assert_eq!(strip(&a), strip(&b));
    run_ok(&first, &["sort", "src", "--undo"]);
    let c = tmp.path().join("c.json");
    run_ok(&first, &["xseg", "labels", "export", "--side", "src", c.to_str().unwrap()]);
    assert_eq!(std::fs::read(&b).unwrap(), std::fs::read(&c).unwrap(), "byte for byte");
}

#[test]
fn a_face_the_faceset_lacks_is_one_error_line_and_exit_1() {
    let (tmp, ws) = workspace();
    let file = tmp.path().join("labels.json");
    write_json(&file, &json!({"version": 1, "faces": [entry(3, 20.0), entry(99, 20.0)]}));
    let out = dfl(&ws, &["xseg", "labels", "import", "--side", "src", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let naming: Vec<&str> = err.lines().filter(|l| l.contains("00099")).collect();
    assert_eq!(naming.len(), 1, "{err}");
    assert!(naming[0].contains("no such face") && naming[0].contains("skipped"), "{err}");
    assert_eq!(labels_by_frame(&ws)["00003"], expected(20.0), "the others are imported");
}

#[test]
fn a_file_that_is_not_a_labels_file_is_exit_2_naming_it() {
    let (tmp, ws) = workspace();
    let file = tmp.path().join("oops.json");
    std::fs::write(&file, b"{\"version\": 1, \"faces\": [{\"file\": ").unwrap();
    let before =
        names(&ws).iter().map(|n| std::fs::read(aligned(&ws).join(n)).unwrap()).collect::<Vec<_>>();
    let out = dfl(&ws, &["xseg", "labels", "import", "--side", "src", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("oops.json") && err.contains("not a labels file"), "{err}");
    let after =
        names(&ws).iter().map(|n| std::fs::read(aligned(&ws).join(n)).unwrap()).collect::<Vec<_>>();
    assert_eq!(before, after, "nothing written");
    let out = dfl(&ws, &["xseg", "labels", "import", "--side", "dst", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
