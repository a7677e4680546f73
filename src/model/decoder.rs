//! The decoder: an image branch (upscales with residual blocks, then a 1×1 head, or with `d`
//! four heads and a depth-to-space) and a mask branch (upscales only). Both start from the
//! inter code. DFL: `DeepFakeArchi.py` `Decoder`.

use tch::Tensor;
use tch::nn;

use super::arch::ModelConfig;
use super::blocks::{ResidualBlock, Upscale, conv, depth_to_space};

/// One decoder (DF has two, LIAE one).
#[derive(Debug)]
pub struct Decoder {
    upscale: Vec<Upscale>,
    res: Vec<ResidualBlock>,
    /// The 1×1 head, plus three 3×3 heads with `d`.
    out_convs: Vec<nn::Conv2D>,
    upscalem: Vec<Upscale>,
    out_convm: nn::Conv2D,
}

/// Channel widths through the branches, as multiples of D or M.
fn image_widths(d: i64, is_t: bool) -> Vec<i64> {
    if is_t { vec![8 * d, 8 * d, 4 * d, 2 * d] } else { vec![8 * d, 4 * d, 2 * d] }
}

fn mask_widths(m: i64, is_t: bool, is_d: bool) -> Vec<i64> {
    let mut widths =
        if is_t { vec![8 * m, 8 * m, 4 * m, 2 * m] } else { vec![8 * m, 4 * m, 2 * m] };
    if is_d {
        widths.push(m);
    }
    widths
}

/// Builds a chain of upscales `c_in → widths[0] → widths[1] → …` under `p / name / i`.
fn upscale_chain(p: &nn::Path, name: &str, c_in: i64, widths: &[i64]) -> Vec<Upscale> {
    let ins = std::iter::once(c_in).chain(widths.iter().copied());
    ins.zip(widths).enumerate().map(|(i, (ci, &co))| Upscale::new(p / name / i, ci, co)).collect()
}

impl Decoder {
    /// Builds the branches under `p` for a code of `c_in` channels.
    pub fn new(p: nn::Path, cfg: &ModelConfig, c_in: i64) -> Self {
        let (is_t, is_d) = (cfg.arch.is_t, cfg.arch.is_d);
        let widths = image_widths(cfg.d_dims, is_t);
        let upscale = upscale_chain(&p, "upscale", c_in, &widths);
        let res = widths
            .iter()
            .enumerate()
            .map(|(i, &c)| ResidualBlock::new(&p / "res" / i, c))
            .collect();
        let last = *widths.last().expect("invariant: the image branch has upscales");
        let mut out_convs = vec![conv(&p / "out_conv", last, 3, 1, 1)];
        if is_d {
            out_convs.extend((1..=3).map(|i| conv(&p / format!("out_conv{i}"), last, 3, 3, 1)));
        }
        let mwidths = mask_widths(cfg.d_mask_dims, is_t, is_d);
        let upscalem = upscale_chain(&p, "upscalem", c_in, &mwidths);
        let mlast = *mwidths.last().expect("invariant: the mask branch has upscales");
        Self {
            upscale,
            res,
            out_convs,
            upscalem,
            out_convm: conv(&p / "out_convm", mlast, 1, 1, 1),
        }
    }

    /// Decodes a code into a face and its mask.
    ///
    /// # Shapes
    /// `[N, C_in, r, r]` (the inter code) → image `[N, 3, R, R]` f32 in [0,1], BGR, and
    /// mask `[N, 1, R, R]` f32 in [0,1].
    pub fn forward(&self, code: &Tensor) -> (Tensor, Tensor) {
        let mut xs = code.shallow_clone();
        for (up, res) in self.upscale.iter().zip(&self.res) {
            xs = xs.apply(up).apply(res);
        }
        let image = if self.out_convs.len() == 1 {
            xs.apply(&self.out_convs[0])
        } else {
            let heads: Vec<Tensor> = self.out_convs.iter().map(|c| xs.apply(c)).collect();
            depth_to_space(&Tensor::cat(&heads, 1)) // [N, 12, R/2, R/2] → [N, 3, R, R]
        };
        let mut ms = code.shallow_clone();
        for up in &self.upscalem {
            ms = ms.apply(up);
        }
        (image.sigmoid(), ms.apply(&self.out_convm).sigmoid())
    }
}
