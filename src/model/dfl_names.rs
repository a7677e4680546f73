//! The correspondence between our SAEHD weight names and DeepFaceLab's, and the layout change
//! between them.
//!
//! DFL saves each part of the network (encoder, inter, decoders) as its own file,
//! `<model>_SAEHD_<stem>.npy`: a pickled dict from a TensorFlow variable path, with the part's
//! own scope removed, to an array. Sub-models are named after the attribute holding them, a list
//! element gets `_<index>`, and every variable ends in `:0`:
//!
//! ```text
//! ours                                   DFL file stem   DFL variable path
//! encoder.down.2.conv.weight             encoder         down1/downs_2/conv1/weight:0
//! encoder.down.2.conv.weight   (`t`)     encoder         down3/conv1/weight:0
//! encoder.res.1.conv2.bias     (`t`)     encoder         res5/conv2/bias:0
//! inter.dense1.weight                    inter           dense1/weight:0
//! inter_ab.upscale.conv.bias             inter_AB        upscale1/conv1/bias:0
//! decoder_src.upscale.0.conv.weight      decoder_src     upscale0/conv1/weight:0
//! decoder.res.2.conv1.weight             decoder         res2/conv1/weight:0
//! decoder.upscalem.3.conv.weight         decoder         upscalem3/conv1/weight:0
//! decoder_dst.out_conv1.weight           decoder_dst     out_conv1/weight:0
//! ```
//!
//! Layouts: a conv kernel is `[O, I, kH, kW]` here and `[kH, kW, I, O]` (HWIO) in DFL; a dense
//! weight is `[out, in]` here and `[in, out]` in DFL; biases are `[C]` in both. DFL's
//! depth-to-space has the same channel order as ours ([`super::blocks::depth_to_space`]), so
//! no channel is permuted.

use std::collections::HashMap;

use tch::Tensor;

use super::arch::Arch;

/// The suffix TensorFlow gives a variable's first output.
const TF_OUTPUT_SUFFIX: &str = ":0";

/// How one weight is laid out in DFL's files relative to ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// A conv kernel: ours `[O, I, kH, kW]`, DFL's `[kH, kW, I, O]`.
    Conv,
    /// A dense weight: ours `[out, in]`, DFL's `[in, out]`.
    Dense,
    /// A bias: `[C]` in both.
    Bias,
}

impl Layout {
    /// Rearranges one of our tensors into DFL's layout (a pure permutation of the elements).
    pub fn to_dfl(self, ours: &Tensor) -> Tensor {
        match self {
            Layout::Conv => ours.permute([2, 3, 1, 0]).contiguous(), // [kH, kW, I, O]
            Layout::Dense => ours.tr().contiguous(),                 // [in, out]
            Layout::Bias => ours.shallow_clone(),
        }
    }

    /// Rearranges a tensor in DFL's layout into ours (the inverse of [`Layout::to_dfl`]).
    pub fn from_dfl(self, dfl: &Tensor) -> Tensor {
        match self {
            Layout::Conv => dfl.permute([3, 2, 0, 1]).contiguous(), // [O, I, kH, kW]
            Layout::Dense => dfl.tr().contiguous(),                 // [out, in]
            Layout::Bias => dfl.shallow_clone(),
        }
    }

    /// Returns DFL's shape for one of our shapes; `None` when the rank does not fit the layout.
    pub fn dfl_shape(self, ours: &[i64]) -> Option<Vec<i64>> {
        match (self, ours) {
            (Layout::Conv, [o, i, h, w]) => Some(vec![*h, *w, *i, *o]),
            (Layout::Dense, [out, inp]) => Some(vec![*inp, *out]),
            (Layout::Bias, [c]) => Some(vec![*c]),
            _ => None,
        }
    }
}

/// Where one of our weights lives in a DFL model folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DflName {
    /// The file stem after `<model>_SAEHD_`: `encoder`, `inter`, `inter_AB`, `inter_B`,
    /// `decoder_src`, `decoder_dst` or `decoder`. It is also the TensorFlow scope DFL strips.
    pub file: &'static str,
    /// The variable path inside that file's dict, e.g. `down1/downs_0/conv1/weight:0`.
    pub path: String,
    /// How the array is laid out relative to ours.
    pub layout: Layout,
}

/// Returns DFL's file stem for one of our part names (`inter_ab` → `inter_AB`).
pub fn dfl_file(part: &str) -> Option<&'static str> {
    let file = match part {
        "encoder" => "encoder",
        "inter" => "inter",
        "inter_ab" => "inter_AB",
        "inter_b" => "inter_B",
        "decoder_src" => "decoder_src",
        "decoder_dst" => "decoder_dst",
        "decoder" => "decoder",
        _ => return None,
    };
    Some(file)
}

