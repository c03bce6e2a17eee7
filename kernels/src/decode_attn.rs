//! Decode attention: one new query token per row against a key/value cache, split over the cache
//! slots ("flash decoding"), reading only the slots a row attends to.
//!
//! # What it computes
//!
//! For every row `b` and query head `h` (kv head `h / G`, `G` query heads per kv head, as
//! transformers' `repeat_kv` groups them), with `slot` the cache slot of the new token:
//!
//! ```text
//! out[b, h] = Σ_j softmax_j(scale · q[b, h] · K[b, h/G, j]) · V[b, h/G, j]
//!             over the slots j ≤ slot with real[b, j] or j = slot
//! ```
//!
//! which is what scaled-dot-product attention gives with the decode step's mask (real slots up to
//! the new one, and always the new one). Inputs and output are in the model's kind (bfloat16 or
//! float32); scores, the softmax and the weighted sum are float32.
//!
//! # How
//!
//! The slots `0..view` are cut into chunks of [`CHUNK`]. Kernel `wax_decode_attend` runs one block
//! of [`WARPS`] warps per (row, kv head, chunk) and loads the `G` queries of its kv head once.
//! Each warp is cut into groups of `tpk` lanes ([`Layout`]); a group takes one slot at a time, each
//! of its lanes holding `e` consecutive elements of the head (16-byte vector loads where the
//! shape allows), so a warp has `32 / tpk` slots in flight and a score costs `log2(tpk)`
//! shuffles. Group `n` of the block walks slots `start + n, start + n + groups, …`, skipping slots
//! the row does not attend and stopping at `slot` (so the work and the memory read follow the
//! real length, not the window), and keeps an online softmax per query head (running max `m`,
//! sum `l`, weighted sum `acc`; scores in log2 units so the exponentials are `exp2`). The block
//! combines its groups in shared memory. With one chunk it writes the output; otherwise it writes
//! `acc` (relative to its `m`) and `(m, l)`, and `wax_decode_merge` (one block per row and query
//! head) combines the chunks. Chunks past `slot` write `m = −∞, l = 0`, which the merge skips.
//!
//! The slot is read from device memory and the grid depends only on `view`, so a captured CUDA
//! graph replays the launches for every step inside its window. The kernels allocate nothing and
//! never synchronise; [`DecodeAttention::launch`] only enqueues them on the caller's raw stream.
//!
//! The head size, the group size, the kind and the [`Layout`] are compile-time constants of the
//! source (one module per model shape and kind, compiled by NVRTC).
//!
//! # Checking
//!
//! [`reference`] is the same algorithm on the CPU (the same chunks, lane groups, online softmax
//! and combination order, in float32; only the dot product's summation order differs); the tests check it against a direct float64 softmax, and
//! `worker/tests/gpu_decode.rs` checks the kernels against it and against libtorch's
//! scaled-dot-product attention on the GPU machine.

use std::ffi::c_void;

use cudarc::nvrtc::Ptx;

use crate::element;

/// Name of the attention kernel in [`SOURCE`].
pub const ATTEND_NAME: &str = "wax_decode_attend";
/// Name of the chunk-merging kernel in [`SOURCE`].
pub const MERGE_NAME: &str = "wax_decode_merge";
/// Cache slots per block; must equal `WAX_CHUNK` in [`SOURCE`].
pub const CHUNK: usize = 64;
/// Warps per attention block; must equal `WAX_WARPS` in [`SOURCE`].
pub const WARPS: usize = 4;
/// Largest head size the kernels are compiled for.
pub const MAX_HEAD_DIM: usize = 256;
/// Largest number of query heads per kv head.
pub const MAX_GROUP: usize = 8;

/// The compile-time shape of one module: head size, query heads per kv head, element kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnShape {
    pub head_dim: usize,
    pub group: usize,
    pub bf16: bool,
}

impl AttnShape {
    /// Checks that the kernels can be compiled for this shape.
    pub fn check(&self) -> Result<(), AttnError> {
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(AttnError::BadArgument(format!(
                "head size {} outside 1..={MAX_HEAD_DIM}",
                self.head_dim
            )));
        }
        if self.group == 0 || self.group > MAX_GROUP {
            return Err(AttnError::BadArgument(format!(
                "{} query heads per kv head, outside 1..={MAX_GROUP}",
                self.group
            )));
        }
        Ok(())
    }

    /// Bytes per element of queries, keys, values and output.
    pub fn element_bytes(&self) -> u64 {
        if self.bf16 { 2 } else { 4 }
    }
}

