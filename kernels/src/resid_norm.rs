//! The decode step's residual adds fused with the RMS norm that reads each sum: one launch where
//! libtorch runs an add, the norm and the weight's product (three to nine small kernels).
//!
//! # What it computes
//!
//! For every row `r` of width `W`, with `x` the residual stream, `a` an optional addend (the
//! attention's or the MLP's output), `w` the norm's `[W]` weight, in the model's kind and with
//! libtorch's roundings (`kind(·)` rounds to the element kind, the identity for float32):
//!
//! ```text
//! s = kind(x + a)              (s = x without an addend; s is written out only with one)
//! n = kind(w · kind(s · r))    with r = 1 / sqrt(Σ s² / W + eps)
//! ```
//!
//! as `Norm::forward` after `x + a` in worker/src/model computes them: every product and sum is a
//! single float32 operation (`__fmul_rn`/`__fadd_rn`, nothing contracted into an FMA). libtorch
//! sums the squares in its own order and takes an approximate `rsqrt`, so its `n` can differ from
//! the kernel's in the last bit; `s` is exact.
//!
//! # Launch
//!
//! One block of [`NormShape::threads`] threads per row; thread `t` holds the elements
//! `t, t + threads, …` (coalesced loads), sums their squares in that order, and the block reduces
//! the partial sums with butterfly shuffles, warp by warp and then across warps. [`reference`]
//! follows the same order, and `1 / sqrt` is correctly rounded on both sides, so the kernel and
//! its reference agree bit for bit. The kernel allocates nothing and never synchronises.

use std::ffi::c_void;

use cudarc::nvrtc::Ptx;

use crate::element;
pub use crate::element::KernelError as NormError;

/// Name of the kernel in [`SOURCE`].
pub const KERNEL_NAME: &str = "wax_resid_norm";
/// Largest row width.
pub const MAX_WIDTH: usize = 16384;
/// Most elements a thread holds in registers ([`MAX_WIDTH`] over 1,024 threads).
pub const MAX_PER_THREAD: usize = 16;

/// The compile-time shape of one module: the row width and the element kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NormShape {
    pub width: usize,
    pub bf16: bool,
}

impl NormShape {
    /// Checks that the kernel can be compiled for this shape.
    pub fn check(&self) -> Result<(), NormError> {
        if self.width == 0 || self.width > MAX_WIDTH {
            return Err(NormError::BadArgument(format!(
                "row width {} outside 1..={MAX_WIDTH}",
                self.width
            )));
        }
        Ok(())
    }

    /// Threads per block: about eight elements each, whole warps, at most 1,024.
    pub fn threads(&self) -> usize {
        self.width.div_ceil(8).next_multiple_of(32).clamp(32, 1024)
    }

    /// Elements per thread (the last threads may hold fewer).
    pub fn per_thread(&self) -> usize {
        self.width.div_ceil(self.threads())
    }

    fn element_bytes(&self) -> u64 {
        if self.bf16 { 2 } else { 4 }
    }
}

/// CUDA C++ source of the kernel, without the `#define`s and element helpers [`source`] puts
/// first (no includes).
///
/// `wax_resid_norm(x, x_row, a, a_row, w, eps, rows, sum_out, normed)`: strides in elements,
/// `a` null for no addend (then `sum_out` is not written), `sum_out`/`normed` `[rows, WAX_W]`
/// contiguous.
pub const SOURCE: &str = r#"
// wax_resid_norm: residual add + RMS norm + weight, one block per row; see
// kernels/src/resid_norm.rs. WAX_W, WAX_THREADS, WAX_EPT and WAX_BF16 are defined above, and the
// element helpers of kernels/src/element.rs.

#define WAX_FULL_MASK 0xffffffffu
#define WAX_NWARPS (WAX_THREADS / 32)

__device__ __forceinline__ float wax_butterfly(float s) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s = __fadd_rn(s, __shfl_xor_sync(WAX_FULL_MASK, s, off));
    return s;
}

