//! Fused next-token sampling on the GPU: temperature, optional nucleus (top-p), optional
//! allowed-token mask, and one draw per row by inversion of the cumulative distribution, with
//! the log-probability of the drawn token.
//!
//! # What it computes
//!
//! Input: float32 logits `[rows, vocab]` (or bfloat16 for the variant of [`source_for`], which
//! widens each logit exactly and adds the softmax sums as libtorch adds them over the float32
//! copy, so its draws are those from that copy); output: one int64 token and its float32
//! log-probability per row. The kernel replaces the chain of libtorch ops in
//! `worker/src/generate/sampling.rs` (`fixed`, `order_key`, `nucleus`, `log_probs`, `sample`, for
//! a temperature > 0 and no top-k) and the draw of `worker/src/generate/noise.rs` (`hash32`,
//! `key_of`, `uniform` at vocabulary index 0), and mirrors them operation by operation:
//!
//! 1. `x = logits · r` in float32 with `r` the float32 rounding of the float64 `1 / temperature`,
//!    −∞ where the allowed mask is 0. That, rather than a division, is what libtorch 2.11's CUDA
//!    kernel computes for `x /= temperature` with a scalar divisor (checked bit for bit on an
//!    H200 for temperatures 0.3 to 3.7; with `1.0f32 / (t as f32)` instead, 1.1 and 1.7 differ).
//! 2. `m = max x`, `s = Σ exp(x − m)`, `p = exp(x − m) / s`, weights `w = rint(p · 2^40)`.
//! 3. If `top_p < 1`: the nucleus threshold by the same three-pass radix select over the
//!    order-preserving 32-bit keys of `x` (digits of 11, 11 and 10 bits, 2,048-bucket
//!    histograms of integer weights, exact in any order); token `i` is kept iff
//!    `key(x_i) ≥ threshold`.
//! 4. `lp = (x − m) − log Σ_kept exp(x − m)` (−∞ outside the nucleus), draw weights
//!    `v = rint(exp(lp) · 2^40)`, and the token is the number of indices whose cumulative
//!    weight (in index order) is ≤ `floor(u · total)`, clamped to `vocab − 1`, with `u` the
//!    counter-based uniform of (seed, step, index 0).
//!
//! Integer arithmetic (keys, weights, histograms, the cumulative sum, the hash) is bit for bit
//! that of the libtorch path, and so is every float32 operation on a single element: the kernel
//! uses the round-to-nearest intrinsics (`__fmul_rn`, `__fsub_rn`, `__fdiv_rn`, `__fadd_rn`), so
//! no multiply and add are contracted into an FMA that libtorch would not form, and the same
//! `expf` and `logf` as libtorch's CUDA kernels. The two float32 sums (the softmax denominator,
//! for the nucleus weights, and the log-softmax denominator over the kept tokens) are added in
//! the order of PyTorch 2.11's CUDA softmax kernels (`wax_torch_sum` in [`SOURCE`]: the warp
//! kernel for vocabularies up to 2,048, the register kernel up to 9,216, the shared-memory kernel
//! for aligned multiples of 4 below 12,256, the vectorised block kernel otherwise, as for
//! 151,936), so they too are bit for bit those of libtorch, provided libtorch's copies of the
//! rows have the 16-byte alignment of `logits` (true for fresh allocations). Tokens and
//! log-probabilities are therefore identical to the libtorch path. Should a PyTorch release
//! change that order, the sums would differ in their last bits and a token could then differ
//! when the nucleus boundary or the draw falls within a rounding error of a weight boundary:
//! rare for peaked rows, about one row in 1,500 for very flat, masked rows with top-p (measured
//! with a plain tree sum).
//!
//! # Launch configuration
//!
//! One block of [`BLOCK_THREADS`] (1,024) threads per row, grid `(rows, 1, 1)`, no dynamic
//! shared memory; the kernel uses about 16.6 KB of static shared memory (a 2,048-bucket `u64`
//! histogram and small reduction scratch). Every pass reads the row again from global memory
//! (about eight reads of the row: max, sum, three histograms, the nucleus sum, chunk sums and
//! the final count, the last only by the thread whose chunk holds the draw); nothing per token
//! is stored. The allowed mask, when given, is one byte per vocabulary entry (`[vocab]` bool,
//! shared by all rows). The noise counter `step` is read from device memory, so a captured CUDA
//! graph can replay the launch with a new step.
//!
//! [`TopPSampler::launch`] only enqueues the kernel on the caller's raw stream: it never touches
//! the default stream, allocates nothing and does not synchronise, so it may be called while
//! libtorch captures a CUDA graph (construct the sampler before the capture: loading the module
//! is not allowed during one).
//!
//! # Checking
//!
//! The CPU tests here check that NVRTC compiles the source, the noise constants and arithmetic,
//! and the argument validation. `the_kernel_matches_a_cpu_reference_on_the_gpu` runs the kernel
//! through [`TopPSampler::launch`] and compares it with a CPU reference of the algorithm
//! whenever a CUDA device and NVRTC are present. Against the libtorch path itself (a torch port
//! of `sampling.rs` and `noise.rs`, PyTorch 2.11 + CUDA 13 on an H200) the kernel gave the same
//! token and the bit-identical log-probability in all of 12,432 rows: vocabularies 1 to 151,936
//! (both sides of every softmax-kernel boundary, unaligned rows), temperatures 0.25 to 1.7,
//! top-p from 1e-6 to 1, with and without a mask, one allowed token, exact ties, steps 0, 5 and
//! 2^32 + 3 and negative seeds. There, 512 rows of 151,936 took 0.5 ms (no nucleus) and 1.7 ms
//! (top-p 0.95) against 2.8 ms and 13 ms for the libtorch ops.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError, result, sys};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

/// Name of the kernel in [`SOURCE`].
pub const KERNEL_NAME: &str = "wax_sample_topp";

/// Threads per block (one block per row); must equal `WAX_BLOCK` in [`SOURCE`].
pub const BLOCK_THREADS: u32 = 1024;

/// 2^40: the fixed-point scale of probabilities, as in `sampling.rs`.
pub const FIXED_ONE: f64 = 1_099_511_627_776.0;

