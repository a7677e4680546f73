// The part of dfl's C++ shim that calls into libtorch's CUDA backend (libtorch_cuda, c10_cuda):
// the caching allocator's memory statistics and copies on a side stream. It is built as its
// own shared library, `libdfl_cuda.so`, which dfl opens only after libtorch_cuda.so is loaded,
// so that the dfl binary never links the CUDA libraries. Every function checks the device index
// against the devices CUDA sees first (the allocator indexes its per-device state without a
// check) and catches every C++ exception.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#define USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "distributed.h"

namespace {
bool is_device(int device) {
  return device >= 0 && device < static_cast<int>(c10::cuda::device_count());
}
constexpr size_t kAggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);

// Makes `waiter` wait (on the device, not the CPU) for the work queued on `queue` so far.
void wait_for(const c10::cuda::CUDAStream& queue, const c10::cuda::CUDAStream& waiter) {
  cudaEvent_t event;
  C10_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  auto recorded = cudaEventRecord(event, queue.stream());
  auto waited = recorded == cudaSuccess ? cudaStreamWaitEvent(waiter.stream(), event, 0) : recorded;
  // Destroying an event that a stream still waits on is allowed: it is released once done.
  C10_CUDA_CHECK(cudaEventDestroy(event));
  C10_CUDA_CHECK(waited);
}
}  // namespace

extern "C" {

// How many CUDA devices the runtime sees (0 without a driver or a GPU).
int dfl_cuda_device_count() { return static_cast<int>(c10::cuda::device_count()); }

// The peak bytes held by tensors on `device` (`allocated`) and reserved by libtorch's caching
// allocator (`reserved`, what the card must have free) since the last reset. Returns 0 on
// success, 1 when there is no such device or libtorch threw.
int dfl_cuda_peak_bytes(int device, long long* allocated, long long* reserved) {
  try {
    if (!is_device(device)) return 1;
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    *allocated = stats.allocated_bytes[kAggregate].peak;
    *reserved = stats.reserved_bytes[kAggregate].peak;
    return 0;
  } catch (...) {
    return 1;
  }
}

// Starts a new peak on `device`. Returns 0 on success, 1 when there is no such device or
// libtorch threw.
int dfl_cuda_reset_peak(int device) {
  try {
    if (!is_device(device)) return 1;
    c10::cuda::CUDACachingAllocator::resetPeakStats(device);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Returns a new handle to `host` copied to CUDA `device` as float32, or null when there is no
// such device or libtorch threw.
//
// The copy is queued on a side stream from libtorch's pool, so it runs while the kernels
// already queued on the device's current stream (the step before) execute; the current stream
// then waits for it, so no later kernel reads the batch early. From pinned memory the copy does
// not block the CPU; the pinned block stays reserved until the copy is done (libtorch's host
// allocator records the copy's stream). The result was allocated on the side stream and is used
// on the current one, which `record_stream` tells the device allocator.
at::Tensor* dfl_cuda_copy_on_side_stream(const at::Tensor* host, int device) {
  try {
    if (!is_device(device)) return nullptr;
    auto index = static_cast<c10::DeviceIndex>(device);
    auto current = c10::cuda::getCurrentCUDAStream(index);
    auto side = c10::cuda::getStreamFromPool(false, index);
    at::Tensor out;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      auto options = host->options().device(at::Device(at::kCUDA, index)).dtype(at::kFloat);
      out = host->to(options, /*non_blocking=*/host->is_pinned(), /*copy=*/false);
    }
    wait_for(side, current);
    out.record_stream(current);
    return new at::Tensor(out);
  } catch (...) {
    return nullptr;
  }
}

// Gives `group` (from `dfl_group_rendezvous` in csrc/distributed.cpp) an NCCL backend on CUDA
// `device`, whose collectives time out after the group's timeout. NCCL creates its
// communicator on the first collective. Returns 0, or 1 with the reason in `err`.
int dfl_cuda_group_use_nccl(DflGroup* group, int device, char* err, size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    if (!is_device(device)) {
      dfl_write_error("no CUDA device " + std::to_string(device), err, err_len);
      return 1;
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = group->timeout;
    group->backend =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, group->rank, group->world, opts);
    return 0;
  });
}

}  // extern "C"
