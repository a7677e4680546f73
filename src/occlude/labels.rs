//! The truth in aligned-face space, and XSeg labels drawn from it.
//!
//! A face's true mask is its landmark hull mask ([`crate::face::masks::hull_mask`], the face
//! region DFL uses without XSeg) minus the occluder: the frame's truth mask warped with the
//! face's `image_to_face_mat` (nearest neighbour, so it stays binary).
//!
//! Labels are what a person would click: the outer contours of the true mask become include
//! polygons, its holes exclude polygons, each simplified (Douglas–Peucker) to a tolerance of
//! about 1.25 % of the face's side. They are written in the JSON format `dfl xseg labels
//! import` reads: `{"version":1,"faces":[{"file","size","polys":[{"kind","points"}]}]}`.

use std::path::{Path, PathBuf};

use opencv::core::{self, BORDER_CONSTANT, CV_8UC1, Mat, Point, Scalar, Size, Vec4i, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::write_json_atomic;
use crate::face::masks::hull_mask;
use crate::faceset::{Face, Faceset, FacesetError};
use crate::img::{ImageWriteError, write_image};
use crate::progress::Progress;

/// Version of the labels file format.
const LABELS_VERSION: u32 = 1;
/// A face counts as occluded when the occluder covers at least this share of its hull.
const OCCLUDED_SHARE: f64 = 0.02;
/// Share of the labelled faces taken from occluded faces (when there are enough).
const OCCLUDED_PICKS: f64 = 0.75;
/// The file beside the true masks that lists every face's counts.
pub const TRUTH_LIST_FILE: &str = "truth.json";

/// Where to read and write, and how many faces to label.
#[derive(Debug, Clone)]
pub struct TruthOptions {
    /// The frames' truth masks (`<occlude out>/masks`).
    pub truth_masks: PathBuf,
    /// The aligned faces (`dfl extract` of `<occlude out>/frames`).
    pub faces: PathBuf,
    /// Where the true mask of every face goes (`<face stem>.png`).
    pub out_truth: PathBuf,
    /// The labels file to write.
    pub out_labels: PathBuf,
    /// How many faces to label.
    pub count: usize,
    /// The seed of the choice.
    pub seed: u64,
    /// The simplification tolerance in shares of the face's side.
    pub epsilon_share: f64,
}

/// Polygon kinds of a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// The area inside is face.
    Include,
    /// The area inside is not face (drawn after the includes it lies in).
    Exclude,
}

/// One polygon of a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPoly {
    /// Include or exclude.
    pub kind: LabelKind,
    /// The corners in aligned-face pixels.
    pub points: Vec<[f32; 2]>,
}

/// The labels of one face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFace {
    /// The face file's name in its folder.
    pub file: String,
    /// The face's side in pixels.
    pub size: u32,
    /// The polygons, in drawing order.
    pub polys: Vec<LabelPoly>,
}

/// The labels file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsFile {
    /// [`LABELS_VERSION`].
    pub version: u32,
    /// The labelled faces, in extraction order.
    pub faces: Vec<LabelFace>,
}

/// The counts of one face's truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceTruth {
    /// The face file's name.
    pub file: String,
    /// The frame it came from.
    pub frame: String,
    /// The face's side in pixels.
    pub size: u32,
    /// Pixels of the landmark hull.
    pub hull_px: usize,
    /// Pixels of the hull an occluder covers.
    pub occluded_px: usize,
    /// Pixels of the true mask (`hull_px - occluded_px`).
    pub truth_px: usize,
}

impl FaceTruth {
    /// The share of the face an occluder covers.
    pub fn occluded_share(&self) -> f64 {
        self.occluded_px as f64 / self.hull_px.max(1) as f64
    }
}