/// CUDA C++ source of `wax_sample_topp`, compiled at run time by NVRTC (no includes).
///
/// Parameters, in order:
/// `const float* logits` `[rows, vocab]` contiguous (bfloat16 where the source is compiled with
/// `WAX_LOGITS_BF16` 1: see [`source_for`]),
/// `const unsigned char* allowed` `[vocab]` (0 = excluded) or null,
/// `const long long* seeds` `[rows]`,
/// `const long long* step` `[1]` (the noise counter),
/// `double temperature` (> 0),
/// `double top_p` (≥ 1 disables the nucleus),
/// `int vocab`,
/// `long long* out_tokens` `[rows]`,
/// `float* out_logprobs` `[rows]`.
pub const SOURCE: &str = r#"
// wax_sample_topp: temperature, nucleus (top-p), allowed mask and one inverse-CDF draw per row.
// Mirrors worker/src/generate/sampling.rs and noise.rs; see kernels/src/topp.rs.

#ifndef WAX_LOGITS_BF16
#define WAX_LOGITS_BF16 0
#endif
#define WAX_BLOCK 1024
#define WAX_WARPS (WAX_BLOCK / 32)
#define WAX_MAX_BUCKETS 2048
#define WAX_FULL_MASK 0xffffffffu

typedef unsigned int wax_u32;
typedef unsigned long long wax_u64;
// A logit as stored: float32, or bfloat16 as its 16 bits (widened to float32 exactly).
#if WAX_LOGITS_BF16
typedef unsigned short wax_logit_t;
__device__ __forceinline__ float wax_widen(wax_logit_t v) {
    return __uint_as_float(((unsigned int)v) << 16);
}
#else
typedef float wax_logit_t;
__device__ __forceinline__ float wax_widen(wax_logit_t v) { return v; }
#endif

__device__ __forceinline__ float wax_neg_inf() { return __int_as_float((int)0xff800000u); }

// One round of the 32-bit avalanche hash of noise.rs (wrapping u32 arithmetic).
__device__ __forceinline__ wax_u32 wax_hash32(wax_u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// noise.rs `uniform(seeds, step, 1, ..)` for one seed: the draw at vocabulary index 0.
__device__ double wax_uniform(long long seed, long long step) {
    const wax_u64 s = (wax_u64)seed;
    const wax_u32 lo = (wax_u32)(s & 0xffffffffull);
    const wax_u32 hi = (wax_u32)(s >> 32);  // = (seed >> 32) & 0xffffffff, arithmetic shift
    const wax_u32 key = wax_hash32((wax_hash32(lo) + 0x9e3779b9u) ^ hi);
    const wax_u32 k = wax_hash32(key + (wax_u32)((wax_u64)step & 0xffffffffull));
    const wax_u32 a = wax_hash32(k + 0u);  // + vocabulary index 0
    const wax_u32 b = wax_hash32((a ^ k) + 0x6a09e667u);
    // 24 + 24 bits; every step is exact in double.
    const double hi24 = (double)(a >> 8);
    const double lo24 = (double)(b >> 8);
    return __ddiv_rn(__dadd_rn(__dadd_rn(__dmul_rn(hi24, 16777216.0), lo24), 0.5),
                     281474976710656.0);
}

// x_i: the logit times the float32 reciprocal of the temperature, or -inf if not allowed.
__device__ __forceinline__ float wax_logit(const wax_logit_t* __restrict__ row,
                                           const unsigned char* __restrict__ allowed,
                                           long long i, float inv_t) {
    if (allowed != nullptr && allowed[i] == 0) return wax_neg_inf();
    return __fmul_rn(wax_widen(row[i]), inv_t);
}

// Order-preserving key in [0, 2^32) of a float32 (sampling.rs `order_key`).
__device__ __forceinline__ wax_u32 wax_key(float x) {
    const int b = __float_as_int(x);
    const int flipped = b >= 0 ? b : (b ^ 0x7fffffff);
    return (wax_u32)flipped + 0x80000000u;
}

// rint(p * 2^40) as an integer (sampling.rs `fixed`); p is in [0, 1].
__device__ __forceinline__ wax_u64 wax_fixed(float p) {
    const float r = rintf(__fmul_rn(p, 1099511627776.0f));
    return r > 0.0f ? (wax_u64)r : 0ull;
}

// Log-probability of a token with (scaled, masked) logit x under the sampled distribution.
__device__ __forceinline__ float wax_logprob(float x, bool nucleus, wax_u32 threshold, float m,
                                             float log_sum) {
    if (nucleus && wax_key(x) < threshold) return wax_neg_inf();
    return __fsub_rn(__fsub_rn(x, m), log_sum);
}

// Block-wide reductions (also wax_torch_sum, wax_block_sum_u64, wax_block_exclusive_scan).
// Every thread must call them; every thread gets the same result.
__device__ float wax_block_max(float v, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(WAX_FULL_MASK, v, o));
    __syncthreads();  // scratch may still be read by a previous reduction
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = scratch[0];
    for (int w = 1; w < WAX_WARPS; ++w) r = fmaxf(r, scratch[w]);
    return r;
}

// The float32 softmax denominator sum_i term(i) over a row of n elements, added in exactly the
// order of PyTorch's CUDA softmax / log_softmax (PyTorch 2.11, aten/src/ATen/native/cuda/
// SoftMax.cu and PersistentSoftmax.cuh), so that the sums, and everything derived from them, are
// bit for bit those of the libtorch path. `shift` is the misalignment of the row in floats
// ((address % 16) / 4). The term of an excluded token is 0 (libtorch adds exp(-inf) = +0, which
// leaves a sum unchanged). Every thread must call it; every thread gets the sum. libtorch picks
// the kernel by the row length:
//
// - n <= 2048: softmax_warp_forward. One warp of `width` = min(next power of two >= n, 32)
//   lanes; lane l adds elements l, l + width, l + 2 width, ... in turn; then an xor butterfly.
// - n <= 9 * 1024: cunn_SoftMaxForwardReg with 1024 threads: thread t adds t, t + 1024, ...
// - n < 12256, n % 4 == 0, aligned row: cunn_SoftMaxForwardSmem with 1024 threads and 4-element
//   vectors: thread t adds elements 4o .. 4o+3 for o = t, t + 1024, ...
// - otherwise: cunn_SoftMaxForward with 1024 threads, ilpReduce with 4-element vectors (after
//   one unaligned element per thread when shift > 0, and a scalar tail).
// The last three end with cuda_utils::BlockReduce: a shfl_down tree in each warp, then the same
// tree over the warp sums in warp 0.
template <class Term>
__device__ float wax_torch_sum(int n, int shift, const Term& term, float* scratch) {
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    if (n <= 2048) {
        int pow2 = 1;
        while (pow2 < n) pow2 <<= 1;
        const int width = pow2 < 32 ? pow2 : 32;
        const int iterations = pow2 / width;
        float acc = 0.0f;
        if (warp == 0) {
            if (lane < width) {
                for (int it = 0; it < iterations; ++it) {
                    const int i = lane + it * width;
                    if (i < n) acc = __fadd_rn(acc, term(i));
                }
            }
            for (int o = width / 2; o > 0; o >>= 1)
                acc = __fadd_rn(acc, __shfl_xor_sync(WAX_FULL_MASK, acc, o, width));
        }
        __syncthreads();  // scratch may still be read by a previous reduction
        if (tid == 0) scratch[0] = acc;
        __syncthreads();
        return scratch[0];
    }
    float acc = 0.0f;
    if (n <= 9 * WAX_BLOCK) {
        for (int i = tid; i < n; i += WAX_BLOCK) acc = __fadd_rn(acc, term(i));
    } else if (n < 12256 && n % 4 == 0 && shift == 0) {
        for (int o = tid; o * 4 < n; o += WAX_BLOCK) {
            for (int j = 0; j < 4; ++j) acc = __fadd_rn(acc, term(o * 4 + j));
        }
    } else {
        int base = 0;  // row index of the first element of the aligned part
        int size = n;
        if (shift > 0) {
            size += shift;
            if (tid >= shift) acc = __fadd_rn(acc, term(tid - shift));
            size -= WAX_BLOCK;
            base = WAX_BLOCK - shift;
        }
        const int last = size % (4 * WAX_BLOCK);
        int o = tid;
        for (; o * 4 < size - last; o += WAX_BLOCK) {
            for (int j = 0; j < 4; ++j) acc = __fadd_rn(acc, term(base + o * 4 + j));
        }
        for (o = size - last + tid; o < size; o += WAX_BLOCK) acc = __fadd_rn(acc, term(base + o));
    }
    for (int o = 16; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_down_sync(WAX_FULL_MASK, acc, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = acc;
    __syncthreads();
    float v = tid < WAX_WARPS ? scratch[lane] : 0.0f;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_down_sync(WAX_FULL_MASK, v, o));
    }
    __syncthreads();
    if (tid == 0) scratch[0] = v;
    __syncthreads();
    return scratch[0];
}

