//! `dfl sort` end to end through the real binary, on faces extracted from the bundled samples:
//! every method orders and cleans, known edits score as they must (a blurred copy below its
//! original, a mirrored face with the opposite yaw, Biden and the astronaut not Obama), and no
//! face is ever lost: sort → undo restores every name and byte, and a kill at any point is
//! repaired by `--undo` or a rerun.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dfl::face::metadata::{FaceMetadata, ImageFormat, read_face_image, read_metadata, write_face};
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

mod common;
use common::{copy_of, dfl, dfl_cmd, image_files as files, stderr};

/// Faces in the carphone faceset (one per frame).
const FACES: usize = 120;

/// A workspace with the carphone clip extracted as src, made once per test run.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, ws) = TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let carphone = dfl::assets::Assets::from_env()
            .sample("carphone_pristine.mp4")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(carphone, ws.join("data_src.mp4")).unwrap();
        let out = dfl(&ws, &["-q", "extract", "src"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (tmp, ws)
    });
    ws
}

/// A fresh copy of the template workspace.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    copy_of(template())
}

fn aligned(ws: &Path) -> PathBuf {
    ws.join("data_src/aligned")
}

fn trash(ws: &Path) -> PathBuf {
    ws.join("data_src/aligned_trash")
}

/// The bytes of every face file anywhere in the side folder, sorted: what must never change.
fn every_face(ws: &Path) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = walkdir::WalkDir::new(ws.join("data_src"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "jpg"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    all.sort();
    all
}

fn sort(ws: &Path, args: &[&str]) -> std::process::Output {
    let out = dfl(ws, &[&["sort", "src"], args].concat());
    assert_eq!(out.status.code(), Some(0), "sort {args:?}: {}", stderr(&out));
    out
}

/// The `--scores-json` rows of a sort: (file, frame, score, reason).
fn scores(ws: &Path, args: &[&str]) -> Vec<(String, String, Option<f64>, Option<String>)> {
    let json = ws.join("scores.json");
    sort(ws, &[args, &["--scores-json", json.to_str().unwrap()]].concat());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    doc["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["frame"].as_str().unwrap().to_owned(),
                f["score"].as_f64(),
                f["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Adds a copy of face `name` to the faceset as frame `frame`, its pixels changed by `edit`.
fn add_edited(ws: &Path, name: &str, frame: &str, face_index: usize, edit: impl Fn(&Mat) -> Mat) {
    let path = aligned(ws).join(name);
    let image = read_face_image(&path).unwrap();
    let meta = FaceMetadata {
        source_filename: frame.to_owned(),
        face_index,
        ..read_metadata(&path).unwrap()
    };
    let out = aligned(ws).join(format!("{frame}_{face_index}.jpg"));
    write_face(&out, &edit(&image), &meta, ImageFormat::Jpg, 95).unwrap();
}

#[test]
fn every_method_sorts_and_undo_restores_every_name_and_byte() {
    let (_tmp, ws) = workspace();
    let before = files(&aligned(&ws));
    assert_eq!(before.len(), FACES);
    let methods = [
        "blur",
        "motion-blur",
        "face-yaw",
        "face-pitch",
        "source-size",
        "hist",
        "hist-dissim",
        "brightness",
        "hue",
        "black",
        "best",
        "origname",
    ];
    let mut sorts = 0;
    for by in methods {
        let out = sort(&ws, &["--by", by, "--keep", "100"]);
        sorts += usize::from(stderr(&out).contains("undo with"));
        let now = files(&aligned(&ws));
        assert_eq!(now.len(), 100, "--by {by} --keep 100");
        if by != "origname" {
            let names: Vec<&String> = now.keys().collect();
            assert!(
                names[0].starts_with("00000_") && names[99].starts_with("00099_"),
                "{by}: {names:?}"
            );
        }
        assert_eq!(files(&trash(&ws)).len(), FACES - 100, "{by}");
        assert_eq!(every_face(&ws).len(), FACES, "no face lost or copied by {by}");
    }
    let reasons = std::fs::read_to_string(trash(&ws).join("reasons.json")).unwrap();
    // The first sort trashed 20; the later ones found 100 faces and kept them all.
    assert_eq!(reasons.matches("beyond --keep 100 by blur").count(), 20, "{reasons}");
    for _ in 0..sorts {
        let out = sort(&ws, &["--undo"]);
        assert!(stderr(&out).contains("moved back"), "{}", stderr(&out));
    }
    assert_eq!(files(&aligned(&ws)), before, "every name and byte is back");
    assert!(files(&trash(&ws)).is_empty());
    let out = dfl(&ws, &["sort", "src", "--undo"]);
    assert_eq!(out.status.code(), Some(2), "nothing left to undo");
}

#[test]
fn a_blurred_copy_scores_below_its_original() {
    let (_tmp, ws) = workspace();
    let blur = |sigma: f64| {
        move |img: &Mat| {
            let mut out = Mat::default();
            imgproc::gaussian_blur_def(img, &mut out, Size::new(0, 0), sigma).unwrap();
            out
        }
    };
    // The carphone faces are upscaled ~5×, so a σ of 1 px here is already a strong blur.
    add_edited(&ws, "00060_0.jpg", "blurred1", 0, blur(0.7));
    add_edited(&ws, "00060_0.jpg", "blurred2", 0, blur(1.4));
    for by in ["blur", "motion-blur"] {
        let rows = scores(&ws, &["--by", by]);
        let score = |frame: &str| rows.iter().find(|r| r.1 == frame).unwrap().2.unwrap();
        let (sharp, b1, b2) = (score("00060"), score("blurred1"), score("blurred2"));
        assert!(sharp > b1 && b1 > b2, "{by}: original {sharp}, σ 0.7 {b1}, σ 1.4 {b2}");
        let rank = |frame: &str| rows.iter().position(|r| r.1 == frame).unwrap();
        assert!(rank("00060") < rank("blurred1") && rank("blurred1") < rank("blurred2"), "{by}");
    }
}

#[test]
fn brightness_hue_and_black_see_the_edits() {
    let (_tmp, ws) = workspace();
    add_edited(&ws, "00030_0.jpg", "darker", 0, |img| {
        let mut out = Mat::default();
        img.convert_to(&mut out, -1, 0.5, 0.0).unwrap();
        out
    });
    add_edited(&ws, "00030_0.jpg", "blackband", 0, |img| {
        let mut out = img.clone();
        let band = opencv::core::Rect::new(0, 0, out.cols() / 3, out.rows());
        imgproc::rectangle(&mut out, band, opencv::core::Scalar::all(0.0), -1, imgproc::LINE_8, 0)
            .unwrap();
        out
    });
    add_edited(&ws, "00030_0.jpg", "greener", 0, |img| {
        // Swap red and green: skin turns green, its hue moves from ~15° toward ~100°.
        let mut out = Mat::default();
        let mut channels = opencv::core::Vector::<Mat>::new();
        opencv::core::split(img, &mut channels).unwrap();
        let swapped: opencv::core::Vector<Mat> =
            [channels.get(0).unwrap(), channels.get(2).unwrap(), channels.get(1).unwrap()]
                .into_iter()
                .collect();
        opencv::core::merge(&swapped, &mut out).unwrap();
        out
    });
    let value = |rows: &[(String, String, Option<f64>, Option<String>)], frame: &str| {
        rows.iter().find(|r| r.1 == frame).unwrap().2.unwrap()
    };
    let rows = scores(&ws, &["--by", "brightness"]);
    let (orig, dark) = (value(&rows, "00030"), value(&rows, "darker"));
    assert!((dark / orig - 0.5).abs() < 0.03, "half the value: {orig} → {dark}");
    assert_eq!(rows.last().unwrap().1, "darker", "the darkest face is last");

    let rows = scores(&ws, &["--by", "hue"]);
    assert!(value(&rows, "greener") > value(&rows, "00030") + 40.0, "hue moves toward green");
    assert_eq!(rows[0].1, "greener", "highest hue first");

    let rows = scores(&ws, &["--by", "black"]);
    assert!(value(&rows, "blackband") > 0.3, "a third of the face is black");
    assert_eq!(rows.last().unwrap().1, "blackband", "most black last");
    let rows = scores(&ws, &["--by", "black", "--max-score", "0.1"]);
    let band = rows.iter().find(|r| r.1 == "blackband").unwrap();
    assert_eq!(band.0, "aligned_trash/blackband_0.jpg");
    assert!(band.3.as_deref().unwrap().contains("> --max-score 0.1"), "{band:?}");
}

#[test]
fn a_mirrored_face_has_the_opposite_yaw() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let src = ws.join("data_src");
    std::fs::create_dir_all(&src).unwrap();
    let assets = dfl::assets::Assets::from_env();
    for name in ["obama2.jpg", "biden.jpg"] {
        let img = opencv::imgcodecs::imread_def(
            assets.sample(name).unwrap_or_else(|e| panic!("{e}")).to_str().unwrap(),
        )
        .unwrap();
        let mut flipped = Mat::default();
        opencv::core::flip(&img, &mut flipped, 1).unwrap();
        let stem = name.trim_end_matches(".jpg");
        dfl::img::write_image(&src.join(format!("{stem}.png")), &img, 95).unwrap();
        dfl::img::write_image(&src.join(format!("{stem}_mirrored.png")), &flipped, 95).unwrap();
    }
    let out = dfl(&ws, &["-q", "extract", "src"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for stem in ["obama2", "biden"] {
        let yaw = scores(&ws, &["--by", "face-yaw"]);
        let pitch = scores(&ws, &["--by", "face-pitch"]);
        let get = |rows: &[(String, String, Option<f64>, Option<String>)], frame: &str| {
            rows.iter().find(|r| r.1 == frame).unwrap().2.unwrap()
        };
        let (a, b) = (get(&yaw, stem), get(&yaw, &format!("{stem}_mirrored")));
        assert!(a.abs() > 3.0 && a.signum() == -b.signum(), "{stem}: yaw {a}° vs mirrored {b}°");
        // The landmarker and the mean head are not exactly mirror-symmetric.
        assert!((a + b).abs() < 0.4 * a.abs().max(b.abs()), "{stem}: yaw {a}° vs mirrored {b}°");
        let (p, q) = (get(&pitch, stem), get(&pitch, &format!("{stem}_mirrored")));
        // Mirroring changes the yaw, not the pitch: what moves (≈10° of landmark and
        // mean-head asymmetry here) is small against the yaw's swing.
        assert!((p - q).abs() < 0.5 * (a - b).abs(), "{stem}: pitch {p}° vs mirrored {q}°");
    }
}

#[test]
fn identity_keeps_the_person_of_the_reference_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let src = ws.join("data_src");
    std::fs::create_dir_all(&src).unwrap();
    let assets = dfl::assets::Assets::from_env();
    for name in ["obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg", "astronaut.png"]
    {
        std::fs::copy(assets.sample(name).unwrap_or_else(|e| panic!("{e}")), src.join(name))
            .unwrap();
    }
    let out = dfl(&ws, &["-q", "extract", "src"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reference = assets.sample("obama.jpg").unwrap();
    let rows = scores(&ws, &["--by", "identity", "--keep-like", reference.to_str().unwrap()]);
    let kept: Vec<&str> = rows.iter().filter(|r| r.3.is_none()).map(|r| r.1.as_str()).collect();
    let gone: Vec<&str> = rows.iter().filter(|r| r.3.is_some()).map(|r| r.1.as_str()).collect();
    assert!(kept.iter().all(|f| f.starts_with("obama")), "kept {kept:?}");
    assert!(kept.contains(&"obama2") && kept.contains(&"obama3"), "kept {kept:?}");
    assert!(gone.contains(&"biden") && gone.contains(&"astronaut"), "trashed {gone:?}");
    let trashed = files(&trash(&ws));
    assert!(trashed.keys().any(|n| n.starts_with("biden")), "{:?}", trashed.keys());
    let reasons = std::fs::read_to_string(trash(&ws).join("reasons.json")).unwrap();
    assert!(reasons.contains("identity") && reasons.contains("< --min-score 0.363"), "{reasons}");

    // Without references the faces group by person: Obama's group comes first.
    sort(&ws, &["--undo"]);
    let rows = scores(&ws, &["--by", "identity"]);
    assert!(rows[0].1.starts_with("obama") && rows[1].1.starts_with("obama"), "{rows:?}");
}

#[test]
fn oneface_trashes_frames_with_two_faces() {
    let (_tmp, ws) = workspace();
    add_edited(&ws, "00010_0.jpg", "00010", 1, Mat::clone);
    let rows = scores(&ws, &["--by", "oneface"]);
    let gone: Vec<&str> = rows.iter().filter(|r| r.3.is_some()).map(|r| r.0.as_str()).collect();
    assert_eq!(gone, ["aligned_trash/00010_0.jpg", "aligned_trash/00010_1.jpg"]);
    assert!(aligned(&ws).join("00011_0.jpg").is_file(), "kept faces keep their names");
}

#[test]
fn best_keeps_exactly_n_spread_over_yaw() {
    let (_tmp, ws) = workspace();
    let yaw = scores(&ws, &["--by", "face-yaw"]);
    sort(&ws, &["--undo"]);
    let rows = scores(&ws, &["--by", "best", "--keep", "30"]);
    let kept: Vec<&str> = rows.iter().filter(|r| r.3.is_none()).map(|r| r.1.as_str()).collect();
    // The kept faces span the clip's whole yaw range: the faces turned furthest each way share
    // a yaw bin (2.4 rad / 128) with a kept face, so no pose is lost to the cut.
    let deg: std::collections::HashMap<&str, f64> =
        yaw.iter().map(|r| (r.1.as_str(), r.2.unwrap())).collect();
    let kept_deg: Vec<f64> = kept.iter().map(|frame| deg[frame]).collect();
    let range = |v: &mut dyn Iterator<Item = f64>| {
        v.fold((f64::MAX, f64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)))
    };
    let (lo, hi) = range(&mut deg.values().copied());
    let (kept_lo, kept_hi) = range(&mut kept_deg.iter().copied());
    let bin = (2.4f64 / 128.0).to_degrees();
    assert!(lo < hi - 10.0 * bin, "the clip turns its head: {lo}..{hi} deg");
    assert!(kept_lo - lo < bin && hi - kept_hi < bin, "kept {kept_lo}..{kept_hi} of {lo}..{hi}");
    assert_eq!(kept.len(), 30);
    assert_eq!(files(&aligned(&ws)).len(), 30);
}

#[test]
fn scores_are_cached_and_a_dry_run_moves_nothing() {
    let (_tmp, ws) = workspace();
    let before = files(&aligned(&ws));
    let out = sort(&ws, &["--by", "blur", "--dry-run", "--keep", "5"]);
    assert_eq!(files(&aligned(&ws)), before, "a dry run moves nothing");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert_eq!(plan.lines().count(), FACES, "one line per move: {plan}");
    assert!(plan.contains("-> aligned_trash/") && plan.contains("beyond --keep 5"), "{plan}");

    let out = sort(&ws, &["--by", "blur"]);
    assert!(
        stderr(&out).contains("(0 measured"),
        "the dry run cached the scores: {}",
        stderr(&out)
    );
}

#[test]
fn the_contact_sheet_lists_faces_in_the_new_order() {
    let (_tmp, ws) = workspace();
    sort(&ws, &["--by", "face-yaw", "--keep", "100", "--sheet"]);
    let dir = ws.join("data_src/sort_sheets");
    let mut sheets: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    sheets.sort();
    assert_eq!(sheets, ["sheet_001.png", "sheet_002.png", "trash_001.png"]);
    let first = opencv::imgcodecs::imread_def(dir.join("sheet_001.png").to_str().unwrap()).unwrap();
    assert_eq!((first.cols(), first.rows()), (1320, 1328), "10 × 8 cells of 132 × 166 px");
}

#[test]
fn files_that_are_not_faces_are_left_alone_and_reported() {
    let (_tmp, ws) = workspace();
    std::fs::write(aligned(&ws).join("notes.jpg"), b"not an image").unwrap();
    let out = dfl(&ws, &["sort", "src", "--by", "hist"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("notes.jpg"), "{}", stderr(&out));
    assert_eq!(std::fs::read(aligned(&ws).join("notes.jpg")).unwrap(), b"not an image");
    assert_eq!(files(&aligned(&ws)).len(), FACES + 1);
}

#[test]
fn a_crash_mid_sort_is_repaired_by_undo_or_by_a_rerun() {
    let (_tmp, ws) = workspace();
    let before = files(&aligned(&ws));
    let faces = every_face(&ws);
    // 120 faces, 20 to the trash: phase 1 is renames 1–120, phase 2 121–240. Twenty points:
    // both ends of each phase, and 16 more drawn at random (a fixed seed).
    let mut seed = 0x5eed_u64;
    let mut points = vec![1, 120, 121, 240];
    points.extend((0..16).map(|_| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        1 + (seed >> 33) % 240
    }));
    for crash_after in points {
        let out = dfl_cmd(&ws, &["sort", "src", "--by", "blur", "--keep", "100"])
            .env("DFL_SORT_FAULT_AFTER_MOVES", crash_after.to_string())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the fault hook aborts after {crash_after} renames");
        assert_eq!(every_face(&ws), faces, "no face lost or copied after {crash_after} renames");
        let status = dfl(&ws, &["status"]);
        let said = String::from_utf8_lossy(&status.stdout);
        assert!(said.contains("dfl sort src --undo") && said.contains("interrupted"), "{said}");
        if crash_after % 2 == 0 {
            // Undo finishes the interrupted sort, then reverts it.
            let out = sort(&ws, &["--undo"]);
            assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
        } else {
            // A rerun finishes it and sorts again, which moves nothing; one undo reverts.
            sort(&ws, &["--by", "blur", "--keep", "100"]);
            assert_eq!(files(&aligned(&ws)).len(), 100);
            sort(&ws, &["--undo"]);
        }
        assert_eq!(files(&aligned(&ws)), before, "after {crash_after}: every name and byte back");
        assert!(!ws.join("data_src/sort.journal.json").exists());
    }
}

#[test]
fn kill_9_at_any_moment_loses_no_face() {
    let (_tmp, ws) = workspace();
    let before = files(&aligned(&ws));
    let faces = every_face(&ws);
    for delay_ms in [150, 300, 450, 600] {
        let mut child = dfl_cmd(&ws, &["-q", "sort", "src", "--by", "hist", "--keep", "90"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(every_face(&ws), faces, "killed after {delay_ms} ms: no face lost");
        // Finish whatever was interrupted, then revert every recorded sort.
        while dfl(&ws, &["-q", "sort", "src", "--undo"]).status.success() {}
        assert_eq!(files(&aligned(&ws)), before, "killed after {delay_ms} ms");
    }
}
