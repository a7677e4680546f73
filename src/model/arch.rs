//! Which SAEHD network to build: the archi string (`df`, `liae-ud`, …) and the dimensions.
//!
//! DFL: `models/Model_SAEHD/Model.py` (`on_initialize_options`); `docs/dfl-parity.md`, "SAEHD
//! networks" and "Options".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest resolution any model may have (a config file that asks for more is refused
/// before anything is allocated; DFL's options stop at 640).
const MAX_RESOLUTION: i64 = 1024;
/// The largest width of any part (DFL's options stop at 1024).
const MAX_DIMS: i64 = 2048;

/// The two SAEHD families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchKind {
    /// One shared encoder and inter, one decoder per person.
    Df,
    /// One shared encoder and decoder, two inters (`inter_ab` for both, `inter_b` for dst).
    Liae,
}

/// An archi: the family plus the option letters `u`, `d`, `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch {
    /// DF or LIAE.
    pub kind: ArchKind,
    /// `u`: pixel-norm on the encoder output.
    pub is_u: bool,
    /// `d`: half-resolution decoder with a sub-pixel head ("double resolution").
    pub is_d: bool,
    /// `t`: deeper encoder and decoders, no upscale in the inter.
    pub is_t: bool,
}

/// An archi string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown archi {0:?}; use df or liae, optionally with letters from u, d, t (e.g. liae-ud)")]
pub struct ParseArchError(String);

impl FromStr for Arch {
    type Err = ParseArchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseArchError(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let (kind, letters) = lower.split_once('-').unwrap_or((lower.as_str(), ""));
        let kind = match kind {
            "df" => ArchKind::Df,
            "liae" => ArchKind::Liae,
            _ => return Err(err()),
        };
        let mut arch = Arch { kind, is_u: false, is_d: false, is_t: false };
        for c in letters.chars() {
            let flag = match c {
                'u' => &mut arch.is_u,
                'd' => &mut arch.is_d,
                't' => &mut arch.is_t,
                _ => return Err(err()),
            };
            if std::mem::replace(flag, true) {
                return Err(err());
            }
        }
        Ok(arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ArchKind::Df => "df",
            ArchKind::Liae => "liae",
        })?;
        let letters: String = [(self.is_u, 'u'), (self.is_d, 'd'), (self.is_t, 't')]
            .iter()
            .filter_map(|&(on, c)| on.then_some(c))
            .collect();
        if letters.is_empty() { Ok(()) } else { write!(f, "-{letters}") }
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything that fixes the network's shape (frozen in `config.json` after the first run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The archi, e.g. `liae-ud`.
    pub arch: Arch,
    /// Input and output side in pixels: a multiple of 16 (32 with `d`), 64–640.
    pub resolution: i64,
    /// Bottleneck width A, 32–1024.
    pub ae_dims: i64,
    /// Encoder base width E, 16–256, even.
    pub e_dims: i64,
    /// Decoder base width D, 16–256, even.
    pub d_dims: i64,
    /// Mask-branch width M, 16–256, even.
    pub d_mask_dims: i64,
}

impl Default for ModelConfig {
    /// DFL's SAEHD defaults: liae-ud, 128 px, A 256, E 64, D 64, M 22.
    fn default() -> Self {
        Self {
            arch: Arch { kind: ArchKind::Liae, is_u: true, is_d: true, is_t: false },
            resolution: 128,
            ae_dims: 256,
            e_dims: 64,
            d_dims: 64,
            d_mask_dims: default_mask_dims(64),
        }
    }
}

/// DFL's default mask width for a decoder width: d_dims / 3 rounded up to even.
pub fn default_mask_dims(d_dims: i64) -> i64 {
    let m = d_dims / 3;
    m + m % 2
}

/// A model configuration DFL would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error saying `what` is wrong.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