/// Number of chunks (attention blocks per row and kv head) for a window of `view` slots.
pub fn splits(view: usize) -> usize {
    view.div_ceil(CHUNK).max(1)
}

/// CUDA C++ source of both kernels, without the six `#define`s and the element helpers
/// ([`crate::element::PRELUDE`]) that [`source`] puts first (no includes).
///
/// `wax_decode_attend(q, keys, values, real, slot, kv_heads, capacity, real_stride, view,
/// splits, scale, part_acc, part_ml, out)`:
/// `q` `[B, kv_heads·G, WAX_HD]`, `keys`/`values` `[B, kv_heads, capacity, WAX_HD]`, `real`
/// `[B, real_stride]` bytes (0 = pad), `slot` one int64, slots `0..view` attended at most,
/// `part_acc` float32
/// `[B, kv_heads·G, splits, WAX_HD]` and `part_ml` float32 `[B, kv_heads·G, splits, 2]` (unused
/// when `splits` is 1), `out` `[B, kv_heads·G, WAX_HD]` (written when `splits` is 1). Grid
/// `(B·kv_heads·splits)`, block `WAX_WARPS·32`.
///
/// `wax_decode_merge(part_acc, part_ml, splits, out)`: grid `(B·kv_heads·G)`, block
/// `min(WAX_HD rounded up to 32, 256)`.
pub const SOURCE: &str = r#"
// wax_decode_attend / wax_decode_merge: split-K attention of one query token per row over a KV
// cache; see kernels/src/decode_attn.rs. WAX_HD, WAX_GROUP, WAX_BF16, WAX_TPK, WAX_E and WAX_VEC
// are defined above, and the element helpers of kernels/src/element.rs.

#define WAX_WARPS 4
#define WAX_CHUNK 64
#define WAX_GPW (32 / WAX_TPK)             // lane groups (slots in flight) per warp
#define WAX_NS (WAX_WARPS * WAX_GPW)       // lane groups per block
#define WAX_LOG2E 1.4426950408889634f
#define WAX_FULL_MASK 0xffffffffu


// Elements t·E .. t·E + E − 1 of the head-size row `p` (zeros past WAX_HD) into `dst`.
__device__ __forceinline__ void wax_load_part(const wax_t* __restrict__ p, int t, float* dst) {
#if WAX_VEC
    // t·E elements are a multiple of 16 bytes from the row's start, and rows are 16-byte aligned.
    const uint4* v = reinterpret_cast<const uint4*>(p + t * WAX_E);
#pragma unroll
    for (int i = 0; i < WAX_E * (int)sizeof(wax_t) / 16; ++i) {
        const uint4 u = v[i];
#if WAX_BF16
        dst[8 * i + 0] = __uint_as_float(u.x << 16);
        dst[8 * i + 1] = __uint_as_float(u.x & 0xffff0000u);
        dst[8 * i + 2] = __uint_as_float(u.y << 16);
        dst[8 * i + 3] = __uint_as_float(u.y & 0xffff0000u);
        dst[8 * i + 4] = __uint_as_float(u.z << 16);
        dst[8 * i + 5] = __uint_as_float(u.z & 0xffff0000u);
        dst[8 * i + 6] = __uint_as_float(u.w << 16);
        dst[8 * i + 7] = __uint_as_float(u.w & 0xffff0000u);
#else
        dst[4 * i + 0] = __uint_as_float(u.x);
        dst[4 * i + 1] = __uint_as_float(u.y);
        dst[4 * i + 2] = __uint_as_float(u.z);
        dst[4 * i + 3] = __uint_as_float(u.w);
#endif
    }
#else
#pragma unroll
    for (int i = 0; i < WAX_E; ++i) {
        const int e = t * WAX_E + i;
        dst[i] = (e < WAX_HD) ? wax_load(p + e) : 0.0f;
    }
#endif
}

