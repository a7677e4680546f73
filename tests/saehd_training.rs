//! A tiny SAEHD really learns: its loss on a fixed batch falls by more than half on the CPU,
//! and a save → load round trip of weights and optimizer state continues bit-identically.

use dfl::model::arch::ModelConfig;
use dfl::model::checkpoint::{load_weights, read_tensors, save_tensors, save_weights};
use dfl::model::loss::{LossOptions, SideBatch, side_loss};
use dfl::model::optim::{Optimizer, OptimizerConfig, trainable_variables};
use dfl::model::saehd::Saehd;
use tch::{Device, Kind, Tensor, nn};

const RESOLUTION: i64 = 32;

fn config(arch: &str) -> ModelConfig {
    ModelConfig {
        arch: arch.parse().unwrap(),
        resolution: RESOLUTION,
        ae_dims: 32,
        e_dims: 8,
        d_dims: 8,
        d_mask_dims: 8,
    }
}

/// A fixed batch of smooth synthetic "faces": per-sample colour gradients with an elliptic mask.
struct Batch {
    src: Tensor,
    dst: Tensor,
    src_mask: Tensor,
    dst_mask: Tensor,
}

fn batch(n: i64) -> Batch {
    tch::manual_seed(7);
    let opts = (Kind::Float, Device::Cpu);
    let ramp = Tensor::linspace(0.0, 1.0, RESOLUTION, opts);
    let (yy, xx) = (ramp.view([1, 1, RESOLUTION, 1]), ramp.view([1, 1, 1, RESOLUTION]));
    let face = |seed_shift: f64| {
        let colours = Tensor::rand([n, 3, 1, 1], opts);
        let tilt = Tensor::rand([n, 3, 1, 1], opts) - 0.5;
        (colours * 0.6 + &yy * &tilt + &xx * (0.3 - seed_shift)).clamp(0.0, 1.0)
    };
    let mask =
        ((&yy - 0.5).square() / 0.16 + (&xx - 0.5).square() / 0.09).le(1.0).to_kind(Kind::Float);
    let mask = mask.expand([n, 1, RESOLUTION, RESOLUTION], false).contiguous();
    Batch { src: face(0.0), dst: face(0.2), src_mask: mask.shallow_clone(), dst_mask: mask }
}

/// One DFL training step; returns the mean of src_loss + dst_loss before the update.
fn step(model: &Saehd, opt: &mut Optimizer, b: &Batch) -> f64 {
    opt.zero_grad();
    let pred = model.train_forward(&b.src, &b.dst);
    let opts = LossOptions::default();
    let side = |target, target_mask, pred: &dfl::model::saehd::Prediction| {
        let batch = SideBatch {
            target,
            target_mask,
            target_eyes_mouth: None,
            pred: &pred.image,
            pred_mask: &pred.mask,
        };
        side_loss(&batch, RESOLUTION, &opts)
    };
    let loss = side(&b.src, &b.src_mask, &pred.src_src) + side(&b.dst, &b.dst_mask, &pred.dst_dst);
    loss.sum(Kind::Float).backward();
    opt.step().unwrap();
    loss.mean(Kind::Float).double_value(&[])
}

#[test]
fn a_tiny_model_halves_its_loss_on_a_fixed_batch() {
    for arch in ["df-ud", "liae-ud"] {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Saehd::new(&vs.root(), &config(arch));
        let cfg = OptimizerConfig { lr: 5e-4, ..Default::default() };
        let mut opt = Optimizer::new(trainable_variables(&vs), cfg).unwrap();
        let b = batch(4);
        let first = step(&model, &mut opt, &b);
        let last = (0..150).map(|_| step(&model, &mut opt, &b)).last().unwrap();
        eprintln!("{arch}: loss {first:.4} → {last:.4}");
        assert!(last < first * 0.5, "{arch}: loss went from {first} to {last}, not below half");
    }
}

#[test]
fn saving_and_loading_weights_and_optimizer_state_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (weights, state) =
        (tmp.path().join("model.safetensors"), tmp.path().join("optimizer.safetensors"));
    let b = batch(2);
    let cfg = OptimizerConfig { lr: 5e-4, lr_dropout: false, ..Default::default() };

    tch::manual_seed(3);
    let vs_a = nn::VarStore::new(Device::Cpu);
    let model_a = Saehd::new(&vs_a.root(), &config("liae-ud"));
    let mut opt_a = Optimizer::new(trainable_variables(&vs_a), cfg.clone()).unwrap();
    for _ in 0..3 {
        step(&model_a, &mut opt_a, &b);
    }
    save_weights(&vs_a, &weights).unwrap();
    save_tensors(&state, &opt_a.state()).unwrap();

    tch::manual_seed(4); // other initial weights: everything must come from the files
    let vs_b = nn::VarStore::new(Device::Cpu);
    let model_b = Saehd::new(&vs_b.root(), &config("liae-ud"));
    let mut opt_b = Optimizer::new(trainable_variables(&vs_b), cfg).unwrap();
    load_weights(&vs_b, &weights).unwrap();
    opt_b.load_state(&read_tensors(&state).unwrap()).unwrap();
    assert_eq!(opt_b.iteration(), opt_a.iteration());

    let (loss_a, loss_b) = (step(&model_a, &mut opt_a, &b), step(&model_b, &mut opt_b, &b));
    assert_eq!(loss_a.to_bits(), loss_b.to_bits(), "the next loss is identical");
    let (va, vb) = (vs_a.variables(), vs_b.variables());
    for (name, a) in &va {
        assert!(a.equal(&vb[name]), "{name} differs after the next step");
    }
}
