//! What the CUDA kernels built from bf16/f32 templates share: the element helpers of their
//! sources, compiling with NVRTC, loading into libtorch's context, and the error type.

use std::sync::Arc;

use std::ffi::c_void;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError, result, sys};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

/// CUDA C++ put before a kernel's source (after its `#define`s, `WAX_BF16` among them): the
/// element type `wax_t` (bfloat16 as its 16 bits, or float32), `wax_load` (to float32),
/// `wax_round` (float32 to the element, round to nearest even as libtorch rounds, NaN kept),
/// `wax_to_kind` (float32 rounded to the element and back) and `wax_neg_inf`.
pub const PRELUDE: &str = r#"
#if WAX_BF16
typedef unsigned short wax_t;
__device__ __forceinline__ float wax_load(const wax_t* p) {
    return __uint_as_float(((unsigned int)(*p)) << 16);
}
// float32 -> bfloat16, round to nearest even (NaN stays NaN), as libtorch rounds.
__device__ __forceinline__ wax_t wax_round(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (wax_t)0x7fc0u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (wax_t)(u >> 16);
}
#else
typedef float wax_t;
__device__ __forceinline__ float wax_load(const wax_t* p) { return *p; }
__device__ __forceinline__ wax_t wax_round(float f) { return f; }
#endif

__device__ __forceinline__ float wax_neg_inf() { return __int_as_float((int)0xff800000u); }

// Rounds to the element kind and back to float32 (identity for float32).
__device__ __forceinline__ float wax_to_kind(float f) {
#if WAX_BF16
    return __uint_as_float(((unsigned int)wax_round(f)) << 16);
#else
    return f;
#endif
}
"#;

/// Rounds a float32 to the element kind and back (bfloat16: round to nearest even).
pub fn to_kind(x: f32, bf16: bool) -> f32 {
    if !bf16 || x.is_nan() {
        return x;
    }
    let u = x.to_bits();
    let r = u.wrapping_add(0x7fff + ((u >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(r)
}

/// Errors of compiling, loading or launching a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// `libnvrtc` could not be loaded (it must be on `LD_LIBRARY_PATH` or the loader's path).
    #[error("NVRTC (libnvrtc.so) not found: cannot compile {0}")]
    NvrtcMissing(&'static str),
    /// `libcuda` could not be loaded: a machine without the CUDA driver.
    #[error("CUDA driver (libcuda.so) not found")]
    DriverMissing,
    /// NVRTC rejected the source.
    #[error("NVRTC failed to compile {kernel}: {message}\n{log}")]
    Compile { kernel: &'static str, message: String, log: String },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {call} failed: {source}")]
    Driver {
        call: &'static str,
        #[source]
        source: DriverError,
    },
    /// The shape or the launch arguments are invalid.
    #[error("bad argument: {0}")]
    BadArgument(String),
}

/// Checks raw device addresses before a launch: `(name, address, alignment in bytes, whether it
/// may not be null)`. A null address that is not needed passes (the kernel does not read it).
pub(crate) fn check_pointers(pointers: &[(&str, u64, u64, bool)]) -> Result<(), KernelError> {
    for &(name, ptr, align, needed) in pointers {
        if needed && ptr == 0 {
            return Err(KernelError::BadArgument(format!("{name} is a null pointer")));
        }
        if ptr % align != 0 {
            return Err(KernelError::BadArgument(format!(
                "{name} ({ptr:#x}) is not aligned to {align} bytes"
            )));
        }
    }
    Ok(())
}

pub(crate) fn driver(call: &'static str) -> impl FnOnce(DriverError) -> KernelError {
    move |source| KernelError::Driver { call, source }
}

/// Compiles `source` (of the kernel named `kernel`, file name `file` in messages) to PTX with
/// NVRTC's default options: IEEE division and square root, no fast math.
pub(crate) fn compile(
    source: String,
    kernel: &'static str,
    file: &str,
) -> Result<Ptx, KernelError> {
    // SAFETY: only tries to dlopen libnvrtc by its usual names.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(KernelError::NvrtcMissing(kernel));
    }
    let opts = CompileOptions { name: Some(file.into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|e| match e {
        CompileError::CompileError { nvrtc, log, .. } => KernelError::Compile {
            kernel,
            message: nvrtc.to_string(),
            log: log.to_string_lossy().into_owned(),
        },
        other => KernelError::Compile { kernel, message: format!("{other:?}"), log: String::new() },
    })
}

/// A compiled module loaded into the primary context of one device (the context libtorch uses).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) _module: Arc<CudaModule>,
    pub(crate) functions: Vec<CudaFunction>,
}

impl Loaded {
    /// Enqueues function `index` (of the names given to [`load`]) on `stream` (a raw `CUstream`;
    /// 0 is the legacy default stream) over `grid` blocks of `block` threads, without dynamic
    /// shared memory.
    ///
    /// # Safety
    ///
    /// `params` must point at values of exactly the kernel's parameter types, in order, alive
    /// until this returns; every device address among them must be valid for what the kernel
    /// reads and writes until it has run on `stream`, a live stream of this context (or 0).
    pub(crate) unsafe fn launch(
        &self,
        index: usize,
        grid: u32,
        block: u32,
        stream: u64,
        params: &mut [*mut c_void],
    ) -> Result<(), KernelError> {
        self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        // SAFETY: the function belongs to this context; the caller vouches for the parameters
        // and the stream.
        unsafe {
            result::launch_kernel(
                self.functions[index].cu_function(),
                (grid, 1, 1),
                (block, 1, 1),
                0,
                stream as usize as sys::CUstream,
                params,
            )
        }
        .map_err(driver("cuLaunchKernel"))
    }
}

/// Loads `ptx` on device `ordinal` and looks up `names`.
pub(crate) fn load(ordinal: usize, ptx: Ptx, names: &[&str]) -> Result<Loaded, KernelError> {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    if !unsafe { sys::is_culib_present() } {
        return Err(KernelError::DriverMissing);
    }
    let ctx = CudaContext::new(ordinal).map_err(driver("cuDevicePrimaryCtxRetain"))?;
    let module = ctx.load_module(ptx).map_err(driver("cuModuleLoadData"))?;
    let functions = names
        .iter()
        .map(|n| module.load_function(n).map_err(driver("cuModuleGetFunction")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded { ctx, _module: module, functions })
}
