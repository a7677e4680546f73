//! `dfl merge`: swapped faces onto the dst frames, then result.mp4.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::MultiProgress;

use crate::color::MergeColorTransfer;
use crate::device;
use crate::merge::config::{BlendMode, MaskMode, MergeConfig, SharpenMode};
use crate::merge::{self, FrameRange, MergeOptions, MergeSettings};
use crate::merge::{EncodeOptions, Preset, Rational, write_preview};
use crate::model::folder::ModelFolder;
use crate::report::Outcome;
use crate::workspace::{Input, Workspace};

use super::GlobalArgs;
use super::progress::Bar;

/// Arguments of `dfl merge`. Unset options come from `--config FILE`, else from the default of
/// `data_dst/merge.config.json` (which may also give scenes their own settings), else their
/// defaults (shown in brackets).
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The trained model to merge with (its folder under workspace/model/) [the only model].
    #[arg(long, short = 'm', value_name = "NAME")]
    pub model: Option<String>,
    /// The XSeg model of the XSeg mask modes (its folder under workspace/xseg/): it segments
    /// the swap (xseg-prd) and the dst faces that have no applied mask (xseg-dst).
    #[arg(long, value_name = "NAME")]
    pub xseg: Option<String>,
    /// How the face goes into the frame [overlay].
    #[arg(long, value_enum)]
    pub mode: Option<BlendMode>,
    /// Which mask decides where the face shows [learned-prd*learned-dst].
    #[arg(long, value_enum)]
    pub mask_mode: Option<MaskMode>,
    /// Erode (> 0) or dilate (< 0) the mask, in pixels of the 4×-resolution mask, −400…400 [0].
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub erode: Option<i32>,
    /// Blur the mask edge, in pixels of the 4×-resolution mask, 0…400 [0].
    #[arg(long, value_name = "PX")]
    pub blur: Option<i32>,
    /// Colour transfer of the face toward the dst face [rct].
    #[arg(long, visible_alias = "ct", value_enum)]
    pub color_transfer: Option<MergeColorTransfer>,
    /// Only the face area takes part in hist-match [true].
    #[arg(long, value_name = "BOOL")]
    pub masked_hist_match: Option<bool>,
    /// hist-match threshold, 0…255 (255 = exact match) [238].
    #[arg(long, value_name = "N")]
    pub hist_threshold: Option<u8>,
    /// Grow (> 0) or shrink (< 0) the pasted face by this many percent, −50…50 [0].
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub face_scale: Option<i32>,
    /// Sharpening filter [none].
    #[arg(long, value_enum)]
    pub sharpen_mode: Option<SharpenMode>,
    /// Sharpen (> 0) or blur (< 0) the face, −100…100 [0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub sharpen_amount: Option<i32>,
    /// Smooth each face's landmarks over ±N neighbouring frames, against jitter, 0…100 [0].
    #[arg(long, value_name = "N")]
    pub smooth: Option<u32>,
    /// Read the settings above from this JSON file (the format of the "merge" object in
    /// data_dst/merge.settings.json); flags override it. Without it, data_dst/merge.config.json
    /// is used when it exists (written by the studio's Merge page): its default settings
    /// (flags override them) and its scenes, frame ranges merged with their own settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The dst video or image folder to merge onto (default: data_dst.mp4 or data_dst/, else
    /// the input the dst faces were extracted from, as `dfl extract dst --input` recorded it).
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// Merge only these frames (1-based): A..B, A.., ..B or N.
    #[arg(long, value_name = "RANGE")]
    pub frames: Option<FrameRange>,
    /// Write merge_preview_<FRAME>.png (this frame merged) and a grid of alternatives, then stop.
    #[arg(long, value_name = "FRAME")]
    pub preview: Option<String>,
    /// Faces per forward pass of the model [8].
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch_size: u32,
    /// x264 quality of result.mp4 (0 = lossless, 18 ≈ visually lossless, 23 = ffmpeg's default).
    #[arg(long, value_name = "CRF", default_value_t = 18, value_parser = clap::value_parser!(u8).range(0..=51))]
    pub crf: u8,
    /// x264 preset of result.mp4: faster presets give larger files.
    #[arg(long, value_enum, default_value_t = Preset::Medium)]
    pub preset: Preset,
    /// Frame rate of result.mp4 when the dst is an image folder (a video keeps its own).
    #[arg(long, value_name = "FPS", default_value = "25")]
    pub fps: String,
    /// Write the merged frames only, not result.mp4.
    #[arg(long)]
    pub no_video: bool,
    /// Also write each frame's blend mask to data_dst/merged_mask/ (for compositing elsewhere).
    #[arg(long)]
    pub masks: bool,
    /// Continue although the saved merge settings differ (every frame is merged again).
    #[arg(long)]
    pub force: bool,
}

