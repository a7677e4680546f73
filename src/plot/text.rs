//! Text in plots: DejaVu Sans, embedded in the binary, laid out with the font's advances and
//! kerning and drawn anti-aliased into a plotters drawing area, across or up the image.
//!
//! Plotters 0.3.7 can draw `ab_glyph` text itself, but it places each glyph without its left
//! side bearing ("m ean", "sr c" at 12 px); this places every glyph where the font says.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::prelude::*;

use super::{DrawError, Root};

/// DejaVu Sans 2.37 from Debian's fonts-dejavu-core (Bitstream Vera licence:
/// `assets/fonts/LICENSE-DejaVu.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Where text sits against its anchor, along the way it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    /// The text starts at the anchor.
    Start,
    /// The text is centred on the anchor.
    Centre,
    /// The text ends at the anchor.
    End,
}

/// Which way text runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Left to right.
    Across,
    /// Bottom to top (a y axis title).
    Up,
}

/// How a text is drawn.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    /// The font's height (ascent + descent) in pixels.
    pub px: f32,
    /// The ink.
    pub colour: RGBColor,
    /// Along the direction of the text.
    pub align: Align,
    /// Across or up.
    pub direction: Direction,
}

impl Style {
    /// Left-to-right text starting at its anchor.
    pub(super) fn across(px: f32, colour: RGBColor) -> Self {
        Self { px, colour, align: Align::Start, direction: Direction::Across }
    }

    /// The same text aligned by `align`.
    pub(super) fn aligned(self, align: Align) -> Self {
        Self { align, ..self }
    }
}

/// The embedded font, parsed.
pub(super) struct Typeface(FontRef<'static>);

impl Typeface {
    /// Parses the embedded font.
    pub(super) fn embedded() -> Self {
        Self(FontRef::try_from_slice(DEJAVU_SANS).expect("invariant: the embedded font parses"))
    }

    /// The pen positions of `text`'s glyphs from 0 and the text's advance width (pixels).
    fn layout(&self, text: &str, px: f32) -> (Vec<(ab_glyph::GlyphId, f32)>, f32) {
        let font = self.0.as_scaled(PxScale::from(px));
        let mut pen = 0.0;
        let mut previous = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = previous {
                pen += font.kern(p, id);
            }
            glyphs.push((id, pen));
            pen += font.h_advance(id);
            previous = Some(id);
        }
        (glyphs, pen)
    }

    /// How long `text` is along its direction, in pixels.
    pub(super) fn width(&self, text: &str, px: f32) -> u32 {
        self.layout(text, px).1.ceil() as u32
    }

    /// The height of the capitals at `px` (pixels).
    pub(super) fn cap_height(&self, px: f32) -> f32 {
        let h = self.0.glyph_id('H').with_scale(PxScale::from(px));
        self.0.outline_glyph(h).map_or(px * 0.6, |o| -o.px_bounds().min.y)
    }

    /// Draws `text` at `anchor`, its capitals centred across the anchor: on the anchor's row
    /// for text across, on its column for text up.
    ///
    /// # Errors
    /// The drawing area's error.
    pub(super) fn draw(
        &self,
        root: &Root<'_>,
        text: &str,
        anchor: (i32, i32),
        style: Style,
    ) -> Result<(), DrawError> {
        let (glyphs, width) = self.layout(text, style.px);
        let start = match style.align {
            Align::Start => 0.0,
            Align::Centre => -width / 2.0,
            Align::End => -width,
        };
        let baseline = self.cap_height(style.px) / 2.0;
        let mut result = Ok(());
        for (id, pen) in glyphs {
            let glyph = id.with_scale_and_position(style.px, point(start + pen, baseline));
            let Some(outline) = self.0.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                // (u, v): pixels along and across the text from the anchor, v down.
                let u = bounds.min.x as i32 + gx as i32;
                let v = bounds.min.y as i32 + gy as i32;
                let at = match style.direction {
                    Direction::Across => (anchor.0 + u, anchor.1 + v),
                    Direction::Up => (anchor.0 + v, anchor.1 - u),
                };
                if coverage > 0.0 && result.is_ok() {
                    let ink = style.colour.mix(f64::from(coverage.min(1.0)));
                    result = root.draw_pixel(at, &ink);
                }
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inked pixels' bounding box `(x0, y0, x1, y1)` after drawing `text` at `anchor`.
    fn ink_box(text: &str, anchor: (i32, i32), style: Style) -> (usize, usize, usize, usize) {
        let (w, h) = (200usize, 200usize);
        let mut rgb = vec![255u8; w * h * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut rgb, (w as u32, h as u32)).into_drawing_area();
            Typeface::embedded().draw(&root, text, anchor, style).unwrap();
            root.present().unwrap();
        }
        let inked: Vec<(usize, usize)> =
            (0..w * h).filter(|i| rgb[i * 3] < 128).map(|i| (i % w, i / w)).collect();
        assert!(!inked.is_empty(), "nothing drawn for {text:?}");
        let xs = inked.iter().map(|p| p.0);
        let ys = inked.iter().map(|p| p.1);
        (xs.clone().min().unwrap(), ys.clone().min().unwrap(), xs.max().unwrap(), ys.max().unwrap())
    }

    #[test]
    fn capitals_are_centred_on_the_anchor_across_and_up() {
        let across = Style::across(20.0, RGBColor(0, 0, 0));
        let (x0, y0, x1, y1) = ink_box("HEH", (100, 100), across.aligned(Align::Centre));
        assert!((y0 + y1).abs_diff(200) <= 2, "rows {y0}..{y1} not centred on 100");
        assert!((x0 + x1).abs_diff(200) <= 2, "columns {x0}..{x1} not centred on 100");
        assert!(y1 - y0 >= 10, "capitals of a 20 px font are {} px high", y1 - y0);
        let up = Style { direction: Direction::Up, ..across };
        let (x0, _, x1, y1) = ink_box("HEH", (100, 100), up);
        assert!((x0 + x1).abs_diff(200) <= 2, "columns {x0}..{x1} not centred on 100");
        assert!(y1 <= 100, "text up starts at the anchor and rises: bottom row {y1}");
    }

    #[test]
    fn the_layout_width_is_what_gets_inked() {
        let style = Style::across(14.0, RGBColor(0, 0, 0));
        let face = Typeface::embedded();
        let text = "src 0.0213";
        let (x0, _, x1, _) = ink_box(text, (20, 100), style);
        let width = face.width(text, 14.0) as usize;
        assert!((20..=22).contains(&x0), "starts at {x0}");
        assert!(x1 + 1 >= 20 + width - 2 && x1 < 20 + width + 1, "ends at {x1}, width {width}");
    }
}