/// Translates one of our weight names for `arch` into DFL's; `None` for a name outside the
/// SAEHD network.
pub fn to_dfl(arch: Arch, ours: &str) -> Option<DflName> {
    let (part, rest) = ours.split_once('.')?;
    let file = dfl_file(part)?;
    let (module, leaf) = rest.rsplit_once('.')?;
    let leaf = match leaf {
        "weight" | "bias" => leaf,
        _ => return None,
    };
    let segments: Vec<&str> = module.split('.').collect();
    let path = match part {
        "encoder" => encoder_path(arch, &segments)?,
        "inter" | "inter_ab" | "inter_b" => inter_path(&segments)?,
        _ => decoder_path(&segments)?,
    };
    let layout = match (leaf, segments.as_slice()) {
        ("bias", _) => Layout::Bias,
        (_, ["dense1" | "dense2"]) => Layout::Dense,
        _ => Layout::Conv,
    };
    Some(DflName { file, path: format!("{path}/{leaf}{TF_OUTPUT_SUFFIX}"), layout })
}

/// `down.{i}.conv` → `down1/downs_{i}/conv1` (with `t`: `down{i+1}/conv1`); with `t`,
/// `res.0` → `res1` and `res.1` → `res5`.
fn encoder_path(arch: Arch, segments: &[&str]) -> Option<String> {
    match segments {
        ["down", i, "conv"] => {
            let i: usize = i.parse().ok()?;
            Some(if arch.is_t {
                format!("down{}/conv1", i + 1)
            } else {
                format!("down1/downs_{i}/conv1")
            })
        }
        ["res", i, conv @ ("conv1" | "conv2")] if arch.is_t => {
            let block = match *i {
                "0" => "res1",
                "1" => "res5",
                _ => return None,
            };
            Some(format!("{block}/{conv}"))
        }
        _ => None,
    }
}

/// `dense1`, `dense2`, and `upscale.conv` → `upscale1/conv1`.
fn inter_path(segments: &[&str]) -> Option<String> {
    match segments {
        [dense @ ("dense1" | "dense2")] => Some((*dense).to_owned()),
        ["upscale", "conv"] => Some("upscale1/conv1".to_owned()),
        _ => None,
    }
}

/// `upscale.{i}.conv` → `upscale{i}/conv1`, `upscalem.{i}.conv` → `upscalem{i}/conv1`,
/// `res.{i}.conv{k}` → `res{i}/conv{k}`, and the heads by their own names.
fn decoder_path(segments: &[&str]) -> Option<String> {
    match segments {
        [branch @ ("upscale" | "upscalem"), i, "conv"] => {
            let i: usize = i.parse().ok()?;
            Some(format!("{branch}{i}/conv1"))
        }
        ["res", i, conv @ ("conv1" | "conv2")] => {
            let i: usize = i.parse().ok()?;
            Some(format!("res{i}/{conv}"))
        }
        [head @ ("out_conv" | "out_conv1" | "out_conv2" | "out_conv3" | "out_convm")] => {
            Some((*head).to_owned())
        }
        _ => None,
    }
}

/// A name that has no DFL counterpart, or two names that share one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameMapError {
    /// One of our weights has no DFL name.
    #[error("weight {0} has no DeepFaceLab counterpart")]
    Unmapped(String),
    /// Two of our weights translate to the same DFL variable.
    #[error("weights {0} and {1} both map to DeepFaceLab's {2}")]
    Collision(String, String, String),
}

/// The two-way map between every weight of one network and DFL's names.
#[derive(Debug, Clone)]
pub struct NameMap {
    /// Ours → DFL's, in our names' order.
    forward: Vec<(String, DflName)>,
    /// (file, path) → index into `forward`.
    reverse: HashMap<(String, String), usize>,
}

impl NameMap {
    /// Builds the map for the weights `names` of an `arch` network.
    ///
    /// # Errors
    /// `Unmapped` or `Collision`: the map would not be a bijection.
    pub fn new<'a>(
        arch: Arch,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, NameMapError> {
        let mut forward = Vec::new();
        let mut reverse = HashMap::new();
        for name in names {
            let dfl = to_dfl(arch, name).ok_or_else(|| NameMapError::Unmapped(name.to_owned()))?;
            let key = (dfl.file.to_owned(), dfl.path.clone());
            if let Some(&other) = reverse.get(&key) {
                let (other_name, _): &(String, DflName) = &forward[other];
                let full = format!("{}:{}", dfl.file, dfl.path);
                return Err(NameMapError::Collision(other_name.clone(), name.to_owned(), full));
            }
            reverse.insert(key, forward.len());
            forward.push((name.to_owned(), dfl));
        }
        Ok(Self { forward, reverse })
    }