__device__ wax_u64 wax_block_sum_u64(wax_u64 v, wax_u64* scratch) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(WAX_FULL_MASK, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    wax_u64 r = 0;
    for (int w = 0; w < WAX_WARPS; ++w) r += scratch[w];
    return r;
}

// Exclusive prefix sum over the threads of the block in thread order; *total gets the sum of all.
__device__ wax_u64 wax_block_exclusive_scan(wax_u64 v, wax_u64* scratch, wax_u64* total) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    wax_u64 inclusive = v;
    for (int o = 1; o < 32; o <<= 1) {
        const wax_u64 other = __shfl_up_sync(WAX_FULL_MASK, inclusive, o);
        if (lane >= o) inclusive += other;
    }
    __syncthreads();
    if (lane == 31) scratch[warp] = inclusive;
    __syncthreads();
    wax_u64 before = 0;
    wax_u64 all = 0;
    for (int w = 0; w < WAX_WARPS; ++w) {
        const wax_u64 t = scratch[w];
        if (w < warp) before += t;
        all += t;
    }
    *total = all;
    return before + inclusive - v;
}

// For bfloat16 logits ptxas (CUDA 13.5, sm_90) would otherwise cap the kernel at 32 registers
// for two blocks per SM and spill; one block per SM is what the float32 variant gets anyway.
#if WAX_LOGITS_BF16
#define WAX_BOUNDS __launch_bounds__(WAX_BLOCK, 1)
#else
#define WAX_BOUNDS __launch_bounds__(WAX_BLOCK)
#endif