/// What [`truth_and_labels`] made.
#[derive(Debug, Clone)]
pub struct LabelsReport {
    /// Every face with a true mask, in extraction order.
    pub faces: Vec<FaceTruth>,
    /// The labels written.
    pub labels: LabelsFile,
    /// Faces skipped (no truth mask for their frame, unreadable files).
    pub skipped: usize,
}

/// Why making the truth or the labels failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    /// The faceset cannot be read.
    #[error(transparent)]
    Faceset(#[from] FacesetError),
    /// The truth mask folder does not exist.
    #[error("{} does not exist; pass --truth <occlude out>/masks", .0.display())]
    NoTruth(PathBuf),
    /// No face has a truth mask.
    #[error(
        "no face in {} comes from a frame with a mask in {}; extract faces from <occlude out>/frames",
        .faces.display(), .truth.display()
    )]
    NoFaces {
        /// The faceset.
        faces: PathBuf,
        /// The truth masks.
        truth: PathBuf,
    },
    /// A true mask cannot be written.
    #[error(transparent)]
    Image(#[from] ImageWriteError),
    /// A JSON file cannot be written.
    #[error("cannot write {}: {source}; check free space and permissions", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing polygons failed.
    #[error("making the polygons of {file}: {source}")]
    Polygons {
        /// The face file.
        file: String,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
}

/// Builds the true mask of every face in `opts.faces` whose frame has a truth mask, writes it
/// to `opts.out_truth/<face stem>.png` (with `truth.json` listing the counts), chooses
/// `opts.count` faces spread over the clip (mostly occluded ones, by `opts.seed`) and writes
/// their polygon labels to `opts.out_labels`.
///
/// # Errors
/// [`LabelsError`], naming the folder or file. A face without a truth mask, or whose files
/// cannot be read, is logged and skipped.
pub fn truth_and_labels(
    opts: &TruthOptions,
    progress: &dyn Progress,
) -> Result<LabelsReport, LabelsError> {
    if !opts.truth_masks.is_dir() {
        return Err(LabelsError::NoTruth(opts.truth_masks.clone()));
    }
    let faceset = Faceset::read(&opts.faces, progress)?;
    faceset.warn_skipped("it gets no true mask");
    let mut faces = faceset.faces.clone();
    faces.sort_by(Face::origin_order);
    std::fs::create_dir_all(&opts.out_truth)
        .map_err(|source| LabelsError::Write { path: opts.out_truth.clone(), source })?;
    progress.set_len(faces.len() as u64);
    let results: Vec<Result<(FaceTruth, Mat), String>> = faces
        .par_iter()
        .map(|face| {
            let out = face_truth(face, &opts.faces, &opts.truth_masks);
            if let Ok((truth, mask)) = &out {
                let path = opts.out_truth.join(truth_file_name(&truth.file));
                write_image(&path, mask, 95).map_err(|e| e.to_string())?;
            }
            progress.inc(1);
            out
        })
        .collect();
    let mut skipped = faceset.skipped.len();
    let mut made = Vec::new();
    for result in results {
        match result {
            Ok(pair) => made.push(pair),
            Err(why) => {
                log::warn!("{why}");
                skipped += 1;
            }
        }
    }
    if made.is_empty() {
        return Err(LabelsError::NoFaces {
            faces: opts.faces.clone(),
            truth: opts.truth_masks.clone(),
        });
    }
    let truths: Vec<FaceTruth> = made.iter().map(|(t, _)| t.clone()).collect();
    let list = opts.out_truth.join(TRUTH_LIST_FILE);
    write_json_atomic(&list, &truths)
        .map_err(|source| LabelsError::Write { path: list, source })?;
    let chosen = choose(&truths, opts.count, opts.seed);
    let mut labels = LabelsFile { version: LABELS_VERSION, faces: Vec::new() };
    for &i in &chosen {
        let (truth, mask) = &made[i];
        let epsilon = opts.epsilon_share * f64::from(truth.size);
        let polys = mask_to_polys(mask, epsilon)
            .map_err(|source| LabelsError::Polygons { file: truth.file.clone(), source })?;
        labels.faces.push(LabelFace { file: truth.file.clone(), size: truth.size, polys });
    }
    write_json_atomic(&opts.out_labels, &labels)
        .map_err(|source| LabelsError::Write { path: opts.out_labels.clone(), source })?;
    Ok(LabelsReport { faces: truths, labels, skipped })
}

/// The true mask's file name for the face file `file`: its stem with `.png`.
pub fn truth_file_name(file: &str) -> String {
    let stem = Path::new(file).file_stem().map_or_else(|| file.into(), |s| s.to_string_lossy());
    format!("{stem}.png")
}

/// One face's truth: (counts, true mask u8 0/255 of `size_px`²), or why it has none.
fn face_truth(face: &Face, faces_dir: &Path, masks: &Path) -> Result<(FaceTruth, Mat), String> {
    let meta = &face.meta;
    let mask_path = masks.join(format!("{}.png", meta.source_filename));
    let skip = |why: &str| format!("skipping {}: {why}", faces_dir.join(&face.name).display());
    if !mask_path.is_file() {
        return Err(skip(&format!("no truth mask {}", mask_path.display())));
    }
    let frame_mask = match imgcodecs::imread(&mask_path, imgcodecs::IMREAD_GRAYSCALE) {
        Ok(m) if !m.empty() => m,
        _ => return Err(skip(&format!("{} is not a readable image", mask_path.display()))),
    };
    let [w, h] = meta.source_size;
    if (frame_mask.cols(), frame_mask.rows()) != (w as i32, h as i32) {
        return Err(skip(&format!(
            "{} is {}×{} but the face's frame is {w}×{h}",
            mask_path.display(),
            frame_mask.cols(),
            frame_mask.rows()
        )));
    }
    let cv = |e: opencv::Error| skip(&e.to_string());
    let side = i32::try_from(meta.size_px).map_err(|e| skip(&e.to_string()))?;
    let (hull, occluder) = (|| {
        let hull = binary(&hull_mask(side, &meta.landmarks)?)?;
        let mut occluder = Mat::default();
        imgproc::warp_affine(
            &frame_mask,
            &mut occluder,
            &Mat::from_slice_2d(&meta.image_to_face_mat)?,
            Size::new(side, side),
            imgproc::INTER_NEAREST,
            BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        Ok::<_, opencv::Error>((hull, binary(&occluder)?))
    })()
    .map_err(cv)?;
    let (truth, covered) = (|| {
        let mut free = Mat::default();
        core::bitwise_not_def(&occluder, &mut free)?;
        let (mut truth, mut covered) = (Mat::default(), Mat::default());
        core::bitwise_and_def(&hull, &free, &mut truth)?;
        core::bitwise_and_def(&hull, &occluder, &mut covered)?;
        Ok::<_, opencv::Error>((truth, covered))
    })()
    .map_err(cv)?;
    let count = |m: &Mat| core::count_non_zero(m).map(|n| usize::try_from(n).unwrap_or(0));
    let counts = FaceTruth {
        file: face.name.clone(),
        frame: meta.source_filename.clone(),
        size: meta.size_px,
        hull_px: count(&hull).map_err(cv)?,
        occluded_px: count(&covered).map_err(cv)?,
        truth_px: count(&truth).map_err(cv)?,
    };
    Ok((counts, truth))
}

/// A u8 mask with 255 where `mask` is above half its range (1 for floats, 255 for bytes).
fn binary(mask: &Mat) -> opencv::Result<Mat> {
    let threshold = if mask.depth() == core::CV_8U { 127.0 } else { 0.5 };
    let mut out = Mat::default();
    imgproc::threshold(mask, &mut out, threshold, 255.0, imgproc::THRESH_BINARY)?;
    let mut bytes = Mat::default();
    out.convert_to(&mut bytes, CV_8UC1, 1.0, 0.0)?;
    Ok(bytes)
}

/// Chooses `count` of `faces` (in extraction order), deterministic for `seed`: about three in
/// four from the occluded faces and the rest from the others, each group spread evenly over
/// the clip (one random pick per equal run). Returns indices in extraction order.
fn choose(faces: &[FaceTruth], count: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (occluded, clear): (Vec<usize>, Vec<usize>) =
        (0..faces.len()).partition(|&i| faces[i].occluded_share() >= OCCLUDED_SHARE);
    let count = count.min(faces.len());
    let want_occluded = ((count as f64 * OCCLUDED_PICKS).round() as usize).min(occluded.len());
    let from_clear = (count - want_occluded).min(clear.len());
    let from_occluded = (count - from_clear).min(occluded.len());
    let mut chosen = spread(&occluded, from_occluded, &mut rng);
    chosen.extend(spread(&clear, from_clear, &mut rng));
    chosen.sort_unstable();
    chosen
}

/// One random item from each of `k` equal consecutive runs of `items`.
fn spread(items: &[usize], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    (0..k)
        .map(|j| {
            let run = (j * items.len() / k)..((j + 1) * items.len() / k);
            items[rng.random_range(run)]
        })
        .collect()
}

/// Turns a binary mask (u8, nonzero = face) into label polygons: every contour simplified with
/// tolerance `epsilon_px`, in order of nesting depth — outer boundaries (include), holes
/// (exclude), islands in holes (include), … — so drawing them in order gives the mask back
/// up to the simplification. Contours enclosing less than `(2·epsilon_px)²` pixels are left
/// out, as a person would not click them.
///
/// # Errors
/// OpenCV's error.
pub fn mask_to_polys(mask: &Mat, epsilon_px: f64) -> opencv::Result<Vec<LabelPoly>> {
    let binary = binary(mask)?;
    let mut contours = Vector::<Vector<Point>>::new();
    let mut hierarchy = Vector::<Vec4i>::new();
    imgproc::find_contours_with_hierarchy_def(
        &binary,
        &mut contours,
        &mut hierarchy,
        imgproc::RETR_TREE,
        imgproc::CHAIN_APPROX_NONE,
    )?;
    let depth = |mut i: usize| {
        let mut d = 0;
        while let Ok(parent) = usize::try_from(hierarchy.get(i).map_or(-1, |h| h[3])) {
            d += 1;
            i = parent;
        }
        d
    };
    let min_area = (2.0 * epsilon_px).powi(2);
    let mut polys: Vec<(usize, LabelPoly)> = Vec::new();
    for (i, contour) in contours.iter().enumerate() {
        if imgproc::contour_area_def(&contour)? < min_area {
            continue;
        }
        let mut simple = Vector::<Point>::new();
        imgproc::approx_poly_dp(&contour, &mut simple, epsilon_px, true)?;
        if simple.len() < 3 {
            continue;
        }
        let d = depth(i);
        let kind = if d % 2 == 0 { LabelKind::Include } else { LabelKind::Exclude };
        let points = simple.iter().map(|p| [p.x as f32, p.y as f32]).collect();
        polys.push((d, LabelPoly { kind, points }));
    }
    polys.sort_by_key(|(d, _)| *d);
    Ok(polys.into_iter().map(|(_, p)| p).collect())
}

/// Draws label polygons in order into a `side_px`² u8 mask: include with 255, exclude with 0.
///
/// # Errors
/// OpenCV's error.
pub fn polys_to_mask(polys: &[LabelPoly], side_px: i32) -> opencv::Result<Mat> {
    let mut mask = Mat::zeros(side_px, side_px, CV_8UC1)?.to_mat()?;
    for poly in polys {
        let points: Vector<Point> = poly
            .points
            .iter()
            .map(|p| Point::new(p[0].round() as i32, p[1].round() as i32))
            .collect();
        let value = if poly.kind == LabelKind::Include { 255.0 } else { 0.0 };
        let polygons = Vector::<Vector<Point>>::from_iter([points]);
        imgproc::fill_poly(
            &mut mask,
            &polygons,
            Scalar::all(value),
            imgproc::LINE_8,
            0,
            Point::new(0, 0),
        )?;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::metadata::{FaceMetadata, ImageFormat, read_metadata, write_face};
    use crate::face::testutil::write_faceset;
    use crate::occlude::score::iou;
    use crate::progress::NoProgress;

    /// A 200² mask: a filled disc with a square hole holding a small island, and a separate
    /// rectangle.
    fn ring_mask() -> Mat {
        let mut m = Mat::zeros(200, 200, CV_8UC1).unwrap().to_mat().unwrap();
        let white = Scalar::all(255.0);
        imgproc::circle(&mut m, Point::new(80, 90), 60, white, -1, imgproc::LINE_8, 0).unwrap();
        let hole = core::Rect::new(55, 65, 50, 50);
        imgproc::rectangle(&mut m, hole, Scalar::all(0.0), -1, imgproc::LINE_8, 0).unwrap();
        let island = core::Rect::new(70, 80, 20, 20);
        imgproc::rectangle(&mut m, island, white, -1, imgproc::LINE_8, 0).unwrap();
        let bar = core::Rect::new(160, 20, 25, 150);
        imgproc::rectangle(&mut m, bar, white, -1, imgproc::LINE_8, 0).unwrap();
        m
    }

    #[test]
    fn outer_contours_include_holes_exclude_and_redraw_the_mask() {
        let mask = ring_mask();
        let polys = mask_to_polys(&mask, 2.5).unwrap();
        let kinds: Vec<LabelKind> = polys.iter().map(|p| p.kind).collect();
        use LabelKind::{Exclude, Include};
        assert_eq!(kinds, [Include, Include, Exclude, Include], "{polys:?}");
        // Simplified like clicks: a rectangle is 4 corners, a circle a few dozen at most.
        assert!(polys.iter().all(|p| p.points.len() <= 40), "{polys:?}");
        assert!(polys.iter().any(|p| p.points.len() == 4));
        let redrawn = polys_to_mask(&polys, 200).unwrap();
        let score = iou(&mask, &redrawn).unwrap();
        assert!(score > 0.97, "IoU of the redrawn labels {score:.3}");
    }

    #[test]
    fn specks_smaller_than_a_click_are_left_out() {
        let mut m = Mat::zeros(100, 100, CV_8UC1).unwrap().to_mat().unwrap();
        let rect = core::Rect::new(10, 10, 60, 60);
        imgproc::rectangle(&mut m, rect, Scalar::all(255.0), -1, imgproc::LINE_8, 0).unwrap();
        let speck = core::Rect::new(85, 85, 3, 3);
        imgproc::rectangle(&mut m, speck, Scalar::all(255.0), -1, imgproc::LINE_8, 0).unwrap();
        let polys = mask_to_polys(&m, 1.5).unwrap();
        assert_eq!(polys.len(), 1);
        assert!(
            mask_to_polys(&Mat::zeros(10, 10, CV_8UC1).unwrap().to_mat().unwrap(), 1.0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_choice_is_spread_mostly_occluded_and_seeded() {
        let faces: Vec<FaceTruth> = (0..100)
            .map(|i| FaceTruth {
                file: format!("{i:05}_0.jpg"),
                frame: format!("{i:05}"),
                size: 64,
                hull_px: 1000,
                occluded_px: if i % 3 == 0 { 200 } else { 0 },
                truth_px: 0,
            })
            .collect();
        let a = choose(&faces, 12, 1);
        assert_eq!(a, choose(&faces, 12, 1));
        assert_ne!(a, choose(&faces, 12, 2));
        assert_eq!(a.len(), 12);
        let occluded = a.iter().filter(|&&i| faces[i].occluded_px > 0).count();
        assert_eq!(occluded, 9);
        assert!(a[0] < 15 && a[11] > 85, "spread over the clip: {a:?}");
        assert_eq!(choose(&faces, 500, 1), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn the_truth_is_the_hull_minus_the_warped_occluder() {
        let tmp = tempfile::tempdir().unwrap();
        let faces = tmp.path().join("aligned");
        std::fs::create_dir_all(&faces).unwrap();
        let file = write_faceset(&faces, 1, 128, |_| 0.0).remove(0);
        // Re-anchor the face in a 400² frame: face = frame / 2 - (20, 30), so face pixel
        // (x, y) comes from frame pixel (2x + 40, 2y + 60) exactly.
        let mut meta: FaceMetadata = read_metadata(&file).unwrap();
        meta.image_to_face_mat = [[0.5, 0.0, -20.0], [0.0, 0.5, -30.0]];
        meta.source_landmarks = meta.landmarks.map(|p| [2.0 * p[0] + 40.0, 2.0 * p[1] + 60.0]);
        meta.source_filename = "00007".into();
        let pixels = crate::img::read_image(&file).unwrap();
        let file = faces.join("00007_0.png");
        write_face(&file, &pixels, &meta, ImageFormat::Png, 95).unwrap();
        std::fs::remove_file(faces.join("face_000.png")).unwrap();
        // The frame's truth: everything left of the nose tip is covered.
        let masks = tmp.path().join("masks");
        std::fs::create_dir_all(&masks).unwrap();
        let mut frame_mask = Mat::zeros(400, 400, CV_8UC1).unwrap().to_mat().unwrap();
        let x_cut = meta.source_landmarks[30][0].round() as i32;
        let left = core::Rect::new(0, 0, x_cut, 400);
        imgproc::rectangle(&mut frame_mask, left, Scalar::all(255.0), -1, imgproc::LINE_8, 0)
            .unwrap();
        imgcodecs::imwrite(masks.join("00007.png").to_str().unwrap(), &frame_mask, &Vector::new())
            .unwrap();
        let opts = TruthOptions {
            truth_masks: masks,
            faces,
            out_truth: tmp.path().join("truth"),
            out_labels: tmp.path().join("labels.json"),
            count: 5,
            seed: 1,
            epsilon_share: 0.0125,
        };
        let report = truth_and_labels(&opts, &NoProgress).unwrap();
        assert_eq!(report.faces.len(), 1);
        let t = &report.faces[0];
        assert_eq!(t.hull_px, t.occluded_px + t.truth_px);
        let share = t.occluded_share();
        assert!((0.35..0.65).contains(&share), "about half the face is covered: {share:.2}");
        let truth =
            imgcodecs::imread(opts.out_truth.join("00007_0.png").to_str().unwrap(), 0).unwrap();
        let hull = binary(&hull_mask(128, &meta.landmarks).unwrap()).unwrap();
        for y in 0..128 {
            for x in 0..128 {
                let covered = 2 * x + 40 < x_cut;
                let in_hull = *hull.at_2d::<u8>(y, x).unwrap() == 255;
                let want = if in_hull && !covered { 255 } else { 0 };
                assert_eq!(*truth.at_2d::<u8>(y, x).unwrap(), want, "at {x},{y}");
            }
        }
        let written: LabelsFile =
            serde_json::from_slice(&std::fs::read(&opts.out_labels).unwrap()).unwrap();
        assert_eq!(written, report.labels);
        assert_eq!(written.faces[0].file, "00007_0.png");
        assert_eq!(written.faces[0].size, 128);
        assert!(written.faces[0].polys.iter().all(|p| p.kind == LabelKind::Include));
        let json = std::fs::read_to_string(&opts.out_labels).unwrap();
        assert!(json.contains("\"kind\": \"include\""), "{json}");
    }
}
