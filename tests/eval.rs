//! `dfl eval` through the real binary, on "merged" frames whose truth is known: the dst frames
//! themselves (a perfect no-op), the dst frames shaken (jitter), and Biden with Obama's face
//! pasted in (identity moves toward src).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dfl::frames::{FrameSource, Pick};
use dfl::workspace::{Side, Workspace};
use opencv::core::{Mat, Point, Scalar, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

mod common;
use common::{copy_of, dfl, stderr};

fn sample(name: &str) -> PathBuf {
    dfl::assets::Assets::from_env().sample(name).unwrap_or_else(|e| panic!("{e}"))
}

/// src: two Obama portraits; dst: the carphone clip. Both extracted, made once per run.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, ws) = TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("data_src")).unwrap();
        for name in ["obama.jpg", "obama3.jpg"] {
            std::fs::copy(sample(name), ws.join("data_src").join(name)).unwrap();
        }
        std::fs::copy(sample("carphone_pristine.mp4"), ws.join("data_dst.mp4")).unwrap();
        for side in ["src", "dst"] {
            let out = dfl(&ws, &["-q", "extract", side]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
        (tmp, ws)
    });
    ws
}

/// Writes every dst frame, changed by `edit(frame index, image)`, as the merged frame.
fn write_merged(ws: &Path, edit: impl Fn(usize, Mat) -> Mat) {
    let w = Workspace::new(ws);
    let input = w.find_input(Side::Dst).unwrap();
    let mut source = FrameSource::open(&input).unwrap();
    std::fs::create_dir_all(w.merged_dir()).unwrap();
    while let Some(frame) = source.next_picked(|_, _| Pick::Take) {
        let image = edit(frame.index, frame.image.unwrap());
        dfl::img::write_image(&w.merged_dir().join(format!("{}.png", frame.name)), &image, 0)
            .unwrap();
    }
}

/// `image` warped by the 2×3 matrix `m` to `size` (bilinear, edges repeated).
fn warp(image: &Mat, m: &[[f64; 3]; 2], size: Size) -> Mat {
    let m = Mat::from_slice_2d(m).unwrap();
    let mut out = Mat::default();
    let (interp, border) = (imgproc::INTER_LINEAR, opencv::core::BORDER_REPLICATE);
    imgproc::warp_affine(image, &mut out, &m, size, interp, border, Scalar::all(0.0)).unwrap();
    out
}

