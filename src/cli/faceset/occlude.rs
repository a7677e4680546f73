//! `dfl faceset occlude`, `occlude-labels` and `occlude-score`: the occlusion test bed for
//! XSeg (`docs/occlusion-testbed.md`).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::occlude::{
    FRAMES_DIR, MASKS_DIR, OccludeConfig, TruthOptions, merged_kept_share, occlude, score_faces,
    truth_and_labels,
};
use crate::report::Outcome;
use crate::workspace::Input;

use super::super::progress::Bar;
use super::quoted;

/// Arguments of `dfl faceset occlude`.
#[derive(Debug, clap::Args)]
pub struct OccludeArgs {
    /// The clip: a video file or a folder of images.
    #[arg(long, value_name = "VIDEO|DIR")]
    pub input: PathBuf,
    /// The folder to write into: frames/, masks/, occlude.json (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the occluders; the same clip and seed give byte-identical output.
    #[arg(long, value_name = "N")]
    pub seed: u64,
    /// How many occluders cross the clip, one after another [2 or 3, by seed].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub count: Option<u64>,
    /// Use only the first N frames [all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frames: Option<u64>,
}

/// Arguments of `dfl faceset occlude-labels`.
#[derive(Debug, clap::Args)]
pub struct OccludeLabelsArgs {
    /// The frames' truth masks: the masks/ folder `dfl faceset occlude` wrote.
    #[arg(long, value_name = "DIR")]
    pub truth: PathBuf,
    /// The aligned faces extracted from the occluded frames (dfl extract dst --input
    /// <occlude out>/frames, then data_dst/aligned).
    #[arg(long, value_name = "DIR")]
    pub faces: PathBuf,
    /// The labels file to write (the format `dfl xseg labels import` reads).
    #[arg(long, value_name = "FILE.json")]
    pub out_labels: PathBuf,
    /// The folder for every face's true mask (<face stem>.png, plus truth.json).
    #[arg(long, value_name = "DIR")]
    pub out_truth: PathBuf,
    /// How many faces to label.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub count: usize,
    /// Seed of the choice of faces.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
}

/// Arguments of `dfl faceset occlude-score`.
#[derive(Debug, clap::Args)]
pub struct OccludeScoreArgs {
    /// The faces' true masks (the --out-truth folder of occlude-labels).
    #[arg(long, value_name = "DIR")]
    pub truth_faces: PathBuf,
    /// The aligned faces to score.
    #[arg(long, value_name = "DIR")]
    pub faces: PathBuf,
    /// Also measure how many occluder pixels a merge kept: the merged frames' folder
    /// (data_dst/merged of a merge of <occlude out>/frames); needs --occluded.
    #[arg(long, value_name = "DIR", requires = "occluded")]
    pub merged: Option<PathBuf>,
    /// The output folder of `dfl faceset occlude` the merge was made from.
    #[arg(long, value_name = "DIR", requires = "merged")]
    pub occluded: Option<PathBuf>,
    /// Largest difference per channel of a merged occluder pixel that still counts as kept.
    #[arg(long, value_name = "LEVELS", default_value_t = 8)]
    pub tolerance: u8,
}

/// Share of the simplification tolerance of label polygons, in face sides.
const LABEL_EPSILON_SHARE: f64 = 0.0125;

