//! dfl's XSeg against an independent PyTorch implementation of the same network
//! (`scripts/golden/xseg_reference.py`): the same weights and batch in; the same logits, masks,
//! pretraining output, losses and gradients out, and the same weights after one RMSprop step,
//! to 1e-5 (5e-5 for the logits, whose float32 rounding the script measured at 1.4e-5).

use std::collections::HashMap;
use std::path::PathBuf;

mod golden;

use dfl::model::checkpoint::copy_named;
use dfl::model::optim::{Optimizer, OptimizerConfig, OptimizerKind, trainable_variables};
use dfl::model::xseg::{XSeg, xseg_loss, xseg_pretrain_loss};
use golden::{check, with_prefix};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// (file, resolution, base channels), as the script's CASES.
const CASES: [(&str, i64, i64); 2] = [("r64_b4", 64, 4), ("r128_b2", 128, 2)];
const TOLERANCE: f64 = 1e-5;
const OUTPUT_TOLERANCE: f64 = 5e-5;
const STEP_LR: f64 = 1e-3;

fn golden(case: &str) -> HashMap<String, Tensor> {
    golden::read("xseg", case)
}

/// The grey target of pretraining: OpenCV's BGR → grey weights.
fn grey(bgr: &Tensor) -> Tensor {
    let w = Tensor::from_slice(&[0.114f32, 0.587, 0.299]).view([1, 3, 1, 1]);
    (bgr * w).sum_dim_intlist(&[1i64][..], true, Kind::Float)
}

#[test]
fn xseg_forward_losses_gradients_and_one_rmsprop_step_match_pytorch() {
    for (case, resolution, base) in CASES {
        let g = golden(case);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = XSeg::new(&vs.root(), resolution, 3, base, 1);
        let names = vs.variables();
        let weights = with_prefix(&g, "w.");
        assert_eq!(weights.len(), names.len(), "{case}: the same variables");
        copy_named(&PathBuf::from(case), weights, &names).unwrap();

        let (image, mask) = (&g["in.image"], &g["in.mask"]);
        let (logits, sigmoid) = net.forward(image, false);
        check(&format!("{case} logits"), &logits, &g["out.logits"], OUTPUT_TOLERANCE);
        check(&format!("{case} sigmoid"), &sigmoid, &g["out.sigmoid"], OUTPUT_TOLERANCE);
        let (_, pre) = net.forward(image, true);
        check(&format!("{case} pretrain"), &pre, &g["out.pretrain_sigmoid"], OUTPUT_TOLERANCE);
        let pre_loss = xseg_pretrain_loss(&pre, &grey(image));
        check(&format!("{case} pretrain loss"), &pre_loss, &g["loss.pretrain"], TOLERANCE);

        let loss = xseg_loss(&logits, mask);
        check(&format!("{case} loss"), &loss, &g["loss.xseg"], TOLERANCE);
        loss.sum(Kind::Float).backward();
        for (name, want) in with_prefix(&g, "grad.") {
            check(&format!("{case} grad {name}"), &names[&name].grad(), &want, TOLERANCE);
        }

        // The optimizer on the reference gradients, so the step is checked on its own.
        let cfg =
            OptimizerConfig { kind: OptimizerKind::RmsProp, lr: STEP_LR, ..Default::default() };
        let mut opt = Optimizer::new(trainable_variables(&vs), cfg).unwrap();
        tch::no_grad(|| {
            for (name, want) in with_prefix(&g, "grad.") {
                names[&name].grad().copy_(&want);
            }
        });
        opt.step().unwrap();
        for (name, want) in with_prefix(&g, "step.") {
            check(&format!("{case} step {name}"), &names[&name], &want, TOLERANCE);
        }
    }
}