extern "C" __global__ void WAX_BOUNDS wax_sample_topp(
    const wax_logit_t* __restrict__ logits,
    const unsigned char* __restrict__ allowed,
    const long long* __restrict__ seeds,
    const long long* __restrict__ step,
    double temperature,
    double top_p,
    int vocab,
    long long* __restrict__ out_tokens,
    float* __restrict__ out_logprobs)
{
    __shared__ wax_u64 hist[WAX_MAX_BUCKETS];
    __shared__ wax_u64 scratch_u64[WAX_WARPS];
    __shared__ float scratch_f32[WAX_WARPS];
    __shared__ wax_u64 chosen_above;

    const int tid = threadIdx.x;
    const long long n = vocab;
    const wax_logit_t* __restrict__ row = logits + (long long)blockIdx.x * n;
    // libtorch's CUDA `x /= temperature` (a float32 tensor divided by a double scalar) multiplies
    // by the reciprocal, computed in double and rounded to float32.
    const float inv_t = __double2float_rn(__ddiv_rn(1.0, temperature));

    // m = max x, s = sum exp(x - m).
    float local_max = wax_neg_inf();
    for (long long i = tid; i < n; i += WAX_BLOCK)
        local_max = fmaxf(local_max, wax_logit(row, allowed, i, inv_t));
    const float m = wax_block_max(local_max, scratch_f32);
    // The row's misalignment in floats, as libtorch's softmax kernel computes it from the
    // address of the row (assumes libtorch's copy of the row is aligned like `logits`). For
    // bfloat16 logits: that of the row in their float32 copy (a fresh, aligned allocation).
#if WAX_LOGITS_BF16
    const int row_shift = (int)(((long long)blockIdx.x * n) % 4);
#else
    const int row_shift = (int)(((unsigned long long)row % 16ull) / 4ull);
#endif
    const auto exp_term = [&](int i) -> float {
        return expf(__fsub_rn(wax_logit(row, allowed, i, inv_t), m));
    };
    const float s = wax_torch_sum(vocab, row_shift, exp_term, scratch_f32);

    // Nucleus threshold by radix select (sampling.rs `nucleus`).
    const bool nucleus = top_p < 1.0;
    wax_u32 threshold = 0;
    if (nucleus) {
        long long t = (long long)round(top_p * 1099511627776.0);  // half away from zero
        const wax_u64 target = t < 1 ? 1ull : (wax_u64)t;
        wax_u64 base = 0;
        for (int pass = 0; pass < 3; ++pass) {
            const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0);
            const int bits = pass == 2 ? 10 : 11;
            const int buckets = 1 << bits;
            // Undecided tokens: those whose key digits above this pass equal the chosen ones
            // (all tokens in the first pass: a 64-bit shift by 32 gives 0 = threshold).
            const int prefix_shift = shift + bits;
            for (int h = tid; h < buckets; h += WAX_BLOCK) hist[h] = 0ull;
            __syncthreads();
            for (long long i = tid; i < n; i += WAX_BLOCK) {
                const float x = wax_logit(row, allowed, i, inv_t);
                const wax_u32 key = wax_key(x);
                if (((wax_u64)key >> prefix_shift) != (wax_u64)threshold) continue;
                const wax_u64 w = wax_fixed(__fdiv_rn(expf(__fsub_rn(x, m)), s));
                if (w != 0ull) atomicAdd(&hist[(key >> shift) & (wax_u32)(buckets - 1)], w);
            }
            __syncthreads();

            // above[h] = base + sum of hist[h'] over h' > h. Thread t owns the buckets at
            // positions q = t*per .. t*per+per-1 counted from the top (bucket h = buckets-1-q),
            // so an exclusive scan over threads gives the mass above each thread's buckets.
            const int per = (buckets + WAX_BLOCK - 1) / WAX_BLOCK;
            wax_u64 mine = 0ull;
            for (int j = 0; j < per; ++j) {
                const int q = tid * per + j;
                if (q < buckets) mine += hist[buckets - 1 - q];
            }
            wax_u64 all;
            const wax_u64 higher = wax_block_exclusive_scan(mine, scratch_u64, &all);
            // chosen = number of buckets with above[h] >= target.
            wax_u64 count = 0ull;
            wax_u64 above = base + higher;
            for (int j = 0; j < per; ++j) {
                const int q = tid * per + j;
                if (q < buckets) {
                    if (above >= target) ++count;
                    above += hist[buckets - 1 - q];
                }
            }
            wax_u64 chosen = wax_block_sum_u64(count, scratch_u64);
            // above[buckets-1] = base < target, so chosen <= buckets-1; the guard only keeps
            // the digit in range.
            if (chosen > (wax_u64)(buckets - 1)) chosen = (wax_u64)(buckets - 1);
            // The owner of bucket `chosen` publishes above[chosen], the new base.
            above = base + higher;
            for (int j = 0; j < per; ++j) {
                const int q = tid * per + j;
                if (q < buckets) {
                    if ((wax_u64)(buckets - 1 - q) == chosen) chosen_above = above;
                    above += hist[buckets - 1 - q];
                }
            }
            __syncthreads();
            base = chosen_above;
            threshold = (threshold << bits) | (wax_u32)chosen;
        }
    }

    // log of the softmax denominator over the kept tokens (sampling.rs `log_probs`).
    // Without a nucleus the log-softmax denominator is the softmax one (same terms, same order).
    float kept_sum = s;
    if (nucleus) {
        const auto kept_term = [&](int i) -> float {
            const float x = wax_logit(row, allowed, i, inv_t);
            return wax_key(x) >= threshold ? expf(__fsub_rn(x, m)) : 0.0f;
        };
        kept_sum = wax_torch_sum(vocab, row_shift, kept_term, scratch_f32);
    }
    const float log_sum = logf(kept_sum);

    // Draw: cumulative weights in index order. Thread t owns a contiguous chunk.
    const long long chunk = (n + WAX_BLOCK - 1) / WAX_BLOCK;
    const long long lo = (long long)tid * chunk < n ? (long long)tid * chunk : n;
    const long long hi = lo + chunk < n ? lo + chunk : n;
    wax_u64 mass = 0ull;
    for (long long i = lo; i < hi; ++i)
        mass += wax_fixed(expf(wax_logprob(wax_logit(row, allowed, i, inv_t), nucleus, threshold,
                                           m, log_sum)));
    wax_u64 total;
    const wax_u64 before = wax_block_exclusive_scan(mass, scratch_u64, &total);
    const double u = wax_uniform(seeds[blockIdx.x], step[0]);
    const wax_u64 r = (wax_u64)floor(__dmul_rn(u, (double)total));
    // Number of indices of this chunk whose cumulative weight is <= r.
    wax_u64 count;
    if (before + mass <= r) {
        count = (wax_u64)(hi - lo);
    } else if (before > r) {
        count = 0ull;
    } else {
        count = 0ull;
        wax_u64 cdf = before;
        for (long long i = lo; i < hi; ++i) {
            cdf += wax_fixed(expf(wax_logprob(wax_logit(row, allowed, i, inv_t), nucleus,
                                              threshold, m, log_sum)));
            if (cdf > r) break;
            ++count;
        }
    }
    const wax_u64 below = wax_block_sum_u64(count, scratch_u64);
    if (tid == 0) {
        const long long token = below < (wax_u64)(n - 1) ? (long long)below : n - 1;
        out_tokens[blockIdx.x] = token;
        out_logprobs[blockIdx.x] =
            wax_logprob(wax_logit(row, allowed, token, inv_t), nucleus, threshold, m, log_sum);
    }
}
"#;

/// Errors of compiling, loading or launching the kernel.
#[derive(Debug, thiserror::Error)]
pub enum TopPError {
    /// `libnvrtc` could not be loaded (it must be on `LD_LIBRARY_PATH` or the loader's path).
    #[error("NVRTC (libnvrtc.so) not found: cannot compile {KERNEL_NAME}")]
    NvrtcMissing,
    /// `libcuda` could not be loaded: a machine without the CUDA driver.
    #[error("CUDA driver (libcuda.so) not found")]
    DriverMissing,
    /// NVRTC rejected the source.
    #[error("NVRTC failed to compile {KERNEL_NAME}: {message}\n{log}")]
    Compile { message: String, log: String },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {call} failed: {source}")]
    Driver {
        call: &'static str,
        #[source]
        source: DriverError,
    },
    /// The launch arguments are invalid.
    #[error("bad argument to {KERNEL_NAME}: {0}")]
    BadArgument(String),
}

fn driver(call: &'static str) -> impl FnOnce(DriverError) -> TopPError {
    move |source| TopPError::Driver { call, source }
}

/// The source for float32 logits ([`SOURCE`] itself) or for bfloat16 logits: the same
/// arithmetic on their exact widening to float32, with the softmax sums added in the order
/// libtorch adds them over the float32 copy of the logits, so a draw from bfloat16 logits is bit
/// for bit the draw from their float32 copy, read with half the memory traffic.
pub fn source_for(bf16_logits: bool) -> String {
    if bf16_logits { format!("#define WAX_LOGITS_BF16 1\n{SOURCE}") } else { SOURCE.to_string() }
}

/// Compiles [`SOURCE`] to PTX with NVRTC (default options: IEEE division and square root, no
/// fast math, denormals kept).
pub fn compile_ptx() -> Result<Ptx, TopPError> {
    compile_ptx_for(false)
}