/// Runs `dfl faceset occlude`.
pub fn run_occlude(args: &OccludeArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let input = Input::from_path(&args.input)?;
    let cfg = OccludeConfig {
        seed: args.seed,
        count: args.count.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        max_frames: args.max_frames.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let bar = Bar::new(bars, "frames");
    let report = occlude(&input, &args.out, &cfg, &bar)?;
    drop(bar);
    let covered = report.frames.iter().filter(|f| f.covered_px > 0).count();
    log::info!(
        "{} frames in {} ({} drawn now, {} already there; {} with an occluder) with {} occluders; \
         next: dfl extract dst --input {}",
        report.frames.len(),
        args.out.display(),
        report.stage.done,
        report.stage.already_done,
        covered,
        report.occluders.len(),
        quoted(&args.out.join(FRAMES_DIR))
    );
    Ok(report.stage.outcome())
}

/// Runs `dfl faceset occlude-labels`.
pub fn run_labels(args: &OccludeLabelsArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let opts = TruthOptions {
        truth_masks: args.truth.clone(),
        faces: args.faces.clone(),
        out_truth: args.out_truth.clone(),
        out_labels: args.out_labels.clone(),
        count: args.count,
        seed: args.seed,
        epsilon_share: LABEL_EPSILON_SHARE,
    };
    let bar = Bar::new(bars, "faces");
    let report = truth_and_labels(&opts, &bar)?;
    drop(bar);
    let occluded: Vec<f64> =
        report.faces.iter().map(|f| f.occluded_share()).filter(|&s| s > 0.0).collect();
    let mean = occluded.iter().sum::<f64>() / occluded.len().max(1) as f64;
    log::info!(
        "{} true masks in {} ({} faces partly occluded, {:.0} % of the face on average); \
         labels of {} faces in {}",
        report.faces.len(),
        args.out_truth.display(),
        occluded.len(),
        mean * 100.0,
        report.labels.faces.len(),
        args.out_labels.display()
    );
    Ok(if report.skipped > 0 { Outcome::DoneWithSkips } else { Outcome::Done })
}

/// Runs `dfl faceset occlude-score`: prints the measures, one per line.
pub fn run_score(args: &OccludeScoreArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let bar = Bar::new(bars, "faces");
    let report = score_faces(&args.truth_faces, &args.faces, &bar)?;
    drop(bar);
    println!("faces scored: {} ({} partly occluded)", report.faces, report.occluded_faces);
    println!("landmark hull mask IoU: {:.4}", report.hull_iou);
    if let Some(occluded) = report.hull_iou_occluded {
        println!("landmark hull mask IoU on occluded faces: {occluded:.4}");
    }
    if let Some(xseg) = report.xseg_iou {
        println!("applied XSeg mask IoU: {xseg:.4} (over {} faces)", report.xseg_faces);
    }
    if let Some(xseg) = report.xseg_iou_occluded {
        println!("applied XSeg mask IoU on occluded faces: {xseg:.4}");
    }
    if let Some((hull, xseg)) = report.unlabelled_iou {
        println!(
            "faces without labels (held out from XSeg training): {}; hull IoU {hull:.4}, applied XSeg IoU {xseg:.4}",
            report.unlabelled_faces
        );
    }
    if let Some(hull) = report.hull_iou_unlabelled_occluded {
        let xseg = report.xseg_iou_unlabelled_occluded.map_or("-".into(), |x| format!("{x:.4}"));
        println!(
            "  of them occluded: {}; hull IoU {hull:.4}, applied XSeg IoU {xseg}",
            report.unlabelled_occluded_faces
        );
    }
    let mut skipped = report.skipped;
    if let (Some(merged), Some(out)) = (&args.merged, &args.occluded) {
        let faces = crate::faceset::Faceset::read(&args.faces, &crate::progress::NoProgress)?;
        let (frames, masks) = (out.join(FRAMES_DIR), out.join(MASKS_DIR));
        let kept = merged_kept_share(&frames, &masks, merged, Some(&faces), args.tolerance)
            .with_context(|| format!("measuring the merge in {}", merged.display()))?;
        println!(
            "occluder pixels kept by the merge: {:.4} (over {} frames, tolerance {})",
            kept.kept_share, kept.frames, args.tolerance
        );
        if let Some(share) = kept.face_kept_share {
            println!("occluder pixels on a dst face (landmark hull) kept by the merge: {share:.4}");
        }
        skipped += kept.skipped;
    }
    Ok(if skipped > 0 { Outcome::DoneWithSkips } else { Outcome::Done })
}
