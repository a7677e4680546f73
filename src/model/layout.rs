//! Channels-last memory format (`dfl train --channels-last`).
//!
//! A 4-D activation or convolution weight `[N, C, H, W]` is normally stored with W fastest
//! (NCHW). Channels-last stores the same tensor with C fastest (NHWC): shape and values are
//! unchanged, only the strides differ. Tensor-core convolutions on NVIDIA GPUs work in NHWC, so
//! with NCHW tensors cuDNN transposes around every convolution; with channels-last weights and
//! inputs the convolutions stay in NHWC end to end (ATen picks the output format from the
//! input's and the weight's). oneDNN on the CPU supports both.
//!
//! Nothing else changes: a checkpoint holds values, not strides, so a model trained with the
//! option resumes without it and the other way round.

use tch::Tensor;
use tch::nn::VarStore;

unsafe extern "C" {
    fn dfl_channels_last(xs: *const std::ffi::c_void) -> *mut std::ffi::c_void;
    fn dfl_is_channels_last(xs: *const std::ffi::c_void) -> std::ffi::c_int;
}

/// Returns `xs` stored channels-last (a copy unless it already is), differentiable in `xs`.
///
/// # Shapes
/// `[N, C, H, W]` → the same.
///
/// # Panics
/// If `xs` is not 4-D (libtorch refuses the format for other ranks).
pub fn channels_last(xs: &Tensor) -> Tensor {
    // SAFETY: tch's tensor handle is an `at::Tensor*`, which the shim only reads; it returns a
    // fresh heap `at::Tensor*` (or null) that `Tensor::from_ptr` takes ownership of.
    unsafe {
        let out = dfl_channels_last(xs.as_ptr().cast());
        assert!(!out.is_null(), "channels-last needs a 4-D tensor, got {:?}", xs.size());
        Tensor::from_ptr(out.cast())
    }
}

/// Whether `xs` is stored channels-last. A tensor whose C, H or W is 1 can be both
/// channels-last and contiguous.
pub fn is_channels_last(xs: &Tensor) -> bool {
    // SAFETY: the shim only reads the handle and catches every C++ exception.
    unsafe { dfl_is_channels_last(xs.as_ptr().cast()) == 1 }
}

/// Stores every 4-D variable of `vs` (the convolution weights) channels-last, in place: the
/// variables keep their identity, so modules holding them see the new layout.
///
/// Must run before an optimizer binds the variables to its flat buffers.
pub fn vars_to_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                var.set_data(&channels_last(&var));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn keeps_shape_and_values_and_changes_strides() {
        let xs = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        assert!(!is_channels_last(&xs));
        let nhwc = channels_last(&xs);
        assert!(is_channels_last(&nhwc));
        assert_eq!(nhwc.size(), [2, 3, 4, 5]);
        assert_eq!(nhwc.stride(), [60, 1, 15, 3], "C fastest, then W, then H");
        assert_eq!(f64::try_from((&nhwc - &xs).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn converts_the_weights_of_a_var_store_in_place() {
        let vs = VarStore::new(Device::Cpu);
        let conv = tch::nn::conv2d(vs.root() / "conv", 3, 8, 3, Default::default());
        let before = conv.ws.copy();
        vars_to_channels_last(&vs);
        assert!(is_channels_last(&conv.ws), "the module's own handle sees the new layout");
        assert_eq!(vs.variables()["conv.bias"].dim(), 1, "1-D variables are left alone");
        assert_eq!(f64::try_from((&conv.ws - &before).abs().max()).unwrap(), 0.0);
        assert!(conv.ws.requires_grad());
    }

    #[test]
    #[should_panic(expected = "channels-last needs a 4-D tensor")]
    fn refuses_other_ranks() {
        let _ = channels_last(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)));
    }
}
