//! Numeric precision of the forward pass: fp32, or bfloat16 autocast (weights, gradients and
//! optimizer state stay fp32). fp16 is not offered: it is known to collapse these models.
//!
//! tch switches autocast on and off but cannot choose its dtype (CUDA's default is fp16), so a
//! small C++ shim (`csrc/autocast.cpp`, built by `build.rs`) opens bfloat16 regions.

use serde::{Deserialize, Serialize};
use tch::Device;

/// The forward pass's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in float32 (DFL's choice).
    #[default]
    Fp32,
    /// Convolutions and matrix products in bfloat16 under autocast; for CUDA GPUs with bf16
    /// support (Ampere and newer).
    Bf16,
}

/// libtorch refused to open or close an autocast region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("libtorch could not {0} a bfloat16 autocast region; use --precision fp32")]
pub struct AutocastError(&'static str);

unsafe extern "C" {
    fn dfl_autocast_enter_bf16(device: i32, prev_enabled: *mut i32, prev_dtype: *mut i32) -> i32;
    fn dfl_autocast_exit(device: i32, prev_enabled: i32, prev_dtype: i32) -> i32;
}

/// An open bfloat16 autocast region; dropping it restores the previous autocast state.
struct Bf16Region {
    device: i32,
    prev_enabled: i32,
    prev_dtype: i32,
}

impl Bf16Region {
    fn enter(device: Device) -> Result<Self, AutocastError> {
        let device = i32::from(device.is_cuda());
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: the shim only writes the two out-parameters, which point at live locals.
        let status = unsafe { dfl_autocast_enter_bf16(device, &mut prev_enabled, &mut prev_dtype) };
        if status != 0 {
            return Err(AutocastError("open"));
        }
        Ok(Self { device, prev_enabled, prev_dtype })
    }
}

impl Drop for Bf16Region {
    fn drop(&mut self) {
        // SAFETY: plain values; the shim catches every C++ exception.
        let status = unsafe { dfl_autocast_exit(self.device, self.prev_enabled, self.prev_dtype) };
        if status != 0 {
            log::error!("{}", AutocastError("close"));
        }
    }
}

/// Runs `f` (a forward pass) on `device` at `precision`.
///
/// # Errors
/// `AutocastError` when libtorch refuses the bfloat16 region.
pub fn run_at<T>(
    precision: Precision,
    device: Device,
    f: impl FnOnce() -> T,
) -> Result<T, AutocastError> {
    match precision {
        Precision::Fp32 => Ok(f()),
        Precision::Bf16 => {
            let _region = Bf16Region::enter(device)?;
            Ok(f())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::ModelConfig;
    use crate::model::saehd::Saehd;
    use tch::{Kind, Tensor, nn};

    fn tiny(arch: &str) -> (nn::VarStore, Saehd, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig {
            arch: arch.parse().unwrap(),
            resolution: 32,
            ae_dims: 16,
            e_dims: 4,
            d_dims: 4,
            d_mask_dims: 4,
        };
        let model = Saehd::new(&vs.root(), &cfg);
        (vs, model, Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)))
    }

    #[test]
    fn bf16_runs_convolutions_in_bf16_and_restores_fp32_after() {
        let (vs, model, xs) = tiny("df-ud");
        let conv = |xs: &Tensor| {
            xs.conv2d(
                &vs.variables()["encoder.down.0.conv.weight"],
                None::<Tensor>,
                [2],
                [2],
                [1],
                1,
            )
        };

        let (inside, pred) =
            run_at(Precision::Bf16, Device::Cpu, || (conv(&xs).kind(), model.swap(&xs))).unwrap();
        assert_eq!(inside, Kind::BFloat16, "autocast casts the convolution");
        assert_eq!(conv(&xs).kind(), Kind::Float, "fp32 again after the region");

        let exact = model.swap(&xs);
        let diff = (pred.image.to_kind(Kind::Float) - &exact.image).abs().max().double_value(&[]);
        assert!(diff < 0.05, "bf16 forward strays {diff} from fp32");
        assert!(diff > 0.0, "the bf16 path really ran in lower precision");
        let (fp32_kind, _) =
            run_at(Precision::Fp32, Device::Cpu, || (conv(&xs).kind(), ())).unwrap();
        assert_eq!(fp32_kind, Kind::Float);
    }

    #[test]
    fn gradients_reach_fp32_weights_through_a_bf16_forward() {
        let (vs, model, xs) = tiny("liae-ud");
        let pred = run_at(Precision::Bf16, Device::Cpu, || model.train_forward(&xs, &xs)).unwrap();
        let loss = (pred.src_src.image.to_kind(Kind::Float) - &xs).square().mean(Kind::Float);
        loss.backward();
        let w = &vs.variables()["decoder.upscale.0.conv.weight"];
        assert_eq!(w.kind(), Kind::Float);
        assert_eq!(w.grad().kind(), Kind::Float);
        assert!(w.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
