//! The DFM export (issue 18): SAEHD's merge pass written as ONNX by dfl, read back by OpenCV's
//! DNN importer and run at batch 2 and batch 1, must give dfl's own tch merge outputs to 1e-4
//! for every archi family and letter; the file must declare DeepFaceLive's contract.

use std::collections::HashMap;
use std::path::PathBuf;

use dfl::model::arch::ModelConfig;
use dfl::model::checkpoint::{copy_named, read_tensors};
use dfl::model::folder::config::TrainConfig;
use dfl::model::folder::state::TrainState;
use dfl::model::folder::{ModelFolder, WEIGHTS_FILE};
use dfl::model::onnx_export::{
    BATCH_AXIS, ExportError, INPUT_FACE, OUTPUT_DST_MASK, OUTPUT_SWAP_FACE, OUTPUT_SWAP_MASK,
    export_merge_onnx,
};
use dfl::model::saehd::Saehd;
use dfl::onnx::proto::tensor_shape_proto::dimension::Value as DimValue;
use dfl::onnx::proto::{ModelProto, type_proto};
use opencv::core::{CV_32F, Mat, Scalar, Vector};
use opencv::dnn;
use opencv::prelude::*;
use prost::Message;
use tch::{Device, Kind, Tensor, nn};

/// The resolution of the golden SAEHD cases (`tests/data/golden/saehd/README.md`).
const RESOLUTION: i64 = 64;
/// Largest difference allowed between OpenCV's run of the file and tch's merge pass.
const TOLERANCE: f64 = 1e-4;
/// The outputs in DeepFaceLive's order, with their channel counts.
const OUTPUTS: [(&str, i64); 3] =
    [(OUTPUT_DST_MASK, 1), (OUTPUT_SWAP_FACE, 3), (OUTPUT_SWAP_MASK, 1)];
/// Standard deviation of the noise added to every bias (Glorot init leaves them at zero, which
/// would not test that they are wired).
const BIAS_NOISE: f64 = 0.2;
/// Factor on every kernel: at the tiny dims the initial weights give outputs within ±0.05 of
/// 0.5; this spreads them over most of [0,1] (std 0.1–0.35) without saturating, so a wrong
/// operator shows far above the tolerance.
const WEIGHT_GAIN: f64 = 1.5;
/// Least standard deviation of the swapped faces for the comparison to mean something.
const MIN_FACE_SPREAD: f64 = 0.05;

/// The golden cases' tiny dimensions.
fn tiny_config(archi: &str) -> ModelConfig {
    ModelConfig {
        arch: archi.parse().unwrap(),
        resolution: RESOLUTION,
        ae_dims: 16,
        e_dims: 4,
        d_dims: 2,
        d_mask_dims: 2,
    }
}

/// The golden reference weights of `archi`, when `tests/data/golden/saehd/` has them.
fn golden_weights(archi: &str) -> Option<Vec<(String, Tensor)>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/golden/saehd/{archi}.safetensors"));
    let all = read_tensors(&path).ok()?;
    let weights = all
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("w.").map(|name| (name.to_owned(), v)))
        .collect();
    Some(weights)
}

/// Builds `archi` with the golden weights (or seeded Glorot ones), kernels scaled by
/// [`WEIGHT_GAIN`] and biases nudged by seeded noise.
fn model(archi: &str, seed: i64) -> (nn::VarStore, Saehd, ModelConfig) {
    tch::manual_seed(seed);
    let cfg = tiny_config(archi);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Saehd::new(&vs.root(), &cfg);
    if let Some(weights) = golden_weights(archi) {
        copy_named(&PathBuf::from(archi), weights, &vs.variables()).unwrap();
    }
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with(".bias") {
                let _ =
                    t.g_add_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * BIAS_NOISE));
            } else {
                let _ = t.g_mul_scalar_(WEIGHT_GAIN);
            }
        }
    });
    (vs, model, cfg)
}