impl MergeArgs {
    /// The merge settings: `--config FILE`, else `data_dst/merge.config.json` with its scenes,
    /// else the defaults; then the flags, which change the default settings (a scene keeps its
    /// own).
    fn settings(&self, ws: &Workspace) -> anyhow::Result<MergeSettings> {
        let workspace_file = ws.merge_config();
        let mut settings = match &self.config {
            Some(file) => {
                if workspace_file.is_file() {
                    log::info!(
                        "--config {}: {} and its scenes are not used",
                        file.display(),
                        workspace_file.display()
                    );
                }
                MergeSettings::uniform(self.config_file(file)?)
            }
            None => match MergeSettings::load(&workspace_file)? {
                Some(settings) => {
                    log::info!(
                        "merge settings from {} ({} scene(s) with their own settings)",
                        workspace_file.display(),
                        settings.scenes.len()
                    );
                    settings
                }
                None => MergeSettings::default(),
            },
        };
        let cfg = &mut settings.default;
        macro_rules! set {
            ($($field:ident = $arg:ident),* $(,)?) => { $(if let Some(v) = self.$arg.clone() { cfg.$field = v; })* };
        }
        set!(
            mode = mode,
            mask_mode = mask_mode,
            erode = erode,
            blur = blur,
            color_transfer = color_transfer,
            masked_hist_match = masked_hist_match,
            hist_match_threshold = hist_threshold,
            face_scale = face_scale,
            sharpen_mode = sharpen_mode,
            sharpen_amount = sharpen_amount,
            smooth = smooth,
        );
        cfg.validate()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads `--config FILE`: one set of settings.
    fn config_file(&self, file: &std::path::Path) -> anyhow::Result<MergeConfig> {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read {}; check the path", file.display()))?;
        serde_json::from_slice::<MergeConfig>(&bytes).with_context(|| {
            format!(
                "{} is not a valid merge config; see the \"merge\" object of data_dst/merge.settings.json",
                file.display()
            )
        })
    }
}

/// Parses a frame rate: `25`, `29.97` or `30000/1001`.
fn parse_fps(s: &str) -> anyhow::Result<Rational> {
    let bad = || anyhow::anyhow!("--fps {s} is not a frame rate; write 25, 29.97 or 30000/1001");
    let rate = match s.split_once('/') {
        Some((n, d)) => {
            (n.trim().parse().map_err(|_| bad())?, d.trim().parse().map_err(|_| bad())?)
        }
        None => {
            let f: f64 = s.trim().parse().map_err(|_| bad())?;
            if !(f.is_finite() && f > 0.0 && f < 1e6) {
                return Err(bad());
            }
            let (n, d) = ((f * 1000.0).round() as u32, 1000);
            let g = gcd(n, d);
            (n / g.max(1), d / g.max(1))
        }
    };
    if rate.0 == 0 || rate.1 == 0 {
        return Err(bad());
    }
    Ok(Rational::new(rate.0, rate.1))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Picks the model: the one named, else the only one in the workspace.
fn model_name(args: &MergeArgs, ws: &Workspace) -> anyhow::Result<String> {
    if let Some(name) = &args.model {
        return Ok(name.clone());
    }
    let dir = ws.models_dir();
    let names: Vec<String> = ModelFolder::list(ws)
        .into_iter()
        .filter(|(_, folder)| folder.has_config())
        .map(|(name, _)| name)
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "no trained model in {}; train one with `dfl train --name NAME`",
            dir.display()
        ),
        many => anyhow::bail!(
            "{} models in {} ({}); pick one with --model NAME",
            many.len(),
            dir.display(),
            many.join(", ")
        ),
    }
}

/// Runs `dfl merge`.
pub fn run(args: &MergeArgs, global: &GlobalArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let settings = args.settings(&ws)?;
    if !ws.exists() {
        anyhow::bail!("workspace {} does not exist; extract and train first", ws.root().display());
    }
    let model = model_name(args, &ws)?;
    let device = device::resolve(global.device)?.device;
    let input = args.input.as_deref().map(Input::from_path).transpose()?;
    if let Some(frame) = &args.preview {
        let xseg = args.xseg.as_deref();
        let files = write_preview(&settings, &ws, &model, xseg, device, frame, input.as_ref())?;
        log::info!("preview: {} and {}", files.frame.display(), files.grid.display());
        return Ok(Outcome::Done);
    }
    let video = (!args.no_video).then_some(EncodeOptions { crf: args.crf, preset: args.preset });
    let bar = Bar::new(bars, "frames");
    let opts = MergeOptions {
        model: &model,
        xseg: args.xseg.as_deref(),
        device,
        batch_size: args.batch_size as usize,
        frames: args.frames.unwrap_or_default(),
        force: args.force,
        video,
        write_masks: args.masks,
        image_fps: parse_fps(&args.fps)?,
        input,
        progress: &bar,
    };
    let report = merge::run(&settings, &ws, &opts)?;
    drop(bar);
    let f = &report.frames;
    log::info!(
        "{} frames merged with {model} at iteration {} ({} faces, {} frames without a face, {} done before, {} skipped) in {}",
        f.done,
        report.iteration,
        report.faces,
        report.frames_without_faces,
        f.already_done,
        f.skipped,
        ws.merged_dir().display()
    );
    if let Some(video) = &report.video {
        log::info!("video: {}", video.display());
    }
    if report.skipped_faces > 0 {
        log::warn!(
            "{} file(s) in data_dst/aligned are not usable faces; their frames were merged without them",
            report.skipped_faces
        );
        return Ok(Outcome::DoneWithSkips);
    }
    Ok(f.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_parse_as_rationals() {
        assert_eq!(parse_fps("25").unwrap(), Rational::new(25, 1));
        assert_eq!(parse_fps("29.97").unwrap(), Rational::new(2997, 100));
        assert_eq!(parse_fps("30000/1001").unwrap(), Rational::new(30000, 1001));
        assert!(parse_fps("0").is_err());
        assert!(parse_fps("fast").is_err());
    }

    #[test]
    fn frame_ranges_parse() {
        let r: FrameRange = "10..20".parse().unwrap();
        assert!(r.contains(9) && r.contains(19) && !r.contains(8) && !r.contains(20));
        let open: FrameRange = "5..".parse().unwrap();
        assert!(open.contains(100) && !open.contains(3));
        assert_eq!(
            "7".parse::<FrameRange>().unwrap(),
            FrameRange { first: Some(7), last: Some(7) }
        );
        assert!("20..10".parse::<FrameRange>().is_err());
        assert!("0..3".parse::<FrameRange>().is_err());
    }
}
