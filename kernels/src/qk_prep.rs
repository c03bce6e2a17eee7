//! The decode step's query/key preparation in one launch: per-head RMS norm of queries and keys
//! (Qwen3's `q_norm`/`k_norm`, optional), rotary embedding of the first `rot` dimensions, the
//! queries written out and the keys and values written into the KV cache at the step's slot.
//!
//! # What it computes
//!
//! For a row `b` and a head, with `x` its `head_dim` projections (queries or keys), in the
//! model's kind and with its roundings, exactly the sequence of libtorch ops it replaces
//! (`Norm::forward`, `Rotation::apply`, `index_copy_` in worker/src/model):
//!
//! ```text
//! h = kind(x · rsqrt(mean(x²) + eps));  y = kind(w · h)             (norm; else y = x)
//! out[e] = kind(kind(y[e] · cos[e]) + kind(y[(e + rot/2) mod rot] · sin[e]))   e < rot
//! out[e] = y[e]                                                               e ≥ rot
//! ```
//!
//! where `kind(·)` rounds to the element kind (the identity for float32), `cos`/`sin` are the
//! row's `[rot]` tables (`sin` signed: −sin for the first half, as `Rotation` keeps it), and
//! every product and sum is a single float32 operation (`__fmul_rn`/`__fadd_rn`, never an FMA
//! libtorch would not form). Only the norm's mean of squares (a float32 sum in a different order)
//! and `rsqrtf` can differ from libtorch in their last bits. Query heads go to `q_out`
//! `[B, heads, head_dim]`, key heads to `keys[b, head, slot]`, and each key head also copies its
//! value head to `values[b, head, slot]`.
//!
//! Sources are read through strides (`row`, `head`; elements of a head contiguous), so the packed
//! q/k/v matmul's output, separate projections and GPT-NeoX's per-head interleaved `qkv` are all
//! read in place.
//!
//! # Launch
//!
//! One warp per (row, head) over `heads + kv_heads` heads, four warps per block; the slot is read
//! from device memory, so a captured CUDA graph replays the launch for every step. The kernel
//! allocates nothing and never synchronises.

use std::ffi::c_void;

use cudarc::nvrtc::Ptx;

use crate::element;
pub use crate::element::KernelError as PrepError;
pub use crate::element::to_kind;

/// Name of the kernel in [`SOURCE`].
pub const KERNEL_NAME: &str = "wax_qk_prep";
/// Largest head size.
pub const MAX_HEAD_DIM: usize = 256;
/// Warps (rows × heads) per block; must equal `WAX_WARPS` in [`SOURCE`].
pub const WARPS: usize = 4;

/// The compile-time shape of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrepShape {
    pub head_dim: usize,
    /// Rotated dimensions (even, ≤ `head_dim`).
    pub rot: usize,
    /// Whether queries and keys are RMS-normed per head first.
    pub norm: bool,
    pub bf16: bool,
}

impl PrepShape {
    /// Checks that the kernel can be compiled for this shape.
    pub fn check(&self) -> Result<(), PrepError> {
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(PrepError::BadArgument(format!(
                "head size {} outside 1..={MAX_HEAD_DIM}",
                self.head_dim
            )));
        }
        if self.rot == 0 || !self.rot.is_multiple_of(2) || self.rot > self.head_dim {
            return Err(PrepError::BadArgument(format!(
                "rotary dimensions {} must be even and in 2..={}",
                self.rot, self.head_dim
            )));
        }
        Ok(())
    }

    fn element_bytes(&self) -> u64 {
        if self.bf16 { 2 } else { 4 }
    }
}

/// CUDA C++ source of the kernel, without the `#define`s and element helpers [`source`] puts
/// first (no includes).
///
/// `wax_qk_prep(q, q_row, q_head, k, k_row, k_head, v, v_row, v_head, q_w, k_w, eps, cos, sin,
/// slot, batch, heads, kv_heads, capacity, q_out, keys, values)`; strides in elements,
/// `q_w`/`k_w` `[head_dim]` (read only with `WAX_NORM`), `cos`/`sin` `[batch, WAX_ROT]`.
pub const SOURCE: &str = r#"
// wax_qk_prep: norm + RoPE of the decode token's queries and keys, keys and values into the
// cache at the slot; see kernels/src/qk_prep.rs. WAX_HD, WAX_ROT, WAX_NORM and WAX_BF16 are
// defined above, and the element helpers of kernels/src/element.rs.