    /// Iterates over (our name, DFL's name) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DflName)> {
        self.forward.iter().map(|(ours, dfl)| (ours.as_str(), dfl))
    }

    /// Returns our name for DFL's variable `path` in file `file`.
    pub fn ours(&self, file: &str, path: &str) -> Option<&str> {
        let key = (file.to_owned(), path.to_owned());
        self.reverse.get(&key).map(|&i| self.forward[i].0.as_str())
    }

    /// Returns the DFL file stems this network uses, in the order of our names.
    pub fn files(&self) -> Vec<&'static str> {
        let mut files: Vec<&'static str> = Vec::new();
        for (_, dfl) in &self.forward {
            if !files.contains(&dfl.file) {
                files.push(dfl.file);
            }
        }
        files
    }

    /// Returns the number of weights.
    pub fn len(&self) -> usize {
        self.forward.len()
    }

    /// Returns true when the map holds no weight.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use tch::{Device, Kind};

    /// One archi's golden names with their shapes.
    type KeyList = Vec<(String, Vec<i64>)>;

    /// Every golden key list: (archi, our names and shapes).
    fn golden_lists() -> Vec<(String, KeyList)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
        let mut lists: Vec<_> = std::fs::read_dir(&dir)
            .expect("golden dir")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let archi = name.strip_suffix(".keys.txt")?.to_owned();
                let text = std::fs::read_to_string(e.path()).expect("key list");
                let keys = text
                    .lines()
                    .map(|line| {
                        let (name, shape) = line.split_once(' ').expect("name and shape");
                        let shape = shape.trim_matches(|c| c == '[' || c == ']');
                        let shape = shape.split(", ").map(|d| d.parse().expect("dim")).collect();
                        (name.to_owned(), shape)
                    })
                    .collect();
                Some((archi, keys))
            })
            .collect();
        lists.sort();
        lists
    }

    #[test]
    fn every_golden_key_maps_one_to_one() {
        let lists = golden_lists();
        assert_eq!(lists.len(), 14, "one list per archi");
        for (archi, keys) in lists {
            let arch: Arch = archi.parse().unwrap();
            let map = NameMap::new(arch, keys.iter().map(|(n, _)| n.as_str()))
                .unwrap_or_else(|e| panic!("{archi}: {e}"));
            assert_eq!(map.len(), keys.len());
            for ((ours, shape), (mapped, dfl)) in keys.iter().zip(map.iter()) {
                assert_eq!(ours, mapped);
                assert_eq!(map.ours(dfl.file, &dfl.path), Some(ours.as_str()), "{archi}: {ours}");
                assert!(dfl.layout.dfl_shape(shape).is_some(), "{archi}: {ours} {shape:?} {dfl:?}");
            }
            let want = if arch.kind == super::super::arch::ArchKind::Df {
                vec!["decoder_dst", "decoder_src", "encoder", "inter"]
            } else {
                vec!["decoder", "encoder", "inter_AB", "inter_B"]
            };
            assert_eq!(map.files(), want, "{archi}");
        }
    }

    #[test]
    fn names_follow_dfls_scopes() {
        let df: Arch = "df".parse().unwrap();
        let t: Arch = "liae-t".parse().unwrap();
        let cases = [
            (
                df,
                "encoder.down.3.conv.weight",
                "encoder",
                "down1/downs_3/conv1/weight:0",
                Layout::Conv,
            ),
            (t, "encoder.down.4.conv.bias", "encoder", "down5/conv1/bias:0", Layout::Bias),
            (t, "encoder.res.1.conv2.weight", "encoder", "res5/conv2/weight:0", Layout::Conv),
            (t, "inter_ab.dense2.weight", "inter_AB", "dense2/weight:0", Layout::Dense),
            (df, "inter.upscale.conv.weight", "inter", "upscale1/conv1/weight:0", Layout::Conv),
            (
                t,
                "decoder.upscalem.4.conv.weight",
                "decoder",
                "upscalem4/conv1/weight:0",
                Layout::Conv,
            ),
            (df, "decoder_dst.out_convm.bias", "decoder_dst", "out_convm/bias:0", Layout::Bias),
        ];
        for (arch, ours, file, path, layout) in cases {
            assert_eq!(
                to_dfl(arch, ours),
                Some(DflName { file, path: path.to_owned(), layout }),
                "{ours}"
            );
        }
        assert_eq!(to_dfl(df, "encoder.res.0.conv1.weight"), None, "no residual blocks without t");
        assert_eq!(to_dfl(df, "gan.conv.weight"), None);
    }

    #[test]
    fn layouts_invert_exactly() {
        let conv = Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu));
        let dfl = Layout::Conv.to_dfl(&conv);
        assert_eq!(dfl.size(), [5, 5, 3, 4]);
        // DFL's [h, w, i, o] element is our [o, i, h, w].
        assert_eq!(dfl.double_value(&[1, 2, 0, 3]), conv.double_value(&[3, 0, 1, 2]));
        assert!(Layout::Conv.from_dfl(&dfl).equal(&conv));
        let dense = Tensor::randn([6, 9], (Kind::Float, Device::Cpu));
        assert_eq!(Layout::Dense.to_dfl(&dense).size(), [9, 6]);
        assert!(Layout::Dense.from_dfl(&Layout::Dense.to_dfl(&dense)).equal(&dense));
    }
}
