//! The merger's settings: DFL's `MergerConfigMasked` (`docs/dfl-parity.md`, "Merge"), without
//! prompts.
//!
//! Defaults follow DFL's interactive merger (overlay, `learned-prd*learned-dst`, rct, hist
//! threshold 238), not its batch prompts (mask `dst`, ct none, threshold 255); see
//! `docs/dfl-parity.md`, "Quirks". The interactive set is what DFL users tune from and what looks right first.

use serde::{Deserialize, Serialize};

use crate::color::MergeColorTransfer;

/// How the swapped face is put into the frame (DFL's merge `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlendMode {
    /// The frame unchanged (to check masks and the pipeline).
    Original,
    /// Alpha blend of the (colour-transferred) face with the soft mask.
    #[default]
    Overlay,
    /// Per-channel histogram match of the face to the dst face, then overlay.
    HistMatch,
    /// OpenCV's Poisson seamless clone, then overlay with the soft mask.
    Seamless,
    /// Seamless, then a histogram match of the result to the dst face.
    SeamlessHistMatch,
    /// The whole predicted square pasted with a hard edge (no mask, no colour transfer).
    RawRgb,
    /// The prediction itself, R×R, not put back into the frame.
    RawPredict,
}

impl BlendMode {
    /// Returns whether this mode uses the soft merge mask (erode/blur apply).
    pub fn is_raw(self) -> bool {
        matches!(self, BlendMode::RawRgb | BlendMode::RawPredict)
    }

    /// Returns whether this mode runs a seamless clone.
    pub fn is_seamless(self) -> bool {
        matches!(self, BlendMode::Seamless | BlendMode::SeamlessHistMatch)
    }
}

/// Which mask decides where the swapped face shows (DFL's `mask_mode`, without XSeg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum MaskMode {
    /// The whole predicted square.
    #[serde(rename = "full")]
    #[value(name = "full")]
    Full,
    /// The dst landmarks' hull (with DFL's raised eyebrows).
    #[serde(rename = "dst")]
    #[value(name = "dst")]
    Dst,
    /// The mask the src decoder predicts for the swap.
    #[serde(rename = "learned-prd")]
    #[value(name = "learned-prd")]
    LearnedPrd,
    /// The mask the dst decoder predicts for the dst face.
    #[serde(rename = "learned-dst")]
    #[value(name = "learned-dst")]
    LearnedDst,
    /// Their product: only where both faces are.
    #[default]
    #[serde(rename = "learned-prd*learned-dst")]
    #[value(name = "learned-prd*learned-dst")]
    LearnedPrdTimesDst,
    /// Their clipped sum: wherever either face is.
    #[serde(rename = "learned-prd+learned-dst")]
    #[value(name = "learned-prd+learned-dst")]
    LearnedPrdPlusDst,
    /// XSeg run on the swapped face (needs `--xseg NAME`).
    #[serde(rename = "xseg-prd")]
    #[value(name = "xseg-prd")]
    XsegPrd,
    /// The dst face's XSeg mask: the one `dfl xseg apply` wrote into its file, else XSeg run
    /// on the dst face (needs `--xseg NAME`). Keeps hands, hair and objects in front of the
    /// face.
    #[serde(rename = "xseg-dst")]
    #[value(name = "xseg-dst")]
    XsegDst,
    /// The product of xseg-prd and xseg-dst.
    #[serde(rename = "xseg-prd*xseg-dst")]
    #[value(name = "xseg-prd*xseg-dst")]
    XsegPrdTimesDst,
    /// The product of both learned masks and both XSeg masks.
    #[serde(rename = "learned-prd*learned-dst*xseg-prd*xseg-dst")]
    #[value(name = "learned-prd*learned-dst*xseg-prd*xseg-dst")]
    LearnedTimesXseg,
}

impl MaskMode {
    /// Whether the mode reads XSeg run on the swapped face.
    pub fn needs_xseg_prd(self) -> bool {
        matches!(self, MaskMode::XsegPrd | MaskMode::XsegPrdTimesDst | MaskMode::LearnedTimesXseg)
    }

    /// Whether the mode reads the dst face's XSeg mask.
    pub fn needs_xseg_dst(self) -> bool {
        matches!(self, MaskMode::XsegDst | MaskMode::XsegPrdTimesDst | MaskMode::LearnedTimesXseg)
    }
}

/// The filter of the optional sharpening (DFL's `sharpen_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharpenMode {
    /// No sharpening (negative amounts still blur).
    #[default]
    None,
    /// Unsharp with a 3×3 box.
    Box,
    /// Unsharp with a 3×3 Gaussian.
    Gaussian,
}

