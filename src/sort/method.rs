//! The sort methods (`dfl sort --by`), what each needs measured and how it shows its score.

use serde::{Deserialize, Serialize};

use crate::faceset::scores::Measure;

/// How to order (and clean) a faceset (`docs/dfl-parity.md`, "Sort methods").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Sharpest first (CPBD edge-width sharpness inside the face hull, 0–1).
    Blur,
    /// Least motion blur first (variance of an 11-tap Laplacian inside the hull).
    MotionBlur,
    /// Turned to the image's left first, to the right last (degrees, from solvePnP).
    #[value(alias = "yaw")]
    FaceYaw,
    /// Looking up first, down last (degrees).
    #[value(alias = "pitch")]
    FacePitch,
    /// Largest face in the frame first (detector box area, px²).
    #[value(alias = "face-source-rect-size")]
    SourceSize,
    /// Similar faces next to each other (colour histogram chain).
    Hist,
    /// Most unlike the rest first (summed gray histogram distance).
    HistDissim,
    /// Brightest face first (mean HSV value in the hull, 0–255).
    Brightness,
    /// Highest mean hue first (circular mean in the hull, degrees).
    Hue,
    /// Fewest black pixels first (fraction of samples that are 0).
    Black,
    /// Back to frame order and the names extraction gave.
    Origname,
    /// Moves every face of frames that have more than one face to the trash.
    Oneface,
    /// Keeps the --keep N (default 2000) faces that best cover yaw and pitch, sharpest first.
    #[value(alias = "final")]
    Best,
    /// Groups faces by person (SFace), or keeps those like the --keep-like images.
    Identity,
}

impl Method {
    /// The name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(String::new, |v| v.get_name().to_owned())
    }

    /// What must be measured from the pixels (cached).
    pub fn measures(self) -> &'static [Measure] {
        match self {
            Method::Blur | Method::Best => &[Measure::Blur],
            Method::MotionBlur => &[Measure::MotionBlur],
            Method::Brightness => &[Measure::Brightness],
            Method::Hue => &[Measure::Hue],
            Method::Black => &[Measure::Black],
            Method::Identity => &[Measure::Embedding],
            _ => &[],
        }
    }

    /// Which histogram feature the method uses (computed each time, not cached).
    pub fn histogram(self) -> Histogram {
        match self {
            Method::Hist => Histogram::Color,
            Method::HistDissim | Method::Best => Histogram::Gray,
            _ => Histogram::None,
        }
    }

    /// Whether the ranking reads each face's yaw and pitch (solvePnP per face).
    pub fn uses_pose(self) -> bool {
        matches!(self, Method::FaceYaw | Method::FacePitch | Method::Best)
    }

    /// Whether each face gets a score that `--min-score`/`--max-score` can filter on.
    pub fn filters_by_score(self) -> bool {
        !matches!(self, Method::Hist | Method::Origname | Method::Oneface | Method::Best)
    }

    /// Formats a score for the contact sheet.
    pub fn show(self, score: f64) -> String {
        match self {
            Method::Blur => format!("{score:.3}"),
            Method::FaceYaw | Method::FacePitch | Method::Hue => format!("{score:+.1} deg"),
            Method::SourceSize => format!("{score:.0} px2"),
            Method::Black => format!("{:.2}%", 100.0 * score),
            Method::Hist => format!("d {score:.3}"),
            Method::HistDissim | Method::Brightness => format!("{score:.1}"),
            Method::Identity => format!("cos {score:.2}"),
            Method::Best => format!("sharp {score:.3}"),
            Method::MotionBlur => format!("{score:.2e}"),
            Method::Origname | Method::Oneface => String::new(),
        }
    }
}

/// The histogram feature a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    /// None.
    None,
    /// BGR, whole image (`hist`).
    Color,
    /// Gray, inside the hull (`hist-dissim`, `best`).
    Gray,
}