/// A seeded batch of faces: NHWC values for the file and the same faces NCHW for tch.
///
/// # Shapes
/// `[n, R, R, 3]` f32 in [0,1], BGR, flattened; and `[n, 3, R, R]`.
fn faces(n: i64, seed: i64) -> (Vec<f32>, Tensor) {
    tch::manual_seed(seed);
    let nhwc = Tensor::rand([n, RESOLUTION, RESOLUTION, 3], (Kind::Float, Device::Cpu));
    let values = Vec::<f32>::try_from(nhwc.flatten(0, -1)).unwrap();
    (values, nhwc.permute([0, 3, 1, 2]).contiguous())
}

/// Runs the file through OpenCV's DNN importer; returns the outputs in [`OUTPUTS`] order,
/// each NHWC flattened.
fn run_opencv(bytes: &[u8], nhwc: &[f32], n: i64) -> Vec<Vec<f32>> {
    let mut net = dnn::read_net_from_onnx_buffer(&Vector::from_slice(bytes)).unwrap();
    net.set_preferable_backend(dnn::DNN_BACKEND_OPENCV).unwrap();
    net.set_preferable_target(dnn::DNN_TARGET_CPU).unwrap();
    let r = RESOLUTION as i32;
    let mut blob =
        Mat::new_nd_with_default(&[n as i32, r, r, 3], CV_32F, Scalar::all(0.0)).unwrap();
    blob.data_typed_mut::<f32>().unwrap().copy_from_slice(nhwc);
    net.set_input(&blob, "", 1.0, Scalar::default()).unwrap();
    let names: Vector<String> = OUTPUTS.iter().map(|(name, _)| *name).collect();
    let mut outs: Vector<Mat> = Vector::new();
    net.forward(&mut outs, &names).unwrap();
    outs.iter().map(|m| m.data_typed::<f32>().unwrap().to_vec()).collect()
}

/// tch's merge pass, in [`OUTPUTS`] order, each NHWC flattened.
fn run_tch(model: &Saehd, nchw: &Tensor) -> Vec<Vec<f32>> {
    let pred = tch::no_grad(|| model.merge_forward(nchw));
    [&pred.dst_mask, &pred.swap.image, &pred.swap.mask]
        .iter()
        .map(|t| Vec::<f32>::try_from(t.permute([0, 2, 3, 1]).contiguous().flatten(0, -1)).unwrap())
        .collect()
}

/// The population standard deviation of `xs`.
fn std_dev(xs: &[f32]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    (xs.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}

/// Exports `archi` and checks OpenCV's outputs against tch's at batch 2 and 1.
fn check_archi(archi: &str) {
    let (vs, model, cfg) = model(archi, 7);
    let bytes = export_merge_onnx(&cfg, &vs.variables()).unwrap();
    for (n, seed) in [(2, 11), (1, 12)] {
        let (nhwc, nchw) = faces(n, seed);
        let got = run_opencv(&bytes, &nhwc, n);
        let want = run_tch(&model, &nchw);
        let spread = std_dev(&want[1]);
        assert!(
            spread > MIN_FACE_SPREAD,
            "{archi}: the swapped faces are near-constant ({spread})"
        );
        for ((name, c), (g, w)) in OUTPUTS.iter().zip(got.iter().zip(&want)) {
            assert_eq!(g.len() as i64, n * RESOLUTION * RESOLUTION * c, "{archi} {name} size");
            let diff = max_abs_diff(g, w);
            eprintln!("{archi} batch {n} {name}: max |Δ| {diff:.2e}");
            assert!(
                diff <= TOLERANCE,
                "{archi} batch {n} {name}: max |Δ| {diff:e} > {TOLERANCE:e}"
            );
        }
    }
}

#[test]
fn df_runs_in_opencv_like_tch() {
    check_archi("df");
}

#[test]
fn liae_runs_in_opencv_like_tch() {
    check_archi("liae");
}

#[test]
fn liae_ud_runs_in_opencv_like_tch() {
    check_archi("liae-ud");
}

#[test]
fn df_udt_runs_in_opencv_like_tch() {
    check_archi("df-udt");
}

#[test]
fn liae_t_runs_in_opencv_like_tch() {
    check_archi("liae-t");
}

/// Returns a value's dims: fixed sizes as numbers, named ones as their names.
fn dims_of(v: &dfl::onnx::proto::ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("{} is not a tensor", v.name);
    };
    t.shape
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(DimValue::DimValue(n)) => n.to_string(),
            Some(DimValue::DimParam(s)) => s.clone(),
            None => "?".to_owned(),
        })
        .collect()
}

