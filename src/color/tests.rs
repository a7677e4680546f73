//! Tests of the public colour-transfer API across all modes (the per-mode maths is tested in
//! each mode's file).

use std::time::Instant;

use clap::ValueEnum;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stats::{covariance, mean, std_dev};
use super::*;

const TRAIN_MODES: [ColorTransfer; 6] = [
    ColorTransfer::None,
    ColorTransfer::Rct,
    ColorTransfer::Lct,
    ColorTransfer::Mkl,
    ColorTransfer::Idt,
    ColorTransfer::Sot,
];

const MERGE_MODES: [MergeColorTransfer; 9] = [
    MergeColorTransfer::None,
    MergeColorTransfer::Rct,
    MergeColorTransfer::Lct,
    MergeColorTransfer::Mkl,
    MergeColorTransfer::MklM,
    MergeColorTransfer::Idt,
    MergeColorTransfer::IdtM,
    MergeColorTransfer::SotM,
    MergeColorTransfer::MixM,
];

/// The `-m` modes, which see only `prd·A` and `dst·A`.
const BLACKENING_MODES: [MergeColorTransfer; 4] = [
    MergeColorTransfer::MklM,
    MergeColorTransfer::IdtM,
    MergeColorTransfer::SotM,
    MergeColorTransfer::MixM,
];

fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A smooth image plus noise: channel c is `base[c] + du[c]·u + dv[c]·v` at (u, v) in [0, 1]².
fn smooth(size: usize, base: [f32; 3], du: [f32; 3], dv: [f32; 3], rng: &mut ChaCha8Rng) -> Image {
    let mut data = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f32 / size as f32, y as f32 / size as f32);
            data.extend(
                (0..3).map(|c| base[c] + du[c] * u + dv[c] * v + rng.random_range(-0.02..0.02)),
            );
        }
    }
    Image { data, width: size, height: size }
}

/// A low-saturation face-like src and a differently lit reference.
fn pair(size: usize, seed: u64) -> (Image, Image) {
    let mut rng = seeded(seed);
    let src = smooth(size, [0.35, 0.4, 0.45], [0.2, 0.15, 0.1], [0.05, 0.1, 0.15], &mut rng);
    let reference = smooth(size, [0.2, 0.35, 0.55], [0.05, 0.1, 0.2], [0.15, 0.1, 0.05], &mut rng);
    (src, reference)
}

/// A mask whose support is a centred disc (soft inside, exactly 0 outside).
fn disc_mask(size: usize) -> Vec<f32> {
    let c = size as f32 / 2.0;
    let mut mask = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let r = ((x as f32 + 0.5 - c).hypot(y as f32 + 0.5 - c)) / c;
            mask.push(if r < 0.7 { (1.0 - r).min(1.0) } else { 0.0 });
        }
    }
    mask
}

/// Sum over channels of |Δ mean| + |Δ std| between two images.
fn stats_distance(a: &Image, b: &Image) -> f64 {
    let (ma, mb) = (mean(&a.data), mean(&b.data));
    let (sa, sb) = (std_dev(&a.data, ma), std_dev(&b.data, mb));
    (0..3).map(|c| (ma[c] - mb[c]).abs() + (sa[c] - sb[c]).abs()).sum()
}

