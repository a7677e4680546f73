//! Line charts as PNG images: training histories (`loss.png`, `eval.png`) and the eval report's
//! identity plot. Axes with tick values and titles, a legend, an optional log-scale y axis and
//! each series' latest value written at its end. Drawn with `plotters` into an in-memory buffer;
//! the text is DejaVu Sans embedded in the binary (`text.rs`), so a plot needs no font on the
//! machine and reads the same everywhere. Where ticks go and how numbers are written is
//! `ticks.rs`.

mod text;
mod ticks;

use std::ops::Range;
use std::path::Path;

use opencv::core::{CV_8UC3, Mat, Scalar};
use opencv::imgproc;
use opencv::prelude::*;
use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use self::text::{Align, Direction, Style, Typeface};
pub use self::ticks::{
    Axis, Tick, count_axis, format_count, format_significant, linear_axis, log_axis,
};
use crate::img::{ImageWriteError, write_image};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// Series colours (Tableau 10: distinct, readable on white).
pub const BLUE: Rgb = [31, 119, 180];
/// See [`BLUE`].
pub const ORANGE: Rgb = [255, 127, 14];
/// See [`BLUE`].
pub const GREEN: Rgb = [44, 160, 44];
/// See [`BLUE`].
pub const RED: Rgb = [214, 39, 40];
/// See [`BLUE`].
pub const PURPLE: Rgb = [148, 103, 189];

/// Titles, legend and guide labels.
const INK: RGBColor = RGBColor(40, 40, 40);
/// Tick labels, guides and the "no data" text.
const SOFT_INK: RGBColor = RGBColor(90, 90, 90);
/// The axes and their tick marks.
const AXIS: RGBColor = RGBColor(120, 120, 120);
/// Grid lines at the ticks.
const GRID: RGBColor = RGBColor(224, 224, 224);
/// Grid lines between the ticks of a log axis (2×, 3×, … 9× a power of ten).
const MINOR_GRID: RGBColor = RGBColor(240, 240, 240);

/// One curve: `(x, y)` points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    /// The name in the legend and in the end label.
    pub name: &'a str,
    /// The line's colour.
    pub colour: Rgb,
    /// The points; non-finite ones (and, on a log axis, those ≤ 0) are left out.
    pub points: Vec<(f64, f64)>,
}

/// How the y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YScale {
    /// Evenly spaced values, on 1-2-5 steps.
    Linear,
    /// Evenly spaced powers of ten; the axis title says "(log scale)".
    Log,
}

/// A labelled horizontal reference line, such as a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// Where the line is, in y units.
    pub value: f64,
    /// Its name, written right of the plot.
    pub label: String,
}

/// What a chart shows. The x axis counts (iterations, faces) from 0: its ticks read 500, 1.2k.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// A line of text above the legend, if any.
    pub caption: Option<String>,
    /// The x axis title.
    pub x_title: &'a str,
    /// The y axis title, without the scale (a log axis adds " (log scale)").
    pub y_title: &'a str,
    /// The y axis mapping.
    pub y_scale: YScale,
    /// A range the y axis shows even where no point reaches (linear axes only).
    pub y_include: Option<(f64, f64)>,
    /// The curves, drawn in order.
    pub series: Vec<Series<'a>>,
    /// Reference lines.
    pub guides: Vec<Guide>,
    /// Writes each series' latest value right of its end ("src 0.0213").
    pub has_end_labels: bool,
}

/// The error of drawing into the in-memory bitmap.
type DrawError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// The whole image as a drawing area.
type Root<'b> = DrawingArea<BitMapBackend<'b>, Shift>;

/// The plot area: x a count, y in drawn units (log10 of the value on a log axis).
type Plot<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Sizes that follow the image's: text stays readable from 320×160 to 1000 px wide.
#[derive(Debug, Clone, Copy)]
struct Metrics {
    /// Tick labels, legend and end labels (font height in pixels).
    text_px: u32,
    /// Padding around blocks.
    pad: u32,
}