#[test]
fn the_file_declares_deepfacelives_contract() {
    let (vs, _model, cfg) = model("liae-ud", 3);
    let bytes = export_merge_onnx(&cfg, &vs.variables()).unwrap();
    let file = ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(file.ir_version, 7);
    assert_eq!(file.producer_name, "dfl");
    assert_eq!(file.opset_import.len(), 1);
    assert_eq!((file.opset_import[0].domain.as_str(), file.opset_import[0].version), ("", 12));
    let graph = file.graph.unwrap();
    let r = RESOLUTION.to_string();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, INPUT_FACE);
    assert_eq!(dims_of(&graph.input[0]), [BATCH_AXIS, &r, &r, "3"]);
    let outputs: Vec<(String, Vec<String>)> =
        graph.output.iter().map(|o| (o.name.clone(), dims_of(o))).collect();
    let expected: Vec<(String, Vec<String>)> = OUTPUTS
        .iter()
        .map(|(name, c)| {
            ((*name).to_owned(), vec![BATCH_AXIS.into(), r.clone(), r.clone(), c.to_string()])
        })
        .collect();
    assert_eq!(outputs, expected);
    // Every weight is stored once, as f32, under its checkpoint name (LIAE's decoder runs
    // twice but is stored once).
    let inits: HashMap<&str, i32> =
        graph.initializer.iter().map(|t| (t.name.as_str(), t.data_type)).collect();
    for name in vs.variables().keys() {
        assert_eq!(inits.get(name.as_str()), Some(&1), "{name} is not an f32 initializer");
        // A second copy would have been renamed `<name>_1`.
        assert!(!inits.contains_key(format!("{name}_1").as_str()), "{name} is stored twice");
    }
}

#[test]
fn weights_of_another_configuration_are_refused_by_name() {
    let (vs, _model, cfg) = model("df", 5);
    let other = ModelConfig { d_mask_dims: 4, ..cfg };
    let err = export_merge_onnx(&other, &vs.variables()).unwrap_err();
    assert!(matches!(err, ExportError::WeightShape { .. }), "{err}");
    assert!(err.to_string().contains("decoder_src.upscalem.0.conv.weight"), "{err}");
    let liae = ModelConfig { arch: "liae".parse().unwrap(), ..cfg };
    let err = export_merge_onnx(&liae, &vs.variables()).unwrap_err();
    assert!(err.to_string().contains("no tensor inter_ab.dense1.weight"), "{err}");
}

/// The path `export_dfm` takes: a model folder's latest checkpoint, loaded strictly.
#[test]
fn a_saved_model_folder_exports_what_it_merges() {
    let (vs, model, cfg) = model("df-ud", 9);
    let tmp = tempfile::tempdir().unwrap();
    let folder = ModelFolder::new(tmp.path().join("me"));
    folder.write_config(&TrainConfig { model: cfg, ..Default::default() }).unwrap();
    let weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let state = TrainState { iteration: 42, ..Default::default() };
    folder.save(&weights, &[], &[], &state).unwrap();

    let loaded = folder.load_weights().unwrap().unwrap();
    let read_cfg = folder.read_config().unwrap().unwrap().effective().model;
    let vs2 = nn::VarStore::new(Device::Cpu);
    let _ = Saehd::new(&vs2.root(), &read_cfg);
    copy_named(&loaded.dir.join(WEIGHTS_FILE), loaded.weights, &vs2.variables()).unwrap();
    let bytes = export_merge_onnx(&read_cfg, &vs2.variables()).unwrap();

    let (nhwc, nchw) = faces(2, 13);
    for (g, w) in run_opencv(&bytes, &nhwc, 2).iter().zip(&run_tch(&model, &nchw)) {
        assert!(max_abs_diff(g, w) <= TOLERANCE);
    }
}