fn max_diff(a: &Image, b: &Image) -> f32 {
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn assert_unit_range(image: &Image, what: &str) {
    assert!(image.data.iter().all(|v| (0.0..=1.0).contains(v)), "{what}: outside [0, 1]");
}

fn train(mode: ColorTransfer, src: &Image, reference: &Image, seed: u64) -> Image {
    transfer(mode, src, reference, &mut seeded(seed)).expect("valid test images")
}

fn merge(mode: MergeColorTransfer, prd: &Image, dst: &Image, mask: &[f32], seed: u64) -> Image {
    transfer_masked(mode, prd, dst, mask, &mut seeded(seed)).expect("valid test images")
}

#[test]
fn every_mode_maps_an_image_onto_itself() {
    let (src, _) = pair(32, 1);
    for mode in TRAIN_MODES {
        let out = train(mode, &src, &src, 2);
        assert!(max_diff(&out, &src) < 1e-4, "{mode:?}: {}", max_diff(&out, &src));
    }
    let ones = vec![1.0; 32 * 32];
    for mode in MERGE_MODES {
        let out = merge(mode, &src, &src, &ones, 2);
        // mix-m round-trips the chroma through a fixed-lightness BGR image.
        let tol = if mode == MergeColorTransfer::MixM { 2e-3 } else { 1e-4 };
        assert!(max_diff(&out, &src) < tol, "{mode:?}: {}", max_diff(&out, &src));
    }
}

#[test]
fn lct_and_mkl_match_mean_and_covariance_and_rct_the_lab_mean() {
    let (src, reference) = pair(48, 3);
    for mode in [ColorTransfer::Lct, ColorTransfer::Mkl] {
        let out = train(mode, &src, &reference, 4);
        let (mo, mr) = (mean(&out.data), mean(&reference.data));
        let (co, cr) = (covariance(&out.data, mo), covariance(&reference.data, mr));
        for i in 0..3 {
            assert!((mo[i] - mr[i]).abs() < 1e-5, "{mode:?} mean {mo:?} vs {mr:?}");
            for j in 0..3 {
                assert!((co[i][j] - cr[i][j]).abs() < 2e-5, "{mode:?} cov {co:?} vs {cr:?}");
            }
        }
    }
    let out = train(ColorTransfer::Rct, &src, &reference, 4);
    let (mo, mr) = (mean(&lab::bgr_to_lab(&out.data)), mean(&lab::bgr_to_lab(&reference.data)));
    assert!((0..3).all(|c| (mo[c] - mr[c]).abs() < 1e-3), "rct Lab mean {mo:?} vs {mr:?}");
}

#[test]
fn idt_and_sot_move_the_statistics_toward_the_reference() {
    let (src, reference) = pair(48, 5);
    let before = stats_distance(&src, &reference);
    for mode in [ColorTransfer::Idt, ColorTransfer::Sot] {
        let after = stats_distance(&train(mode, &src, &reference, 6), &reference);
        // idt moves 1/20 of the way per rotation: about 1 − (19/20)²⁰ ≈ 64 % in all.
        let limit = if mode == ColorTransfer::Idt { 0.5 } else { 0.25 };
        assert!(after < limit * before, "{mode:?}: distance {before} -> {after}");
    }
    let mask = vec![1.0; 48 * 48];
    for mode in [MergeColorTransfer::SotM, MergeColorTransfer::MixM] {
        let after = stats_distance(&merge(mode, &src, &reference, &mask, 6), &reference);
        assert!(after < 0.25 * before, "{mode:?}: distance {before} -> {after}");
    }
}

#[test]
fn random_modes_are_deterministic_for_a_seed() {
    let (src, reference) = pair(24, 7);
    for mode in [ColorTransfer::Idt, ColorTransfer::Sot] {
        let a = train(mode, &src, &reference, 8);
        assert_eq!(a, train(mode, &src, &reference, 8), "{mode:?}");
        assert_ne!(a, train(mode, &src, &reference, 9), "{mode:?} ignores the seed");
    }
    let mask = disc_mask(24);
    for mode in [MergeColorTransfer::IdtM, MergeColorTransfer::SotM, MergeColorTransfer::MixM] {
        let a = merge(mode, &src, &reference, &mask, 8);
        assert_eq!(a, merge(mode, &src, &reference, &mask, 8), "{mode:?}");
    }
}

/// Returns `image` with every pixel outside the mask's support replaced by noise.
fn scramble_outside(image: &Image, mask: &[f32], seed: u64) -> Image {
    let mut rng = seeded(seed);
    let mut out = image.clone();
    for (px, &m) in out.data.chunks_exact_mut(3).zip(mask) {
        if m <= 0.0 {
            px.iter_mut().for_each(|v| *v = rng.random());
        }
    }
    out
}

#[test]
fn masked_rct_ignores_everything_outside_the_mask_but_the_output_pixels() {
    let (prd, dst) = pair(32, 10);
    let mask = disc_mask(32);
    let out = merge(MergeColorTransfer::Rct, &prd, &dst, &mask, 0);
    let dst2 = scramble_outside(&dst, &mask, 11);
    assert_eq!(out, merge(MergeColorTransfer::Rct, &prd, &dst2, &mask, 0), "dst outside");
    let prd2 = scramble_outside(&prd, &mask, 12);
    let out2 = merge(MergeColorTransfer::Rct, &prd2, &dst, &mask, 0);
    for ((a, b), &m) in out.data.chunks_exact(3).zip(out2.data.chunks_exact(3)).zip(&mask) {
        assert!(m <= 0.0 || a == b, "prd outside the mask changed a pixel inside it");
    }
}

#[test]
fn masked_rct_counts_the_zeroed_pixels() {
    // ⚠ DFL parity: each Lab channel moves as (x − μ_p)·σ_d/σ_p + μ_d with the statistics of
    // the whole squares after zeroing the pixels outside the mask.
    let (prd, dst) = pair(32, 13);
    let mask = disc_mask(32);
    let area: Vec<bool> = mask.iter().map(|&m| m > 0.0).collect();
    let zeroed_lab = |img: &Image| apply_area(&img.with_data(lab::bgr_to_lab(&img.data)), &area);
    let (zp, zd) = (zeroed_lab(&prd).data, zeroed_lab(&dst).data);
    let (mp, md) = (mean(&zp), mean(&zd));
    let (sp, sd) = (std_dev(&zp, mp), std_dev(&zd, md));
    let out = merge(MergeColorTransfer::Rct, &prd, &dst, &mask, 0);
    let (prd_lab, out_lab) = (lab::bgr_to_lab(&prd.data), lab::bgr_to_lab(&out.data));
    let mut checked = 0;
    for (i, (p, o)) in prd_lab.chunks_exact(3).zip(out_lab.chunks_exact(3)).enumerate() {
        if out.data[i * 3..i * 3 + 3].iter().any(|&v| v <= 0.0 || v >= 1.0) {
            continue; // out of gamut: BGR clipping moved the colour
        }
        checked += 1;
        for c in 0..3 {
            let expected = (f64::from(p[c]) - mp[c]) * sd[c] / sp[c] + md[c];
            assert!((f64::from(o[c]) - expected).abs() < 1e-2, "pixel {i} channel {c}");
        }
    }
    assert!(checked > prd.pixel_count() / 2, "only {checked} pixels in gamut");
}

#[test]
fn blackening_modes_are_the_plain_modes_on_masked_faces() {
    let (prd, dst) = pair(32, 14);
    let mask = disc_mask(32);
    let area: Vec<bool> = mask.iter().map(|&m| m > 0.0).collect();
    let (pa, da) = (apply_area(&prd, &area), apply_area(&dst, &area));
    let (prd2, dst2) = (scramble_outside(&prd, &mask, 15), scramble_outside(&dst, &mask, 16));
    for mode in BLACKENING_MODES {
        let out = merge(mode, &prd, &dst, &mask, 17);
        assert_eq!(out, merge(mode, &prd2, &dst2, &mask, 17), "{mode:?} looks outside A");
    }
    let mkl = train(ColorTransfer::Mkl, &pa, &da, 17);
    assert_eq!(merge(MergeColorTransfer::MklM, &prd, &dst, &mask, 17), mkl);
    let idt = train(ColorTransfer::Idt, &pa, &da, 17);
    assert_eq!(merge(MergeColorTransfer::IdtM, &prd, &dst, &mask, 17), idt);
    let sot = sot::transfer(&pa, &da.data, sot::MERGE_DIRECTIONS, &mut seeded(17));
    assert_eq!(merge(MergeColorTransfer::SotM, &prd, &dst, &mask, 17).data, clip_unit(sot));
}

#[test]
fn whole_crop_merge_modes_are_the_training_modes() {
    let (prd, dst) = pair(24, 18);
    let mask = disc_mask(24);
    let pairs = [
        (MergeColorTransfer::Lct, ColorTransfer::Lct),
        (MergeColorTransfer::Mkl, ColorTransfer::Mkl),
        (MergeColorTransfer::Idt, ColorTransfer::Idt),
    ];
    for (m, t) in pairs {
        assert_eq!(merge(m, &prd, &dst, &mask, 19), train(t, &prd, &dst, 19), "{m:?}");
    }
    let ones = vec![0.5; 24 * 24];
    let rct = train(ColorTransfer::Rct, &prd, &dst, 0);
    assert_eq!(merge(MergeColorTransfer::Rct, &prd, &dst, &ones, 0), rct);
}

#[test]
fn outputs_are_clipped_to_the_unit_range() {
    let mut rng = seeded(20);
    let dark = smooth(24, [0.0, 0.05, 0.0], [0.1, 0.0, 0.2], [0.0, 0.1, 0.05], &mut rng);
    let bright = smooth(24, [0.6, 0.5, 0.7], [0.5, 0.6, 0.4], [0.4, 0.5, 0.6], &mut rng);
    let mask = disc_mask(24);
    for (a, b) in [(&dark, &bright), (&bright, &dark)] {
        for mode in TRAIN_MODES {
            assert_unit_range(&train(mode, a, b, 21), &format!("{mode:?}"));
        }
        for mode in MERGE_MODES {
            assert_unit_range(&merge(mode, a, b, &mask, 21), &format!("{mode:?}"));
        }
    }
}

#[test]
fn degenerate_inputs_give_finite_unit_results() {
    let (varied, _) = pair(8, 22);
    let flat = Image::filled(8, 8, [0.3, 0.5, 0.7]);
    let black = Image::filled(8, 8, [0.0; 3]);
    let one = Image::filled(1, 1, [0.2, 0.4, 0.6]);
    let one_ref = Image::filled(1, 1, [0.9, 0.1, 0.5]);
    let cases = [(&flat, &varied), (&varied, &flat), (&flat, &black), (&black, &black)];
    for (a, b) in cases.into_iter().chain([(&one, &one_ref)]) {
        let zero_mask = vec![0.0; a.pixel_count()];
        for mode in TRAIN_MODES {
            assert_unit_range(&train(mode, a, b, 23), &format!("{mode:?}"));
        }
        for mode in MERGE_MODES {
            assert_unit_range(&merge(mode, a, b, &zero_mask, 23), &format!("{mode:?} mask 0"));
        }
    }
    // A constant image moves onto the reference's mean colour.
    let out = train(ColorTransfer::Lct, &flat, &varied, 0);
    let (mo, mv) = (mean(&out.data), mean(&varied.data));
    assert!((0..3).all(|c| (mo[c] - mv[c]).abs() < 1e-6));
}

#[test]
fn training_images_may_differ_in_size() {
    let (src, _) = pair(16, 24);
    let (_, reference) = pair(24, 25);
    for mode in TRAIN_MODES {
        let out = train(mode, &src, &reference, 26);
        assert_eq!((out.width, out.height, out.data.len()), (16, 16, 16 * 16 * 3), "{mode:?}");
    }
}

#[test]
fn malformed_inputs_are_errors() {
    let good = Image::filled(4, 4, [0.5; 3]);
    assert_eq!(
        Image::new(4, 4, vec![0.0; 47]),
        Err(ColorError::BadLength { width: 4, height: 4, got: 47 })
    );
    let bad = Image { data: vec![0.0; 5], width: 4, height: 4 };
    let empty = Image { data: vec![], width: 0, height: 3 };
    let mut rng = seeded(0);
    assert!(matches!(
        transfer(ColorTransfer::Rct, &bad, &good, &mut rng),
        Err(ColorError::BadLength { .. })
    ));
    assert!(matches!(
        transfer(ColorTransfer::Rct, &good, &empty, &mut rng),
        Err(ColorError::Empty { .. })
    ));
    let small = Image::filled(2, 2, [0.5; 3]);
    let mask = vec![1.0; 16];
    let err = transfer_masked(MergeColorTransfer::Rct, &good, &small, &mask, &mut rng);
    assert_eq!(err, Err(ColorError::SizeMismatch { prd: (4, 4), dst: (2, 2) }));
    let err = transfer_masked(MergeColorTransfer::Rct, &good, &good, &mask[..3], &mut rng);
    assert_eq!(err, Err(ColorError::MaskLength { expected: 16, got: 3 }));
}

#[test]
fn mode_names_on_the_command_line_and_on_disk() {
    let names: Vec<String> = MergeColorTransfer::value_variants()
        .iter()
        .filter_map(|m| m.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    assert_eq!(names, ["none", "rct", "lct", "mkl", "mkl-m", "idt", "idt-m", "sot-m", "mix-m"]);
    let json = serde_json::to_string(&MergeColorTransfer::MklM).expect("serialising an enum");
    assert_eq!(json, "\"mkl-m\"", "the same name as on the command line");
    assert_eq!(serde_json::to_string(&ColorTransfer::Sot).expect("enum"), "\"sot\"");
    assert_eq!(ColorTransfer::default(), ColorTransfer::None);
    assert_eq!(MergeColorTransfer::default(), MergeColorTransfer::None);
}

/// Prints the time of every mode at 128² and 256²:
/// `cargo test --lib color::tests::time_every_mode -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, run by hand"]
fn time_every_mode() {
    for size in [128, 256] {
        let (src, reference) = pair(size, 27);
        let mask = disc_mask(size);
        for mode in TRAIN_MODES {
            let start = Instant::now();
            train(mode, &src, &reference, 28);
            println!("train {mode:?} {size}²: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
        }
        for mode in MERGE_MODES {
            let start = Instant::now();
            merge(mode, &src, &reference, &mask, 28);
            println!("merge {mode:?} {size}²: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
        }
    }
}
