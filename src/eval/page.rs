//! The one-page picture of an evaluation: sample frames (dst face, swapped face) with their
//! identity scores, the identity of every evaluated face along the clip, and the numbers.

use std::path::Path;

use opencv::core::{CV_8UC3, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::EvalReport;
use crate::face::identity::SAME_PERSON_COSINE;
use crate::img::{ImageWriteError, write_image};
use crate::plot::{self, Chart, Guide, Series, YScale};

/// Page width in pixels.
const WIDTH: i32 = 1120;
/// Side of a sample crop.
const CROP: i32 = 120;
/// The identity plot's height, axes and legend included.
const PLOT_H: i32 = 300;
/// Space between the lines of the summary.
const LINE_H: i32 = 22;

/// An OpenCV (BGR) colour of the plots' palette.
const fn bgr(c: plot::Rgb) -> Scalar {
    Scalar::new(c[2] as f64, c[1] as f64, c[0] as f64, 0.0)
}

/// swap: green; dst: red, as in the plot.
const SWAP: Scalar = bgr(plot::GREEN);
const DST: Scalar = bgr(plot::RED);
const INK: Scalar = Scalar::new(40.0, 40.0, 40.0, 0.0);

/// A sample: frame name, identity of the swap and of the dst face, dst crop, swapped crop.
pub type Sample<'a> = (&'a str, f64, f64, &'a Mat, &'a Mat);

/// Draws the page and writes it to `path` as PNG.
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_page(
    path: &Path,
    report: &EvalReport,
    samples: &[Sample<'_>],
) -> Result<(), ImageWriteError> {
    let page = draw(report, samples)
        .map_err(|source| ImageWriteError::Encode { path: path.to_owned(), source })?;
    write_image(path, &page, 0)
}

fn text(img: &mut Mat, s: &str, at: Point, scale: f64, colour: Scalar) -> opencv::Result<()> {
    imgproc::put_text(
        img,
        s,
        at,
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        colour,
        1,
        imgproc::LINE_AA,
        false,
    )
}

fn draw(report: &EvalReport, samples: &[Sample<'_>]) -> opencv::Result<Mat> {
    let samples_h = CROP + 44;
    let plot_top = 40 + samples_h + 4;
    let lines = summary_lines(report);
    let height = plot_top + PLOT_H + 28 + LINE_H * lines.len() as i32;
    let mut page = Mat::new_rows_cols_with_default(height, WIDTH, CV_8UC3, Scalar::all(255.0))?;
    text(
        &mut page,
        "dfl eval: identity, expression and stability of the swap",
        Point::new(16, 28),
        0.7,
        INK,
    )?;

    // Samples: pairs of crops.
    let pair_w = 2 * CROP + 20;
    for (k, (frame, id_swap, id_dst, dst, swap)) in samples.iter().enumerate() {
        let x = 16 + k as i32 * (pair_w + 8);
        for (j, crop) in [dst, swap].iter().enumerate() {
            let mut small = Mat::default();
            imgproc::resize(
                *crop,
                &mut small,
                Size::new(CROP, CROP),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
            let at = Rect::new(x + j as i32 * (CROP + 4), 40, CROP, CROP);
            small.copy_to(&mut Mat::roi_mut(&mut page, at)?)?;
        }
        let label = format!("{frame}: dst {id_dst:.2} -> swap {id_swap:.2}");
        text(&mut page, &label, Point::new(x, 40 + CROP + 18), 0.42, INK)?;
        text(&mut page, "dst", Point::new(x, 40 + CROP + 36), 0.4, DST)?;
        text(&mut page, "swap", Point::new(x + CROP + 4, 40 + CROP + 36), 0.4, SWAP)?;
    }

    // The plot: cosine to the src mean per face, in frame order.
    let at = Rect::new(8, plot_top, WIDTH - 16, PLOT_H);
    let plot = plot::render(&identity_chart(report), at.width as u32, at.height as u32)?;
    plot.copy_to(&mut Mat::roi_mut(&mut page, at)?)?;

    // The numbers.
    let mut y = plot_top + PLOT_H + 28;
    for line in lines {
        text(&mut page, &line, Point::new(16, y), 0.45, INK)?;
        y += LINE_H;
    }
    Ok(page)
}

/// The identity of every evaluated face along the clip: the swap's and the original dst's
/// cosine to the src faceset's mean, with the same-person threshold.
fn identity_chart(report: &EvalReport) -> Chart<'static> {
    let along = |pick: fn(&super::FaceEval) -> f64| {
        report.per_face.iter().enumerate().map(|(i, f)| (i as f64, pick(f))).collect()
    };
    Chart {
        caption: Some("cosine to the src faceset's mean, per face in frame order".to_owned()),
        x_title: "face (frame order)",
        y_title: "identity (cosine to src)",
        y_scale: YScale::Linear,
        y_include: Some((-0.2, 1.0)),
        series: vec![
            Series { name: "swap", colour: plot::GREEN, points: along(|f| f.identity_swap) },
            Series { name: "original dst", colour: plot::RED, points: along(|f| f.identity_dst) },
        ],
        guides: vec![Guide {
            value: SAME_PERSON_COSINE,
            label: format!("same person ({SAME_PERSON_COSINE})"),
        }],
        has_end_labels: false,
    }
}

/// The summary in a few lines of text (also what the CLI prints).
pub fn summary_lines(r: &EvalReport) -> Vec<String> {
    let mean = |s: &Option<super::Summary>| s.map_or("-".to_owned(), |s| format!("{:.3}", s.mean));
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let i = &r.identity;
    let e = &r.expression;
    let t = &r.temporal;
    vec![
        format!(
            "{} faces in {} frames; identity reference: the mean of {} src faces",
            r.faces, r.frames, r.src_faces
        ),
        format!(
            "identity (SFace cosine to src): swap {}  original dst {}  src faces themselves {}",
            mean(&i.swap_to_src),
            mean(&i.dst_to_src),
            mean(&i.src_to_src)
        ),
        format!(
            "  the swap is closer to src than the original for {:.0}% of faces; swap vs its dst face {}",
            100.0 * i.closer_to_src,
            mean(&i.swap_to_dst)
        ),
        format!(
            "expression: landmark NME (swap vs dst, / inter-ocular) {} (51 inner points {})  |yaw diff| {} deg  |pitch diff| {} deg",
            mean(&e.nme),
            mean(&e.nme_inner),
            e.yaw_diff_deg.map_or("-".into(), |s| format!("{:.1}", s.mean)),
            e.pitch_diff_deg.map_or("-".into(), |s| format!("{:.1}", s.mean))
        ),
        format!(
            "stability: landmark jitter swap {} vs dst {}; pixel jitter swap {} vs dst {} gray levels",
            opt(t.landmark_jitter_swap, 4),
            opt(t.landmark_jitter_dst, 4),
            opt(t.pixel_jitter_swap, 2),
            opt(t.pixel_jitter_dst, 2)
        ),
        match &r.model {
            Some(super::ModelReport { name, held_out: Some(p), .. }) => format!(
                "model {name}, held-out faces at iteration {}: SSIM src {:.3} dst {:.3}, PSNR src {:.1} dst {:.1} dB, sharpness src {} swap {}",
                p.iteration,
                p.src_ssim,
                p.dst_ssim,
                p.src_psnr,
                p.dst_psnr,
                opt(p.src_sharpness, 2),
                opt(p.swap_sharpness, 2)
            ),
            Some(m) => format!(
                "model {}: no held-out measurement (train with --eval-every N to get SSIM/PSNR)",
                m.name
            ),
            None => "model: unknown (no merge settings)".to_owned(),
        },
    ]
}
