//! SAEHD's merge pass as an ONNX graph in DeepFaceLive's DFM contract: the weights become
//! f32 initializers and each block becomes the ONNX operators that compute the same function.
//!
//! The contract (what DeepFaceLive feeds and reads, in this order), batch axis dynamic:
//! - input `in_face:0`: `[N, R, R, 3]` f32 in [0,1], BGR (NHWC);
//! - outputs `out_face_mask:0` `[N, R, R, 1]` (dst's own mask), `out_celeb_face:0`
//!   `[N, R, R, 3]` (the swap: the src face decoded from the dst code) and
//!   `out_celeb_face_mask:0` `[N, R, R, 1]` (its mask), f32 in [0,1].
//!
//! Every operator is one that OpenCV 4.6's importer runs at any batch size as well as
//! onnxruntime: depth-to-space is Reshape + Transpose + Reshape (OpenCV's own `DepthToSpace`
//! fixes the batch size when the file is read), and pixel-norm's per-sample mean and
//! broadcast are MatMuls with constant vectors (OpenCV's `ReduceMean` and broadcasting `Div`
//! fail at a batch size other than 1 behind a dense layer).

mod ops;

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::arch::{ArchKind, ModelConfig};
use crate::onnx::graph::{Dim, GraphBuilder, GraphError, attr_int, attr_ints, encode_model};
use crate::onnx::proto::ModelProto;

/// The input's name.
pub const INPUT_FACE: &str = "in_face:0";
/// The dst mask output's name.
pub const OUTPUT_DST_MASK: &str = "out_face_mask:0";
/// The swapped face output's name.
pub const OUTPUT_SWAP_FACE: &str = "out_celeb_face:0";
/// The swapped face mask output's name.
pub const OUTPUT_SWAP_MASK: &str = "out_celeb_face_mask:0";
/// The name of the dynamic batch axis.
pub const BATCH_AXIS: &str = "N";
/// The graph's name.
const GRAPH_NAME: &str = "SAEHD";
/// Pixel-norm's epsilon; must match `blocks::pixel_norm`.
const PIXEL_NORM_EPS: f32 = 1e-6;
/// NHWC → NCHW.
const TO_NCHW: [i64; 4] = [0, 3, 1, 2];
/// NCHW → NHWC.
const TO_NHWC: [i64; 4] = [0, 2, 3, 1];

/// Errors of exporting a model's weights as an ONNX graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The weights lack a tensor the archi needs.
    #[error("the weights have no tensor {name}; they belong to another model configuration")]
    MissingWeight {
        /// The weight name.
        name: String,
    },
    /// A weight has another shape than the configuration implies.
    #[error(
        "weight {name} is {got:?}, the configuration needs {expected:?}; the weights belong to another model configuration"
    )]
    WeightShape {
        /// The weight name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<i64>,
        /// The shape found.
        got: Vec<i64>,
    },
    /// A weight could not be copied to host memory as f32.
    #[error("weight {name} cannot be read as f32: {reason}")]
    Unreadable {
        /// The weight name.
        name: String,
        /// libtorch's error.
        reason: String,
    },
    /// The graph could not be built or encoded.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A weight in host memory: its shape and its row-major f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape (tch's layout: conv `[Co, Ci, k, k]`, dense `[out, in]`).
    pub dims: Vec<i64>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Where the exporter reads weights from, by checkpoint name (`encoder.down.0.conv.weight`).
pub trait WeightSource {
    /// Returns the weight `name`.
    ///
    /// # Errors
    /// `MissingWeight` when there is none, `Unreadable` when it cannot be copied.
    fn weight(&self, name: &str) -> Result<HostTensor, ExportError>;
}

impl WeightSource for HashMap<String, Tensor> {
    fn weight(&self, name: &str) -> Result<HostTensor, ExportError> {
        let t =
            self.get(name).ok_or_else(|| ExportError::MissingWeight { name: name.to_owned() })?;
        let unreadable = |e: tch::TchError| ExportError::Unreadable {
            name: name.to_owned(),
            reason: e.to_string(),
        };
        let host = t
            .f_to_device(Device::Cpu)
            .and_then(|h| h.f_to_kind(Kind::Float))
            .and_then(|h| h.f_contiguous())
            .map_err(unreadable)?;
        let values = Vec::<f32>::try_from(host.flatten(0, -1)).map_err(unreadable)?;
        Ok(HostTensor { dims: t.size(), values })
    }
}

/// Builds the merge graph of `cfg` from `weights` and returns the `.onnx` file's bytes.
///
/// `cfg` must pass [`ModelConfig::validate_dims`].
///
/// # Errors
/// `MissingWeight`, `WeightShape` or `Unreadable` for weights that do not fit `cfg`; `Graph`
/// when the model passes protobuf's 2 GiB limit.
pub fn export_merge_onnx(
    cfg: &ModelConfig,
    weights: &dyn WeightSource,
) -> Result<Vec<u8>, ExportError> {
    Ok(encode_model(&merge_model(cfg, weights)?)?)
}

