// Autocast with a chosen dtype. tch 0.26 can switch libtorch's autocast on and off but not pick
// its dtype, and CUDA autocast defaults to float16, which collapses SAEHD models. These two
// functions enter and leave an autocast region with bfloat16 for one device type.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int device) { return device == 1 ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Enters a bfloat16 autocast region for `device` (0 = CPU, 1 = CUDA). Writes the previous
// enabled flag and dtype to `prev_enabled` / `prev_dtype` for dfl_autocast_exit. Returns 0 on
// success, 1 if libtorch threw.
int dfl_autocast_enter_bf16(int device, int* prev_enabled, int* prev_dtype) {
  try {
    auto type = device_type(device);
    *prev_enabled = at::autocast::is_autocast_enabled(type) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (...) {
    return 1;
  }
}

// Leaves the region, restoring what dfl_autocast_enter_bf16 saw; clears the cast cache when
// the outermost region ends. Returns 0 on success, 1 if libtorch threw.
int dfl_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  try {
    auto type = device_type(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(type, prev_enabled != 0);
    at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(prev_dtype));
    return 0;
  } catch (...) {
    return 1;
  }
}
}
