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