/// Compiles [`source_for`] `bf16_logits` to PTX with NVRTC, as [`compile_ptx`].
pub fn compile_ptx_for(bf16_logits: bool) -> Result<Ptx, TopPError> {
    // SAFETY: only tries to dlopen libnvrtc by its usual names.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(TopPError::NvrtcMissing);
    }
    let opts = CompileOptions { name: Some("wax_topp.cu".into()), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(source_for(bf16_logits), opts).map_err(|e| match e {
        CompileError::CompileError { nvrtc, log, .. } => TopPError::Compile {
            message: nvrtc.to_string(),
            log: log.to_string_lossy().into_owned(),
        },
        other => TopPError::Compile { message: format!("{other:?}"), log: String::new() },
    })
}

/// One launch of the kernel. Pointers are raw device addresses (e.g. libtorch's
/// `tensor.data_ptr() as u64`) of contiguous tensors on the sampler's device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopPArgs {
    /// float32 `[rows, vocab]` (bfloat16 for a sampler built for bfloat16 logits).
    pub logits: u64,
    /// bool (one byte per entry) `[vocab]`, shared by all rows; 0 = every token allowed.
    pub allowed: u64,
    /// int64 `[rows]`: the per-sequence seeds.
    pub seeds: u64,
    /// int64 `[1]`: the noise counter (`step` of `sampling::sample`).
    pub step: u64,
    /// int64 `[rows]`: receives the tokens.
    pub out_tokens: u64,
    /// float32 `[rows]`: receives the log-probabilities of the tokens.
    pub out_logprobs: u64,
    pub rows: usize,
    pub vocab: usize,
    /// Softmax temperature, > 0 (greedy decoding is not this kernel's job). A double, as in
    /// `Sampling`: libtorch scales the logits by the float32 rounding of its double reciprocal.
    pub temperature: f64,
    /// Nucleus mass in (0, 1]; 1 disables the nucleus.
    pub top_p: f64,
}

/// Checks the launch arguments for float32 logits without touching the driver.
pub fn validate(args: &TopPArgs) -> Result<(), TopPError> {
    validate_for(args, false)
}

/// Checks the launch arguments for float32 or bfloat16 logits without touching the driver.
pub fn validate_for(args: &TopPArgs, bf16_logits: bool) -> Result<(), TopPError> {
    let bad = |m: String| Err(TopPError::BadArgument(m));
    if args.rows == 0 || args.rows > i32::MAX as usize {
        return bad(format!("rows must be in 1..={}, got {}", i32::MAX, args.rows));
    }
    if args.vocab == 0 || args.vocab > i32::MAX as usize {
        return bad(format!("vocab must be in 1..={}, got {}", i32::MAX, args.vocab));
    }
    let t = args.temperature;
    let inv = (1.0 / t) as f32;
    if !(t > 0.0 && t.is_finite() && inv.is_finite() && inv > 0.0) {
        return bad(format!("temperature must be > 0 with a finite reciprocal, got {t}"));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return bad(format!("top_p must be in (0, 1], got {}", args.top_p));
    }
    crate::element::check_pointers(&[
        ("logits", args.logits, if bf16_logits { 2 } else { 4 }, true),
        ("seeds", args.seeds, 8, true),
        ("step", args.step, 8, true),
        ("out_tokens", args.out_tokens, 8, true),
        ("out_logprobs", args.out_logprobs, 4, true),
    ])
    .map_err(|e| match e {
        crate::element::KernelError::BadArgument(m) => TopPError::BadArgument(m),
        other => TopPError::BadArgument(other.to_string()),
    })
}

/// The compiled kernel, loaded into the primary context of one device (the context libtorch
/// uses).
#[derive(Debug)]
pub struct TopPSampler {
    ctx: Arc<CudaContext>,
    module: Arc<CudaModule>,
    func: CudaFunction,
    bf16_logits: bool,
}

