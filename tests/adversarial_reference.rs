//! dfl's discriminators and its GAN, true-face and style terms against an independent PyTorch
//! implementation of the same spec (`scripts/golden/saehd_gan_reference.py`): the same weights
//! and batch in, the same logits and per-sample terms out, to 1e-5. The whole training step
//! with them (and each optimizer) is checked against the same files in `src/train/trainer.rs`.

use std::collections::HashMap;
use std::path::PathBuf;

use dfl::model::adversarial::{
    code_discriminator_loss, gan_generator_loss, gan_stabilisers, patch_discriminator_loss,
    true_face_generator_loss,
};
use dfl::model::arch::ModelConfig;
mod golden;

use dfl::model::checkpoint::copy_named;
use dfl::model::discriminator::{
    CODE_BASE_CHANNELS, CodeDiscriminator, PatchLogits, UNetPatchDiscriminator, code_res,
};
use dfl::model::loss::{background_style_loss, blur_out_mask, face_style_loss, loss_mask};
use dfl::model::saehd::Saehd;
use golden::with_prefix;
use tch::nn::{self, Module};
use tch::{Device, Tensor};

/// The cases the script writes, with their patch sizes (its CASES and R).
const CASES: [(&str, i64, bool); 3] =
    [("adabelief", 4, true), ("rmsprop", 11, true), ("adam", 4, false)];
const RESOLUTION: i64 = 32;
const GAN_DIMS: i64 = 4;
const TOLERANCE: f64 = 1e-5;

fn golden(case: &str) -> HashMap<String, Tensor> {
    golden::read("saehd_gan", case)
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    golden::check(what, got, want, TOLERANCE);
}

/// Loads `prefix`ed reference weights into `vs`, strictly.
fn load(vs: &nn::VarStore, g: &HashMap<String, Tensor>, prefix: &str) {
    copy_named(&PathBuf::from(prefix), with_prefix(g, prefix), &vs.variables()).unwrap();
}

fn model_config() -> ModelConfig {
    ModelConfig {
        arch: "df".parse().unwrap(),
        resolution: RESOLUTION,
        ae_dims: 16,
        e_dims: 4,
        d_dims: 2,
        d_mask_dims: 2,
    }
}

#[test]
fn discriminators_and_every_new_loss_term_match_pytorch() {
    for (case, patch, masked) in CASES {
        let g = golden(case);
        let input = |name: &str| g[&format!("in.{name}")].shallow_clone();
        let want = |name: &str| g[&format!("term.{name}")].shallow_clone();
        let cfg = model_config();
        let (g_vs, code_vs, gan_vs) = (
            nn::VarStore::new(Device::Cpu),
            nn::VarStore::new(Device::Cpu),
            nn::VarStore::new(Device::Cpu),
        );
        let model = Saehd::new(&g_vs.root(), &cfg);
        let code_d =
            CodeDiscriminator::new(&code_vs.root(), 16, code_res(&cfg), CODE_BASE_CHANNELS);
        let gan_d = UNetPatchDiscriminator::new(&gan_vs.root(), patch, 3, GAN_DIMS);
        load(&g_vs, &g, "w.");
        load(&code_vs, &g, "code.");
        load(&gan_vs, &g, "gan.");
        let _guard = tch::no_grad_guard();

        let blurred = blur_out_mask(&input("target_src"), &input("mask_src"), RESOLUTION);
        check(&format!("{case} blur_out_mask"), &blurred, &want("blur_out_src"));
        let (t_src, t_dst) = if case == "rmsprop" {
            (input("target_src"), input("target_dst"))
        } else {
            (blurred, blur_out_mask(&input("target_dst"), &input("mask_dst"), RESOLUTION))
        };

        let pred = model.train_forward(&input("warped_src"), &input("warped_dst"));
        let swap = model.decode_swap(&pred.codes.swap);
        let face_style = face_style_loss(
            &swap.image,
            &swap.mask,
            &pred.dst_dst.image,
            &pred.dst_dst.mask,
            RESOLUTION,
            5.0,
        );
        check(&format!("{case} face style"), &face_style, &want("face_style"));
        let bg = background_style_loss(&swap.image, &t_dst, &input("mask_src"), RESOLUTION, 10.0);
        check(&format!("{case} background style"), &bg, &want("bg_style"));

        let code_logits = code_d.forward(&pred.codes.src);
        check(&format!("{case} code logits"), &code_logits, &g["logits.code"]);
        check(
            &format!("{case} true face (generator)"),
            &true_face_generator_loss(&code_logits, 0.01),
            &want("true_face_g"),
        );
        let code_loss = code_discriminator_loss(&code_d.forward(&pred.codes.dst), &code_logits);
        check(&format!("{case} code discriminator loss"), &code_loss, &want("code_d"));

        let weight = loss_mask(&input("mask_src"), RESOLUTION);
        let ss = &pred.src_src.image;
        let (seen_t, seen_p) = if masked {
            (&t_src * &weight, ss * &weight)
        } else {
            (t_src.shallow_clone(), ss.shallow_clone())
        };
        let fake = gan_d.forward(&seen_p);
        check(&format!("{case} patch center logits"), &fake.center, &g["logits.center"]);
        check(&format!("{case} patch pixel logits"), &fake.pixel, &g["logits.pixel"]);
        check(&format!("{case} GAN (generator)"), &gan_generator_loss(&fake, 0.1), &want("gan_g"));
        let real: PatchLogits = gan_d.forward(&seen_t);
        let d_loss = patch_discriminator_loss(&real, &fake);
        check(&format!("{case} patch discriminator loss"), &d_loss, &want("patch_d"));
        if masked {
            let stab = gan_stabilisers(ss, &t_src, &input("mask_src"), RESOLUTION);
            check(&format!("{case} GAN stabilisers"), &stab, &want("stabilisers"));
        }
    }
}

#[test]
fn a_deeper_code_discriminator_matches_pytorch() {
    // Three convs (4×4, then two 3×3) on a 16×16 code, base 8 channels.
    let g = golden("adabelief");
    let vs = nn::VarStore::new(Device::Cpu);
    let d = CodeDiscriminator::new(&vs.root(), 16, 16, 8);
    load(&vs, &g, "extra.code16.w.");
    let logits = tch::no_grad(|| d.forward(&g["extra.code16.in"]));
    check("code discriminator, 16×16 code", &logits, &g["extra.code16.out"]);
}
