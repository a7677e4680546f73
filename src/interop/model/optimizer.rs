//! The generator's optimizer state: DFL's `<name>_SAEHD_src_dst_opt.npy` to ours and back.
//!
//! DFL's optimizers keep one variable per weight and moment, named after the weight's full
//! TensorFlow name with `:` turned into `_`, inside the optimizer's own scope (which the file
//! drops), plus the step counter:
//!
//! ```text
//! iters:0                                          int64 0-d       → iteration [1] i64
//! ms_encoder/down1/downs_0/conv1/weight_0:0        AdaBelief m     → m.encoder.down.0.conv.weight
//! vs_encoder/down1/downs_0/conv1/weight_0:0        AdaBelief v     → v.encoder.down.0.conv.weight
//! acc_inter_AB/dense1/weight_0:0                   RMSprop a       → v.inter_ab.dense1.weight
//! ```
//!
//! Moments have their weight's layout (HWIO, (in, out)). Our RMSprop keeps its accumulator in
//! `v` and leaves `m` at zero.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::error::DflModelError;
use super::files::{DflModelFiles, OPTIMIZER_STEM, read_pickle, str_dict};
use super::weights::{Named, to_array};
use crate::dfl_format::pickle::{NdArray, Value};
use crate::model::dfl_names::{DflName, NameMap};
use crate::model::optim::{ITERATION_KEY, OptimizerKind};

/// DFL's name of the step counter.
const DFL_ITERS: &str = "iters:0";

/// DFL's moment-variable prefixes for our `m` and `v`, per optimizer (`None`: not kept).
fn prefixes(kind: OptimizerKind) -> Option<[Option<&'static str>; 2]> {
    match kind {
        OptimizerKind::AdaBelief => Some([Some("ms"), Some("vs")]),
        OptimizerKind::RmsProp => Some([None, Some("acc")]),
        OptimizerKind::Adam => None,
    }
}

/// DFL's variable name of one moment of one weight.
fn moment_key(prefix: &str, dfl: &DflName) -> String {
    let weight = format!("{}/{}", dfl.file, dfl.path).replace(':', "_");
    format!("{prefix}_{weight}:0")
}

/// Our optimizer state for `weights`, read from DFL's optimizer file, or zero moments and
/// iteration 0 with the reason when the file is missing, unreadable or for another optimizer.
pub fn import_optimizer(
    files: &DflModelFiles,
    map: &NameMap,
    weights: &Named,
    kind: OptimizerKind,
) -> (Named, Option<String>) {
    let path = files.npy_path(OPTIMIZER_STEM);
    if !path.exists() {
        let why = format!("{} is missing", path.display());
        return (fresh_state(weights), Some(why));
    }
    match read_state(&path, map, weights, kind) {
        Ok(state) => (state, None),
        Err(e) => (fresh_state(weights), Some(e.to_string())),
    }
}

/// Zero moments and iteration 0, as a new optimizer has them.
fn fresh_state(weights: &Named) -> Named {
    let mut state = vec![(ITERATION_KEY.to_owned(), Tensor::from_slice(&[0i64]))];
    for prefix in ["m", "v"] {
        state.extend(weights.iter().map(|(n, t)| (format!("{prefix}.{n}"), t.zeros_like())));
    }
    state
}

fn read_state(
    path: &std::path::Path,
    map: &NameMap,
    weights: &Named,
    kind: OptimizerKind,
) -> Result<Named, DflModelError> {
    let value = read_pickle(path)?;
    let vars: HashMap<&str, &Value> = str_dict(&value, path)?.into_iter().collect();
    let bad = |what: String| DflModelError::format(path, what);
    let iteration = vars
        .get(DFL_ITERS)
        // TensorFlow hands the counter to DeepFaceLab's saver as a numpy scalar
        // (`np.int64`); a 0-d array is read too.
        .and_then(|v| match v {
            Value::NpScalar(a) | Value::NdArray(a) if a.len() == 1 => a.to_i64_vec(),
            _ => None,
        })
        .and_then(|v| v.first().copied())
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad(format!("has no step counter {DFL_ITERS}")))?;
    let Some(prefixes) = prefixes(kind) else {
        return Err(bad("our Adam has no DFL counterpart".to_owned()));
    };
    let shapes: HashMap<&str, Vec<i64>> =
        weights.iter().map(|(n, t)| (n.as_str(), t.size())).collect();
    let mut state = vec![(ITERATION_KEY.to_owned(), Tensor::from_slice(&[iteration]))];
    for (ours_prefix, dfl_prefix) in ["m", "v"].into_iter().zip(prefixes) {
        for (ours, dfl) in map.iter() {
            let shape = shapes.get(ours).cloned().unwrap_or_default();
            let tensor = match dfl_prefix {
                None => Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu)),
                Some(p) => moment(&vars, &moment_key(p, dfl), dfl, &shape)
                    .map_err(|what| bad(format!("{what} (the options say {kind:?})")))?,
            };
            state.push((format!("{ours_prefix}.{ours}"), tensor));
        }
    }
    Ok(state)
}

/// One moment variable in our layout.
fn moment(
    vars: &HashMap<&str, &Value>,
    key: &str,
    dfl: &DflName,
    ours: &[i64],
) -> Result<Tensor, String> {
    let array =
        vars.get(key).and_then(|v| v.as_array()).ok_or_else(|| format!("has no array {key}"))?;
    let want = dfl.layout.dfl_shape(ours).unwrap_or_default();
    let got: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    if got != want {
        return Err(format!("{key} has shape {got:?}, expected {want:?}"));
    }
    let values = array.to_f32_vec().ok_or_else(|| format!("{key} is not float32"))?;
    Ok(dfl.layout.from_dfl(&Tensor::from_slice(&values).view(want.as_slice())))
}

/// DFL's optimizer dict for our state, or why there is none (Adam, or a state without the
/// tensors).
pub fn dfl_optimizer(map: &NameMap, state: &Named, kind: OptimizerKind) -> Result<Value, String> {
    let Some(prefixes) = prefixes(kind) else {
        return Err(
            "Adam's state has no DFL counterpart: DFL starts its optimizer from zero".to_owned()
        );
    };
    let by_name: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let iteration = by_name
        .get(ITERATION_KEY)
        .and_then(|t| t.f_int64_value(&[0]).ok())
        .ok_or_else(|| format!("the optimizer state has no {ITERATION_KEY}"))?;
    let mut items =
        vec![(Value::Str(DFL_ITERS.to_owned()), Value::NpScalar(NdArray::scalar_i64(iteration)))];
    for (ours_prefix, dfl_prefix) in ["m", "v"].into_iter().zip(prefixes) {
        let Some(dfl_prefix) = dfl_prefix else { continue };
        for (ours, dfl) in map.iter() {
            let name = format!("{ours_prefix}.{ours}");
            let tensor = by_name
                .get(name.as_str())
                .ok_or_else(|| format!("the optimizer state has no {name}"))?;
            let array = to_array(&dfl.layout.to_dfl(tensor))
                .ok_or_else(|| format!("{name} is not float32"))?;
            items.push((Value::Str(moment_key(dfl_prefix, dfl)), Value::NdArray(array)));
        }
    }
    Ok(Value::Dict(items))
}