#define WAX_WARPS 4
#define WAX_EPL ((WAX_HD + 31) / 32)
#define WAX_FULL_MASK 0xffffffffu

extern "C" __global__ void __launch_bounds__(WAX_WARPS * 32)
wax_qk_prep(const wax_t* __restrict__ q, long long q_row, long long q_head,
            const wax_t* __restrict__ k, long long k_row, long long k_head,
            const wax_t* __restrict__ v, long long v_row, long long v_head,
            const wax_t* __restrict__ q_w, const wax_t* __restrict__ k_w, float eps,
            const wax_t* __restrict__ cos_t, const wax_t* __restrict__ sin_t,
            const long long* __restrict__ slot_ptr, int batch, int heads, int kv_heads,
            int capacity, wax_t* __restrict__ q_out, wax_t* __restrict__ keys,
            wax_t* __restrict__ values) {
    __shared__ float row[WAX_WARPS][WAX_HD];
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int per = heads + kv_heads;
    const long long item = (long long)blockIdx.x * WAX_WARPS + warp;  // b * per + head
    if (item >= (long long)batch * per) return;  // whole warps; only __syncwarp below
    const long long b = item / per;
    const int hh = (int)(item % per);
    const bool is_q = hh < heads;
    const int h = is_q ? hh : hh - heads;
    const wax_t* src = is_q ? q + b * q_row + h * q_head : k + b * k_row + h * k_head;

    float x[WAX_EPL];
#pragma unroll
    for (int i = 0; i < WAX_EPL; ++i) {
        const int e = i * 32 + lane;
        x[i] = (e < WAX_HD) ? wax_load(src + e) : 0.0f;
    }
#if WAX_NORM
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < WAX_EPL; ++i) ss = __fadd_rn(ss, __fmul_rn(x[i], x[i]));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(WAX_FULL_MASK, ss, off);
    const float r = rsqrtf(__fadd_rn(__fdiv_rn(ss, (float)WAX_HD), eps));
    const wax_t* w = is_q ? q_w : k_w;
#pragma unroll
    for (int i = 0; i < WAX_EPL; ++i) {
        const int e = i * 32 + lane;
        if (e < WAX_HD) x[i] = wax_to_kind(__fmul_rn(wax_load(w + e), wax_to_kind(__fmul_rn(x[i], r))));
    }
#endif
#pragma unroll
    for (int i = 0; i < WAX_EPL; ++i) {
        const int e = i * 32 + lane;
        if (e < WAX_HD) row[warp][e] = x[i];
    }
    __syncwarp();

    const long long slot = *slot_ptr;
    // A slot outside the cache writes nothing (the decode loop never asks for one).
    if (!is_q && (slot < 0 || slot >= capacity)) return;
    wax_t* dst = is_q ? q_out + (b * heads + h) * WAX_HD
                      : keys + ((b * kv_heads + h) * (long long)capacity + slot) * WAX_HD;
    const wax_t* cs = cos_t + b * WAX_ROT;
    const wax_t* sn = sin_t + b * WAX_ROT;
#pragma unroll
    for (int i = 0; i < WAX_EPL; ++i) {
        const int e = i * 32 + lane;
        if (e >= WAX_HD) continue;
        float y = x[i];
        if (e < WAX_ROT) {
            const int p = e < WAX_ROT / 2 ? e + WAX_ROT / 2 : e - WAX_ROT / 2;
            const float a = wax_to_kind(__fmul_rn(y, wax_load(cs + e)));
            const float c = wax_to_kind(__fmul_rn(row[warp][p], wax_load(sn + e)));
            y = wax_to_kind(__fadd_rn(a, c));
        }
        dst[e] = wax_round(y);
    }
    if (!is_q) {
        const wax_t* vs = v + b * v_row + h * v_head;
        wax_t* vd = values + ((b * kv_heads + h) * (long long)capacity + slot) * WAX_HD;
        for (int e = lane; e < WAX_HD; e += 32) vd[e] = vs[e];
    }
}
"#;