extern "C" __global__ void __launch_bounds__(WAX_THREADS)
wax_resid_norm(const wax_t* __restrict__ x, long long x_row, const wax_t* __restrict__ a,
               long long a_row, const wax_t* __restrict__ w, float eps, int rows,
               wax_t* __restrict__ sum_out, wax_t* __restrict__ normed) {
    __shared__ float parts[WAX_NWARPS];
    __shared__ float total;
    const long long r = blockIdx.x;
    if (r >= rows) return;  // the whole block
    const int t = threadIdx.x;
    const wax_t* xr = x + r * x_row;
    float v[WAX_EPT];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < WAX_EPT; ++i) {
        const int e = i * WAX_THREADS + t;
        float s = 0.0f;
        if (e < WAX_W) {
            s = wax_load(xr + e);
            if (a != 0) {
                s = wax_to_kind(__fadd_rn(s, wax_load(a + r * a_row + e)));
                sum_out[r * WAX_W + e] = wax_round(s);
            }
        }
        v[i] = s;
        ss = __fadd_rn(ss, __fmul_rn(s, s));
    }
    ss = wax_butterfly(ss);
    const int warp = t >> 5;
    const int lane = t & 31;
    if (lane == 0) parts[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float p = lane < WAX_NWARPS ? parts[lane] : 0.0f;
        p = wax_butterfly(p);
        if (lane == 0) total = p;
    }
    __syncthreads();
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total, (float)WAX_W), eps)));
#pragma unroll
    for (int i = 0; i < WAX_EPT; ++i) {
        const int e = i * WAX_THREADS + t;
        if (e < WAX_W) {
            const float n = wax_to_kind(__fmul_rn(v[i], inv));
            normed[r * WAX_W + e] = wax_round(__fmul_rn(wax_load(w + e), n));
        }
    }
}
"#;

/// The full source for `shape`: its `#define`s, the element helpers, then [`SOURCE`].
pub fn source(shape: NormShape) -> String {
    format!(
        "#define WAX_W {}\n#define WAX_THREADS {}\n#define WAX_EPT {}\n#define WAX_BF16 {}\n{}{SOURCE}",
        shape.width,
        shape.threads(),
        shape.per_thread(),
        u8::from(shape.bf16),
        element::PRELUDE
    )
}

/// Compiles the kernel for `shape` to PTX with NVRTC.
pub fn compile_ptx(shape: NormShape) -> Result<Ptx, NormError> {
    shape.check()?;
    element::compile(source(shape), KERNEL_NAME, "wax_resid_norm.cu")
}

/// One launch; pointers are raw device addresses in the module's element kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormArgs {
    /// `[rows, width]` with row stride `x_row` (elements of a row contiguous).
    pub x: u64,
    pub x_row: i64,
    /// The addend like `x` (0: none).
    pub a: u64,
    pub a_row: i64,
    /// `[width]`.
    pub weight: u64,
    pub eps: f32,
    pub rows: usize,
    /// `[rows, width]` contiguous: `x + a` (not written without an addend).
    pub sum_out: u64,
    /// `[rows, width]` contiguous.
    pub normed: u64,
}

/// Checks the launch arguments for `shape` without touching the driver.
pub fn validate(shape: NormShape, args: &NormArgs) -> Result<(), NormError> {
    shape.check()?;
    let bad = |m: String| Err(NormError::BadArgument(m));
    if args.rows == 0 || args.rows > i32::MAX as usize {
        return bad(format!("{} rows outside 1..={}", args.rows, i32::MAX));
    }
    let width = shape.width as i64;
    if args.x_row < width || (args.a != 0 && args.a_row < width) {
        return bad(format!(
            "row strides {} and {} shorter than the width {width}",
            args.x_row, args.a_row
        ));
    }
    if !(args.eps.is_finite() && args.eps >= 0.0) {
        return bad(format!("eps {} must be finite and ≥ 0", args.eps));
    }
    let el = shape.element_bytes();
    element::check_pointers(&[
        ("x", args.x, el, true),
        ("a", args.a, el, false),
        ("weight", args.weight, el, true),
        ("sum_out", args.sum_out, el, args.a != 0),
        ("normed", args.normed, el, true),
    ])
}

