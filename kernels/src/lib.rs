//! # wax-kernels
//!
//! Custom CUDA kernels for the hot loops of wax workers — fused rollout sampling over the four
//! move tokens and activation capture — launched with `cudarc` on memory that libtorch owns.
//! Every kernel has a CPU reference implementation; a parity test compares the two on the GPU
//! machine, and CPU-only machines always take the reference path.
//!
//! CUDA is loaded at run time (`cudarc`'s dynamic loading), so this crate builds and its CPU
//! paths run on machines with no CUDA installed. [`cuda::probe`] tells which case applies.
//!
//! [`topp`] is the fused full-vocabulary sampler (temperature, top-p, allowed mask, one
//! inverse-CDF draw per row), compiled at run time with NVRTC. [`decode_attn`] is split-K
//! attention of one decode token per row over a KV cache (libtorch's SDPA stays the CPU path);
//! [`qk_prep`] the decode step's q/k norms, RoPE and cache writes in one launch; [`resid_norm`]
//! its residual adds fused with the RMS norms that read them.
//!
//! Invariant: this crate depends on neither the coordinator nor the protocol crate.

pub mod cuda;
pub mod decode_attn;
pub mod element;
pub mod qk_prep;
pub mod resid_norm;
pub mod topp;