/// The full source for `shape`: its `#define`s, the element helpers, then [`SOURCE`].
pub fn source(shape: PrepShape) -> String {
    format!(
        "#define WAX_HD {}\n#define WAX_ROT {}\n#define WAX_NORM {}\n#define WAX_BF16 {}\n{}{SOURCE}",
        shape.head_dim,
        shape.rot,
        u8::from(shape.norm),
        u8::from(shape.bf16),
        element::PRELUDE
    )
}

/// Compiles the kernel for `shape` to PTX with NVRTC.
pub fn compile_ptx(shape: PrepShape) -> Result<Ptx, PrepError> {
    shape.check()?;
    element::compile(source(shape), KERNEL_NAME, "wax_qk_prep.cu")
}

/// A source tensor: a device address and the strides (in elements) of its rows and heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    pub ptr: u64,
    pub row: i64,
    pub head: i64,
}

/// One launch; pointers are raw device addresses in the module's element kind unless said
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrepArgs {
    pub q: Strided,
    pub k: Strided,
    pub v: Strided,
    /// `[head_dim]` norm weights (0 without the norm).
    pub q_weight: u64,
    pub k_weight: u64,
    pub eps: f32,
    /// `[batch, rot]` contiguous.
    pub cos: u64,
    pub sin: u64,
    /// int64 `[1]`.
    pub slot: u64,
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub capacity: usize,
    /// `[batch, heads, head_dim]`.
    pub q_out: u64,
    /// `[batch, kv_heads, capacity, head_dim]` each.
    pub keys: u64,
    pub values: u64,
}

/// Checks the launch arguments for `shape` without touching the driver.
pub fn validate(shape: PrepShape, args: &PrepArgs) -> Result<(), PrepError> {
    shape.check()?;
    let bad = |m: String| Err(PrepError::BadArgument(m));
    if args.batch == 0 || args.heads == 0 || args.kv_heads == 0 || args.capacity == 0 {
        return bad(format!(
            "batch {}, heads {}, kv heads {} and capacity {} must be positive",
            args.batch, args.heads, args.kv_heads, args.capacity
        ));
    }
    let items = args.batch as u128 * (args.heads + args.kv_heads) as u128;
    let blocks = items.div_ceil(WARPS as u128);
    if blocks > i32::MAX as u128
        || args.capacity > i32::MAX as usize
        || args.heads + args.kv_heads > i32::MAX as usize
        || args.batch > i32::MAX as usize
    {
        return bad(format!("{items} rows × heads or capacity {} out of range", args.capacity));
    }
    for (name, s) in [("q", args.q), ("k", args.k), ("v", args.v)] {
        if s.row < 0 || s.head < 0 {
            return bad(format!("{name}: negative strides {s:?}"));
        }
    }
    if !(args.eps.is_finite() && args.eps >= 0.0) {
        return bad(format!("eps {} must be finite and ≥ 0", args.eps));
    }
    let el = shape.element_bytes();
    let pointers = [
        ("q", args.q.ptr, el, true),
        ("k", args.k.ptr, el, true),
        ("v", args.v.ptr, el, true),
        ("q_weight", args.q_weight, el, shape.norm),
        ("k_weight", args.k_weight, el, shape.norm),
        ("cos", args.cos, el, true),
        ("sin", args.sin, el, true),
        ("slot", args.slot, 8, true),
        ("q_out", args.q_out, el, true),
        ("keys", args.keys, el, true),
        ("values", args.values, el, true),
    ];
    element::check_pointers(&pointers)
}

/// The compiled kernel for one shape, loaded on one device.
#[derive(Debug)]
pub struct QkPrep {
    shape: PrepShape,
    loaded: element::Loaded,
}

impl QkPrep {
    /// Compiles the kernel for `shape` with NVRTC and loads it on device `ordinal`.
    pub fn new(ordinal: usize, shape: PrepShape) -> Result<Self, PrepError> {
        let ptx = compile_ptx(shape)?;
        let loaded = element::load(ordinal, ptx, &[KERNEL_NAME])?;
        Ok(QkPrep { shape, loaded })
    }

