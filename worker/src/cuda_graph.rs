//! CUDA graphs over libtorch work: record a sequence of tch operations once, replay it with one
//! launch.
//!
//! A decode step of a 0.6B model is ~1,300 small kernels; issued op by op through tch, the host
//! spends 10–15 µs on each and the GPU idles. Captured as a graph, the whole step is one launch.
//! tch has no binding for this, so csrc/cuda_graph.cpp (compiled by build.rs when libtorch has
//! CUDA) exposes `at::cuda::CUDAGraph` and libtorch's current-stream switch through a C ABI.
//!
//! Rules for what is captured (they are the caller's to keep): no host synchronisation (no
//! `.int64_value`, no `nonzero`, no copies from pageable host memory); every tensor whose address
//! the graph reads or writes across replays is allocated before capture and updated in place;
//! values that change between replays live in device tensors, not in Rust integers.

use std::fmt;

/// Why a graph could not be made or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CUDA graph: {0}")]
pub struct GraphError(pub String);

/// Whether this build can capture CUDA graphs (libtorch with CUDA and the shim compiled).
pub fn available() -> bool {
    cfg!(wax_cuda_graph)
}

#[cfg(wax_cuda_graph)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    unsafe extern "C" {
        pub fn wax_graph_last_error() -> *const c_char;
        pub fn wax_graph_new(device: c_int, out: *mut *mut c_void) -> c_int;
        pub fn wax_graph_enter(g: *mut c_void) -> c_int;
        pub fn wax_graph_exit(g: *mut c_void) -> c_int;
        pub fn wax_graph_capture_begin(g: *mut c_void, pool_hi: u64, pool_lo: u64) -> c_int;
        pub fn wax_graph_capture_end(g: *mut c_void) -> c_int;
        pub fn wax_graph_pool(g: *mut c_void, hi: *mut u64, lo: *mut u64) -> c_int;
        pub fn wax_graph_replay(g: *mut c_void) -> c_int;
        pub fn wax_graph_free(g: *mut c_void);
        pub fn wax_current_stream(device: c_int, out: *mut u64) -> c_int;
    }
}

#[cfg(wax_cuda_graph)]
fn check(status: std::ffi::c_int, what: &str) -> Result<(), GraphError> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated error string.
    let msg = unsafe { std::ffi::CStr::from_ptr(ffi::wax_graph_last_error()) };
    Err(GraphError(format!("{what}: {}", msg.to_string_lossy())))
}

/// A memory pool shared by the graphs of one decoder (their temporaries never overlap in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolId(pub u64, pub u64);

/// One captured graph on one CUDA device.
pub struct CudaGraph {
    #[cfg(wax_cuda_graph)]
    handle: *mut std::ffi::c_void,
    device: usize,
    captured: bool,
}

impl fmt::Debug for CudaGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaGraph")
            .field("device", &self.device)
            .field("captured", &self.captured)
            .finish()
    }
}

impl CudaGraph {
    /// Records `work` as a graph on CUDA device `device`: `warmup` eager runs on a side stream
    /// first (lazy initialisation such as cuBLAS workspaces must not happen during capture), then
    /// the capture. `pool` shares another graph's memory pool. The captured work has run zero
    /// times when this returns (capture only records), except for the warm-up runs.
    pub fn capture<E>(
        device: usize,
        pool: Option<PoolId>,
        warmup: usize,
        mut work: impl FnMut() -> Result<(), E>,
    ) -> Result<CudaGraph, GraphError>
    where
        E: fmt::Display,
    {
        #[cfg(wax_cuda_graph)]
        {
            let mut handle = std::ptr::null_mut();
            // SAFETY: the shim allocates a graph object and writes its pointer to `handle`.
            check(unsafe { ffi::wax_graph_new(device as i32, &mut handle) }, "new")?;
            let mut graph = CudaGraph { handle, device, captured: false };
            // SAFETY: `handle` is a live graph object; enter/exit are paired below on every path.
            check(unsafe { ffi::wax_graph_enter(graph.handle) }, "enter side stream")?;
            let recorded = (|| {
                for _ in 0..warmup {
                    work().map_err(|e| GraphError(format!("warm-up run failed: {e}")))?;
                }
                let PoolId(hi, lo) = pool.unwrap_or(PoolId(0, 0));
                // SAFETY: entered above; the graph has not been captured yet.
                check(unsafe { ffi::wax_graph_capture_begin(graph.handle, hi, lo) }, "begin")?;
                let ran = work();
                // SAFETY: a capture is in progress on this thread; ending it is always required.
                let ended = check(unsafe { ffi::wax_graph_capture_end(graph.handle) }, "end");
                ran.map_err(|e| GraphError(format!("captured run failed: {e}")))?;
                ended
            })();
            // SAFETY: entered above.
            let exited = check(unsafe { ffi::wax_graph_exit(graph.handle) }, "exit side stream");
            recorded?;
            exited?;
            graph.captured = true;
            Ok(graph)
        }
        #[cfg(not(wax_cuda_graph))]
        {
            let _ = (pool, warmup, &mut work);
            Err(GraphError(format!(
                "cuda:{device}: this build has no CUDA-graph support (libtorch without CUDA, or \
                 the CUDA headers were missing when it was built)"
            )))
        }
    }

