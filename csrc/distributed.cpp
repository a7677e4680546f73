// PyTorch's distributed runtime (c10d) for data-parallel training, which tch does not bind:
// the rendezvous (a TCPStore that rank 0 serves and every rank connects to), the Gloo backend
// for CPU tensors, and the collectives dfl uses (all-reduce, broadcast, barrier) plus the
// store's key-value calls. The NCCL backend lives in csrc/cuda_runtime.cpp (it needs
// libtorch_cuda).
//
// Every function catches every C++ exception and reports it as a message in the caller's
// buffer with a non-zero return; every collective waits at most the group's timeout, so a dead
// or hung peer becomes an error, never a hang.
#define USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <thread>
#include <vector>

#include "distributed.h"

namespace {
c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    default:
      return c10d::ReduceOp::MIN;
  }
}

// Waits for `work` up to the group's timeout; throws when it failed or timed out.
void finish(const DflGroup& group, const c10::intrusive_ptr<c10d::Work>& work) {
  if (!work->wait(group.timeout)) {
    throw std::runtime_error("the collective did not complete within the timeout");
  }
}

bool ready(const DflGroup* group, char* err, size_t err_len) {
  if (group == nullptr || !group->backend) {
    dfl_write_error("the process group has no backend", err, err_len);
    return false;
  }
  return true;
}
}  // namespace

extern "C" {

// Meets the other `world - 1` ranks at host:port: rank 0 serves the store there and waits for
// every rank to connect; the others connect to it, retrying until `timeout_ms`. Returns the
// group (without a backend yet), or null with the reason in `err`.
DflGroup* dfl_group_rendezvous(const char* host, int port, int rank, int world,
                               long long timeout_ms, char* err, size_t err_len) {
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto group = new DflGroup();
    try {
      group->store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    } catch (...) {
      delete group;
      throw;
    }
    group->rank = rank;
    group->world = world;
    group->timeout = std::chrono::milliseconds(timeout_ms);
    return group;
  } catch (...) {
    dfl_write_error(dfl_current_error(), err, err_len);
    return nullptr;
  }
}

// Gives the group a Gloo backend whose connections listen on `interface` (a network interface
// name such as "eth0") when set, else on `hostname` (an address this machine has). Returns 0,
// or 1 with the reason in `err`.
int dfl_group_use_gloo(DflGroup* group, const char* interface, const char* hostname, char* err,
                       size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(group->timeout);
    if (interface != nullptr && interface[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    }
    // One thread runs the collectives: dfl waits for each before the next.
    opts->threads = 1;
    group->backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, group->rank, group->world, opts);
    return 0;
  });
}

// Reduces `tensor` in place over all ranks (op 0 sum, 1 max, 2 min); every rank ends with the
// same values. Returns 0, or 1 with the reason in `err`.
int dfl_group_all_reduce(DflGroup* group, const at::Tensor* tensor, int op, char* err,
                         size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    if (!ready(group, err, err_len)) return 1;
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    opts.timeout = group->timeout;
    finish(*group, group->backend->allreduce(tensors, opts));
    return 0;
  });
}

// Overwrites `tensor` on every rank with rank `root`'s. Returns 0, or 1 with the reason.
int dfl_group_broadcast(DflGroup* group, const at::Tensor* tensor, int root, char* err,
                        size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    if (!ready(group, err, err_len)) return 1;
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = group->timeout;
    finish(*group, group->backend->broadcast(tensors, opts));
    return 0;
  });
}

// Returns once every rank has called it. Returns 0, or 1 with the reason.
int dfl_group_barrier(DflGroup* group, char* err, size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    if (!ready(group, err, err_len)) return 1;
    c10d::BarrierOptions opts;
    opts.timeout = group->timeout;
    finish(*group, group->backend->barrier(opts));
    return 0;
  });
}

// Stores `len` bytes under `key` in the rendezvous store. Returns 0, or 1 with the reason.
int dfl_group_store_set(DflGroup* group, const char* key, const unsigned char* data, size_t len,
                        char* err, size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    group->store->set(key, std::vector<uint8_t>(data, data + len));
    return 0;
  });
}

// Waits up to `timeout_ms` for `key`, then hands its bytes to `sink(ctx, data, len)`. Returns
// 0, or 1 with the reason (the key never came, or the store is gone).
int dfl_group_store_get(DflGroup* group, const char* key, long long timeout_ms,
                        void (*sink)(void*, const unsigned char*, size_t), void* ctx, char* err,
                        size_t err_len) {
  return dfl_guarded(err, err_len, [&] {
    group->store->wait({std::string(key)}, std::chrono::milliseconds(timeout_ms));
    auto value = group->store->get(key);
    sink(ctx, value.data(), value.size());
    return 0;
  });
}

// 1 when `key` is in the store, 0 when not, -1 when the store cannot be reached.
int dfl_group_store_has(DflGroup* group, const char* key) {
  try {
    return group->store->check({std::string(key)}) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Closes the backend's connections and the store. Only for a group whose collectives all
// finished: a backend with work still waiting on a dead peer would block here.
void dfl_group_free(DflGroup* group) {
  try {
    if (group != nullptr && group->backend) group->backend->shutdown();
  } catch (...) {
  }
  delete group;
}
}