extern "C" __global__ void __launch_bounds__(WAX_WARPS * 32)
wax_decode_attend(const wax_t* __restrict__ q, const wax_t* __restrict__ keys,
                  const wax_t* __restrict__ values, const unsigned char* __restrict__ real,
                  const long long* __restrict__ slot_ptr, int kv_heads, int capacity,
                  int real_stride, int view, int splits, float scale, float* __restrict__ part_acc,
                  float* __restrict__ part_ml, wax_t* __restrict__ out) {
    __shared__ float sm_m[WAX_NS][WAX_GROUP];
    __shared__ float sm_l[WAX_NS][WAX_GROUP];
    __shared__ float sm_acc[WAX_NS][WAX_GROUP][WAX_HD];

    const int split = (int)(blockIdx.x % (unsigned int)splits);
    const long long bh = (long long)(blockIdx.x / (unsigned int)splits);  // b * kv_heads + kv head
    const int h = (int)(bh % kv_heads);
    const long long b = bh / kv_heads;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int t = lane % WAX_TPK;                     // lane within its group
    const int state = warp * WAX_GPW + lane / WAX_TPK;  // the group: one slot at a time
    const long long slot = *slot_ptr;
    const long long heads = (long long)kv_heads * WAX_GROUP;

    // Scores in log2 units: q·k · scale · log2(e), so the softmax uses exp2.
    float qv[WAX_GROUP][WAX_E];
    float acc[WAX_GROUP][WAX_E];
    float m[WAX_GROUP];
    float l[WAX_GROUP];
#pragma unroll
    for (int g = 0; g < WAX_GROUP; ++g) {
        wax_load_part(q + (b * heads + (long long)h * WAX_GROUP + g) * WAX_HD, t, qv[g]);
#pragma unroll
        for (int i = 0; i < WAX_E; ++i) {
            qv[g][i] *= scale * WAX_LOG2E;
            acc[g][i] = 0.0f;
        }
        m[g] = wax_neg_inf();
        l[g] = 0.0f;
    }

    const long long start = (long long)split * WAX_CHUNK;
    long long stop = start + WAX_CHUNK;
    if (stop > slot + 1) stop = slot + 1;
    if (stop > view) stop = view;  // view <= capacity and <= real_stride (checked on the host)
    const wax_t* kb = keys + bh * (long long)capacity * WAX_HD;
    const wax_t* vb = values + bh * (long long)capacity * WAX_HD;
    const unsigned char* rr = real + b * (long long)real_stride;
    // `j0` is the same in every thread of the block, so every lane runs every iteration (the
    // shuffles need the whole warp); within a group `j` and `ok` are the same in every lane.
    for (long long j0 = start; j0 < stop; j0 += WAX_NS) {
        const long long j = j0 + state;
        const bool ok = j < stop && (j == slot || rr[j] != 0);
        float kf[WAX_E];
        float vf[WAX_E];
        if (ok) {
            wax_load_part(kb + j * WAX_HD, t, kf);
            wax_load_part(vb + j * WAX_HD, t, vf);
        } else {
#pragma unroll
            for (int i = 0; i < WAX_E; ++i) {
                kf[i] = 0.0f;
                vf[i] = 0.0f;
            }
        }
#pragma unroll
        for (int g = 0; g < WAX_GROUP; ++g) {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < WAX_E; ++i) s = fmaf(qv[g][i], kf[i], s);
#pragma unroll
            for (int off = WAX_TPK / 2; off > 0; off >>= 1) {
                s += __shfl_xor_sync(WAX_FULL_MASK, s, off);
            }
            if (ok) {
                const float m_new = fmaxf(m[g], s);
                const float corr = exp2f(m[g] - m_new);  // exp2(-inf) = 0 before the first slot
                const float p = exp2f(s - m_new);
                l[g] = fmaf(l[g], corr, p);
#pragma unroll
                for (int i = 0; i < WAX_E; ++i) acc[g][i] = fmaf(p, vf[i], acc[g][i] * corr);
                m[g] = m_new;
            }
        }
    }

