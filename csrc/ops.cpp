// ATen ops that tch 0.26 generates without an argument dfl needs: `leaky_relu`'s negative
// slope (tch's `Tensor::leaky_relu` always uses 0.01). Tensors cross as tch's handles, which
// are `at::Tensor*`; a returned handle is owned by the caller (tch frees it with `delete`).
#include <ATen/core/Tensor.h>
#include <ATen/ops/leaky_relu.h>

extern "C" {

// Returns a new handle to leaky_relu(x, slope) (autograd-aware, as `F.leaky_relu`), or null
// if libtorch threw.
at::Tensor* dfl_leaky_relu(const at::Tensor* x, double slope) {
  try {
    return new at::Tensor(at::leaky_relu(*x, slope));
  } catch (...) {
    return nullptr;
  }
}
}

// Memory formats, which tch 0.26 cannot name. `ChannelsLast` stores a 4-D [N, C, H, W] tensor
// as N·H·W·C (NHWC): the layout tensor-core convolutions (cuDNN, and oneDNN on CPU) run
// fastest in. Shapes and values are unchanged; only strides differ.
#include <ATen/ops/contiguous.h>

extern "C" {

// Returns a new handle to `x` laid out channels-last (x itself when it already is), or null if
// libtorch threw (e.g. `x` is not 4-D).
at::Tensor* dfl_channels_last(const at::Tensor* x) {
  try {
    return new at::Tensor(x->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (...) {
    return nullptr;
  }
}

// 1 when `x` is stored channels-last, 0 when not, -1 if libtorch threw.
int dfl_is_channels_last(const at::Tensor* x) {
  try {
    return x->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
}
