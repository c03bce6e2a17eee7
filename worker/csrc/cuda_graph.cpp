// CUDA graph capture and replay of libtorch work, for wax's decode loop.
//
// tch exposes neither at::cuda::CUDAGraph nor a way to change libtorch's current stream (a capture
// must run on a non-default stream). This file is the small C ABI over both that
// worker/src/cuda_graph.rs wraps. Every entry point catches C++ exceptions and reports them through
// wax_graph_last_error() (thread-local), returning 0 on success and 1 on failure.
//
// Protocol (one thread): wax_graph_new → wax_graph_enter (libtorch now issues work on a side stream
// that first waits for the caller's stream) → warm-up work, then wax_graph_capture_begin … the
// work to record … wax_graph_capture_end → wax_graph_exit (the caller's stream waits for the side
// stream and becomes current again) → wax_graph_replay as often as needed, on the caller's stream.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/core/Event.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

thread_local std::string last_error;

struct WaxGraph {
  explicit WaxGraph(c10::DeviceIndex device)
      : device(device), side(c10::cuda::getStreamFromPool(false, device)) {}
  c10::DeviceIndex device;
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStream> previous;
  bool captured = false;
};

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return 1;
}

// `waiter` waits for the work issued to `stream` so far (no host synchronisation). c10::Event
// goes through libc10_cuda, so this file needs no direct link to the CUDA runtime.
void wait_for(c10::cuda::CUDAStream waiter, c10::cuda::CUDAStream stream) {
  c10::Event event(c10::DeviceType::CUDA);
  event.record(stream.unwrap());
  event.block(waiter.unwrap());
}

}  // namespace

extern "C" {

const char* wax_graph_last_error() { return last_error.c_str(); }

int wax_graph_new(int device, void** out) {
  return guarded([&] { *out = new WaxGraph(static_cast<c10::DeviceIndex>(device)); });
}

int wax_graph_enter(void* handle) {
  return guarded([&] {
    auto* g = static_cast<WaxGraph*>(handle);
    if (g->previous) throw std::runtime_error("wax_graph_enter: already entered");
    auto current = c10::cuda::getCurrentCUDAStream(g->device);
    wait_for(g->side, current);
    g->previous = current;
    c10::cuda::setCurrentCUDAStream(g->side);
  });
}

int wax_graph_exit(void* handle) {
  return guarded([&] {
    auto* g = static_cast<WaxGraph*>(handle);
    if (!g->previous) throw std::runtime_error("wax_graph_exit: not entered");
    auto previous = *g->previous;
    g->previous.reset();
    c10::cuda::setCurrentCUDAStream(previous);
    wait_for(previous, g->side);
  });
}

// Starts recording on the side stream. `pool_hi`/`pool_lo` name a memory pool shared with another
// graph of the same decoder (both 0: a new private pool).
int wax_graph_capture_begin(void* handle, uint64_t pool_hi, uint64_t pool_lo) {
  return guarded([&] {
    auto* g = static_cast<WaxGraph*>(handle);
    if (!g->previous) throw std::runtime_error("wax_graph_capture_begin: enter the side stream first");
    if (g->captured) throw std::runtime_error("wax_graph_capture_begin: already captured");
    g->graph.capture_begin({pool_hi, pool_lo}, cudaStreamCaptureModeThreadLocal);
  });
}

int wax_graph_capture_end(void* handle) {
  return guarded([&] {
    auto* g = static_cast<WaxGraph*>(handle);
    g->graph.capture_end();
    g->captured = true;
  });
}

int wax_graph_pool(void* handle, uint64_t* hi, uint64_t* lo) {
  return guarded([&] {
    auto pool = static_cast<WaxGraph*>(handle)->graph.pool();
    *hi = pool.first;
    *lo = pool.second;
  });
}

int wax_graph_replay(void* handle) {
  return guarded([&] {
    auto* g = static_cast<WaxGraph*>(handle);
    if (!g->captured) throw std::runtime_error("wax_graph_replay: nothing captured");
    g->graph.replay();
  });
}

void wax_graph_free(void* handle) {
  auto* g = static_cast<WaxGraph*>(handle);
  if (g == nullptr) return;
  if (g->previous) {
    // Abandoned mid-capture or while entered: give libtorch its stream back.
    try {
      c10::cuda::setCurrentCUDAStream(*g->previous);
    } catch (...) {
    }
  }
  try {
    delete g;
  } catch (...) {
  }
}

// The raw cudaStream_t of libtorch's current stream on `device` (for kernels launched outside
// libtorch, so that they are ordered with it and recorded by a capture).
int wax_current_stream(int device, uint64_t* out) {
  return guarded([&] {
    auto s = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
    *out = reinterpret_cast<uint64_t>(s.stream());
  });
}

}  // extern "C"
