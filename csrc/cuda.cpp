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