impl ModelConfig {
    /// Checks the ranges DFL enforces (tests may use smaller dims than DFL allows: see
    /// [`ModelConfig::validate_dims`]).
    ///
    /// # Errors
    /// A `ConfigError` naming the option and its allowed values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_resolution()?;
        let range = |name: &str, v: i64, lo: i64, hi: i64| {
            if (lo..=hi).contains(&v) && (name == "ae_dims" || v % 2 == 0) {
                Ok(())
            } else {
                let even = if name == "ae_dims" { "" } else { ", even" };
                Err(ConfigError(format!("{name} {v} is outside {lo}–{hi}{even}")))
            }
        };
        range("ae_dims", self.ae_dims, 32, 1024)?;
        range("e_dims", self.e_dims, 16, 256)?;
        range("d_dims", self.d_dims, 16, 256)?;
        range("d_mask_dims", self.d_mask_dims, 16, 256)
    }

    /// Checks only what the network's shapes need: resolution divisibility and positive dims.
    ///
    /// # Errors
    /// A `ConfigError` naming the offending value.
    pub fn validate_dims(&self) -> Result<(), ConfigError> {
        let step = self.resolution_step();
        if self.resolution < step || self.resolution % step != 0 {
            return Err(ConfigError(format!(
                "resolution {} must be a positive multiple of {step} for {}",
                self.resolution, self.arch
            )));
        }
        if self.resolution > MAX_RESOLUTION {
            return Err(ConfigError(format!(
                "resolution {} is above {MAX_RESOLUTION}",
                self.resolution
            )));
        }
        let dims = [self.ae_dims, self.e_dims, self.d_dims, self.d_mask_dims];
        if dims.iter().any(|&d| !(1..=MAX_DIMS).contains(&d)) {
            return Err(ConfigError(format!("every dims value must be from 1 to {MAX_DIMS}")));
        }
        Ok(())
    }

    fn validate_resolution(&self) -> Result<(), ConfigError> {
        self.validate_dims()?;
        if !(64..=640).contains(&self.resolution) {
            return Err(ConfigError(format!("resolution {} is outside 64–640", self.resolution)));
        }
        Ok(())
    }

    /// Returns 32 for `d` archis (two bottleneck halvings more), else 16.
    pub fn resolution_step(&self) -> i64 {
        if self.arch.is_d { 32 } else { 16 }
    }

    /// Returns L, the inter's spatial side before its upscale: R/16, or R/32 with `d`.
    pub fn lowest_dense_res(&self) -> i64 {
        self.resolution / self.resolution_step()
    }

    /// Returns the side of the encoder's output map: R/16, or R/32 with `t`.
    pub fn encoder_out_res(&self) -> i64 {
        self.resolution / if self.arch.is_t { 32 } else { 16 }
    }

    /// Returns the flattened encoder output size: 8E · side².
    pub fn encoder_out_len(&self) -> i64 {
        self.e_dims * 8 * self.encoder_out_res().pow(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archi_strings_round_trip() {
        for s in ["df", "liae", "df-u", "liae-ud", "df-udt", "liae-t"] {
            assert_eq!(s.parse::<Arch>().unwrap().to_string(), s);
        }
        assert_eq!("LIAE-DU".parse::<Arch>().unwrap().to_string(), "liae-ud");
        for bad in ["", "dfx", "df-x", "liae-uu", "df-c", "sae"] {
            assert!(bad.parse::<Arch>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_dfls() {
        let cfg = ModelConfig::default();
        assert_eq!(cfg.arch.to_string(), "liae-ud");
        assert_eq!(cfg.d_mask_dims, 22);
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.lowest_dense_res(), 4);
    }

    #[test]
    fn resolutions_must_fit_the_archi() {
        let mut cfg =
            ModelConfig { arch: "df".parse().unwrap(), resolution: 144, ..Default::default() };
        assert!(cfg.validate().is_ok());
        cfg.arch = "df-d".parse().unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("multiple of 32"));
        cfg.resolution = 32;
        assert!(cfg.validate_dims().is_ok() && cfg.validate().is_err());
    }
}