impl TopPSampler {
    /// Compiles the kernel for float32 logits with NVRTC and loads it on device `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self, TopPError> {
        Self::new_for(ordinal, false)
    }

    /// Compiles the kernel for float32 or bfloat16 logits ([`source_for`]) with NVRTC and loads
    /// it on device `ordinal`.
    pub fn new_for(ordinal: usize, bf16_logits: bool) -> Result<Self, TopPError> {
        // SAFETY: only tries to dlopen the driver library by its usual names.
        if !unsafe { sys::is_culib_present() } {
            return Err(TopPError::DriverMissing);
        }
        let ptx = compile_ptx_for(bf16_logits)?;
        Self::with_ptx_for(ordinal, ptx, bf16_logits)
    }

    /// Whether the kernel reads bfloat16 logits (else float32).
    pub fn bf16_logits(&self) -> bool {
        self.bf16_logits
    }

    /// Loads already compiled PTX of [`SOURCE`] (float32 logits) on device `ordinal`.
    pub fn with_ptx(ordinal: usize, ptx: Ptx) -> Result<Self, TopPError> {
        Self::with_ptx_for(ordinal, ptx, false)
    }

    /// Loads already compiled PTX of [`source_for`] `bf16_logits` on device `ordinal` (the flag
    /// must say which variant the PTX is: it sets the logits kind [`TopPSampler::launch`]
    /// accepts).
    pub fn with_ptx_for(ordinal: usize, ptx: Ptx, bf16_logits: bool) -> Result<Self, TopPError> {
        // SAFETY: as in `new`.
        if !unsafe { sys::is_culib_present() } {
            return Err(TopPError::DriverMissing);
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("cuDevicePrimaryCtxRetain"))?;
        let module = ctx.load_module(ptx).map_err(driver("cuModuleLoadData"))?;
        let func = module.load_function(KERNEL_NAME).map_err(driver("cuModuleGetFunction"))?;
        Ok(TopPSampler { ctx, module, func, bf16_logits })
    }

    /// The device context the kernel is loaded in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The loaded module.
    pub fn module(&self) -> &Arc<CudaModule> {
        &self.module
    }

    /// Enqueues the kernel on `stream` (a raw `CUstream`; 0 is the legacy default stream). Does
    /// not synchronise; the outputs are ready when the stream reaches this point.
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must be a device address in this sampler's context of a
    /// contiguous buffer of the documented type and length, valid until the kernel has run on
    /// `stream`, and `stream` must be a live stream of this context (or 0).
    pub unsafe fn launch(&self, stream: u64, args: &TopPArgs) -> Result<(), TopPError> {
        validate_for(args, self.bf16_logits)?;
        self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        // The driver reads each parameter through a pointer to its value: keep them alive in
        // locals of exactly the kernel's parameter types until the launch returns.
        let mut logits: u64 = args.logits;
        let mut allowed: u64 = args.allowed;
        let mut seeds: u64 = args.seeds;
        let mut step: u64 = args.step;
        let mut temperature: f64 = args.temperature;
        let mut top_p: f64 = args.top_p;
        let mut vocab: i32 = args.vocab as i32; // validated ≤ i32::MAX
        let mut out_tokens: u64 = args.out_tokens;
        let mut out_logprobs: u64 = args.out_logprobs;
        let mut params: Vec<*mut c_void> = vec![
            (&raw mut logits).cast(),
            (&raw mut allowed).cast(),
            (&raw mut seeds).cast(),
            (&raw mut step).cast(),
            (&raw mut temperature).cast(),
            (&raw mut top_p).cast(),
            (&raw mut vocab).cast(),
            (&raw mut out_tokens).cast(),
            (&raw mut out_logprobs).cast(),
        ];
        let grid = (args.rows as u32, 1, 1); // validated ≤ i32::MAX
        let block = (BLOCK_THREADS, 1, 1);
        // SAFETY: the function belongs to this context, the parameter list matches the
        // kernel's signature in number, order and size, and the caller vouches for the
        // pointers and the stream.
        unsafe {
            result::launch_kernel(
                self.func.cu_function(),
                grid,
                block,
                0,
                stream as usize as sys::CUstream,
                &mut params,
            )
        }
        .map_err(driver("cuLaunchKernel"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar noise of `noise.rs`, computed exactly as it does: int64 values in `0..2^32`,
    /// multiplication mod 2^32 in 16-bit halves.
    mod noise_i64 {
        const MASK32: i64 = 0xffff_ffff;

        fn mul32(x: i64, c: i64) -> i64 {
            let lo = x & 0xffff;
            let hi = x >> 16;
            let hi = ((hi * c) & 0xffff) * 65_536;
            (lo * c + hi) & MASK32
        }

        pub fn hash32(x: i64) -> i64 {
            let x = x ^ (x >> 16);
            let x = mul32(x, 0x7feb_352d);
            let x = x ^ (x >> 15);
            let x = mul32(x, 0x846c_a68b);
            x ^ (x >> 16)
        }

        pub fn uniform(seed: i64, step: i64) -> f64 {
            let lo = seed & MASK32;
            let hi = (seed >> 32) & MASK32;
            let key = hash32(((hash32(lo) + 0x9e37_79b9) & MASK32) ^ hi);
            let key = hash32((key + (step & MASK32)) & MASK32);
            let a = hash32(key & MASK32); // index 0
            let b = hash32(((a ^ key) + 0x6a09_e667) & MASK32);
            let hi = (a >> 8) as f64;
            let lo = (b >> 8) as f64;
            (hi * 16_777_216.0 + lo + 0.5) / 281_474_976_710_656.0
        }
    }

    /// The kernel's formulation in wrapping u32 arithmetic (`wax_hash32`, `wax_uniform`).
    mod noise_u32 {
        pub fn hash32(mut x: u32) -> u32 {
            x ^= x >> 16;
            x = x.wrapping_mul(0x7feb_352d);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846c_a68b);
            x ^ (x >> 16)
        }

        pub fn uniform(seed: i64, step: i64) -> f64 {
            let s = seed as u64;
            let lo = s as u32;
            let hi = (s >> 32) as u32;
            let key = hash32(hash32(lo).wrapping_add(0x9e37_79b9) ^ hi);
            let k = hash32(key.wrapping_add(step as u64 as u32));
            let a = hash32(k);
            let b = hash32((a ^ k).wrapping_add(0x6a09_e667));
            ((a >> 8) as f64 * 16_777_216.0 + (b >> 8) as f64 + 0.5) / 281_474_976_710_656.0
        }
    }

    fn nvrtc_present() -> bool {
        // SAFETY: only tries to dlopen libnvrtc.
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    }

    #[test]
    fn the_kernel_compiles_with_nvrtc() {
        if !nvrtc_present() {
            eprintln!("skipping: libnvrtc not found (set LD_LIBRARY_PATH to CUDA 13's lib dir)");
            return;
        }
        let ptx = match compile_ptx() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let text = ptx.to_src();
        assert!(text.contains(KERNEL_NAME), "no {KERNEL_NAME} entry in the PTX");
        assert!(text.contains(".entry"), "no kernel entry in the PTX");
        // The bfloat16 variant reads 16-bit logits; the float32 one never loads 16 bits.
        let bf16 = compile_ptx_for(true).unwrap_or_else(|e| panic!("{e}")).to_src();
        assert!(bf16.contains(&format!(".entry {KERNEL_NAME}")));
        let loads16 = |t: &str| t.lines().any(|l| l.contains("ld.global") && l.contains("u16"));
        assert!(loads16(&bf16) && !loads16(&text), "16-bit logit loads only in the bf16 variant");
    }

    #[test]
    fn bfloat16_logits_need_only_two_byte_alignment() {
        let args = TopPArgs { logits: 0x1002, ..good_args() };
        assert!(validate(&args).is_err());
        validate_for(&args, true).unwrap();
        assert!(validate_for(&TopPArgs { logits: 0x1001, ..args }, true).is_err());
        assert!(source_for(true).starts_with("#define WAX_LOGITS_BF16 1\n"));
        assert_eq!(source_for(false), SOURCE);
    }

    #[test]
    fn the_source_uses_the_noise_and_fixed_point_constants() {
        for constant in [
            "0x7feb352du",
            "0x846ca68bu",
            "0x9e3779b9u",
            "0x6a09e667u",
            "16777216.0",
            "281474976710656.0",
            "1099511627776.0",
            "#define WAX_BLOCK 1024",
            "#define WAX_MAX_BUCKETS 2048",
        ] {
            assert!(SOURCE.contains(constant), "SOURCE lacks {constant}");
        }
        assert_eq!(FIXED_ONE, (1u64 << 40) as f64);
        assert_eq!(BLOCK_THREADS, 1024);
        // The radix digits (21, 11), (10, 11), (0, 10) cover the 32-bit key exactly.
        assert!(SOURCE.contains("pass == 0 ? 21 : (pass == 1 ? 10 : 0)"));
        assert!(SOURCE.contains("pass == 2 ? 10 : 11"));
    }

    /// The u32 formulation of the kernel gives the same bits as noise.rs's int64 emulation.
    #[test]
    fn the_u32_noise_matches_the_int64_emulation_of_noise_rs() {
        let xs = [0u32, 1, 2, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX, 0x8000_0000, 12_345_678];
        for x in xs {
            assert_eq!(noise_i64::hash32(i64::from(x)), i64::from(noise_u32::hash32(x)), "{x:#x}");
        }
        let seeds = [0i64, 1, 7, -1, -2, i64::MAX, i64::MIN, 1 << 32, (1 << 32) + 1, 123_456_789];
        let steps = [0i64, 1, 2, 5, 1000, (1 << 32) - 1, 1 << 32, -1];
        for &seed in &seeds {
            for &step in &steps {
                let want = noise_i64::uniform(seed, step);
                let got = noise_u32::uniform(seed, step);
                assert_eq!(want.to_bits(), got.to_bits(), "seed {seed}, step {step}");
                assert!(got > 0.0 && got < 1.0, "u = {got}");
            }
        }
        // The step changes the draw, and so does the high word of the seed.
        assert_ne!(noise_u32::uniform(7, 3), noise_u32::uniform(7, 4));
        assert_ne!(noise_u32::uniform(7, 3), noise_u32::uniform(7 + (1 << 32), 3));
        // The mean over many draws is close to 1/2.
        let n = 20_000;
        let mean = (0..n).map(|i| noise_u32::uniform(i * 7919 + 3, 5)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    fn good_args() -> TopPArgs {
        TopPArgs {
            logits: 0x1000,
            allowed: 0,
            seeds: 0x2000,
            step: 0x3000,
            out_tokens: 0x4000,
            out_logprobs: 0x5000,
            rows: 512,
            vocab: 151_936,
            temperature: 0.7,
            top_p: 0.95,
        }
    }

    #[test]
    fn bad_arguments_are_rejected_before_the_driver_is_touched() {
        assert!(validate(&good_args()).is_ok());
        assert!(validate(&TopPArgs { top_p: 1.0, temperature: 1.0, ..good_args() }).is_ok());
        let cases: Vec<(TopPArgs, &str)> = vec![
            (TopPArgs { rows: 0, ..good_args() }, "rows"),
            (TopPArgs { rows: 1 << 31, ..good_args() }, "rows"),
            (TopPArgs { vocab: 0, ..good_args() }, "vocab"),
            (TopPArgs { vocab: 1 << 31, ..good_args() }, "vocab"),
            (TopPArgs { temperature: 0.0, ..good_args() }, "temperature"),
            (TopPArgs { temperature: -1.0, ..good_args() }, "temperature"),
            (TopPArgs { temperature: f64::NAN, ..good_args() }, "temperature"),
            (TopPArgs { temperature: f64::INFINITY, ..good_args() }, "temperature"),
            (TopPArgs { temperature: 1e300, ..good_args() }, "temperature"),
            (TopPArgs { temperature: 1e-45, ..good_args() }, "temperature"),
            (TopPArgs { top_p: 0.0, ..good_args() }, "top_p"),
            (TopPArgs { top_p: 1.5, ..good_args() }, "top_p"),
            (TopPArgs { top_p: f64::NAN, ..good_args() }, "top_p"),
            (TopPArgs { logits: 0, ..good_args() }, "logits"),
            (TopPArgs { logits: 0x1002, ..good_args() }, "logits"),
            (TopPArgs { seeds: 0, ..good_args() }, "seeds"),
            (TopPArgs { step: 0x3004, ..good_args() }, "step"),
            (TopPArgs { out_tokens: 0, ..good_args() }, "out_tokens"),
            (TopPArgs { out_logprobs: 0, ..good_args() }, "out_logprobs"),
        ];
        for (args, name) in cases {
            match validate(&args) {
                Err(TopPError::BadArgument(m)) => assert!(m.contains(name), "{name}: {m}"),
                other => panic!("{name}: expected a bad-argument error, got {other:?}"),
            }
        }
    }

    /// A CPU reference of the kernel's algorithm (float32 element operations, float64 nothing):
    /// the nucleus by its definition (kept iff the fixed-point mass of strictly larger keys is
    /// below the target) rather than by radix select. Returns (token, logprob) per row.
    fn reference(
        logits: &[f32],
        allowed: Option<&[u8]>,
        seeds: &[i64],
        step: i64,
        vocab: usize,
        temperature: f64,
        top_p: f64,
    ) -> Vec<(i64, f32)> {
        let fixed = |p: f32| -> u64 {
            let r = (p * FIXED_ONE as f32).round_ties_even();
            if r > 0.0 { r as u64 } else { 0 }
        };
        let key = |x: f32| -> u32 {
            let b = x.to_bits() as i32;
            let f = if b >= 0 { b } else { b ^ 0x7fff_ffff };
            (f as u32).wrapping_add(0x8000_0000)
        };
        let inv_t = (1.0 / temperature) as f32;
        let mut out = Vec::new();
        for (r, &seed) in seeds.iter().enumerate() {
            let x: Vec<f32> = (0..vocab)
                .map(|i| match allowed {
                    Some(a) if a[i] == 0 => f32::NEG_INFINITY,
                    _ => logits[r * vocab + i] * inv_t,
                })
                .collect();
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // The sums in float64: the kernel adds in libtorch's float32 order, so the two
            // differ in the last bits of the sums only.
            let s = x.iter().map(|&v| f64::from((v - m).exp())).sum::<f64>() as f32;
            let keep: Vec<bool> = if top_p < 1.0 {
                let target = ((top_p * FIXED_ONE).round() as u64).max(1);
                let w: Vec<u64> = x.iter().map(|&v| fixed((v - m).exp() / s)).collect();
                let mut order: Vec<usize> = (0..vocab).collect();
                order.sort_by_key(|&i| std::cmp::Reverse(key(x[i])));
                let mut keep = vec![false; vocab];
                let (mut above, mut j) = (0u64, 0);
                while j < vocab {
                    // Tokens with equal keys share the mass strictly above them.
                    let k = key(x[order[j]]);
                    let mut group = 0u64;
                    let start = j;
                    while j < vocab && key(x[order[j]]) == k {
                        group += w[order[j]];
                        j += 1;
                    }
                    for &i in &order[start..j] {
                        keep[i] = above < target;
                    }
                    above += group;
                }
                keep
            } else {
                vec![true; vocab]
            };
            let kept_sum =
                (0..vocab).filter(|&i| keep[i]).map(|i| f64::from((x[i] - m).exp())).sum::<f64>()
                    as f32;
            let log_sum = kept_sum.ln();
            let lp: Vec<f32> = (0..vocab)
                .map(|i| if keep[i] { (x[i] - m) - log_sum } else { f32::NEG_INFINITY })
                .collect();
            let mut cdf = Vec::with_capacity(vocab);
            let mut acc = 0u64;
            for &l in &lp {
                acc += fixed(l.exp());
                cdf.push(acc);
            }
            let total = acc as f64;
            let u = noise_u32::uniform(seed, step);
            let rr = (u * total).floor() as u64;
            let token = cdf.iter().filter(|&&c| c <= rr).count().min(vocab - 1);
            out.push((token as i64, lp[token]));
        }
        out
    }

    /// Deterministic pseudo-random numbers for test data.
    struct Lcg(u64);
    impl Lcg {
        fn next_f32(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        }
        fn normal(&mut self) -> f32 {
            let (a, b) = (self.next_f32(), self.next_f32());
            (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos()
        }
    }

    /// Runs the kernel on the GPU (if there is one and NVRTC) and compares with [`reference`].
    #[test]
    fn the_kernel_matches_a_cpu_reference_on_the_gpu() {
        if !matches!(crate::cuda::probe(), crate::cuda::CudaProbe::Devices { ref devices, .. } if !devices.is_empty())
        {
            eprintln!("skipping: no CUDA device");
            return;
        }
        if !nvrtc_present() {
            eprintln!("skipping: libnvrtc not found");
            return;
        }
        let sampler = TopPSampler::new(0).unwrap_or_else(|e| panic!("{e}"));
        let stream = sampler.context().new_stream().unwrap();
        let mut rng = Lcg(42);

        struct Case {
            name: &'static str,
            rows: usize,
            vocab: usize,
            temperature: f64,
            top_p: f64,
            allowed: Option<Vec<u8>>,
            logits: Vec<f32>,
        }
        let mut cases = Vec::new();
        for (name, vocab, temperature, top_p, masked) in [
            ("plain", 151_936usize, 1.0f64, 1.0f64, false),
            ("top-p 0.9, T 0.7", 151_936, 0.7, 0.9, false),
            ("top-p 0.95, mask, T 1.3", 151_936, 1.3, 0.95, true),
            ("small vocab top-p 0.5", 7, 1.0, 0.5, false),
            ("vocab 1000 top-p 0.8, T 1.1", 1000, 1.1, 0.8, true),
        ] {
            let rows = 48;
            let mut logits = Vec::with_capacity(rows * vocab);
            for r in 0..rows {
                let scale = [0.1f32, 1.0, 3.0, 8.0][r % 4];
                for _ in 0..vocab {
                    logits.push(rng.normal() * scale);
                }
            }
            let allowed = masked.then(|| {
                let mut a: Vec<u8> = (0..vocab).map(|_| u8::from(rng.next_f32() < 0.5)).collect();
                a[0] = 1;
                a
            });
            cases.push(Case { name, rows, vocab, temperature, top_p, allowed, logits });
        }
        // Only one allowed token; a tiny top-p (only the maximum kept); exact ties.
        let vocab = 5000;
        let mut one = vec![0u8; vocab];
        one[1234] = 1;
        cases.push(Case {
            name: "one allowed token",
            rows: 8,
            vocab,
            temperature: 1.0,
            top_p: 0.9,
            allowed: Some(one),
            logits: (0..8 * vocab).map(|_| rng.normal()).collect(),
        });
        cases.push(Case {
            name: "tiny top-p",
            rows: 8,
            vocab,
            temperature: 1.0,
            top_p: 1e-9,
            allowed: None,
            logits: (0..8 * vocab).map(|_| rng.normal() * 2.0).collect(),
        });
        cases.push(Case {
            name: "ties",
            rows: 8,
            vocab: 1000,
            temperature: 1.0,
            top_p: 0.5,
            allowed: None,
            logits: (0..8 * 1000)
                .map(|i| if i % 1000 < 4 { 2.0 } else { (i % 3) as f32 })
                .collect(),
        });

        for case in cases {
            let seeds: Vec<i64> = (0..case.rows as i64).map(|i| i * 7919 - 3).collect();
            let step = 5i64;
            let d_logits = stream.clone_htod(&case.logits).unwrap();
            let d_allowed = case.allowed.as_ref().map(|a| stream.clone_htod(a).unwrap());
            let d_seeds = stream.clone_htod(&seeds).unwrap();
            let d_step = stream.clone_htod(&[step]).unwrap();
            let mut d_tokens = stream.alloc_zeros::<i64>(case.rows).unwrap();
            let mut d_logprobs = stream.alloc_zeros::<f32>(case.rows).unwrap();
            stream.synchronize().unwrap();
            {
                use cudarc::driver::{DevicePtr, DevicePtrMut};
                let (logits, _g1) = d_logits.device_ptr(&stream);
                let allowed = d_allowed.as_ref().map(|a| a.device_ptr(&stream));
                let (seeds_ptr, _g3) = d_seeds.device_ptr(&stream);
                let (step_ptr, _g4) = d_step.device_ptr(&stream);
                let (tokens, _g5) = d_tokens.device_ptr_mut(&stream);
                let (logprobs, _g6) = d_logprobs.device_ptr_mut(&stream);
                let args = TopPArgs {
                    logits,
                    allowed: allowed.as_ref().map_or(0, |a| a.0),
                    seeds: seeds_ptr,
                    step: step_ptr,
                    out_tokens: tokens,
                    out_logprobs: logprobs,
                    rows: case.rows,
                    vocab: case.vocab,
                    temperature: case.temperature,
                    top_p: case.top_p,
                };
                // SAFETY: all buffers live on this context and outlive the synchronisation.
                unsafe { sampler.launch(stream.cu_stream() as u64, &args) }.unwrap();
            }
            stream.synchronize().unwrap();
            let tokens = stream.clone_dtoh(&d_tokens).unwrap();
            let logprobs = stream.clone_dtoh(&d_logprobs).unwrap();
            let want = reference(
                &case.logits,
                case.allowed.as_deref(),
                &seeds,
                step,
                case.vocab,
                case.temperature,
                case.top_p,
            );
            // The reference's sums differ from the kernel's in their last bits (float64 here,
            // libtorch's float32 order there), which can move a nucleus or draw boundary by a
            // rounding error: allow one differing token per case, and compare log-probabilities
            // of the rows that agree.
            let mut differing = 0;
            for r in 0..case.rows {
                let (t, lp) = want[r];
                if tokens[r] != t {
                    differing += 1;
                    eprintln!("{}: row {r}: token {} vs reference {t}", case.name, tokens[r]);
                    continue;
                }
                let diff = (logprobs[r] - lp).abs();
                assert!(
                    diff <= 5e-5 + 1e-6 * lp.abs(),
                    "{}: row {r} logprob {} vs {lp}",
                    case.name,
                    logprobs[r]
                );
            }
            assert!(differing <= 1, "{}: {differing} tokens differ", case.name);
            if case.name == "one allowed token" {
                assert!(tokens.iter().all(|&t| t == 1234));
                assert!(logprobs.iter().all(|&l| l == 0.0));
            }
            eprintln!("{}: {} rows agree", case.name, case.rows);
        }
    }
}