#pragma unroll
    for (int g = 0; g < WAX_GROUP; ++g) {
        if (t == 0) {
            sm_m[state][g] = m[g];
            sm_l[state][g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < WAX_E; ++i) {
            const int e = t * WAX_E + i;
            if (e < WAX_HD) sm_acc[state][g][e] = acc[g][i];
        }
    }
    __syncthreads();

    for (int x = threadIdx.x; x < WAX_GROUP * WAX_HD; x += WAX_WARPS * 32) {
        const int g = x / WAX_HD;
        const int e = x % WAX_HD;
        float mm = wax_neg_inf();
        for (int n = 0; n < WAX_NS; ++n) mm = fmaxf(mm, sm_m[n][g]);
        float ll = 0.0f;
        float aa = 0.0f;
        for (int n = 0; n < WAX_NS; ++n) {
            if (sm_l[n][g] > 0.0f) {
                const float c = exp2f(sm_m[n][g] - mm);
                ll = fmaf(c, sm_l[n][g], ll);
                aa = fmaf(c, sm_acc[n][g][e], aa);
            }
        }
        const long long row = b * heads + (long long)h * WAX_GROUP + g;
        if (splits == 1) {
            out[row * WAX_HD + e] = wax_round(ll > 0.0f ? aa / ll : 0.0f);
        } else {
            const long long pr = row * splits + split;
            part_acc[pr * WAX_HD + e] = aa;
            if (e == 0) {
                part_ml[pr * 2] = mm;
                part_ml[pr * 2 + 1] = ll;
            }
        }
    }
}

extern "C" __global__ void wax_decode_merge(const float* __restrict__ part_acc,
                                            const float* __restrict__ part_ml, int splits,
                                            wax_t* __restrict__ out) {
    const long long row = blockIdx.x;  // b * heads + head
    const float* ml = part_ml + row * splits * 2;
    float mm = wax_neg_inf();
    for (int s = 0; s < splits; ++s) {
        if (ml[2 * s + 1] > 0.0f) mm = fmaxf(mm, ml[2 * s]);
    }
    for (int e = threadIdx.x; e < WAX_HD; e += blockDim.x) {
        float ll = 0.0f;
        float aa = 0.0f;
        for (int s = 0; s < splits; ++s) {
            const float ls = ml[2 * s + 1];
            if (ls > 0.0f) {
                const float c = exp2f(ml[2 * s] - mm);
                ll = fmaf(c, ls, ll);
                aa = fmaf(c, part_acc[(row * splits + s) * WAX_HD + e], aa);
            }
        }
        out[row * WAX_HD + e] = wax_round(ll > 0.0f ? aa / ll : 0.0f);
    }
}
"#;

/// How one block's lanes share the work for a shape: groups of `tpk` lanes ("threads per key")
/// take one slot at a time, each lane `e` consecutive elements of the head (`e·tpk ≥ head_dim`);
/// `vec`: the parts are loaded as 16-byte vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub tpk: usize,
    pub e: usize,
    pub vec: bool,
}

impl Layout {
    /// The layout for `shape`: the fewest lanes per slot that keep a lane's share of the queries
    /// (`group · e`) within 32 registers (64 where 32 lanes cannot, beyond `head_dim · group =
    /// 1024`) and its part of a row within 16 elements, so a warp has `32 / tpk` slots in flight.
    pub fn of(shape: AttnShape) -> Layout {
        let need = (shape.head_dim * shape.group).div_ceil(32).max(shape.head_dim.div_ceil(16));
        let tpk = need.next_power_of_two().clamp(1, 32);
        let e = shape.head_dim.div_ceil(tpk);
        let vec =
            tpk * e == shape.head_dim && (e as u64 * shape.element_bytes()).is_multiple_of(16);
        Layout { tpk, e, vec }
    }

    /// Lane groups per block (each keeps its own online softmax until the block combines them).
    pub fn groups(&self) -> usize {
        WARPS * (32 / self.tpk)
    }
}

/// The full source for `shape`: its `#define`s, the element helpers, then [`SOURCE`].
pub fn source(shape: AttnShape) -> String {
    let layout = Layout::of(shape);
    format!(
        "#define WAX_HD {}\n#define WAX_GROUP {}\n#define WAX_BF16 {}\n#define WAX_TPK {}\n\
         #define WAX_E {}\n#define WAX_VEC {}\n{}{SOURCE}",
        shape.head_dim,
        shape.group,
        u8::from(shape.bf16),
        layout.tpk,
        layout.e,
        u8::from(layout.vec),
        crate::element::PRELUDE
    )
}

