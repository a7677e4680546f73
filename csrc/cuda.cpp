// Whether libtorch's CUDA backend is registered in this process. dfl loads libtorch_cuda.so
// only when a command may compute on a GPU; this asks libtorch whether its CUDA hooks are the
// real ones (they report the CUDA runtime version torch was built with) or the CPU-only stand-in
// (which throws).
#include <ATen/detail/CUDAHooksInterface.h>

extern "C" {

// The CUDA runtime version libtorch's CUDA backend was built with (e.g. 13000), or -1 when the
// backend is not registered. Needs no GPU.
long long dfl_cuda_runtime_version() {
  try {
    return at::detail::getCUDAHooks().versionCUDART();
  } catch (...) {
    return -1;
  }
}

}  // extern "C"

// Process-wide CUDA math modes. They are libtorch's global context flags, which exist (and can
// be set and read) without a GPU; they only change kernels on one.
#include <ATen/Context.h>

extern "C" {

// TF32 tensor-core math for fp32 matmuls (cuBLAS) and convolutions (cuDNN) on Ampere and later
// GPUs: about 10 mantissa bits instead of 23 inside the product, fp32 everywhere else.
// Returns 0 on success, 1 if libtorch threw.
int dfl_set_tf32(int on) {
  try {
    at::globalContext().setAllowTF32CuBLAS(on != 0);
    at::globalContext().setAllowTF32CuDNN(on != 0);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Bit 0: TF32 allowed for cuBLAS matmuls; bit 1: for cuDNN convolutions; bit 2: cuDNN
// benchmark mode (time the candidate algorithms of each new convolution shape, keep the
// fastest). -1 if libtorch threw.
int dfl_math_modes() {
  try {
    auto& ctx = at::globalContext();
    return (ctx.allowTF32CuBLAS() ? 1 : 0) | (ctx.allowTF32CuDNN() ? 2 : 0) |
           (ctx.benchmarkCuDNN() ? 4 : 0);
  } catch (...) {
    return -1;
  }
}
}
