//! dfl's SAEHD against an independent PyTorch implementation of the same spec
//! (`scripts/golden/saehd_reference.py`): same weights and batch in, the same outputs, losses
//! and AdaBelief step out, to 1e-5. This checks the wiring, the DCR shuffle order, the losses
//! and the optimizer, not only shapes.

use std::collections::HashMap;
use std::path::PathBuf;

use dfl::model::arch::ModelConfig;
use dfl::model::checkpoint::{load_weights, read_tensors, save_tensors};
use dfl::model::loss::{LossOptions, SideBatch, side_loss};
use dfl::model::optim::{Optimizer, OptimizerConfig, trainable_variables};
use dfl::model::saehd::Saehd;
use tch::{Device, Tensor, nn};

/// The cases the script writes (its CASES, BATCH and STEP_LR).
const ARCHIS: [&str; 3] = ["df", "liae-ud", "df-udt"];
const RESOLUTION: i64 = 64;
const STEP_LR: f64 = 1e-3;
const TOLERANCE: f64 = 1e-5;

fn golden(archi: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/golden/saehd/{archi}.safetensors"));
    read_tensors(&path).unwrap().into_iter().collect()
}

/// Returns the tensors whose names start with `prefix`, with the prefix removed.
fn with_prefix(all: &HashMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = all
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix).map(|name| (name.to_owned(), v.shallow_clone()))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    let diff = max_diff(got, want);
    assert!(diff <= TOLERANCE, "{what}: max |Δ| {diff:e} > {TOLERANCE:e}");
}

/// Builds the archi and loads the reference's initial weights strictly, via a checkpoint file.
fn model_with_reference_weights(archi: &str, g: &HashMap<String, Tensor>) -> (nn::VarStore, Saehd) {
    let cfg = ModelConfig {
        arch: archi.parse().unwrap(),
        resolution: RESOLUTION,
        ae_dims: 16,
        e_dims: 4,
        d_dims: 2,
        d_mask_dims: 2,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Saehd::new(&vs.root(), &cfg);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("reference.safetensors");
    save_tensors(&path, &with_prefix(g, "w.")).unwrap();
    load_weights(&vs, &path).unwrap();
    (vs, model)
}

#[test]
fn forward_losses_and_one_adabelief_step_match_pytorch() {
    for archi in ARCHIS {
        let g = golden(archi);
        let (vs, model) = model_with_reference_weights(archi, &g);
        let input = |name: &str| g[&format!("in.{name}")].shallow_clone();
        let out = |name: &str| g[&format!("out.{name}")].shallow_clone();

        let pred = model.train_forward(&input("warped_src"), &input("warped_dst"));
        check(&format!("{archi} src→src"), &pred.src_src.image, &out("src_src"));
        check(&format!("{archi} src→src mask"), &pred.src_src.mask, &out("src_src_mask"));
        check(&format!("{archi} dst→dst"), &pred.dst_dst.image, &out("dst_dst"));
        check(&format!("{archi} dst→dst mask"), &pred.dst_dst.mask, &out("dst_dst_mask"));
        let swap = tch::no_grad(|| model.swap(&input("warped_dst")));
        check(&format!("{archi} swap"), &swap.image, &out("swap"));
        check(&format!("{archi} swap mask"), &swap.mask, &out("swap_mask"));

        let opts = LossOptions { masked_training: true, eyes_mouth_prio: true };
        let (em_src, em_dst) = (input("em_src"), input("em_dst"));
        let src = SideBatch {
            target: &input("target_src"),
            target_mask: &input("mask_src"),
            target_eyes_mouth: Some(&em_src),
            pred: &pred.src_src.image,
            pred_mask: &pred.src_src.mask,
        };
        let dst = SideBatch {
            target: &input("target_dst"),
            target_mask: &input("mask_dst"),
            target_eyes_mouth: Some(&em_dst),
            pred: &pred.dst_dst.image,
            pred_mask: &pred.dst_dst.mask,
        };
        let (src_loss, dst_loss) =
            (side_loss(&src, RESOLUTION, &opts), side_loss(&dst, RESOLUTION, &opts));
        check(&format!("{archi} src loss"), &src_loss, &g["loss.src"]);
        check(&format!("{archi} dst loss"), &dst_loss, &g["loss.dst"]);

        // DFL differentiates the per-sample losses' sum over the batch.
        let cfg = OptimizerConfig { lr: STEP_LR, ..Default::default() };
        let mut opt = Optimizer::new(trainable_variables(&vs), cfg).unwrap();
        (src_loss + dst_loss).sum(tch::Kind::Float).backward();
        opt.step().unwrap();
        let stepped = vs.variables();
        for (name, want) in with_prefix(&g, "step.") {
            check(&format!("{archi} {name} after one step"), &stepped[&name], &want);
        }
        // The step really moved the weights (so the comparison above is not vacuous).
        let moved =
            max_diff(&stepped["encoder.down.0.conv.weight"], &g["w.encoder.down.0.conv.weight"]);
        assert!(moved > 1e-3, "{archi}: the step moved weights by only {moved:e}");
    }
}
