//! `dfl eval`: numbers on a merged swap.

use anyhow::Context;
use indicatif::MultiProgress;

use crate::assets::{SFACE_FILE, SHAPE_PREDICTOR_FILE};
use crate::eval::{self, EvalModels};
use crate::face::identity::SFaceModel;
use crate::face::shape_predictor::ShapePredictor;
use crate::report::Outcome;
use crate::workspace::{Input, Workspace};

use super::GlobalArgs;
use super::progress::Bar;

/// Arguments of `dfl eval`.
///
/// Compares every merged frame with the dst frame it came from: how much the face now looks
/// like the src faceset (SFace identity), whether expression and pose were kept (landmark NME,
/// yaw/pitch), and whether the swap flickers more than the clip (jitter). Writes
/// eval/report.json and eval/report.png.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The dst video or image folder the merge used (default: data_dst.mp4 or data_dst/, else
    /// the input the dst faces were extracted from).
    #[arg(long, value_name = "PATH")]
    pub input: Option<std::path::PathBuf>,
}

/// Runs `dfl eval`.
pub fn run(args: &EvalArgs, global: &GlobalArgs, bars: &MultiProgress) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    let input = args.input.as_deref().map(Input::from_path).transpose()?;
    let assets = crate::assets::Assets::from_env();
    let sface_path = assets.model(SFACE_FILE)?;
    let sface = SFaceModel::load(&sface_path)?;
    let predictor_path = assets.model(SHAPE_PREDICTOR_FILE)?;
    let predictor = ShapePredictor::load(&predictor_path)
        .with_context(|| format!("{}", predictor_path.display()))?;
    let bar = Bar::new(bars, "frames");
    let models = EvalModels { sface: &sface, predictor: &predictor };
    let (report, dir) = eval::run(&ws, &models, input.as_ref(), &bar)?;
    drop(bar);
    for line in eval::summary_lines(&report) {
        println!("{line}");
    }
    log::info!(
        "report: {} and {}",
        dir.join("report.json").display(),
        dir.join("report.png").display()
    );
    Ok(Outcome::Done)
}
