//! The layer table of a built model: every layer's parameter shapes and count, totals per part
//! (`dfl train --dry-run`).

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use tch::nn::VarStore;

use super::arch::ModelConfig;
use super::saehd::Part;

/// One layer: its weight-name prefix, parameter shapes and count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerRow {
    /// E.g. `decoder_src.upscale.0.conv`.
    pub name: String,
    /// `(leaf, shape)` pairs, e.g. `("weight", [2048, 256, 3, 3])`.
    pub tensors: Vec<(String, Vec<i64>)>,
    /// Parameters in the layer.
    pub params: i64,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The configuration the model was built from.
    pub config: ModelConfig,
    /// Layers in part order, then in natural name order.
    pub layers: Vec<LayerRow>,
    /// `(part, params)` for each top-level part.
    pub parts: Vec<(String, i64)>,
    /// All parameters.
    pub total: i64,
    /// `(discriminator, params)` for each discriminator the options turn on (not in `total`:
    /// they judge the model, they are not part of it).
    pub discriminators: Vec<(String, i64)>,
}

/// Compares dotted names segment by segment, numbers as numbers (`upscale.2` < `upscale.10`).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let key = |s: &str| -> Vec<(u64, String)> {
        s.split('.')
            .map(|seg| {
                seg.parse::<u64>().map_or((u64::MAX, seg.to_owned()), |n| (n, String::new()))
            })
            .collect()
    };
    key(a).cmp(&key(b))
}

/// Builds the table of the model whose weights are in `vs`.
pub fn summarize(vs: &VarStore, config: &ModelConfig) -> Summary {
    let parts_order: Vec<&str> = Part::of(config.arch.kind).iter().map(|p| p.name()).collect();
    let part_rank = |name: &str| {
        let top = name.split('.').next().unwrap_or("");
        parts_order.iter().position(|p| *p == top).unwrap_or(parts_order.len())
    };
    let mut vars: Vec<(String, Vec<i64>)> =
        vs.variables().into_iter().map(|(name, t)| (name, t.size())).collect();
    vars.sort_by(|(a, _), (b, _)| part_rank(a).cmp(&part_rank(b)).then_with(|| natural_cmp(a, b)));
    let mut layers: Vec<LayerRow> = Vec::new();
    for (name, shape) in vars {
        let (layer, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let params: i64 = shape.iter().product();
        match layers.last_mut() {
            Some(row) if row.name == layer => {
                row.tensors.push((leaf.to_owned(), shape));
                row.params += params;
            }
            _ => layers.push(LayerRow {
                name: layer.to_owned(),
                tensors: vec![(leaf.to_owned(), shape)],
                params,
            }),
        }
    }
    let parts = parts_order
        .iter()
        .map(|part| {
            let prefix = format!("{part}.");
            let sum = layers.iter().filter(|l| l.name.starts_with(&prefix)).map(|l| l.params).sum();
            ((*part).to_owned(), sum)
        })
        .collect();
    for row in &mut layers {
        row.tensors.sort_by(|a, b| b.0.cmp(&a.0)); // weight before bias
    }
    let total = layers.iter().map(|l| l.params).sum();
    Summary { config: *config, layers, parts, total, discriminators: Vec::new() }
}

/// Formats a count with thousands separators: 57,538,432.
pub fn with_commas(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "{} at {} px (ae_dims {}, e_dims {}, d_dims {}, d_mask_dims {})",
            c.arch, c.resolution, c.ae_dims, c.e_dims, c.d_dims, c.d_mask_dims
        )?;
        writeln!(f, "{:<36} {:<34} {:>12}", "layer", "parameter shapes", "params")?;
        for row in &self.layers {
            let shapes: Vec<String> = row
                .tensors
                .iter()
                .map(|(_, s)| s.iter().map(i64::to_string).collect::<Vec<_>>().join("×"))
                .collect();
            writeln!(
                f,
                "{:<36} {:<34} {:>12}",
                row.name,
                shapes.join(" + "),
                with_commas(row.params)
            )?;
        }
        writeln!(f)?;
        for (part, params) in &self.parts {
            writeln!(f, "{part:<71} {:>12}", with_commas(*params))?;
        }
        writeln!(f, "{:<71} {:>12}", "total", with_commas(self.total))?;
        for (name, params) in &self.discriminators {
            writeln!(f, "{name:<71} {:>12}", with_commas(*params))?;
        }
        Ok(())
    }
}
