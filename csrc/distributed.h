// A process group as dfl's C++ shim holds it: the rendezvous store (a c10d TCPStore, served by
// rank 0) and the collective backend (Gloo from csrc/distributed.cpp, or NCCL from
// csrc/cuda_runtime.cpp). Shared by both files; Rust only sees an opaque pointer.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <string>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct DflGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;  // null until a backend is chosen
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{0};
};

// Copies `message` into the caller's buffer (always NUL-terminated, cut to fit).
inline void dfl_write_error(const std::string& message, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  size_t n = message.size() < err_len - 1 ? message.size() : err_len - 1;
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// The message of the exception being handled, without libtorch's C++ backtrace.
inline std::string dfl_current_error() {
  try {
    throw;
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown C++ exception";
  }
}

// Runs `body` (which returns 0 on success, or 1 after writing its own reason) and turns any
// C++ exception it throws into 1 with the exception's message in `err`.
template <class Body>
int dfl_guarded(char* err, size_t err_len, Body body) {
  try {
    return body();
  } catch (...) {
    dfl_write_error(dfl_current_error(), err, err_len);
    return 1;
  }
}