/// Builds the merge graph of `cfg` from `weights` as an ONNX model.
///
/// # Errors
/// As [`export_merge_onnx`].
pub fn merge_model(
    cfg: &ModelConfig,
    weights: &dyn WeightSource,
) -> Result<ModelProto, ExportError> {
    let mut b = SaehdGraph::new(cfg, weights);
    let r = cfg.resolution;
    let face = b.g.input(INPUT_FACE, &nhwc_dims(r, 3))?;
    let face = b.g.node("Transpose", &[&face], vec![attr_ints("perm", &TO_NCHW)], "in_face_nchw");
    let face = Map { name: face, c: 3, side: r }; // [N, 3, R, R]
    let (swap_code, dst_code, prefixes) = match cfg.arch.kind {
        ArchKind::Df => {
            let enc = b.encoder(&face)?; // [N, F]
            let code = b.inter(&enc, "inter", cfg.ae_dims)?; // [N, A, 2L, 2L]
            (code.clone(), code, ["decoder_src", "decoder_dst"])
        }
        ArchKind::Liae => {
            let enc = b.encoder(&face)?;
            let ab = b.inter(&enc, "inter_ab", 2 * cfg.ae_dims)?; // [N, 2A, 2L, 2L]
            let bb = b.inter(&enc, "inter_b", 2 * cfg.ae_dims)?;
            let swap = b.concat(&[&ab, &ab], "swap_code"); // [N, 4A, 2L, 2L]
            let dst = b.concat(&[&bb, &ab], "dst_code");
            (swap, dst, ["decoder", "decoder"])
        }
    };
    let swap_face = b.decoder_image(&swap_code, prefixes[0])?; // [N, 3, R, R]
    let swap_mask = b.decoder_mask(&swap_code, prefixes[0])?; // [N, 1, R, R]
    let dst_mask = b.decoder_mask(&dst_code, prefixes[1])?;
    for (map, name) in
        [(dst_mask, OUTPUT_DST_MASK), (swap_face, OUTPUT_SWAP_FACE), (swap_mask, OUTPUT_SWAP_MASK)]
    {
        let out =
            b.g.node_named("Transpose", &[&map.name], vec![attr_ints("perm", &TO_NHWC)], name)?;
        b.g.output(&out, &nhwc_dims(r, map.c)); // [N, R, R, C]
    }
    Ok(b.g.into_model())
}

/// `[N, side, side, c]` with a dynamic `N`.
fn nhwc_dims(side: i64, c: i64) -> [Dim; 4] {
    [Dim::Dynamic(BATCH_AXIS.to_owned()), Dim::Fixed(side), Dim::Fixed(side), Dim::Fixed(c)]
}

/// A value in the graph: an NCHW feature map `[N, c, side, side]`, or a flat code `[N, c]`
/// (then `side` is 0).
#[derive(Debug, Clone)]
struct Map {
    name: String,
    c: i64,
    side: i64,
}

/// The graph under construction, with the weights it reads.
struct SaehdGraph<'a> {
    g: GraphBuilder,
    weights: &'a dyn WeightSource,
    cfg: ModelConfig,
    /// Weight name → initializer name: a part used twice (LIAE's decoder) stores its weights once.
    initializers: HashMap<String, String>,
}

impl<'a> SaehdGraph<'a> {
    fn new(cfg: &ModelConfig, weights: &'a dyn WeightSource) -> Self {
        Self { g: GraphBuilder::new(GRAPH_NAME), weights, cfg: *cfg, initializers: HashMap::new() }
    }

    /// Adds the weight `name` as an initializer (once), checking its shape.
    fn weight(&mut self, name: &str, expected: &[i64]) -> Result<String, ExportError> {
        if let Some(init) = self.initializers.get(name) {
            return Ok(init.clone());
        }
        let t = self.weights.weight(name)?;
        if t.dims != expected || t.values.len() as i64 != expected.iter().product::<i64>() {
            return Err(ExportError::WeightShape {
                name: name.to_owned(),
                expected: expected.to_vec(),
                got: t.dims,
            });
        }
        let init = self.g.constant_f32(name, &t.dims, &t.values);
        self.initializers.insert(name.to_owned(), init.clone());
        Ok(init)
    }

