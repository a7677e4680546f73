//! SAEHD's options dict (inside `<name>_SAEHD_data.dat`) to our `TrainConfig` and back.
//!
//! DFL keeps every option in one dict, keyed by the names its prompts ask them under
//! (`archi`, `ae_dims`, `lr_dropout`, …); integers and floats that went through `np.clip` are
//! numpy scalars. The options that fix the network become our [`ModelConfig`]; the others map
//! one to one onto [`TrainConfig`] fields. What has no counterpart is listed, never dropped
//! silently.

use std::path::Path;

use super::error::DflModelError;
use super::files::str_dict;
use crate::color::ColorTransfer;
use crate::dfl_format::pickle::Value;
use crate::face::align::FaceType;
use crate::model::arch::{Arch, ModelConfig, default_mask_dims};
use crate::model::folder::TrainConfig;
use crate::model::optim::{
    DEFAULT_BETA1, DEFAULT_BETA2, DEFAULT_EPS, DEFAULT_LR, DFL_CLIP_GRAD_NORM, OptimizerKind,
};
use crate::model::precision::Precision;

/// DFL's face type codes and ours.
const FACE_TYPES: [(&str, FaceType); 5] = [
    ("h", FaceType::Half),
    ("mf", FaceType::MidFull),
    ("f", FaceType::Full),
    ("wf", FaceType::WholeFace),
    ("head", FaceType::Head),
];

/// DFL's `ct_mode` values and ours.
const CT_MODES: [(&str, ColorTransfer); 6] = [
    ("none", ColorTransfer::None),
    ("rct", ColorTransfer::Rct),
    ("lct", ColorTransfer::Lct),
    ("mkl", ColorTransfer::Mkl),
    ("idt", ColorTransfer::Idt),
    ("sot", ColorTransfer::Sot),
];

/// The options of a DFL model as ours, and the DFL options that have no counterpart.
#[derive(Debug, Clone)]
pub struct ImportedOptions {
    /// The training options.
    pub config: TrainConfig,
    /// Each DFL option not carried over, as `key=value`.
    pub not_mapped: Vec<String>,
}

/// One option being read, for its error messages.
struct Opt<'a> {
    key: &'a str,
    value: &'a Value,
    path: &'a Path,
}

impl Opt<'_> {
    fn bad(&self, want: &str) -> DflModelError {
        DflModelError::format(
            self.path,
            format!(
                "option {} is {} ({}), expected {want}; the file is damaged or not from SAEHD",
                self.key,
                repr(self.value),
                self.value.type_name()
            ),
        )
    }

    fn int(&self) -> Result<i64, DflModelError> {
        self.value.as_i64().ok_or_else(|| self.bad("an integer"))
    }

    fn uint<T: TryFrom<i64>>(&self) -> Result<T, DflModelError> {
        T::try_from(self.int()?).map_err(|_| self.bad("a non-negative integer"))
    }

    fn float(&self) -> Result<f64, DflModelError> {
        self.value.as_f64().filter(|x| x.is_finite()).ok_or_else(|| self.bad("a number"))
    }

    fn bool(&self) -> Result<bool, DflModelError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            other => match other.as_i64() {
                Some(n @ (0 | 1)) => Ok(n == 1),
                _ => Err(self.bad("a bool")),
            },
        }
    }

    fn str(&self) -> Result<&str, DflModelError> {
        self.value.as_str().ok_or_else(|| self.bad("text"))
    }

    /// A text option out of a table of codes.
    fn code<T: Copy>(&self, table: &[(&str, T)]) -> Result<T, DflModelError> {
        let text = self.str()?.to_ascii_lowercase();
        table.iter().find(|(c, _)| *c == text).map(|(_, v)| *v).ok_or_else(|| {
            let codes: Vec<&str> = table.iter().map(|(c, _)| *c).collect();
            self.bad(&format!("one of {}", codes.join(", ")))
        })
    }
}

/// The network options, gathered before the network is checked as a whole.
#[derive(Default)]
struct Dims {
    archi: Option<String>,
    resolution: Option<i64>,
    ae_dims: Option<i64>,
    e_dims: Option<i64>,
    d_dims: Option<i64>,
    d_mask_dims: Option<i64>,
}

