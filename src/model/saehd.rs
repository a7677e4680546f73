//! SAEHD's two autoencoders and the three paths training and merging need: src→src, dst→dst,
//! and the swap (the src face decoded from the dst code); `docs/dfl-parity.md`, "SAEHD networks".
//!
//! Weight names are the checkpoint format (`docs/architecture.md`, "Conventions"): `encoder.down.0.conv.weight`,
//! `inter.dense1.weight`, `decoder_src.upscale.0.conv.weight`, `inter_ab…`, `decoder…`.

use tch::Tensor;
use tch::nn;

use super::arch::{ArchKind, ModelConfig};
use super::decoder::Decoder;
use super::encoder::Encoder;
use super::inter::Inter;

/// A face image and its mask, as a decoder produces them.
///
/// # Shapes
/// `image`: `[N, 3, R, R]` f32 in [0,1], BGR; `mask`: `[N, 1, R, R]` f32 in [0,1].
#[derive(Debug)]
pub struct Prediction {
    /// The face.
    pub image: Tensor,
    /// The face mask.
    pub mask: Tensor,
}

/// What one training step needs from the network.
#[derive(Debug)]
pub struct TrainPredictions {
    /// src reconstructed through src's path.
    pub src_src: Prediction,
    /// dst reconstructed through dst's path.
    pub dst_dst: Prediction,
    /// The codes the decoders read, still attached to the encoder's graph.
    pub codes: Codes,
}

/// The codes of one training batch: what the decoder(s) read for each path.
///
/// # Shapes
/// DF: `[N, A, 2L, 2L]` each (the inter's output, L the lowest dense resolution); LIAE:
/// `[N, 4A, 2L, 2L]` (the two inter halves side by side).
#[derive(Debug)]
pub struct Codes {
    /// The src code (DF: what the true-face discriminator judges as fake).
    pub src: Tensor,
    /// The dst code (DF: what it judges as real).
    pub dst: Tensor,
    /// The code the swap is decoded from (DF: the dst code; LIAE: dst's `inter_ab` half twice).
    pub swap: Tensor,
}

/// What merging needs for one batch of dst faces (DFL's `AE_merge`).
#[derive(Debug)]
pub struct MergePredictions {
    /// The src face (and its mask) decoded from the dst code: the swap.
    pub swap: Prediction,
    /// The dst mask from dst's own path.
    pub dst_mask: Tensor,
}

/// DF: shared encoder and inter, one decoder per person.
#[derive(Debug)]
struct Df {
    encoder: Encoder,
    inter: Inter,
    decoder_src: Decoder,
    decoder_dst: Decoder,
}

/// LIAE: shared encoder and decoder; `inter_ab` sees both people, `inter_b` only dst.
#[derive(Debug)]
struct Liae {
    encoder: Encoder,
    inter_ab: Inter,
    inter_b: Inter,
    decoder: Decoder,
}

/// A SAEHD autoencoder.
#[derive(Debug)]
pub struct Saehd {
    net: Net,
    resolution: i64,
}

#[derive(Debug)]
enum Net {
    Df(Df),
    Liae(Liae),
}