impl Metrics {
    /// Text about 1/22 of the height or 1/64 of the width, whichever is smaller; 10 to 15 px.
    fn for_size(w: u32, h: u32) -> Self {
        let text_px = (w / 64).min(h / 22).clamp(10, 15);
        Self { text_px, pad: text_px / 2 + 2 }
    }

    fn line_h(self) -> i32 {
        (self.text_px * 3 / 2) as i32
    }

    fn text(self, colour: RGBColor) -> Style {
        Style::across(self.text_px as f32, colour)
    }

    fn title(self) -> Style {
        Style::across((self.text_px + 1) as f32, INK)
    }
}

fn colour(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A series as drawn: the points its scale can show, y in drawn units.
struct Drawn<'a> {
    name: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    last_value: f64,
}

/// The series with the points their scale can show; empty ones left out.
fn drawable<'a>(chart: &Chart<'a>) -> Vec<Drawn<'a>> {
    let is_log = chart.y_scale == YScale::Log;
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!is_log || y > 0.0);
    let drawn_y = |y: f64| if is_log { y.log10() } else { y };
    chart
        .series
        .iter()
        .filter_map(|s| {
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(keep).collect();
            let last_value = points.last()?.1;
            Some(Drawn {
                name: s.name,
                colour: colour(s.colour),
                points: points.into_iter().map(|(x, y)| (x, drawn_y(y))).collect(),
                last_value,
            })
        })
        .collect()
}

/// The y axis in drawn units, with the unlabelled grid lines of a log axis.
struct YAxis {
    range: Range<f64>,
    ticks: Vec<Tick>,
    minor: Vec<f64>,
}

