// libtorch's (Kineto) CPU profiler, which tch does not expose: records every ATen op run
// between dfl_profile_start and dfl_profile_stop (forward and autograd backward alike) and
// saves a Chrome trace, the same format `torch.profiler` exports. Used by
// `examples/train_step.rs --profile` and aggregated by `scripts/bench/profile_step.py`.
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>
#include <string>

namespace {
namespace prof = torch::profiler::impl;

prof::ProfilerConfig config(int record_shapes) {
  return prof::ProfilerConfig(prof::ProfilerState::KINETO, record_shapes != 0);
}

std::set<prof::ActivityType> cpu_only() { return {prof::ActivityType::CPU}; }
}  // namespace

extern "C" {

// Starts recording CPU ops on this thread (and the threads autograd hands work to), with input
// shapes when `record_shapes` is non-zero. Returns 0 on success, 1 if libtorch threw.
int dfl_profile_start(int record_shapes) {
  try {
    torch::autograd::profiler::prepareProfiler(config(record_shapes), cpu_only());
    torch::autograd::profiler::enableProfiler(config(record_shapes), cpu_only());
    return 0;
  } catch (...) {
    return 1;
  }
}

// Stops recording and writes the Chrome trace to `path` (NUL-terminated). Returns 0 on success,
// 1 if libtorch threw (no profiler running, or the file could not be written).
int dfl_profile_stop(const char* path) {
  try {
    auto result = torch::autograd::profiler::disableProfiler();
    if (!result) return 1;
    result->save(std::string(path));
    return 0;
  } catch (...) {
    return 1;
  }
}

// Opens a named range (a user annotation, as `torch.profiler.record_function`) around the ops
// that follow; returns a handle for dfl_profile_range_exit, or null if libtorch threw.
void* dfl_profile_range_enter(const char* name) {
  try {
    auto* range = new at::RecordFunction(at::RecordScope::USER_SCOPE);
    if (range->isActive()) range->before(std::string(name));
    return range;
  } catch (...) {
    return nullptr;
  }
}

// Closes a range opened by dfl_profile_range_enter (null is ignored).
void dfl_profile_range_exit(void* range) {
  try {
    delete static_cast<at::RecordFunction*>(range);
  } catch (...) {
  }
}
}