/// Everything that decides how a face is merged: the per-frame part of the merge settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeConfig {
    /// How the face is put into the frame.
    pub mode: BlendMode,
    /// Which mask decides where the face shows.
    pub mask_mode: MaskMode,
    /// Erode (> 0) or dilate (< 0) the mask by this many pixels of the 4R mask (−400…400).
    pub erode: i32,
    /// Blur the mask edge with a Gaussian of this many pixels of the 4R mask (0…400).
    pub blur: i32,
    /// Colour transfer of the face toward the dst face.
    pub color_transfer: MergeColorTransfer,
    /// Only the face area takes part in hist-match (DFL's `masked_hist_match`).
    pub masked_hist_match: bool,
    /// The face's histogram quantiles are scaled by this/255 (DFL's `hist_match_threshold`).
    pub hist_match_threshold: u8,
    /// Grow (> 0) or shrink (< 0) the pasted face by this many percent (−50…50).
    pub face_scale: i32,
    /// The sharpening filter.
    pub sharpen_mode: SharpenMode,
    /// Sharpen (> 0) or median-blur (< 0) the face by this amount (−100…100; DFL's
    /// `blursharpen_amount`).
    pub sharpen_amount: i32,
    /// Average each face's landmarks over ±this many neighbouring frames of its track
    /// (0…[`MAX_SMOOTH`]).
    pub smooth: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            mode: BlendMode::Overlay,
            mask_mode: MaskMode::LearnedPrdTimesDst,
            erode: 0,
            blur: 0,
            color_transfer: MergeColorTransfer::Rct,
            masked_hist_match: true,
            hist_match_threshold: 238,
            face_scale: 0,
            sharpen_mode: SharpenMode::None,
            sharpen_amount: 0,
            smooth: 0,
        }
    }
}

/// The largest landmark-smoothing radius, in frames.
pub const MAX_SMOOTH: i32 = 100;

/// A merge setting outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} = {value} is outside {min}…{max}; pick a value in that range")]
pub struct OutOfRange {
    /// The setting.
    pub name: &'static str,
    /// Its value.
    pub value: i32,
    /// The smallest allowed value.
    pub min: i32,
    /// The largest allowed value.
    pub max: i32,
}

impl MergeConfig {
    /// Checks every numeric setting against DFL's ranges.
    ///
    /// # Errors
    /// The first setting outside its range.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        let values = [
            self.erode,
            self.blur,
            i32::from(self.hist_match_threshold),
            self.face_scale,
            self.sharpen_amount,
            i32::try_from(self.smooth).unwrap_or(i32::MAX),
        ];
        for ((name, min, max), value) in Self::RANGES.into_iter().zip(values) {
            if !(min..=max).contains(&value) {
                return Err(OutOfRange { name, value, min, max });
            }
        }
        Ok(())
    }

    /// The numeric settings and their ranges `(name, min, max)`, inclusive: DFL's ranges for
    /// its own settings; `smooth` (not in DFL) up to ±100 frames.
    pub const RANGES: [(&'static str, i32, i32); 6] = [
        ("erode", -400, 400),
        ("blur", 0, 400),
        ("hist_match_threshold", 0, 255),
        ("face_scale", -50, 50),
        ("sharpen_amount", -100, 100),
        ("smooth", 0, MAX_SMOOTH),
    ];

    /// Returns the paste-back matrix scale for [`transform_mat_scaled`]: the face is pasted
    /// `1 + face_scale/100` times as large.
    ///
    /// ⚠ DFL passes `1 + output_face_scale/100` as the matrix scale itself, which shrinks the
    /// crop in the frame, so there a positive value makes the face *smaller*. We follow the
    /// word "scale" (and faceswap's `--face-scale`): positive is larger.
    ///
    /// [`transform_mat_scaled`]: crate::face::align::transform_mat_scaled
    pub fn output_scale(&self) -> f64 {
        1.0 / (1.0 + 0.01 * f64::from(self.face_scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_back_from_json_and_missing_keys_take_defaults() {
        let cfg: MergeConfig =
            serde_json::from_str(r#"{"mask_mode": "learned-prd+learned-dst", "blur": 40}"#)
                .unwrap();
        assert_eq!(cfg.mask_mode, MaskMode::LearnedPrdPlusDst);
        assert_eq!(cfg.blur, 40);
        assert_eq!(cfg.mode, BlendMode::Overlay);
        let round: MergeConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(round, cfg);
        assert!(serde_json::from_str::<MergeConfig>(r#"{"blurr": 1}"#).is_err());
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        let cfg = MergeConfig { erode: 401, ..MergeConfig::default() };
        assert_eq!(cfg.validate().unwrap_err().name, "erode");
        assert!(MergeConfig { face_scale: -50, ..MergeConfig::default() }.validate().is_ok());
        let cfg = MergeConfig { smooth: 101, ..MergeConfig::default() };
        assert_eq!(cfg.validate().unwrap_err().name, "smooth");
    }
}
