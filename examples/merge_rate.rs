//! Measures the merger's CPU side apart from the network: for the first N frames of a
//! workspace's dst input, times cropping the faces, merging them (`merge_frame`: masks,
//! erode/blur, colour transfer, paste, blend) and PNG encoding, each over all cores, and the
//! network alone for comparison. Numbers go to docs/performance.md.
//!
//! usage: cargo run --release --example merge_rate -- WORKSPACE MODEL [FRAMES] [CONFIG.json]

use std::time::Instant;

use dfl::frames::{FrameSource, Pick};
use dfl::merge::DstFaces;
use dfl::merge::Predictor;
use dfl::merge::config::MergeConfig;
use dfl::merge::{dst_face, merge_frame};
use dfl::workspace::{Side, Workspace};
use opencv::core::Mat;
use opencv::prelude::*;
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(ws), Some(model)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: merge_rate WORKSPACE MODEL [FRAMES] [CONFIG.json]");
    };
    let count: usize = args.get(3).map_or(Ok(100), |n| n.parse())?;
    let cfg: MergeConfig = match args.get(4) {
        Some(file) => serde_json::from_slice(&std::fs::read(file)?)?,
        None => MergeConfig::default(),
    };
    let ws = Workspace::new(ws);
    let input = ws.find_input(Side::Dst).ok_or_else(|| anyhow::anyhow!("no dst input"))?;
    let predictor = Predictor::load(&ws, model, tch::Device::Cpu)?;
    let (faces, _) = DstFaces::read(&ws.aligned_dir(Side::Dst))?;
    let mut source = FrameSource::open(&input)?;
    let frames: Vec<(String, Mat)> = std::iter::from_fn(|| source.next_picked(|_, _| Pick::Take))
        .take(count)
        .filter_map(|f| f.image.ok().map(|img| (f.name, img)))
        .collect();
    let (w, h) = frames.first().map_or((0, 0), |(_, m)| (m.cols(), m.rows()));
    let n = frames.len() as f64;
    println!(
        "{} frames of {w}×{h}, {} faces, model R={}, {} threads",
        frames.len(),
        frames.iter().map(|(name, _)| faces.of(name).len()).sum::<usize>(),
        predictor.resolution(),
        rayon::current_num_threads()
    );

    let t = Instant::now();
    let (r, ft, scale) = (predictor.resolution(), predictor.face_type(), cfg.output_scale());
    let prepared: Vec<Vec<_>> = frames
        .par_iter()
        .map(|(name, img)| {
            faces
                .of(name)
                .iter()
                .filter_map(|i| dst_face(img, i, r, ft, scale, false).ok().flatten())
                .collect()
        })
        .collect();
    let crop_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let crops: Vec<&Mat> = prepared.iter().flatten().map(|f| &f.crop).collect();
    let mut predictions = predictor.predict(&crops, 8)?.into_iter();
    let per_frame: Vec<Vec<_>> =
        prepared.iter().map(|p| predictions.by_ref().take(p.len()).collect()).collect();
    let net_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let merged: Vec<Mat> = frames
        .par_iter()
        .zip(&prepared)
        .zip(&per_frame)
        .map(|(((name, img), faces), preds)| {
            merge_frame(&cfg, name, img, faces, preds).map(|m| m.image)
        })
        .collect::<Result<_, _>>()?;
    let merge_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let bytes: usize = merged
        .par_iter()
        .map(|m| dfl::img::encode(m, "png", 95).map(|b| b.len()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .sum();
    let png_s = t.elapsed().as_secs_f64();

    let rate = |s: f64| n / s.max(1e-9);
    println!("crop faces      {:7.1} frames/s", rate(crop_s));
    println!("merge (cpu)     {:7.1} frames/s", rate(merge_s));
    println!(
        "png encode      {:7.1} frames/s ({:.0} KB/frame)",
        rate(png_s),
        bytes as f64 / n / 1e3
    );
    println!(
        "post-processing {:7.1} frames/s (crop + merge + png)",
        rate(crop_s + merge_s + png_s)
    );
    println!("network         {:7.1} frames/s (batch 8, CPU)", rate(net_s));
    Ok(())
}