/// Reads DFL's options dict into our options.
///
/// # Errors
/// `Format` naming `path` and the option: a value of the wrong type, an archi we do not build
/// (the `c` letter), or options that fail our validation.
pub fn import_options(options: &Value, path: &Path) -> Result<ImportedOptions, DflModelError> {
    let mut cfg = TrainConfig::default();
    let mut dims = Dims::default();
    let mut not_mapped = Vec::new();
    for (key, value) in str_dict(options, path)? {
        let opt = Opt { key, value, path };
        if !read_dims(&opt, &mut dims)? && !read_training(&opt, &mut cfg)? {
            not_mapped.push(format!("{key}={}", repr(value)));
        }
    }
    cfg.model = model_config(&dims, path)?;
    cfg.validate()
        .map_err(|e| DflModelError::format(path, format!("{e}; the options are not usable")))?;
    Ok(ImportedOptions { config: cfg, not_mapped })
}

/// Reads one network option; false when `opt` is not one.
fn read_dims(opt: &Opt<'_>, dims: &mut Dims) -> Result<bool, DflModelError> {
    match opt.key {
        "archi" => dims.archi = Some(opt.str()?.to_owned()),
        "resolution" => dims.resolution = Some(opt.int()?),
        "ae_dims" => dims.ae_dims = Some(opt.int()?),
        "e_dims" => dims.e_dims = Some(opt.int()?),
        "d_dims" => dims.d_dims = Some(opt.int()?),
        "d_mask_dims" => dims.d_mask_dims = Some(opt.int()?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Reads one training option into `cfg`; false when `opt` has no counterpart.
fn read_training(opt: &Opt<'_>, cfg: &mut TrainConfig) -> Result<bool, DflModelError> {
    match opt.key {
        "face_type" => cfg.face_type = opt.code(&FACE_TYPES)?,
        "batch_size" => cfg.batch_size = opt.uint()?,
        "target_iter" => cfg.target_iter = opt.uint()?,
        "autobackup_hour" => cfg.backup_every_hours = opt.float()?,
        "write_preview_history" => cfg.preview_history = opt.bool()?,
        "random_src_flip" => cfg.random_src_flip = opt.bool()?,
        "random_dst_flip" => cfg.random_dst_flip = opt.bool()?,
        "masked_training" => cfg.masked_training = opt.bool()?,
        "eyes_mouth_prio" => cfg.eyes_mouth_prio = opt.bool()?,
        "uniform_yaw" => cfg.uniform_yaw = opt.bool()?,
        "blur_out_mask" => cfg.blur_out_mask = opt.bool()?,
        "random_warp" => cfg.random_warp = opt.bool()?,
        "pretrain" => cfg.pretrain = opt.bool()?,
        "random_hsv_power" => cfg.random_hsv_power = opt.float()?,
        "true_face_power" => cfg.true_face_power = opt.float()?,
        "face_style_power" => cfg.face_style_power = opt.float()?,
        "bg_style_power" => cfg.bg_style_power = opt.float()?,
        "gan_power" => cfg.gan_power = opt.float()?,
        "gan_patch_size" => cfg.gan_patch_size = Some(opt.int()?),
        "gan_dims" => cfg.gan_dims = opt.int()?,
        "ct_mode" => cfg.ct_mode = opt.code(&CT_MODES)?,
        "adabelief" => {
            cfg.optimizer.kind =
                if opt.bool()? { OptimizerKind::AdaBelief } else { OptimizerKind::RmsProp }
        }
        "clipgrad" => cfg.optimizer.clip_grad_norm = opt.bool()?.then_some(DFL_CLIP_GRAD_NORM),
        // 'n', 'y' or 'cpu' (where the masks are drawn); bools in older models.
        "lr_dropout" => {
            cfg.optimizer.lr_dropout = match opt.value {
                Value::Bool(b) => *b,
                _ => opt.code(&[("n", false), ("y", true), ("cpu", true)])?,
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The network from DFL's options; missing dims take DFL's defaults.
fn model_config(dims: &Dims, path: &Path) -> Result<ModelConfig, DflModelError> {
    let defaults = ModelConfig::default();
    let Some(archi) = &dims.archi else {
        return Err(DflModelError::format(path, "has no archi option; the file is not from SAEHD"));
    };
    let arch: Arch = archi.parse().map_err(|e| {
        let hint = if archi.contains('c') {
            "; the c letter (x·cos x activations) is not built by dfl"
        } else {
            ""
        };
        DflModelError::format(path, format!("{e}{hint}"))
    })?;
    let d_dims = dims.d_dims.unwrap_or(defaults.d_dims);
    let cfg = ModelConfig {
        arch,
        resolution: dims.resolution.unwrap_or(defaults.resolution),
        ae_dims: dims.ae_dims.unwrap_or(defaults.ae_dims),
        e_dims: dims.e_dims.unwrap_or(defaults.e_dims),
        d_dims,
        d_mask_dims: dims.d_mask_dims.unwrap_or_else(|| default_mask_dims(d_dims)),
    };
    cfg.validate_dims().map_err(|e| DflModelError::format(path, e.to_string()))?;
    Ok(cfg)
}

/// DFL's options dict for our options, and our options DFL cannot express (as `name=value`).
pub fn export_options(cfg: &TrainConfig) -> (Value, Vec<String>) {
    let m = &cfg.model;
    let o = &cfg.optimizer;
    let face_type = FACE_TYPES.iter().find(|(_, f)| *f == cfg.face_type).map_or("f", |(c, _)| c);
    let ct_mode = CT_MODES.iter().find(|(_, c)| *c == cfg.ct_mode).map_or("none", |(c, _)| c);
    let count = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let items: Vec<(&str, Value)> = vec![
        ("autobackup_hour", Value::Int(cfg.backup_every_hours.round() as i64)),
        ("write_preview_history", Value::Bool(cfg.preview_history)),
        ("target_iter", count(cfg.target_iter)),
        ("random_src_flip", Value::Bool(cfg.random_src_flip)),
        ("random_dst_flip", Value::Bool(cfg.random_dst_flip)),
        ("batch_size", count(cfg.batch_size as u64)),
        ("resolution", Value::Int(m.resolution)),
        ("face_type", Value::Str(face_type.to_owned())),
        ("models_opt_on_gpu", Value::Bool(true)),
        ("archi", Value::Str(m.arch.to_string())),
        ("ae_dims", Value::Int(m.ae_dims)),
        ("e_dims", Value::Int(m.e_dims)),
        ("d_dims", Value::Int(m.d_dims)),
        ("d_mask_dims", Value::Int(m.d_mask_dims)),
        ("masked_training", Value::Bool(cfg.masked_training)),
        ("eyes_mouth_prio", Value::Bool(cfg.eyes_mouth_prio)),
        ("uniform_yaw", Value::Bool(cfg.uniform_yaw)),
        ("blur_out_mask", Value::Bool(cfg.blur_out_mask)),
        ("adabelief", Value::Bool(o.kind != OptimizerKind::RmsProp)),
        ("lr_dropout", Value::Str(if o.lr_dropout { "y" } else { "n" }.to_owned())),
        ("random_warp", Value::Bool(cfg.random_warp)),
        ("random_hsv_power", Value::Float(cfg.random_hsv_power)),
        ("true_face_power", Value::Float(cfg.true_face_power)),
        ("face_style_power", Value::Float(cfg.face_style_power)),
        ("bg_style_power", Value::Float(cfg.bg_style_power)),
        ("ct_mode", Value::Str(ct_mode.to_owned())),
        ("clipgrad", Value::Bool(o.clip_grad_norm.is_some())),
        ("pretrain", Value::Bool(cfg.pretrain)),
        ("gan_power", Value::Float(cfg.gan_power)),
        ("gan_patch_size", Value::Int(cfg.gan_patch_px())),
        ("gan_dims", Value::Int(cfg.gan_dims)),
    ];
    let dict = items.into_iter().map(|(k, v)| (Value::Str(k.to_owned()), v)).collect();
    (Value::Dict(dict), not_exportable(cfg))
}

/// Our options that differ from what DFL's SAEHD can express, as `name=value`.
fn not_exportable(cfg: &TrainConfig) -> Vec<String> {
    let o = &cfg.optimizer;
    let default = TrainConfig::default();
    let checks: [(&str, bool, String); 10] = [
        ("optimizer", o.kind == OptimizerKind::Adam, "adam".to_owned()),
        ("lr", o.lr != DEFAULT_LR, o.lr.to_string()),
        ("beta1", o.beta1 != DEFAULT_BETA1, o.beta1.to_string()),
        ("beta2", o.beta2 != DEFAULT_BETA2, o.beta2.to_string()),
        ("eps", o.eps != DEFAULT_EPS, o.eps.to_string()),
        ("lr_cos", !o.lr_cos, "false".to_owned()),
        (
            "clip_grad_norm",
            o.clip_grad_norm.is_some_and(|c| c != DFL_CLIP_GRAD_NORM),
            format!("{:?}", o.clip_grad_norm),
        ),
        ("precision", cfg.precision != Precision::Fp32, format!("{:?}", cfg.precision)),
        ("seed", cfg.seed != default.seed, cfg.seed.to_string()),
        ("pretrain_faceset", cfg.pretrain_faceset.is_some(), format!("{:?}", cfg.pretrain_faceset)),
    ];
    checks
        .into_iter()
        .filter(|(_, differs, _)| *differs)
        .map(|(k, _, v)| format!("{k}={v}"))
        .collect()
}

/// A short Python-like rendering of an option's value.
fn repr(value: &Value) -> String {
    match value {
        Value::None => "None".to_owned(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Str(s) => format!("{s:?}"),
        Value::Int(_) | Value::Float(_) | Value::NpScalar(_) => value.as_i64().map_or_else(
            || value.as_f64().map_or_else(|| "?".to_owned(), |x| x.to_string()),
            |n| n.to_string(),
        ),
        other => format!("<{}>", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(items: &[(&str, Value)]) -> Value {
        Value::Dict(items.iter().map(|(k, v)| (Value::Str((*k).to_owned()), v.clone())).collect())
    }

    #[test]
    fn dfl_options_map_and_the_rest_is_listed() {
        let options = dict(&[
            ("archi", Value::Str("liae-ud".into())),
            ("resolution", Value::Int(96)),
            ("ae_dims", Value::Int(64)),
            ("face_type", Value::Str("wf".into())),
            ("adabelief", Value::Bool(false)),
            ("lr_dropout", Value::Str("cpu".into())),
            ("clipgrad", Value::Bool(true)),
            ("ct_mode", Value::Str("mkl".into())),
            ("models_opt_on_gpu", Value::Bool(true)),
            ("random_flip", Value::Bool(false)),
        ]);
        let imported = import_options(&options, Path::new("m_SAEHD_data.dat")).unwrap();
        let cfg = imported.config;
        assert_eq!(cfg.model.arch.to_string(), "liae-ud");
        assert_eq!((cfg.model.resolution, cfg.model.ae_dims, cfg.model.d_mask_dims), (96, 64, 22));
        assert_eq!(cfg.face_type, FaceType::WholeFace);
        assert_eq!(cfg.optimizer.kind, OptimizerKind::RmsProp);
        assert!(cfg.optimizer.lr_dropout);
        assert_eq!(cfg.optimizer.clip_grad_norm, Some(1.0));
        assert_eq!(cfg.ct_mode, ColorTransfer::Mkl);
        assert_eq!(imported.not_mapped, ["models_opt_on_gpu=True", "random_flip=False"]);
        // And back: every mapped option has its DFL key and value.
        let (back, lost) = export_options(&cfg);
        assert!(lost.is_empty(), "{lost:?}");
        assert_eq!(back.get("lr_dropout"), Some(&Value::Str("y".into())));
        assert_eq!(back.get("face_type"), Some(&Value::Str("wf".into())));
        assert_eq!(back.get("adabelief"), Some(&Value::Bool(false)));
        let again = import_options(&back, Path::new("x")).unwrap().config;
        assert_eq!(again.model, cfg.model);
        assert_eq!(again.optimizer, cfg.optimizer);
    }

    #[test]
    fn bad_options_name_the_file_and_the_option() {
        let path = Path::new("m_SAEHD_data.dat");
        let err =
            |items: &[(&str, Value)]| import_options(&dict(items), path).unwrap_err().to_string();
        let archi = ("archi", Value::Str("df".into()));
        assert!(
            err(&[archi.clone(), ("resolution", Value::Str("big".into()))])
                .contains("option resolution")
        );
        assert!(err(&[("archi", Value::Str("df-c".into()))]).contains("x·cos"));
        assert!(
            err(&[archi.clone(), ("face_type", Value::Str("xx".into()))])
                .contains("h, mf, f, wf, head")
        );
        assert!(err(&[archi, ("resolution", Value::Int(1 << 40))]).contains("m_SAEHD_data.dat"));
        assert!(err(&[]).contains("no archi"));
    }
}