    /// The shared encoder, as `encoder.rs`.
    ///
    /// # Shapes
    /// `[N, 3, R, R]` → `[N, 8E·(R/16)²]` (`[N, 8E·(R/32)²]` with `t`).
    fn encoder(&mut self, face: &Map) -> Result<Map, ExportError> {
        let e = self.cfg.e_dims;
        let mut widths = vec![e, 2 * e, 4 * e, 8 * e];
        if self.cfg.arch.is_t {
            widths.push(8 * e);
        }
        let mut xs = face.clone();
        for (i, &c) in widths.iter().enumerate() {
            xs = self.downscale(&xs, &format!("encoder.down.{i}"), c)?;
            let res = match i {
                0 => Some(0),
                _ if i == widths.len() - 1 => Some(1),
                _ => None,
            };
            if let (true, Some(r)) = (self.cfg.arch.is_t, res) {
                xs = self.residual(&xs, &format!("encoder.res.{r}"))?;
            }
        }
        let flat =
            self.g.node("Flatten", &[&xs.name], vec![attr_int("axis", 1)], "encoder.flatten");
        let flat = Map { name: flat, c: xs.c * xs.side * xs.side, side: 0 }; // [N, 8E·side²]
        if self.cfg.arch.is_u { self.pixel_norm(&flat, "encoder.pixel_norm") } else { Ok(flat) }
    }

    /// One inter: two dense layers, a reshape to `[N, out_ch, L, L]`, then (without `t`) an
    /// upscale, as `inter.rs`.
    ///
    /// # Shapes
    /// `[N, F]` → `[N, out_ch, 2L, 2L]` (`[N, out_ch, L, L]` with `t`).
    fn inter(&mut self, code: &Map, prefix: &str, out_ch: i64) -> Result<Map, ExportError> {
        let side = self.cfg.lowest_dense_res();
        let xs = self.dense(code, &format!("{prefix}.dense1"), self.cfg.ae_dims)?; // [N, A]
        let xs = self.dense(&xs, &format!("{prefix}.dense2"), side * side * out_ch)?; // [N, L²·out_ch]
        let shape =
            self.g.constant_i64(&format!("{prefix}.shape"), &[4], &[-1, out_ch, side, side]);
        let xs = self.g.node("Reshape", &[&xs.name, &shape], vec![], &format!("{prefix}.reshape"));
        let xs = Map { name: xs, c: out_ch, side }; // [N, out_ch, L, L]
        if self.cfg.arch.is_t {
            Ok(xs)
        } else {
            self.upscale(&xs, &format!("{prefix}.upscale"), out_ch)
        }
    }

    /// A decoder's image branch: upscales with residual blocks, the head(s), sigmoid.
    /// As `decoder.rs`.
    ///
    /// # Shapes
    /// `[N, C_in, r, r]` → `[N, 3, R, R]` f32 in [0,1], BGR.
    fn decoder_image(&mut self, code: &Map, prefix: &str) -> Result<Map, ExportError> {
        let d = self.cfg.d_dims;
        let widths = if self.cfg.arch.is_t {
            vec![8 * d, 8 * d, 4 * d, 2 * d]
        } else {
            vec![8 * d, 4 * d, 2 * d]
        };
        let mut xs = code.clone();
        for (i, &c) in widths.iter().enumerate() {
            xs = self.upscale(&xs, &format!("{prefix}.upscale.{i}"), c)?;
            xs = self.residual(&xs, &format!("{prefix}.res.{i}"))?;
        }
        let face = self.conv(&xs, &format!("{prefix}.out_conv"), 3, 1, 1)?;
        let face = if self.cfg.arch.is_d {
            let mut heads = vec![face];
            for i in 1..=3 {
                heads.push(self.conv(&xs, &format!("{prefix}.out_conv{i}"), 3, 3, 1)?);
            }
            let refs: Vec<&Map> = heads.iter().collect();
            let cat = self.concat(&refs, &format!("{prefix}.out_heads")); // [N, 12, R/2, R/2]
            self.depth_to_space(&cat, &format!("{prefix}.out_d2s"))? // [N, 3, R, R]
        } else {
            face
        };
        Ok(self.sigmoid(&face, &format!("{prefix}.out")))
    }

    /// A decoder's mask branch: upscales only, a 1×1 head, sigmoid.
    ///
    /// # Shapes
    /// `[N, C_in, r, r]` → `[N, 1, R, R]` f32 in [0,1].
    fn decoder_mask(&mut self, code: &Map, prefix: &str) -> Result<Map, ExportError> {
        let m = self.cfg.d_mask_dims;
        let mut widths = if self.cfg.arch.is_t {
            vec![8 * m, 8 * m, 4 * m, 2 * m]
        } else {
            vec![8 * m, 4 * m, 2 * m]
        };
        if self.cfg.arch.is_d {
            widths.push(m);
        }
        let mut xs = code.clone();
        for (i, &c) in widths.iter().enumerate() {
            xs = self.upscale(&xs, &format!("{prefix}.upscalem.{i}"), c)?;
        }
        let mask = self.conv(&xs, &format!("{prefix}.out_convm"), 1, 1, 1)?;
        Ok(self.sigmoid(&mask, &format!("{prefix}.outm")))
    }
}