    /// The graph's memory pool, to share with the next graph of the same decoder.
    pub fn pool(&self) -> Result<PoolId, GraphError> {
        #[cfg(wax_cuda_graph)]
        {
            let (mut hi, mut lo) = (0u64, 0u64);
            // SAFETY: live graph object; the shim writes two integers.
            check(unsafe { ffi::wax_graph_pool(self.handle, &mut hi, &mut lo) }, "pool")?;
            Ok(PoolId(hi, lo))
        }
        #[cfg(not(wax_cuda_graph))]
        Err(GraphError("no CUDA-graph support in this build".into()))
    }

    /// Launches the recorded work on libtorch's current stream (asynchronous).
    pub fn replay(&self) -> Result<(), GraphError> {
        #[cfg(wax_cuda_graph)]
        {
            // SAFETY: live, captured graph object.
            check(unsafe { ffi::wax_graph_replay(self.handle) }, "replay")
        }
        #[cfg(not(wax_cuda_graph))]
        Err(GraphError("no CUDA-graph support in this build".into()))
    }

    pub fn device(&self) -> usize {
        self.device
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(wax_cuda_graph)]
        // SAFETY: the handle came from wax_graph_new and is freed exactly once.
        unsafe {
            ffi::wax_graph_free(self.handle)
        };
    }
}

/// Where a kernel launched outside libtorch goes on `device` to stay ordered with libtorch's
/// work: its current stream, or the legacy default stream (handle 0) in builds without the shim,
/// where libtorch issues work there.
pub fn launch_stream(device: usize) -> Result<u64, GraphError> {
    if available() { current_stream(device) } else { Ok(0) }
}

/// The raw `cudaStream_t` libtorch currently issues work to on `device` (the capture stream while
/// a graph is being recorded): kernels launched outside libtorch go there to stay ordered with it.
pub fn current_stream(device: usize) -> Result<u64, GraphError> {
    #[cfg(wax_cuda_graph)]
    {
        let mut out = 0u64;
        // SAFETY: the shim writes one integer.
        check(unsafe { ffi::wax_current_stream(device as i32, &mut out) }, "current stream")?;
        Ok(out)
    }
    #[cfg(not(wax_cuda_graph))]
    Err(GraphError(format!("cuda:{device}: no CUDA-graph support in this build")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a GPU the capture fails cleanly (an error, not a crash); with one it
    /// records and replays an in-place update.
    #[test]
    fn capture_replays_or_fails_cleanly() {
        use tch::{Device, Kind, Tensor};
        if !tch::Cuda::is_available() {
            let r = CudaGraph::capture(0, None, 0, || Ok::<(), GraphError>(()));
            if available() {
                // The shim exists but there is no device: libtorch reports the error.
                assert!(r.is_err());
            } else {
                assert!(r.unwrap_err().0.contains("no CUDA-graph support"));
            }
            return;
        }
        let x = Tensor::zeros([4], (Kind::Float, Device::Cuda(0)));
        let g = CudaGraph::capture(0, None, 1, || {
            let _ = x.shallow_clone().f_add_scalar_(1.0)?;
            Ok::<(), tch::TchError>(())
        })
        .unwrap();
        // One warm-up run so far; three replays add three.
        for _ in 0..3 {
            g.replay().unwrap();
        }
        assert_eq!(Vec::<f32>::try_from(&x.to_device(Device::Cpu)).unwrap(), [4.0; 4]);
    }
}
