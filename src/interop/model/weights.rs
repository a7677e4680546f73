//! The network's weights: DFL's per-part pickled dicts to our named tensors, and back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tch::Tensor;

use super::error::DflModelError;
use super::files::{DflModelFiles, read_pickle, str_dict};
use crate::dfl_format::pickle::{NdArray, Value};
use crate::model::dfl_names::{DflName, NameMap};

/// Our weights by name, in our layout: `[O, I, kH, kW]`, `[out, in]` or `[C]` f32 on the CPU.
pub type Named = Vec<(String, Tensor)>;

/// Reads every weight file of the network `map` describes; `shapes` gives our shape of each
/// weight. Strict: each file must hold exactly its variables, each of DFL's shape.
///
/// # Errors
/// `Io` or `Pickle` for an unreadable file; `Format` naming the file and variable for a
/// missing, unexpected, mistyped or mis-shaped one.
pub fn read_weights(
    files: &DflModelFiles,
    map: &NameMap,
    shapes: &HashMap<String, Vec<i64>>,
) -> Result<Named, DflModelError> {
    let mut out = Vec::with_capacity(map.len());
    for stem in map.files() {
        let path = files.npy_path(stem);
        let value = read_pickle(&path)?;
        let mut arrays: HashMap<&str, &Value> = str_dict(&value, &path)?.into_iter().collect();
        for (ours, dfl) in map.iter().filter(|(_, d)| d.file == stem) {
            let array = arrays.remove(dfl.path.as_str()).ok_or_else(|| {
                DflModelError::format(
                    &path,
                    format!("has no variable {} (our {ours}); the model's options do not match its weights", dfl.path),
                )
            })?;
            let shape = shapes.get(ours).map_or(&[][..], Vec::as_slice);
            out.push((ours.to_owned(), to_ours(array, dfl, shape, &path)?));
        }
        if let Some(extra) = arrays.keys().min() {
            return Err(DflModelError::format(
                &path,
                format!(
                    "has a variable {extra} this {} network does not; the model's options do not match its weights",
                    files.name()
                ),
            ));
        }
    }
    Ok(out)
}

/// One DFL array as our tensor, after checking its type and shape.
fn to_ours(
    array: &Value,
    dfl: &DflName,
    ours: &[i64],
    path: &Path,
) -> Result<Tensor, DflModelError> {
    let bad = |what: String| {
        DflModelError::format(path, format!("variable {}: {what}; the file is damaged", dfl.path))
    };
    let Some(array) = array.as_array() else {
        return Err(bad(format!("holds a {}, not an array", array.type_name())));
    };
    let want = dfl
        .layout
        .dfl_shape(ours)
        .ok_or_else(|| bad(format!("our shape {ours:?} has no DFL layout")))?;
    let got: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    if got != want {
        return Err(bad(format!("shape {got:?}, but the options give {want:?}")));
    }
    let values = array
        .to_f32_vec()
        .ok_or_else(|| bad(format!("dtype {}, expected float32", array.dtype().descr())))?;
    let dfl_tensor = Tensor::from_slice(&values).view(want.as_slice());
    Ok(dfl.layout.from_dfl(&dfl_tensor))
}

/// Our weights as DFL's per-part dicts: file stem → dict {variable path → float32 array}.
///
/// # Errors
/// `Format` naming `source` when a weight has no DFL name or is not f32.
pub fn dfl_dicts(
    map: &NameMap,
    weights: &Named,
    source: &Path,
) -> Result<BTreeMap<&'static str, Value>, DflModelError> {
    let by_name: HashMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut dicts: BTreeMap<&'static str, Vec<(Value, Value)>> = BTreeMap::new();
    for (ours, dfl) in map.iter() {
        let tensor = by_name.get(ours).ok_or_else(|| {
            DflModelError::format(
                source,
                format!("has no weight {ours}; the checkpoint is incomplete"),
            )
        })?;
        let array = to_array(&dfl.layout.to_dfl(tensor)).ok_or_else(|| {
            DflModelError::format(source, format!("weight {ours} is not a float32 tensor"))
        })?;
        dicts
            .entry(dfl.file)
            .or_default()
            .push((Value::Str(dfl.path.clone()), Value::NdArray(array)));
    }
    Ok(dicts.into_iter().map(|(file, items)| (file, Value::Dict(items))).collect())
}

/// A CPU f32 tensor (already in DFL's layout) as a float32 array.
pub fn to_array(t: &Tensor) -> Option<NdArray> {
    if t.kind() != tch::Kind::Float {
        return None;
    }
    let shape: Vec<usize> =
        t.size().iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    let values = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view(-1)).ok()?;
    NdArray::from_f32(shape, &values)
}