impl Saehd {
    /// Builds the network for `cfg` under `p` (fresh Glorot weights; load a checkpoint into the
    /// VarStore afterwards to resume). `cfg` must pass [`ModelConfig::validate_dims`].
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let a = cfg.ae_dims;
        let net = match cfg.arch.kind {
            ArchKind::Df => Net::Df(Df {
                encoder: Encoder::new(p / "encoder", cfg),
                inter: Inter::new(p / "inter", cfg, a),
                decoder_src: Decoder::new(p / "decoder_src", cfg, a),
                decoder_dst: Decoder::new(p / "decoder_dst", cfg, a),
            }),
            ArchKind::Liae => Net::Liae(Liae {
                encoder: Encoder::new(p / "encoder", cfg),
                inter_ab: Inter::new(p / "inter_ab", cfg, 2 * a),
                inter_b: Inter::new(p / "inter_b", cfg, 2 * a),
                decoder: Decoder::new(p / "decoder", cfg, 4 * a),
            }),
        };
        Self { net, resolution: cfg.resolution }
    }

    /// Returns the input and output side in pixels.
    pub fn resolution(&self) -> i64 {
        self.resolution
    }

    /// Reconstructs both people through their own paths.
    ///
    /// On a GPU the src and dst batches share each pass (one encoder pass over both, and for
    /// LIAE one decoder pass): twice the batch keeps more of the GPU busy. On the CPU each side
    /// has its own passes, which oneDNN's convolutions run faster per sample
    /// (`docs/performance.md`, "Training step"). The results are the same either way.
    ///
    /// # Shapes
    /// `src`, `dst`: `[N, 3, R, R]` f32 in [0,1], BGR (the warped inputs).
    pub fn train_forward(&self, src: &Tensor, dst: &Tensor) -> TrainPredictions {
        self.forward_sides(src, dst, src.device().is_cuda())
    }

    /// [`Saehd::train_forward`] with the passes shared (`joint`) or one per side.
    fn forward_sides(&self, src: &Tensor, dst: &Tensor, joint: bool) -> TrainPredictions {
        let n = src.size()[0];
        let split = |t: &Tensor| (t.narrow(0, 0, n), t.narrow(0, n, t.size()[0] - n));
        // Applies `f` to both batches: one call on their concatenation, or one call each.
        let both = |f: &dyn Fn(&Tensor) -> Tensor, a: &Tensor, b: &Tensor| {
            if joint { split(&f(&Tensor::cat(&[a, b], 0))) } else { (f(a), f(b)) }
        };
        let (src_src, dst_dst, codes) = match &self.net {
            Net::Df(df) => {
                let (src_code, dst_code) =
                    both(&|x| x.apply(&df.encoder).apply(&df.inter), src, dst);
                let (ss, dd) =
                    (df.decoder_src.forward(&src_code), df.decoder_dst.forward(&dst_code));
                let swap = dst_code.shallow_clone();
                (ss, dd, Codes { src: src_code, dst: dst_code, swap })
            }
            Net::Liae(liae) => {
                let (src_enc, dst_enc) = both(&|x| x.apply(&liae.encoder), src, dst);
                let src_ab = src_enc.apply(&liae.inter_ab);
                let src_code = Tensor::cat(&[&src_ab, &src_ab], 1);
                let dst_ab = dst_enc.apply(&liae.inter_ab);
                let dst_code = Tensor::cat(&[&dst_enc.apply(&liae.inter_b), &dst_ab], 1);
                let ((si, sm), (di, dm)) = if joint {
                    let (image, mask) =
                        liae.decoder.forward(&Tensor::cat(&[&src_code, &dst_code], 0));
                    let ((si, di), (sm, dm)) = (split(&image), split(&mask));
                    ((si, sm), (di, dm))
                } else {
                    (liae.decoder.forward(&src_code), liae.decoder.forward(&dst_code))
                };
                let swap = Tensor::cat(&[&dst_ab, &dst_ab], 1);
                ((si, sm), (di, dm), Codes { src: src_code, dst: dst_code, swap })
            }
        };
        let pred = |(image, mask)| Prediction { image, mask };
        TrainPredictions { src_src: pred(src_src), dst_dst: pred(dst_dst), codes }
    }

    /// Decodes the swap from a swap code ([`Codes::swap`]): DF's src decoder, LIAE's decoder.
    pub fn decode_swap(&self, swap_code: &Tensor) -> Prediction {
        let (image, mask) = match &self.net {
            Net::Df(df) => df.decoder_src.forward(swap_code),
            Net::Liae(liae) => liae.decoder.forward(swap_code),
        };
        Prediction { image, mask }
    }

    /// Reconstructs src faces through src's path.
    pub fn src_src(&self, src: &Tensor) -> Prediction {
        let (image, mask) = match &self.net {
            Net::Df(df) => df.decoder_src.forward(&src.apply(&df.encoder).apply(&df.inter)),
            Net::Liae(liae) => {
                let ab = src.apply(&liae.encoder).apply(&liae.inter_ab);
                liae.decoder.forward(&Tensor::cat(&[&ab, &ab], 1))
            }
        };
        Prediction { image, mask }
    }

    /// Reconstructs dst faces through dst's path.
    pub fn dst_dst(&self, dst: &Tensor) -> Prediction {
        let (image, mask) = match &self.net {
            Net::Df(df) => df.decoder_dst.forward(&dst.apply(&df.encoder).apply(&df.inter)),
            Net::Liae(liae) => {
                let enc = dst.apply(&liae.encoder);
                liae.decoder.forward(&Tensor::cat(
                    &[enc.apply(&liae.inter_b), enc.apply(&liae.inter_ab)],
                    1,
                ))
            }
        };
        Prediction { image, mask }
    }

    /// Decodes the src face from dst faces: DF's src decoder on the dst code; LIAE's decoder on
    /// the dst code with its `inter_b` half replaced by the `inter_ab` half. Both are exactly
    /// src's own path applied to dst faces.
    pub fn swap(&self, dst: &Tensor) -> Prediction {
        self.src_src(dst)
    }

    /// Everything merging needs for dst faces: the swap and dst's own mask.
    pub fn merge_forward(&self, dst: &Tensor) -> MergePredictions {
        match &self.net {
            Net::Df(df) => {
                let code = dst.apply(&df.encoder).apply(&df.inter);
                let (image, mask) = df.decoder_src.forward(&code);
                let (_, dst_mask) = df.decoder_dst.forward(&code);
                MergePredictions { swap: Prediction { image, mask }, dst_mask }
            }
            Net::Liae(liae) => {
                let enc = dst.apply(&liae.encoder);
                let ab = enc.apply(&liae.inter_ab);
                let swap_code = Tensor::cat(&[&ab, &ab], 1);
                let dst_code = Tensor::cat(&[&enc.apply(&liae.inter_b), &ab], 1);
                let (image, mask) = liae.decoder.forward(&swap_code);
                let (_, dst_mask) = liae.decoder.forward(&dst_code);
                MergePredictions { swap: Prediction { image, mask }, dst_mask }
            }
        }
    }
}