fn eval(ws: &Path) -> Value {
    let out = dfl(ws, &["eval"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("identity (SFace cosine to src)"), "{text}");
    assert!(ws.join("eval/report.png").is_file());
    serde_json::from_slice(&std::fs::read(ws.join("eval/report.json")).unwrap()).unwrap()
}

#[test]
fn the_dst_frames_themselves_score_as_a_perfect_no_op() {
    let (_tmp, ws) = copy_of(template());
    write_merged(&ws, |_, image| image);
    let r = eval(&ws);
    assert_eq!(r["faces"], 120);
    for f in r["per_face"].as_array().unwrap() {
        assert_eq!(f["identity_swap"], f["identity_dst"], "{f}");
        assert!((f["swap_vs_dst"].as_f64().unwrap() - 1.0).abs() < 1e-5, "{f}");
        assert_eq!(f["nme"], 0.0, "{f}");
        assert_eq!(f["nme_inner"], 0.0, "{f}");
        assert_eq!(f["yaw_diff_deg"], 0.0, "{f}");
    }
    assert_eq!(r["identity"]["closer_to_src"], 0.0);
    let t = &r["temporal"];
    assert_eq!(t["landmark_jitter_swap"], t["landmark_jitter_dst"]);
    assert_eq!(t["pixel_jitter_swap"], t["pixel_jitter_dst"]);
    assert!(t["landmark_jitter_dst"].as_f64().unwrap() > 0.0, "the clip moves a little");
}

#[test]
fn a_shaken_clip_jitters_more_than_the_original() {
    let (_tmp, ws) = copy_of(template());
    write_merged(&ws, |i, image| {
        // Every frame moved by its own seeded offset of up to ±4 px.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let (dx, dy): (f64, f64) = (rng.random_range(-4.0..4.0), rng.random_range(-4.0..4.0));
        warp(&image, &[[1.0, 0.0, dx], [0.0, 1.0, dy]], Size::new(image.cols(), image.rows()))
    });
    let t = &eval(&ws)["temporal"];
    let (swap, dst) =
        (t["landmark_jitter_swap"].as_f64().unwrap(), t["landmark_jitter_dst"].as_f64().unwrap());
    assert!(swap > 2.0 * dst, "landmark jitter: shaken {swap} vs original {dst}");
    let (swap, dst) =
        (t["pixel_jitter_swap"].as_f64().unwrap(), t["pixel_jitter_dst"].as_f64().unwrap());
    assert!(swap > 1.5 * dst, "pixel jitter: shaken {swap} vs original {dst}");
}

/// The 68 landmarks of the largest face in a photo, found by `dfl extract` into `ws`.
fn landmarks_of(ws: &Path, side: &str, frame: &str) -> dfl::face::landmarks::Landmarks68 {
    let dir = ws.join(format!("data_{side}/aligned"));
    let meta = dfl::face::metadata::read_metadata(&dir.join(format!("{frame}_0.jpg"))).unwrap();
    meta.source_landmarks
}

#[test]
fn obama_pasted_onto_biden_moves_identity_toward_the_obama_faceset() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    for (side, names) in
        [("src", &["obama.jpg", "obama3.jpg"][..]), ("dst", &["biden.jpg", "obama2.jpg"][..])]
    {
        std::fs::create_dir_all(ws.join(format!("data_{side}"))).unwrap();
        for name in names {
            std::fs::copy(sample(name), ws.join(format!("data_{side}")).join(name)).unwrap();
        }
        let out = dfl(&ws, &["-q", "extract", side]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // A crude swap: obama2's face warped onto Biden's landmarks, pasted inside Biden's jaw hull.
    let biden = opencv::imgcodecs::imread_def(sample("biden.jpg").to_str().unwrap()).unwrap();
    let obama = opencv::imgcodecs::imread_def(sample("obama2.jpg").to_str().unwrap()).unwrap();
    let (to, from) = (landmarks_of(&ws, "dst", "biden"), landmarks_of(&ws, "dst", "obama2"));
    let f64s =
        |p: &[[f32; 2]]| p.iter().map(|q| [f64::from(q[0]), f64::from(q[1])]).collect::<Vec<_>>();
    let m = dfl::face::align::umeyama(&f64s(&from), &f64s(&to));
    let warped = warp(&obama, &m, Size::new(biden.cols(), biden.rows()));
    let hull: Vector<Point> = to.iter().map(|p| Point::new(p[0] as i32, p[1] as i32)).collect();
    let mut convex = Vector::<Point>::new();
    imgproc::convex_hull(&hull, &mut convex, false, true).unwrap();
    let mut mask =
        Mat::zeros(biden.rows(), biden.cols(), opencv::core::CV_8UC1).unwrap().to_mat().unwrap();
    imgproc::fill_convex_poly(&mut mask, &convex, Scalar::all(255.0), imgproc::LINE_8, 0).unwrap();
    let mut swapped = biden.clone();
    warped.copy_to_masked(&mut swapped, &mask).unwrap();
    let merged = ws.join("data_dst/merged");
    std::fs::create_dir_all(&merged).unwrap();
    dfl::img::write_image(&merged.join("biden.png"), &swapped, 0).unwrap();

    let r = eval(&ws);
    assert_eq!(r["faces"], 1, "only the frame with a merged image is evaluated");
    let f = &r["per_face"][0];
    let (swap, orig) = (f["identity_swap"].as_f64().unwrap(), f["identity_dst"].as_f64().unwrap());
    assert!(swap > orig + 0.2 && swap > 0.363, "Obama-on-Biden {swap} vs Biden {orig}");
    assert_eq!(r["identity"]["closer_to_src"], 1.0);
    // A similarity paste of a differently turned face does not keep Biden's expression and pose,
    // and eval says so.
    assert!(f["nme"].as_f64().unwrap() > 0.05 && f["yaw_diff_deg"].as_f64().unwrap() > 5.0, "{f}");
    assert!(f["nme_inner"].as_f64().unwrap() > 0.05, "{f}");
}

#[test]
fn evaluating_before_merging_says_what_to_run() {
    let (_tmp, ws) = copy_of(template());
    let out = dfl(&ws, &["eval"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("no merged frames; run `dfl merge` first"), "{err}");
}