fn y_axis(chart: &Chart<'_>, drawn: &[Drawn<'_>], max_ticks: usize) -> YAxis {
    let ys = drawn.iter().flat_map(|d| d.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    match chart.y_scale {
        YScale::Log => {
            let axis = log_axis(10f64.powf(lo), 10f64.powf(hi), max_ticks);
            let minor =
                ticks::log_values(axis.lo, axis.hi, &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
            let is_tick = |v: &f64| axis.ticks.iter().any(|t| t.value == *v);
            let minor = minor.into_iter().filter(|v| !is_tick(v)).map(f64::log10).collect();
            let ticks = axis.ticks.into_iter().map(|t| Tick { value: t.value.log10(), ..t });
            YAxis { range: axis.lo.log10()..axis.hi.log10(), ticks: ticks.collect(), minor }
        }
        YScale::Linear => {
            let (inc_lo, inc_hi) = chart.y_include.unwrap_or((lo, hi));
            let guides = chart.guides.iter().map(|g| g.value).filter(|v| v.is_finite());
            let (lo, hi) =
                guides.fold((lo.min(inc_lo), hi.max(inc_hi)), |(a, b), v| (a.min(v), b.max(v)));
            let axis = linear_axis(lo, hi, max_ticks);
            YAxis { range: axis.lo..axis.hi, ticks: axis.ticks, minor: Vec::new() }
        }
    }
}

/// The x range: from 0 (or the smallest x below it) to the largest x.
fn x_range(drawn: &[Drawn<'_>]) -> Range<f64> {
    let xs = drawn.iter().flat_map(|d| d.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((0.0f64, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if hi > lo { lo..hi } else { lo..lo + 1.0 }
}

/// Draws the caption and the legend (rows of swatch and name) from the top, starting at
/// `left`; returns the height used.
fn draw_header(
    root: &Root<'_>,
    face: &Typeface,
    chart: &Chart<'_>,
    drawn: &[Drawn<'_>],
    m: Metrics,
    left: i32,
) -> Result<u32, DrawError> {
    let (width, _) = root.dim_in_pixel();
    let mut row = m.pad as i32 + m.line_h() / 2;
    if let Some(caption) = &chart.caption {
        face.draw(root, caption, (left, row), m.title())?;
        row += m.line_h() + 2;
    }
    let swatch = m.text_px as i32 * 3 / 2;
    let mut x = left;
    for d in drawn {
        let entry_w = swatch + 5 + face.width(d.name, m.text_px as f32) as i32;
        if x > left && x + entry_w > width as i32 - m.pad as i32 {
            (x, row) = (left, row + m.line_h());
        }
        root.draw(&PathElement::new(vec![(x, row), (x + swatch, row)], d.colour.stroke_width(3)))?;
        face.draw(root, d.name, (x + swatch + 5, row), m.text(INK))?;
        x += entry_w + 2 * m.text_px as i32;
    }
    Ok((row + m.line_h() / 2) as u32)
}

/// A label right of the plot: a series' latest value or a guide's name.
struct MarginLabel {
    text: String,
    colour: RGBColor,
    /// Where it belongs, in plot units: the series' last point, or the guide's right end.
    at: (f64, f64),
    /// Joins the label to its point with a thin line (a series' end).
    has_leader: bool,
}

/// Each series' "name value" (if the chart asks for them) and each guide's name.
fn margin_labels(chart: &Chart<'_>, drawn: &[Drawn<'_>], x_end: f64) -> Vec<MarginLabel> {
    let ends = drawn.iter().filter(|_| chart.has_end_labels).map(|d| MarginLabel {
        text: format!("{} {}", d.name, format_significant(d.last_value, 3)),
        colour: d.colour,
        at: *d.points.last().expect("invariant: drawn series have points"),
        has_leader: true,
    });
    let guides = chart.guides.iter().filter_map(|g| {
        let v = match chart.y_scale {
            YScale::Log if g.value > 0.0 => g.value.log10(),
            YScale::Log => return None,
            YScale::Linear => g.value,
        };
        let text = g.label.clone();
        Some(MarginLabel { text, colour: SOFT_INK, at: (x_end, v), has_leader: false })
    });
    ends.chain(guides).collect()
}

/// Rows for labels wanted at `ys` (pixels): in the same order, at least `gap` apart, inside
/// `[top, bottom]` where there is room.
fn spread(ys: &[i32], gap: i32, top: i32, bottom: i32) -> Vec<i32> {
    let mut order: Vec<usize> = (0..ys.len()).collect();
    order.sort_by_key(|&i| ys[i]);
    let mut placed = ys.to_vec();
    let mut next = top;
    for &i in &order {
        placed[i] = ys[i].max(next);
        next = placed[i] + gap;
    }
    let mut limit = bottom;
    for &i in order.iter().rev() {
        placed[i] = placed[i].min(limit);
        limit = placed[i] - gap;
    }
    placed
}

/// Draws "<y title>: no data yet" in the middle.
fn draw_no_data(
    root: &Root<'_>,
    face: &Typeface,
    chart: &Chart<'_>,
    m: Metrics,
) -> Result<(), DrawError> {
    let (w, h) = root.dim_in_pixel();
    let text = format!("{}: no data yet", chart.y_title);
    let style = Style { colour: SOFT_INK, ..m.title() }.aligned(Align::Centre);
    face.draw(root, &text, (w as i32 / 2, h as i32 / 2), style)
}

/// Draws everything into `root`; "<y title>: no data yet" when no series has a point.
fn draw(root: &Root<'_>, chart: &Chart<'_>) -> Result<(), DrawError> {
    root.fill(&WHITE)?;
    let face = Typeface::embedded();
    let (w, h) = root.dim_in_pixel();
    let m = Metrics::for_size(w, h);
    let drawn = drawable(chart);
    if drawn.is_empty() {
        return draw_no_data(root, &face, chart, m);
    }
    let y = y_axis(chart, &drawn, (h * 2 / (m.text_px * 5)).clamp(2, 8) as usize);
    let widest = y.ticks.iter().map(|t| face.width(&t.label, m.text_px as f32)).max();
    let y_area = widest.unwrap_or(0) + m.text_px * 2 + m.pad * 2;
    let header_h = draw_header(root, &face, chart, &drawn, m, (y_area + m.pad) as i32)?;
    let x = x_range(&drawn);
    let labels = margin_labels(chart, &drawn, x.end);
    let widest = labels.iter().map(|l| face.width(&l.text, m.text_px as f32)).max();
    let right = widest.map_or(m.pad * 2, |w| w + m.pad * 4);
    let plot_w = w.saturating_sub(y_area + right + m.pad).max(1);
    let x_axis = count_axis(x.start, x.end, (plot_w / (m.text_px * 6)).clamp(2, 10) as usize);
    let (_, body) = root.split_vertically(header_h);
    let mut plot = ChartBuilder::on(&body)
        .margin_top(m.pad)
        .margin_left(m.pad)
        .margin_right(right)
        .margin_bottom(m.pad / 2)
        .x_label_area_size(m.text_px * 3 + m.pad)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x, y.range.clone())?;
    draw_grid(&mut plot, &x_axis, &y)?;
    for label in labels.iter().filter(|l| !l.has_leader) {
        let line = vec![(plot.x_range().start, label.at.1), label.at];
        plot.draw_series(std::iter::once(PathElement::new(line, SOFT_INK.stroke_width(1))))?;
    }
    for d in &drawn {
        let style = d.colour.stroke_width(2);
        if let [only] = d.points[..] {
            plot.draw_series(std::iter::once(Circle::new(only, 3, style.filled())))?;
        } else {
            plot.draw_series(LineSeries::new(d.points.iter().copied(), style))?;
        }
    }
    draw_axes(root, &face, &plot, chart, (&x_axis, &y), m)?;
    draw_margin_labels(root, &face, &plot, &labels, m)
}

/// Draws the grid: light lines at the log axis' minor values, then lines at every tick.
fn draw_grid(plot: &mut Plot<'_, '_>, x_axis: &Axis, y: &YAxis) -> Result<(), DrawError> {
    let (xs, ys) = (plot.x_range(), plot.y_range());
    let across = |v: f64, c: RGBColor| PathElement::new(vec![(xs.start, v), (xs.end, v)], c);
    plot.draw_series(y.minor.iter().map(|&v| across(v, MINOR_GRID)))?;
    plot.draw_series(y.ticks.iter().map(|t| across(t.value, GRID)))?;
    let up = |v: f64| PathElement::new(vec![(v, ys.start), (v, ys.end)], GRID);
    plot.draw_series(x_axis.ticks.iter().map(|t| up(t.value)))?;
    Ok(())
}

/// Draws the axes, their tick marks and values, and their titles.
fn draw_axes(
    root: &Root<'_>,
    face: &Typeface,
    plot: &Plot<'_, '_>,
    chart: &Chart<'_>,
    (x_axis, y): (&Axis, &YAxis),
    m: Metrics,
) -> Result<(), DrawError> {
    let (x_px, y_px) = plot.plotting_area().get_pixel_range();
    let (left, bottom) = (x_px.start, y_px.end - 1);
    let mark = m.pad as i32;
    let line = |a, b| PathElement::new(vec![a, b], AXIS.stroke_width(1));
    root.draw(&line((left, y_px.start), (left, bottom)))?;
    root.draw(&line((left, bottom), (x_px.end - 1, bottom)))?;
    let label_row = bottom + mark + 2 + m.text_px as i32 / 2;
    for t in &x_axis.ticks {
        let x = plot.backend_coord(&(t.value, 0.0)).0;
        root.draw(&line((x, bottom), (x, bottom + mark)))?;
        let style = m.text(SOFT_INK).aligned(Align::Centre);
        face.draw(root, &t.label, (x, label_row), style)?;
    }
    for t in &y.ticks {
        let y = plot.backend_coord(&(0.0, t.value)).1;
        root.draw(&line((left - mark, y), (left, y)))?;
        let style = m.text(SOFT_INK).aligned(Align::End);
        face.draw(root, &t.label, (left - mark - 3, y), style)?;
    }
    let title_row = label_row + m.line_h() + 2;
    let x_mid = (x_px.start + x_px.end) / 2;
    face.draw(root, chart.x_title, (x_mid, title_row), m.title().aligned(Align::Centre))?;
    let y_title = match chart.y_scale {
        YScale::Log => format!("{} (log scale)", chart.y_title),
        YScale::Linear => chart.y_title.to_owned(),
    };
    let up = Style { direction: Direction::Up, ..m.title().aligned(Align::Centre) };
    let column = (m.pad + m.text_px / 2 + 1) as i32;
    face.draw(root, &y_title, (column, (y_px.start + y_px.end) / 2), up)
}

/// Writes the margin labels right of the plot at their points' heights, spread so that none
/// overlaps; a series' label is joined to the curve's end by a thin line.
fn draw_margin_labels(
    root: &Root<'_>,
    face: &Typeface,
    plot: &Plot<'_, '_>,
    labels: &[MarginLabel],
    m: Metrics,
) -> Result<(), DrawError> {
    let points: Vec<(i32, i32)> = labels.iter().map(|l| plot.backend_coord(&l.at)).collect();
    let (x_px, y_px) = plot.plotting_area().get_pixel_range();
    let ys: Vec<i32> = points.iter().map(|p| p.1).collect();
    let gap = m.text_px as i32 + 3;
    let rows = spread(&ys, gap, y_px.start + gap / 2, y_px.end - gap / 2);
    let x = x_px.end + m.pad as i32 * 2;
    for ((label, point), row) in labels.iter().zip(&points).zip(rows) {
        if label.has_leader {
            root.draw(&PathElement::new(vec![*point, (x - 3, row)], label.colour))?;
        }
        face.draw(root, &label.text, (x, row), m.text(label.colour))?;
    }
    Ok(())
}

/// Draws `chart` as a `width`×`height` BGR image.
///
/// # Errors
/// OpenCV's error; a drawing failure of plotters comes as an OpenCV `StsError` with its text.
pub fn render(chart: &Chart<'_>, width: u32, height: u32) -> opencv::Result<Mat> {
    let (w, h) = (width.max(1), height.max(1));
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, chart)
            .and_then(|()| root.present())
            .map_err(|e| opencv::Error::new(opencv::core::StsError, format!("plot: {e}")))?;
    }
    let mut mat = Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0))?;
    mat.data_bytes_mut()?.copy_from_slice(&rgb);
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(&mat, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    Ok(bgr)
}

/// Draws `chart` at `size` (width, height) and writes it to `path` (PNG, atomically).
///
/// # Errors
/// `ImageWriteError` naming the file.
pub fn write_chart(
    path: &Path,
    chart: &Chart<'_>,
    size: (u32, u32),
) -> Result<(), ImageWriteError> {
    let image = render(chart, size.0, size.1)
        .map_err(|source| ImageWriteError::Encode { path: path.to_owned(), source })?;
    write_image(path, &image, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::img::read_image;

    /// A decaying loss-like history of `n` points.
    fn history(n: usize) -> Vec<(f64, f64)> {
        (0..n).map(|i| ((i * 100) as f64, 2.0 / (1.0 + i as f64).sqrt())).collect()
    }

    fn chart(points: Vec<(f64, f64)>, y_scale: YScale) -> Chart<'static> {
        Chart {
            caption: Some("a caption".to_owned()),
            x_title: "iteration",
            y_title: "loss",
            y_scale,
            y_include: None,
            series: vec![Series { name: "src", colour: BLUE, points }],
            guides: Vec::new(),
            has_end_labels: true,
        }
    }

    /// Writes `chart` at `size` and reads it back (BGR).
    fn drawn(chart: &Chart<'_>, size: (u32, u32)) -> Mat {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plot.png");
        write_chart(&path, chart, size).unwrap();
        read_image(&path).unwrap()
    }

    /// How many pixels in the rectangle are text ink: grey, darker than the grid, not the
    /// axes' own colour.
    fn ink(img: &Mat, cols: Range<i32>, rows: Range<i32>) -> usize {
        let axis = [AXIS.2, AXIS.1, AXIS.0];
        let is_ink = |p: &opencv::core::Vec3b| p.0.iter().all(|&c| c < 160) && p.0 != axis;
        rows.flat_map(|r| cols.clone().map(move |c| (r, c)))
            .filter(|&(r, c)| is_ink(img.at_2d::<opencv::core::Vec3b>(r, c).unwrap()))
            .count()
    }

    /// How many pixels are exactly `colour` (RGB).
    fn pixels_of(img: &Mat, colour: Rgb) -> usize {
        let bgr = [colour[2], colour[1], colour[0]];
        let bytes = img.data_bytes().unwrap();
        bytes.chunks_exact(3).filter(|p| *p == bgr).count()
    }

    #[test]
    fn a_chart_has_the_requested_size_and_values_in_its_margins() {
        for (w, h) in [(900, 400), (320, 160)] {
            for scale in [YScale::Log, YScale::Linear] {
                let img = drawn(&chart(history(50), scale), (w, h));
                assert_eq!((img.cols(), img.rows()), (w as i32, h as i32));
                let (w, h) = (w as i32, h as i32);
                // The y title and the y tick values, left of the plot.
                let left = ink(&img, 0..w / 12, h / 4..h * 3 / 4);
                assert!(left > 40, "{w}x{h} {scale:?}: {left} ink pixels left of the plot");
                // The x tick values and title, under it.
                let under = ink(&img, w / 4..w * 3 / 4, h * 7 / 8..h);
                assert!(under > 20, "{w}x{h} {scale:?}: {under} ink pixels under the plot");
                assert!(pixels_of(&img, BLUE) > 100, "{w}x{h} {scale:?}: the curve is missing");
            }
        }
    }

    #[test]
    fn no_data_is_said_in_the_middle_and_nothing_else_is_drawn() {
        let empty = chart(Vec::new(), YScale::Log);
        let not_on_a_log_axis = chart(vec![(0.0, 0.0), (1.0, -1.0), (2.0, f64::NAN)], YScale::Log);
        for c in [empty, not_on_a_log_axis] {
            let img = drawn(&c, (900, 400));
            assert_eq!((img.cols(), img.rows()), (900, 400));
            let text = ink(&img, 350..550, 180..220);
            assert!(text > 30, "the 'no data yet' text is missing: {text} ink pixels");
            assert_eq!(ink(&img, 0..900, 0..170) + ink(&img, 0..900, 230..400), 0);
            assert_eq!(pixels_of(&img, BLUE), 0);
        }
    }

    #[test]
    fn one_point_is_a_dot_on_axes_with_values() {
        let one = Chart { has_end_labels: false, ..chart(history(1), YScale::Log) };
        let img = drawn(&one, (900, 400));
        assert_eq!((img.cols(), img.rows()), (900, 400));
        // Below the caption and legend, the series' colour is the dot's alone.
        let plot = Mat::roi(&img, opencv::core::Rect::new(0, 80, 900, 320)).unwrap();
        let dot = pixels_of(&plot.try_clone().unwrap(), BLUE);
        assert!(dot > 10, "the dot is missing: {dot} pixels");
        assert!(ink(&img, 0..75, 100..300) > 40, "the y axis has no values");
        assert!(ink(&img, 100..800, 350..400) > 40, "the x axis has no values");
    }

    #[test]
    fn margin_labels_keep_their_order_and_their_distance() {
        assert_eq!(spread(&[50, 10, 12], 10, 0, 200), [50, 10, 20]);
        // Pushed up from the bottom when there is no room below.
        assert_eq!(spread(&[195, 198], 10, 0, 200), [190, 200]);
        assert_eq!(spread(&[100], 10, 0, 200), [100]);
    }
}