/// A top-level part of a SAEHD network; its name is the first segment of its weight names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The shared encoder (both archis).
    Encoder,
    /// DF's shared inter.
    Inter,
    /// DF's src decoder.
    DecoderSrc,
    /// DF's dst decoder.
    DecoderDst,
    /// LIAE's inter for both sides (the swap's code).
    InterAb,
    /// LIAE's inter for dst only.
    InterB,
    /// LIAE's shared decoder.
    Decoder,
}

impl Part {
    /// Returns the weight-name prefix (`encoder`, `inter_ab`, `decoder_src`, …).
    pub fn name(self) -> &'static str {
        match self {
            Part::Encoder => "encoder",
            Part::Inter => "inter",
            Part::DecoderSrc => "decoder_src",
            Part::DecoderDst => "decoder_dst",
            Part::InterAb => "inter_ab",
            Part::InterB => "inter_b",
            Part::Decoder => "decoder",
        }
    }

    /// Returns the parts of an archi, in DFL's order.
    pub fn of(kind: ArchKind) -> &'static [Part] {
        match kind {
            ArchKind::Df => &[Part::Encoder, Part::Inter, Part::DecoderSrc, Part::DecoderDst],
            ArchKind::Liae => &[Part::Encoder, Part::InterAb, Part::InterB, Part::Decoder],
        }
    }

    /// Returns the inters: what pretraining teaches that a model restarts when pretraining is
    /// switched off (DFL does the same).
    pub fn inters(kind: ArchKind) -> &'static [Part] {
        match kind {
            ArchKind::Df => &[Part::Inter],
            ArchKind::Liae => &[Part::InterAb, Part::InterB],
        }
    }

    /// Returns the parts that only ever learn the dst person, which a model started from another
    /// (`--from`) re-initialises: DF re-learns its inter with the new dst and keeps the encoder
    /// and the src decoder; LIAE keeps everything but `inter_b`.
    pub fn dst_specific(kind: ArchKind) -> &'static [Part] {
        match kind {
            ArchKind::Df => &[Part::Inter, Part::DecoderDst],
            ArchKind::Liae => &[Part::InterB],
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn tiny(arch: &str, resolution: i64) -> (nn::VarStore, Saehd) {
        let cfg = ModelConfig {
            arch: arch.parse().unwrap(),
            resolution,
            ae_dims: 16,
            e_dims: 4,
            d_dims: 4,
            d_mask_dims: 2,
        };
        cfg.validate_dims().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Saehd::new(&vs.root(), &cfg);
        (vs, model)
    }

    #[test]
    fn shared_and_separate_side_passes_give_the_same_predictions() {
        for arch in ["df-ud", "liae-ud"] {
            let (_vs, model) = tiny(arch, 32);
            let src = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let dst = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let (a, b) =
                (model.forward_sides(&src, &dst, true), model.forward_sides(&src, &dst, false));
            let pairs = [
                (&a.src_src.image, &b.src_src.image),
                (&a.dst_dst.mask, &b.dst_dst.mask),
                (&a.codes.src, &b.codes.src),
                (&a.codes.swap, &b.codes.swap),
            ];
            for (x, y) in pairs {
                assert_eq!(x.size(), y.size());
                let diff = f64::try_from((x - y).abs().max()).unwrap();
                assert!(diff < 1e-5, "{arch}: {diff}");
            }
        }
    }

    #[test]
    fn every_archi_maps_faces_to_faces_and_masks() {
        for arch in
            ["df", "df-u", "df-d", "df-t", "df-udt", "liae", "liae-ud", "liae-t", "liae-udt"]
        {
            let (_vs, model) = tiny(arch, 32);
            let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let train = model.train_forward(&xs, &xs.flip([3]));
            for p in
                [&train.src_src, &train.dst_dst, &model.swap(&xs), &model.merge_forward(&xs).swap]
            {
                assert_eq!(p.image.size(), [2, 3, 32, 32], "{arch}");
                assert_eq!(p.mask.size(), [2, 1, 32, 32], "{arch}");
                let (lo, hi) = (p.image.min().double_value(&[]), p.image.max().double_value(&[]));
                assert!(
                    (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi),
                    "{arch}: sigmoid output"
                );
            }
        }
    }

    #[test]
    fn the_batched_training_pass_equals_the_single_paths() {
        for arch in ["df-ud", "liae-ud"] {
            let (_vs, model) = tiny(arch, 32);
            let src = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let dst = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let train = model.train_forward(&src, &dst);
            let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
            assert!(diff(&train.src_src.image, &model.src_src(&src).image) < 1e-6, "{arch}");
            assert!(diff(&train.dst_dst.mask, &model.dst_dst(&dst).mask) < 1e-6, "{arch}");
            let merge = model.merge_forward(&dst);
            assert!(diff(&merge.swap.image, &model.swap(&dst).image) < 1e-6, "{arch}");
            assert!(diff(&merge.dst_mask, &model.dst_dst(&dst).mask) < 1e-6, "{arch}");
        }
    }

    #[test]
    fn weight_names_read_like_the_checkpoint_format() {
        let (vs, _) = tiny("df-ud", 32);
        let names = vs.variables();
        for name in [
            "encoder.down.0.conv.weight",
            "inter.dense1.weight",
            "inter.upscale.conv.bias",
            "decoder_src.upscale.0.conv.weight",
            "decoder_dst.res.2.conv2.weight",
            "decoder_src.out_conv3.weight",
            "decoder_dst.upscalem.3.conv.weight",
            "decoder_src.out_convm.bias",
        ] {
            assert!(names.contains_key(name), "missing {name}");
        }
        let (vs, _) = tiny("liae", 32);
        assert!(vs.variables().contains_key("inter_b.dense2.weight"));
    }
}
