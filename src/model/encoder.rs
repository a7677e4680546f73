//! The shared encoder: four (five with `t`) strided convs, flattened, pixel-normed with `u`.
//! DFL: `DeepFakeArchi.py` `Encoder`.

use tch::Tensor;
use tch::nn::{self, Module};

use super::arch::ModelConfig;
use super::blocks::{Downscale, ResidualBlock, pixel_norm};

/// Downscale channel multipliers of E: 3→E→2E→4E→8E (plus 8E→8E with `t`).
const DOWN_MULTIPLIERS: [i64; 4] = [1, 2, 4, 8];

/// The encoder shared by src and dst.
#[derive(Debug)]
pub struct Encoder {
    down: Vec<Downscale>,
    /// With `t`: one block after the first downscale, one after the last.
    res: Vec<ResidualBlock>,
    is_u: bool,
}

impl Encoder {
    /// Builds `down.{i}` (and `res.{i}` with `t`) under `p`.
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let e = cfg.e_dims;
        let mut widths: Vec<i64> = DOWN_MULTIPLIERS.iter().map(|m| m * e).collect();
        if cfg.arch.is_t {
            widths.push(8 * e);
        }
        let ins = std::iter::once(3).chain(widths.iter().copied());
        let down = ins
            .zip(&widths)
            .enumerate()
            .map(|(i, (c_in, &c_out))| Downscale::new(&p / "down" / i, c_in, c_out))
            .collect();
        let res = if cfg.arch.is_t {
            vec![ResidualBlock::new(&p / "res" / 0, e), ResidualBlock::new(&p / "res" / 1, 8 * e)]
        } else {
            Vec::new()
        };
        Self { down, res, is_u: cfg.arch.is_u }
    }
}

impl Module for Encoder {
    /// # Shapes
    /// `[N, 3, R, R]` f32 in [0,1], BGR → `[N, 8E·(R/16)²]` (`[N, 8E·(R/32)²]` with `t`).
    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut xs = xs.apply(&self.down[0]);
        if let Some(first) = self.res.first() {
            xs = xs.apply(first);
        }
        for down in &self.down[1..] {
            xs = xs.apply(down);
        }
        if let Some(last) = self.res.get(1) {
            xs = xs.apply(last);
        }
        let xs = xs.flatten(1, -1); // [N, 8E·side²]
        if self.is_u { pixel_norm(&xs) } else { xs }
    }
}
