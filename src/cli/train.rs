//! `dfl train`: train a DF or LIAE model on the two facesets (issues #4 and #5). For now only
//! `--dry-run` is built: it builds the network and prints its layer table.

use tch::{Device, nn};

use crate::model::arch::{Arch, ModelConfig, default_mask_dims};
use crate::model::saehd::Saehd;
use crate::model::summary::summarize;
use crate::report::Outcome;

use super::GlobalArgs;

/// Arguments of `dfl train`. Unset options keep DFL's defaults (shown in brackets).
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The model's name: its folder under workspace/model/.
    #[arg(long, short = 'n', value_name = "NAME")]
    pub name: Option<String>,
    /// Archi: df or liae, optionally with letters u, d, t (e.g. liae-ud, df-udt) [liae-ud].
    #[arg(long, value_name = "ARCHI")]
    pub model: Option<Arch>,
    /// Face size the model works at: a multiple of 16 (32 with d), 64–640 [128].
    #[arg(long, value_name = "PX")]
    pub resolution: Option<i64>,
    /// Bottleneck width, 32–1024 [256].
    #[arg(long, value_name = "N")]
    pub ae_dims: Option<i64>,
    /// Encoder width, 16–256, even [64].
    #[arg(long, value_name = "N")]
    pub e_dims: Option<i64>,
    /// Decoder width, 16–256, even [64].
    #[arg(long, value_name = "N")]
    pub d_dims: Option<i64>,
    /// Mask decoder width, 16–256, even [d_dims/3 rounded up to even].
    #[arg(long, value_name = "N")]
    pub d_mask_dims: Option<i64>,
    /// Build the model and print its layer table and parameter count, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the table as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

impl TrainArgs {
    /// Applies the overrides to DFL's defaults.
    fn model_config(&self) -> ModelConfig {
        let mut cfg = ModelConfig::default();
        cfg.arch = self.model.unwrap_or(cfg.arch);
        cfg.resolution = self.resolution.unwrap_or(cfg.resolution);
        cfg.ae_dims = self.ae_dims.unwrap_or(cfg.ae_dims);
        cfg.e_dims = self.e_dims.unwrap_or(cfg.e_dims);
        cfg.d_dims = self.d_dims.unwrap_or(cfg.d_dims);
        cfg.d_mask_dims = self.d_mask_dims.unwrap_or_else(|| default_mask_dims(cfg.d_dims));
        cfg
    }
}

/// Runs `dfl train`.
pub fn run(args: &TrainArgs, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    if !args.dry_run {
        return Err(super::not_built("train", 5));
    }
    let cfg = args.model_config();
    cfg.validate()?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = tch::no_grad(|| Saehd::new(&vs.root(), &cfg));
    let summary = summarize(&vs, &cfg);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(Outcome::Done)
}
