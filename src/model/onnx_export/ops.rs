//! The blocks of `model/blocks.rs` as ONNX operators, on `SaehdGraph`: conv, LeakyReLU,
//! sigmoid, concat, downscale, upscale, residual block, depth-to-space, dense and pixel-norm.

use super::{ExportError, Map, PIXEL_NORM_EPS, SaehdGraph};
use crate::model::blocks::{LRELU_SLOPE, RES_LRELU_SLOPE};
use crate::onnx::graph::{attr_float, attr_int, attr_ints};

impl SaehdGraph<'_> {
    /// A k×k conv with symmetric padding k/2 and bias, from `{prefix}.weight` / `.bias`.
    ///
    /// # Shapes
    /// `[N, Ci, H, W]` → `[N, Co, H/stride, W/stride]`.
    pub(super) fn conv(
        &mut self,
        xs: &Map,
        prefix: &str,
        c_out: i64,
        k: i64,
        stride: i64,
    ) -> Result<Map, ExportError> {
        let w = self.weight(&format!("{prefix}.weight"), &[c_out, xs.c, k, k])?;
        let b = self.weight(&format!("{prefix}.bias"), &[c_out])?;
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("pads", &[k / 2; 4]),
            attr_ints("strides", &[stride, stride]),
        ];
        let name = self.g.node("Conv", &[&xs.name, &w, &b], attrs, prefix);
        Ok(Map { name, c: c_out, side: xs.side / stride })
    }

    pub(super) fn leaky_relu(&mut self, xs: &Map, slope: f64, hint: &str) -> Map {
        let name =
            self.g.node("LeakyRelu", &[&xs.name], vec![attr_float("alpha", slope as f32)], hint);
        Map { name, ..xs.clone() }
    }

    pub(super) fn sigmoid(&mut self, xs: &Map, hint: &str) -> Map {
        let name = self.g.node("Sigmoid", &[&xs.name], vec![], hint);
        Map { name, ..xs.clone() }
    }

    pub(super) fn concat(&mut self, parts: &[&Map], hint: &str) -> Map {
        let names: Vec<&str> = parts.iter().map(|m| m.name.as_str()).collect();
        let name = self.g.node("Concat", &names, vec![attr_int("axis", 1)], hint);
        Map { name, c: parts.iter().map(|m| m.c).sum(), side: parts[0].side }
    }

    /// Conv 5×5 stride 2 → LeakyReLU 0.1: `[N, Ci, H, W]` → `[N, Co, H/2, W/2]`.
    pub(super) fn downscale(
        &mut self,
        xs: &Map,
        prefix: &str,
        c_out: i64,
    ) -> Result<Map, ExportError> {
        let ys = self.conv(xs, &format!("{prefix}.conv"), c_out, 5, 2)?;
        Ok(self.leaky_relu(&ys, LRELU_SLOPE, &format!("{prefix}.act")))
    }

    /// Conv 3×3 to 4·Co → LeakyReLU 0.1 → depth-to-space: `[N, Ci, H, W]` → `[N, Co, 2H, 2W]`.
    pub(super) fn upscale(
        &mut self,
        xs: &Map,
        prefix: &str,
        c_out: i64,
    ) -> Result<Map, ExportError> {
        let ys = self.conv(xs, &format!("{prefix}.conv"), 4 * c_out, 3, 1)?;
        let ys = self.leaky_relu(&ys, LRELU_SLOPE, &format!("{prefix}.act"));
        self.depth_to_space(&ys, &format!("{prefix}.d2s"))
    }

    /// out = lrelu₀.₂(x + conv2(lrelu₀.₂(conv1(x)))): `[N, C, H, W]` → the same.
    pub(super) fn residual(&mut self, xs: &Map, prefix: &str) -> Result<Map, ExportError> {
        let ys = self.conv(xs, &format!("{prefix}.conv1"), xs.c, 3, 1)?;
        let ys = self.leaky_relu(&ys, RES_LRELU_SLOPE, &format!("{prefix}.act1"));
        let ys = self.conv(&ys, &format!("{prefix}.conv2"), xs.c, 3, 1)?;
        let sum = self.g.node("Add", &[&xs.name, &ys.name], vec![], &format!("{prefix}.add"));
        Ok(self.leaky_relu(&Map { name: sum, ..ys }, RES_LRELU_SLOPE, &format!("{prefix}.act2")))
    }

    /// TensorFlow's (and ONNX's DCR) depth-to-space ×2, as `blocks::depth_to_space`:
    /// `out[c, 2h+i, 2w+j] = in[(2i+j)·C + c, h, w]`.
    ///
    /// # Shapes
    /// `[N, 4C, H, W]` → `[N, C, 2H, 2W]`.
    pub(super) fn depth_to_space(&mut self, xs: &Map, hint: &str) -> Result<Map, ExportError> {
        let (c, s) = (xs.c / 4, xs.side);
        let split = self.g.constant_i64(&format!("{hint}.split"), &[6], &[-1, 2, 2, c, s, s]);
        let ys = self.g.node("Reshape", &[&xs.name, &split], vec![], &format!("{hint}.split")); // [N, i, j, C, H, W]
        let ys = self.g.node(
            "Transpose",
            &[&ys],
            vec![attr_ints("perm", &[0, 3, 4, 1, 5, 2])],
            &format!("{hint}.perm"),
        ); // [N, C, H, i, W, j]
        let merge = self.g.constant_i64(&format!("{hint}.merge"), &[4], &[-1, c, 2 * s, 2 * s]);
        let name = self.g.node("Reshape", &[&ys, &merge], vec![], hint); // [N, C, 2H, 2W]
        Ok(Map { name, c, side: 2 * s })
    }

    /// A dense layer `y = x·Wᵀ + b` from `{prefix}.weight` `[out, in]`: `[N, in]` → `[N, out]`.
    pub(super) fn dense(&mut self, xs: &Map, prefix: &str, out: i64) -> Result<Map, ExportError> {
        let w = self.weight(&format!("{prefix}.weight"), &[out, xs.c])?;
        let b = self.weight(&format!("{prefix}.bias"), &[out])?;
        let name = self.g.node("Gemm", &[&xs.name, &w, &b], vec![attr_int("transB", 1)], prefix);
        Ok(Map { name, c: out, side: 0 })
    }

    /// Pixel-norm, `x / sqrt(mean(x²) + ε)` per sample: the mean is a MatMul with a `[F, 1]`
    /// vector of 1/F and the broadcast back a MatMul with a `[1, F]` vector of ones.
    ///
    /// # Shapes
    /// `[N, F]` → `[N, F]`.
    pub(super) fn pixel_norm(&mut self, xs: &Map, hint: &str) -> Result<Map, ExportError> {
        let f = xs.c;
        let sq = self.g.node("Mul", &[&xs.name, &xs.name], vec![], &format!("{hint}.square"));
        let mean_w = self.g.constant_f32(
            &format!("{hint}.mean_weight"),
            &[f, 1],
            &vec![1.0 / f as f32; f as usize],
        );
        let mean = self.g.node("MatMul", &[&sq, &mean_w], vec![], &format!("{hint}.mean")); // [N, 1]
        let eps = self.g.constant_f32(&format!("{hint}.eps"), &[], &[PIXEL_NORM_EPS]);
        let var = self.g.node("Add", &[&mean, &eps], vec![], &format!("{hint}.add_eps"));
        let rms = self.g.node("Sqrt", &[&var], vec![], &format!("{hint}.rms"));
        let inv = self.g.node("Reciprocal", &[&rms], vec![], &format!("{hint}.inv_rms"));
        let ones = self.g.constant_f32(&format!("{hint}.ones"), &[1, f], &vec![1.0; f as usize]);
        let inv = self.g.node("MatMul", &[&inv, &ones], vec![], &format!("{hint}.broadcast")); // [N, F]
        let name = self.g.node("Mul", &[&xs.name, &inv], vec![], hint);
        Ok(Map { name, c: f, side: 0 })
    }
}
