//! The inter: two dense layers from the encoder code to a small map, then (without `t`) one
//! upscale. DFL: `DeepFakeArchi.py` `Inter`.

use tch::Tensor;
use tch::nn::{self, Module};

use super::arch::ModelConfig;
use super::blocks::{Upscale, dense};

/// One inter network.
#[derive(Debug)]
pub struct Inter {
    dense1: nn::Linear,
    dense2: nn::Linear,
    upscale: Option<Upscale>,
    out_ch: i64,
    side: i64,
}

impl Inter {
    /// Builds `dense1`, `dense2` and `upscale` under `p`, producing `out_ch` channels
    /// (A for DF, 2A for each LIAE inter).
    pub fn new(p: nn::Path, cfg: &ModelConfig, out_ch: i64) -> Self {
        let side = cfg.lowest_dense_res();
        Self {
            dense1: dense(&p / "dense1", cfg.encoder_out_len(), cfg.ae_dims),
            dense2: dense(&p / "dense2", cfg.ae_dims, side * side * out_ch),
            upscale: (!cfg.arch.is_t).then(|| Upscale::new(&p / "upscale", out_ch, out_ch)),
            out_ch,
            side,
        }
    }

    /// Returns the side of the output map: 2L, or L with `t`.
    pub fn out_res(&self) -> i64 {
        if self.upscale.is_some() { self.side * 2 } else { self.side }
    }
}

impl Module for Inter {
    /// # Shapes
    /// `[N, F]` (encoder code) → `[N, out_ch, 2L, 2L]` (`[N, out_ch, L, L]` with `t`).
    fn forward(&self, xs: &Tensor) -> Tensor {
        let n = xs.size()[0];
        let xs = xs.apply(&self.dense1).apply(&self.dense2); // [N, L²·out_ch]
        let xs = xs.view([n, self.out_ch, self.side, self.side]); // [N, out_ch, L, L]
        match &self.upscale {
            Some(up) => xs.apply(up),
            None => xs,
        }
    }
}