pub use crate::element::KernelError as AttnError;

/// Compiles the kernels for `shape` to PTX with NVRTC (default options: IEEE division, no fast
/// math).
pub fn compile_ptx(shape: AttnShape) -> Result<Ptx, AttnError> {
    shape.check()?;
    element::compile(source(shape), ATTEND_NAME, "wax_decode_attn.cu")
}

/// One launch. Pointers are raw device addresses (e.g. libtorch's `tensor.data_ptr() as u64`) of
/// contiguous buffers on the module's device, in the module's element kind unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnArgs {
    /// `[batch, kv_heads·G, head_dim]`: the new token's queries (after RoPE).
    pub q: u64,
    /// `[batch, kv_heads, capacity, head_dim]`: the cache, the new token's keys already written.
    pub keys: u64,
    /// Like `keys`.
    pub values: u64,
    /// bool (one byte each) `[batch, real_stride]`: which slots hold real tokens.
    pub real: u64,
    /// int64 `[1]`: the slot of the new token.
    pub slot: u64,
    /// float32 `[batch, kv_heads·G, splits, head_dim]` (0 when `splits` is 1).
    pub part_acc: u64,
    /// float32 `[batch, kv_heads·G, splits, 2]` (0 when `splits` is 1).
    pub part_ml: u64,
    /// `[batch, kv_heads·G, head_dim]`: receives the attention output.
    pub out: u64,
    pub batch: usize,
    pub kv_heads: usize,
    pub capacity: usize,
    /// Row stride of `real` (≥ the slots attended).
    pub real_stride: usize,
    /// Slots `0..view` may be attended: `view` fixes the grid, the slot read on the device fixes
    /// the work.
    pub view: usize,
    /// Multiplies the scores (usually `1/√head_dim`).
    pub scale: f32,
}

/// Checks the launch arguments for `shape` without touching the driver.
pub fn validate(shape: AttnShape, args: &AttnArgs) -> Result<(), AttnError> {
    shape.check()?;
    let bad = |m: String| Err(AttnError::BadArgument(m));
    if args.batch == 0 || args.kv_heads == 0 {
        return bad(format!(
            "batch {} and kv heads {} must be positive",
            args.batch, args.kv_heads
        ));
    }
    if args.view == 0 || args.view > args.capacity || args.view > args.real_stride {
        return bad(format!(
            "view {} must be in 1..=capacity ({}) and ≤ the mask's row stride ({})",
            args.view, args.capacity, args.real_stride
        ));
    }
    let blocks = args.batch as u128 * args.kv_heads as u128 * splits(args.view) as u128;
    let rows = args.batch as u128 * (args.kv_heads * shape.group) as u128;
    if blocks > i32::MAX as u128 || args.capacity > i32::MAX as usize {
        return bad(format!("{blocks} blocks or capacity {} out of range", args.capacity));
    }
    if args.real_stride > i32::MAX as usize || rows > i32::MAX as u128 {
        return bad(format!("{rows} query rows or mask stride {} out of range", args.real_stride));
    }
    if !args.scale.is_finite() {
        return bad(format!("scale {} is not finite", args.scale));
    }
    // Vector loads read 16 bytes at a time from q, keys and values.
    let el = if Layout::of(shape).vec { 16 } else { shape.element_bytes() };
    let split = splits(args.view) > 1;
    let pointers = [
        ("q", args.q, el, true),
        ("keys", args.keys, el, true),
        ("values", args.values, el, true),
        ("real", args.real, 1, true),
        ("slot", args.slot, 8, true),
        ("out", args.out, shape.element_bytes(), true),
        ("part_acc", args.part_acc, 4, split),
        ("part_ml", args.part_ml, 4, split),
    ];
    element::check_pointers(&pointers)
}

/// The compiled kernels for one shape, loaded into the primary context of one device (the
/// context libtorch uses).
#[derive(Debug)]
pub struct DecodeAttention {
    shape: AttnShape,
    loaded: element::Loaded,
}

impl DecodeAttention {
    /// Compiles the kernels for `shape` with NVRTC and loads them on device `ordinal`.
    pub fn new(ordinal: usize, shape: AttnShape) -> Result<Self, AttnError> {
        let ptx = compile_ptx(shape)?;
        let loaded = element::load(ordinal, ptx, &[ATTEND_NAME, MERGE_NAME])?;
        Ok(DecodeAttention { shape, loaded })
    }