    pub fn shape(&self) -> PrepShape {
        self.shape
    }

    /// Enqueues the kernel on `stream` (a raw `CUstream`; 0 is the legacy default stream).
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must be a device address in this module's context of a buffer of
    /// the documented kind and extent (sources through their strides), valid until the kernel
    /// has run on `stream`, and `stream` must be a live stream of this context (or 0).
    pub unsafe fn launch(&self, stream: u64, args: &PrepArgs) -> Result<(), PrepError> {
        validate(self.shape, args)?;
        // The driver reads each parameter through a pointer to its value: locals of exactly the
        // kernel's parameter types, alive until the launch returns (sizes validated above).
        let (mut q, mut q_row, mut q_head) = (args.q.ptr, args.q.row, args.q.head);
        let (mut k, mut k_row, mut k_head) = (args.k.ptr, args.k.row, args.k.head);
        let (mut v, mut v_row, mut v_head) = (args.v.ptr, args.v.row, args.v.head);
        let (mut q_w, mut k_w, mut eps) = (args.q_weight, args.k_weight, args.eps);
        let (mut cos, mut sin, mut slot) = (args.cos, args.sin, args.slot);
        let (mut batch, mut heads) = (args.batch as i32, args.heads as i32);
        let (mut kv_heads, mut capacity) = (args.kv_heads as i32, args.capacity as i32);
        let (mut q_out, mut keys, mut values) = (args.q_out, args.keys, args.values);
        let mut params: Vec<*mut c_void> = vec![
            (&raw mut q).cast(),
            (&raw mut q_row).cast(),
            (&raw mut q_head).cast(),
            (&raw mut k).cast(),
            (&raw mut k_row).cast(),
            (&raw mut k_head).cast(),
            (&raw mut v).cast(),
            (&raw mut v_row).cast(),
            (&raw mut v_head).cast(),
            (&raw mut q_w).cast(),
            (&raw mut k_w).cast(),
            (&raw mut eps).cast(),
            (&raw mut cos).cast(),
            (&raw mut sin).cast(),
            (&raw mut slot).cast(),
            (&raw mut batch).cast(),
            (&raw mut heads).cast(),
            (&raw mut kv_heads).cast(),
            (&raw mut capacity).cast(),
            (&raw mut q_out).cast(),
            (&raw mut keys).cast(),
            (&raw mut values).cast(),
        ];
        let items = args.batch * (args.heads + args.kv_heads);
        let blocks = items.div_ceil(WARPS) as u32;
        // SAFETY: the parameter list matches the kernel's signature in number, order and size;
        // the caller vouches for the pointers and the stream.
        unsafe { self.loaded.launch(0, blocks, (WARPS * 32) as u32, stream, &mut params) }
    }
}

/// One head's output (`x`: its `head_dim` inputs, already in the element kind) as the kernel
/// computes it, on the CPU: norm (with `weight`), then the rotation with the row's `cos`/`sin`.
pub fn reference_head(
    shape: PrepShape,
    x: &[f32],
    weight: Option<&[f32]>,
    eps: f32,
    cos: &[f32],
    sin: &[f32],
) -> Vec<f32> {
    let k = |v: f32| to_kind(v, shape.bf16);
    let hd = shape.head_dim;
    assert_eq!(shape.norm, weight.is_some(), "norm weights exactly when the shape norms");
    let y: Vec<f32> = match (shape.norm, weight) {
        (true, Some(w)) => {
            let ss = x.iter().fold(0f32, |s, v| s + v * v);
            let r = 1.0 / (ss / hd as f32 + eps).sqrt();
            x.iter().zip(w).map(|(v, w)| k(w * k(v * r))).collect()
        }
        _ => x.to_vec(),
    };
    let (rot, half) = (shape.rot, shape.rot / 2);
    (0..hd)
        .map(|e| {
            if e >= rot {
                return y[e];
            }
            let p = if e < half { e + half } else { e - half };
            k(k(y[e] * cos[e]) + k(y[p] * sin[e]))
        })
        .collect()
}

#[cfg(test)]
mod tests;
