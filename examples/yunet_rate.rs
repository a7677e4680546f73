//! Measures YuNet's detection rate and speed on sample videos and prints the detections on
//! sample stills.
//!
//! ```sh
//! cargo run --release --example yunet_rate                 # OpenCV's default thread count
//! cargo run --release --example yunet_rate -- --threads 1  # cv::setNumThreads(1) first
//! cargo run --release --example yunet_rate -- --rayon      # also one detector per rayon worker
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dfl::assets::YUNET_FILE;
use dfl::detect::{DetectorConfig, FaceDetector, YuNet};
use opencv::core::{Mat, get_build_information, get_num_threads, set_num_threads};
use opencv::imgcodecs::{IMREAD_COLOR, imread};
use opencv::prelude::*;
use opencv::videoio::{CAP_ANY, VideoCapture};

const STILLS: [&str; 6] =
    ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "messi5.jpg", "astronaut.png"];
const VIDEOS: [&str; 2] = ["carphone_pristine.mp4", "Megamind.avi"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        let n: i32 = args.get(i + 1).context("--threads N")?.parse()?;
        set_num_threads(n)?;
    }
    let build = get_build_information()?;
    let parallel = build.lines().find(|l| l.contains("Parallel framework")).unwrap_or("?");
    println!("opencv threads: {} ({})", get_num_threads()?, parallel.trim());
    let assets = dfl::assets::Assets::from_env();
    let mut det = YuNet::load(assets.model(YUNET_FILE)?, DetectorConfig::default())?;
    for still in STILLS {
        let img = imread(&assets.sample(still)?, IMREAD_COLOR)?;
        for f in det.detect(&img)? {
            println!(
                "{still} {}x{}: rect {:?} score {:.3} landmarks {:?}",
                img.cols(),
                img.rows(),
                f.rect,
                f.score,
                f.landmarks
            );
        }
    }
    for video in VIDEOS {
        measure(&mut det, &assets.sample(video)?.to_string_lossy())?;
    }
    if args.iter().any(|a| a == "--rayon") {
        for video in VIDEOS {
            measure_rayon(&det, &assets.sample(video)?.to_string_lossy())?;
        }
    }
    Ok(())
}

/// One detector per rayon worker over the decoded frames (how extraction will run).
fn measure_rayon(det: &YuNet, path: &str) -> Result<()> {
    let model = det.model().clone();
    use rayon::prelude::*;
    let mut cap = VideoCapture::from_file(path, CAP_ANY)?;
    let mut frames = Vec::new();
    let mut frame = Mat::default();
    while cap.read(&mut frame)? {
        frames.push(frame.try_clone()?);
    }
    let start = Instant::now();
    let found: Vec<usize> = frames
        .par_iter()
        .map_init(
            || model.detector().expect("model builds"),
            |d, f| d.detect(f).map(|v| v.len()).unwrap_or(0),
        )
        .collect();
    let ms = start.elapsed().as_secs_f64() * 1e3 / frames.len().max(1) as f64;
    let with_face = found.iter().filter(|&&n| n > 0).count();
    println!(
        "{path}: rayon x{}: >=1 face in {with_face}/{}, {ms:.1} ms/frame wall (incl. one net build per worker)",
        rayon::current_num_threads(),
        frames.len()
    );
    Ok(())
}

fn measure(det: &mut YuNet, path: &str) -> Result<()> {
    let mut cap = VideoCapture::from_file(path, CAP_ANY)?;
    let (mut frames, mut with_face, mut faces) = (0usize, 0usize, 0usize);
    let mut per_frame: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut spent, mut first) = (Duration::ZERO, Duration::ZERO);
    let (mut frame, mut size) = (Mat::default(), (0, 0));
    while cap.read(&mut frame)? {
        size = (frame.cols(), frame.rows());
        let start = Instant::now();
        let found = det.detect(&frame)?;
        let took = start.elapsed();
        if frames == 0 {
            first = took;
        } else {
            spent += took;
        }
        frames += 1;
        faces += found.len();
        with_face += usize::from(!found.is_empty());
        *per_frame.entry(found.len()).or_default() += 1;
    }
    let ms = spent.as_secs_f64() * 1e3 / (frames.saturating_sub(1)).max(1) as f64;
    println!(
        "{path}: {frames} frames ({}x{}), >=1 face in {with_face}, {faces} faces, frames by face count {per_frame:?}, \
         {ms:.1} ms/frame (first frame {:.1} ms)",
        size.0,
        size.1,
        first.as_secs_f64() * 1e3
    );
    Ok(())
}