    /// The shape the kernels were compiled for.
    pub fn shape(&self) -> AttnShape {
        self.shape
    }

    /// Enqueues the attention (and, with more than one chunk, the merge) on `stream` (a raw
    /// `CUstream`; 0 is the legacy default stream). Does not synchronise.
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must be a device address in this module's context of a contiguous
    /// buffer of the documented kind and shape, valid until the kernels have run on `stream`, and
    /// `stream` must be a live stream of this context (or 0).
    pub unsafe fn launch(&self, stream: u64, args: &AttnArgs) -> Result<(), AttnError> {
        validate(self.shape, args)?;
        let n = splits(args.view);
        // The driver reads each parameter through a pointer to its value: locals of exactly the
        // kernel's parameter types, alive until the launches return. Sizes are validated above.
        let (mut q, mut keys, mut values, mut real, mut slot) =
            (args.q, args.keys, args.values, args.real, args.slot);
        let (mut kv_heads, mut capacity) = (args.kv_heads as i32, args.capacity as i32);
        let (mut real_stride, mut splits_arg) = (args.real_stride as i32, n as i32);
        let mut view = args.view as i32;
        let mut scale = args.scale;
        let (mut part_acc, mut part_ml, mut out) = (args.part_acc, args.part_ml, args.out);
        let mut params: Vec<*mut c_void> = vec![
            (&raw mut q).cast(),
            (&raw mut keys).cast(),
            (&raw mut values).cast(),
            (&raw mut real).cast(),
            (&raw mut slot).cast(),
            (&raw mut kv_heads).cast(),
            (&raw mut capacity).cast(),
            (&raw mut real_stride).cast(),
            (&raw mut view).cast(),
            (&raw mut splits_arg).cast(),
            (&raw mut scale).cast(),
            (&raw mut part_acc).cast(),
            (&raw mut part_ml).cast(),
            (&raw mut out).cast(),
        ];
        let blocks = (args.batch * args.kv_heads * n) as u32;
        let threads = (WARPS * 32) as u32;
        // SAFETY: the parameter list matches the kernel's signature in number, order and size;
        // the caller vouches for the pointers and the stream.
        unsafe { self.loaded.launch(0, blocks, threads, stream, &mut params) }?;
        if n == 1 {
            return Ok(());
        }
        let mut merge_params: Vec<*mut c_void> = vec![
            (&raw mut part_acc).cast(),
            (&raw mut part_ml).cast(),
            (&raw mut splits_arg).cast(),
            (&raw mut out).cast(),
        ];
        let rows = (args.batch * args.kv_heads * self.shape.group) as u32;
        let threads = self.shape.head_dim.div_ceil(32).clamp(1, 8) as u32 * 32;
        // SAFETY: as above, for the merge kernel's signature.
        unsafe { self.loaded.launch(1, rows, threads, stream, &mut merge_params) }
    }
}

/// The inputs of [`reference`], as float32 host slices in the layouts of [`AttnArgs`].
#[derive(Debug, Clone, Copy)]
pub struct HostAttn<'a> {
    pub shape: AttnShape,
    pub q: &'a [f32],
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub real: &'a [bool],
    pub slot: i64,
    pub batch: usize,
    pub kv_heads: usize,
    pub capacity: usize,
    pub real_stride: usize,
    pub view: usize,
    pub scale: f32,
}

