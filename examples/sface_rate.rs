//! Measures SFace's embedding rate (batches of 1 and 16) and prints the cosine matrix of the
//! sample stills, by YuNet's 5 points and by dlib's 68 landmarks.
//!
//! ```sh
//! cargo run --release --example sface_rate                 # OpenCV's default thread count
//! cargo run --release --example sface_rate -- --threads 1  # cv::setNumThreads(1) first
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use dfl::assets::{SFACE_FILE, SHAPE_PREDICTOR_FILE, YUNET_FILE};
use dfl::detect::{DetectorConfig, FaceDetector, YuNet};
use dfl::face::identity::{Embedding, SFace, align_crop};
use dfl::face::locate::Landmarker;
use dfl::face::shape_predictor::{GrayImage, ShapePredictor, intensity_from_bgr};
use opencv::core::{Mat, get_num_threads, set_num_threads};
use opencv::imgcodecs::{IMREAD_COLOR, imread};
use opencv::prelude::*;

const STILLS: [&str; 6] =
    ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png", "messi5.jpg"];
/// Batch sizes timed.
const BATCHES: [usize; 3] = [1, 16, 32];
/// Embeddings per timed round (after one warm-up batch).
const PER_ROUND: usize = 64;
/// Timed rounds per batch size; the best is least disturbed by other work on the machine.
const ROUNDS: usize = 5;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        let n: i32 = args.get(i + 1).context("--threads N")?.parse()?;
        set_num_threads(n)?;
    }
    println!("opencv threads: {}", get_num_threads()?);
    let assets = dfl::assets::Assets::from_env();
    let mut det = YuNet::load(assets.model(YUNET_FILE)?, DetectorConfig::default())?;
    let predictor = ShapePredictor::load(&assets.model(SHAPE_PREDICTOR_FILE)?)?;
    let landmarker = Landmarker::new(&predictor)?;
    let start = Instant::now();
    let mut sface = SFace::load(assets.model(SFACE_FILE)?)?;
    println!("model load: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);

    let (mut by5, mut by68, mut crops) = (Vec::new(), Vec::new(), Vec::new());
    for still in STILLS {
        let bgr = imread(&assets.sample(still)?, IMREAD_COLOR)?;
        let face = *det.detect(&bgr)?.first().with_context(|| format!("no face in {still}"))?;
        by5.push(sface.embed(&bgr, &face.landmarks)?);
        crops.push(align_crop(&bgr, &face.landmarks)?);
        let bytes = dfl::img::bgr_bytes(&bgr)?;
        let (width, height) = (bgr.cols() as usize, bgr.rows() as usize);
        let gray = intensity_from_bgr(&bytes, width, height);
        let gray = GrayImage { data: &gray, width, height };
        let five = landmarker.locate(&gray, &face, true).five_points();
        by68.push(sface.embed(&bgr, &five)?);
    }
    print_matrix("YuNet 5 points", &by5, &by5);
    print_matrix("dlib 68 -> 5 points", &by68, &by68);
    print_matrix("rows 68-point path, columns 5-point path", &by68, &by5);

    for batch in BATCHES {
        let pool: Vec<Mat> =
            crops.iter().cycle().take(batch).map(Mat::try_clone).collect::<opencv::Result<_>>()?;
        sface.embed_crops(&pool)?; // warm-up
        let calls = PER_ROUND.div_ceil(batch);
        let mut rates = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..calls {
                sface.embed_crops(&pool)?;
            }
            rates.push((calls * batch) as f64 / start.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "batch {batch:>2}: {ROUNDS} rounds of {} embeddings: best {:.1}/s ({:.1} ms each), \
             median {:.1}/s",
            calls * batch,
            rates[ROUNDS - 1],
            1e3 / rates[ROUNDS - 1],
            rates[ROUNDS / 2]
        );
    }
    Ok(())
}

fn print_matrix(title: &str, rows: &[Embedding], cols: &[Embedding]) {
    println!("\ncosine, {title}:");
    print!("{:>14}", "");
    for name in STILLS {
        print!("{:>14}", name);
    }
    println!();
    for (name, a) in STILLS.iter().zip(rows) {
        print!("{name:>14}");
        for b in cols {
            print!("{:>14.3}", a.cosine(b));
        }
        println!();
    }
}