/// The compiled kernel for one shape, loaded on one device.
#[derive(Debug)]
pub struct ResidNorm {
    shape: NormShape,
    loaded: element::Loaded,
}

impl ResidNorm {
    /// Compiles the kernel for `shape` with NVRTC and loads it on device `ordinal`.
    pub fn new(ordinal: usize, shape: NormShape) -> Result<Self, NormError> {
        let ptx = compile_ptx(shape)?;
        let loaded = element::load(ordinal, ptx, &[KERNEL_NAME])?;
        Ok(ResidNorm { shape, loaded })
    }

    pub fn shape(&self) -> NormShape {
        self.shape
    }

    /// Enqueues the kernel on `stream` (a raw `CUstream`; 0 is the legacy default stream).
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must be a device address in this module's context of a buffer of
    /// the documented kind and extent, the outputs not overlapping the inputs, valid until the
    /// kernel has run on `stream`, and `stream` must be a live stream of this context (or 0).
    pub unsafe fn launch(&self, stream: u64, args: &NormArgs) -> Result<(), NormError> {
        validate(self.shape, args)?;
        // The driver reads each parameter through a pointer to its value: locals of exactly the
        // kernel's parameter types, alive until the launch returns (sizes validated above).
        let (mut x, mut x_row, mut a, mut a_row) = (args.x, args.x_row, args.a, args.a_row);
        let (mut w, mut eps, mut rows) = (args.weight, args.eps, args.rows as i32);
        let (mut sum_out, mut normed) = (args.sum_out, args.normed);
        let mut params: Vec<*mut c_void> = vec![
            (&raw mut x).cast(),
            (&raw mut x_row).cast(),
            (&raw mut a).cast(),
            (&raw mut a_row).cast(),
            (&raw mut w).cast(),
            (&raw mut eps).cast(),
            (&raw mut rows).cast(),
            (&raw mut sum_out).cast(),
            (&raw mut normed).cast(),
        ];
        let threads = self.shape.threads() as u32;
        // SAFETY: the parameter list matches the kernel's signature in number, order and size;
        // the caller vouches for the pointers and the stream.
        unsafe { self.loaded.launch(0, args.rows as u32, threads, stream, &mut params) }
    }
}

/// The butterfly sum of 32 lanes' values as `__shfl_xor_sync` with offsets 16, 8, 4, 2, 1 forms
/// it in lane 0 (each step adds the partner's value of the previous step).
fn butterfly(mut lanes: [f32; 32]) -> f32 {
    let mut off = 16;
    while off > 0 {
        let prev = lanes;
        for (l, v) in lanes.iter_mut().enumerate() {
            *v += prev[l ^ off];
        }
        off >>= 1;
    }
    lanes[0]
}

/// One row as the kernel computes it, on the CPU, in the same order: `x` (and the addend `a`)
/// already in the element kind, `w` the norm's weight. Returns `(s, n)`: the sum (`x` itself
/// without an addend) and the normed row.
pub fn reference(
    shape: NormShape,
    x: &[f32],
    a: Option<&[f32]>,
    w: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let kind = |v: f32| element::to_kind(v, shape.bf16);
    let width = shape.width;
    assert!(x.len() == width && w.len() == width && a.is_none_or(|a| a.len() == width));
    let s: Vec<f32> = match a {
        Some(a) => x.iter().zip(a).map(|(x, a)| kind(x + a)).collect(),
        None => x.to_vec(),
    };
    let threads = shape.threads();
    let mut partial = vec![0f32; threads];
    for (t, p) in partial.iter_mut().enumerate() {
        for i in 0..shape.per_thread() {
            let e = i * threads + t;
            let v = if e < width { s[e] } else { 0.0 };
            *p += v * v;
        }
    }
    let mut warps = [0f32; 32];
    for (n, lanes) in partial.chunks(32).enumerate() {
        warps[n] = butterfly(lanes.try_into().expect("whole warps"));
    }
    let total = butterfly(warps);
    let inv = 1.0 / (total / width as f32 + eps).sqrt();
    let n = s.iter().zip(w).map(|(v, w)| kind(w * kind(v * inv))).collect();
    (s, n)
}

#[cfg(test)]
mod tests;