/// The kernels' algorithm on the CPU, in float32 (same chunks, lane groups, online softmax and
/// order of combination; the dot product is summed in element order, not by the kernel's
/// butterfly).
/// Returns `[batch, kv_heads·G, head_dim]` before rounding to the element kind.
pub fn reference(a: &HostAttn) -> Result<Vec<f32>, AttnError> {
    let AttnShape { head_dim: hd, group, .. } = a.shape;
    a.shape.check()?;
    let heads = a.kv_heads * group;
    let cache = a.batch * a.kv_heads * a.capacity * hd;
    if a.q.len() != a.batch * heads * hd || a.keys.len() != cache || a.values.len() != cache {
        return Err(AttnError::BadArgument(
            "reference: buffer sizes do not match the shape".into(),
        ));
    }
    if a.real.len() != a.batch * a.real_stride || a.view > a.capacity || a.view > a.real_stride {
        return Err(AttnError::BadArgument("reference: mask size or view out of range".into()));
    }
    let n = splits(a.view);
    let mut out = vec![0f32; a.batch * heads * hd];
    // Per chunk: (m, l, acc) of every query head of one (row, kv head).
    let mut parts: Vec<(f32, f32, Vec<f32>)> = Vec::with_capacity(n);
    for b in 0..a.batch {
        for h in 0..a.kv_heads {
            for g in 0..group {
                let row = (b * heads + h * group + g) * hd;
                let q: Vec<f32> = a.q[row..row + hd]
                    .iter()
                    .map(|x| x * (a.scale * std::f32::consts::LOG2_E))
                    .collect();
                parts.clear();
                for split in 0..n {
                    parts.push(chunk(a, b, h, &q, split));
                }
                let dst = &mut out[row..row + hd];
                if n == 1 {
                    let (_, l, acc) = &parts[0];
                    for (o, x) in dst.iter_mut().zip(acc) {
                        *o = if *l > 0.0 { x / l } else { 0.0 };
                    }
                } else {
                    merge(&parts, dst);
                }
            }
        }
    }
    Ok(out)
}

/// One block of `wax_decode_attend` for one query head: its lane groups' online softmaxes (in
/// log2 units), combined.
fn chunk(a: &HostAttn, b: usize, h: usize, q: &[f32], split: usize) -> (f32, f32, Vec<f32>) {
    let hd = q.len();
    let groups = Layout::of(a.shape).groups() as i64;
    let start = (split * CHUNK) as i64;
    let stop = (start + CHUNK as i64).min(a.slot + 1).min(a.view as i64);
    let base = (b * a.kv_heads + h) * a.capacity * hd;
    let mut states = Vec::with_capacity(groups as usize);
    for state in 0..groups {
        let (mut m, mut l, mut acc) = (f32::NEG_INFINITY, 0f32, vec![0f32; hd]);
        let mut j = start + state;
        while j < stop {
            let ju = j as usize;
            if j == a.slot || a.real[b * a.real_stride + ju] {
                let k = &a.keys[base + ju * hd..base + (ju + 1) * hd];
                let v = &a.values[base + ju * hd..base + (ju + 1) * hd];
                let s = q.iter().zip(k).fold(0f32, |s, (x, y)| x.mul_add(*y, s));
                let m_new = m.max(s);
                let corr = (m - m_new).exp2();
                let p = (s - m_new).exp2();
                l = l.mul_add(corr, p);
                for (x, y) in acc.iter_mut().zip(v) {
                    *x = p.mul_add(*y, *x * corr);
                }
                m = m_new;
            }
            j += groups;
        }
        states.push((m, l, acc));
    }
    let mm = states.iter().fold(f32::NEG_INFINITY, |mm, w| mm.max(w.0));
    let (mut ll, mut aa) = (0f32, vec![0f32; hd]);
    for (m, l, acc) in &states {
        if *l > 0.0 {
            let c = (m - mm).exp2();
            ll = c.mul_add(*l, ll);
            for (x, y) in aa.iter_mut().zip(acc) {
                *x = c.mul_add(*y, *x);
            }
        }
    }
    (mm, ll, aa)
}

/// `wax_decode_merge` for one query head.
fn merge(parts: &[(f32, f32, Vec<f32>)], dst: &mut [f32]) {
    let mm = parts.iter().filter(|p| p.1 > 0.0).fold(f32::NEG_INFINITY, |mm, p| mm.max(p.0));
    let mut ll = 0f32;
    for o in dst.iter_mut() {
        *o = 0.0;
    }
    for (m, l, acc) in parts.iter().filter(|p| p.1 > 0.0) {
        let c = (m - mm).exp2();
        ll = c.mul_add(*l, ll);
        for (o, y) in dst.iter_mut().zip(acc) {
            *o = c.mul_add(*y, *o);
        }
    }
    for o in dst.iter_mut() {
        *o = if ll > 0.0 { *o / ll } else { 0.0 };
    }
}

#[cfg(test)]
mod tests;
