//! The sampler as one CUDA kernel ([`wax_kernels::topp`]) on libtorch's tensors.
//!
//! The libtorch sampler in [`super::sampling`] makes ~40 passes over `[B, V]` int64 and float
//! tensors per step (12 ms at 512 × 151,936 on an H200). The kernel computes the same draw —
//! temperature, allowed set, the fixed-point nucleus by radix select, inversion with the same
//! counter-based uniform — in one launch, one block per row. Only float summation order differs,
//! so tokens agree except where a draw lands within a rounding error of a boundary;
//! worker/tests/gpu_decode.rs checks the agreement on the GPU machine.
//!
//! Used automatically for CUDA float32 or bfloat16 logits (one module for each: bfloat16 logits
//! are drawn from exactly as their float32 copy, with half the reads; the decode loop keeps its
//! logits in bfloat16 for bfloat16 models when `WAX_DECODE_LOGITS=bf16`, see
//! [`super::decode`]) with temperature > 0 and no top-k; set
//! `WAX_FUSED_SAMPLER=0` (read once per process) to use the libtorch sampler everywhere. The kernel is compiled with
//! NVRTC once per process and device; if that fails the libtorch sampler is used (with one
//! warning).

use super::sampling::{Sampled, Sampling};
use crate::cuda_graph;
use crate::kernel_cache::{Cache, compiled_once};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};
use wax_kernels::topp::{TopPArgs, TopPSampler};

/// A compiled sampler kernel for one CUDA device.
pub struct FusedSampler {
    inner: TopPSampler,
    ordinal: usize,
}

/// Whether the fused kernel computes this draw: CUDA float32 or bfloat16 logits, temperature > 0,
/// no top-k, not disabled by `WAX_FUSED_SAMPLER=0`.
pub fn applies(logits: &Tensor, sampling: &Sampling) -> bool {
    matches!(logits.device(), Device::Cuda(_))
        && matches!(logits.kind(), Kind::Float | Kind::BFloat16)
        && logits.dim() == 2
        && sampling.temperature > 0.0
        && sampling.top_k.is_none()
        && !disabled()
}

/// `WAX_FUSED_SAMPLER=0`, read once per process (not on every sampler call).
fn disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| std::env::var("WAX_FUSED_SAMPLER").is_ok_and(|v| v == "0"))
}

/// The kernel for the logits' device, compiling it on first use; `None` when it does not apply
/// or could not be compiled.
pub fn for_logits(logits: &Tensor, sampling: &Sampling) -> Option<&'static FusedSampler> {
    if !applies(logits, sampling) {
        return None;
    }
    let Device::Cuda(ordinal) = logits.device() else {
        return None;
    };
    let bf16 = logits.kind() == Kind::BFloat16;
    static SAMPLERS: Cache<(usize, bool), FusedSampler> = Cache::new();
    compiled_once(&SAMPLERS, (ordinal, bf16), || match TopPSampler::new_for(ordinal, bf16) {
        Ok(inner) => Ok(FusedSampler { inner, ordinal }),
        Err(e) => Err(format!(
            "fused sampler for {:?} logits unavailable on cuda:{ordinal} ({e}); using libtorch's",
            logits.kind()
        )),
    })
}

impl FusedSampler {
    /// Draws one token per row of `logits` (`[B, V]` on this sampler's device, float32 or
    /// bfloat16 as the sampler was built) exactly as [`super::sampling::sample_at`] does, launched
    /// on libtorch's current stream (so it is recorded when a CUDA graph is being captured).
    pub fn sample(
        &self,
        logits: &Tensor,
        sampling: &Sampling,
        allowed: Option<&Tensor>,
        seeds: &Tensor,
        step: &Tensor,
    ) -> Result<Sampled, String> {
        let device = logits.device();
        let kind = if self.inner.bf16_logits() { Kind::BFloat16 } else { Kind::Float };
        if device != Device::Cuda(self.ordinal)
            || !applies(logits, sampling)
            || logits.kind() != kind
        {
            return Err(format!("fused sampler: logits {:?} {device:?}", logits.kind()));
        }
        let size = logits.size();
        let (rows, vocab) = (size[0], size[1]);
        let logits = logits.contiguous();
        let seeds = seeds.to_device(device).to_kind(Kind::Int64).contiguous();
        if seeds.size() != [rows] {
            return Err(format!("fused sampler: {:?} seeds for {rows} rows", seeds.size()));
        }
        let step = step.reshape([1]).to_device(device).to_kind(Kind::Int64).contiguous();
        let allowed = match allowed {
            Some(a) if a.size() == [vocab] => {
                Some(a.to_device(device).to_kind(Kind::Bool).contiguous())
            }
            Some(a) => {
                return Err(format!(
                    "fused sampler: allowed mask {:?} for vocab {vocab}",
                    a.size()
                ));
            }
            None => None,
        };
        let tokens = Tensor::empty([rows], (Kind::Int64, device));
        let logprobs = Tensor::empty([rows], (Kind::Float, device));
        let stream = cuda_graph::launch_stream(self.ordinal).map_err(|e| e.to_string())?;
        let args = TopPArgs {
            logits: logits.data_ptr() as u64,
            allowed: allowed.as_ref().map_or(0, |a| a.data_ptr() as u64),
            seeds: seeds.data_ptr() as u64,
            step: step.data_ptr() as u64,
            out_tokens: tokens.data_ptr() as u64,
            out_logprobs: logprobs.data_ptr() as u64,
            rows: rows as usize,
            vocab: vocab as usize,
            temperature: sampling.temperature,
            top_p: sampling.top_p.unwrap_or(1.0),
        };
        // SAFETY: every pointer is a live, contiguous tensor of the kernel's expected kind and
        // shape on this device; they stay alive until the launch is ordered on libtorch's current
        // stream, after which libtorch's caching allocator only reuses their memory for work
        // issued later on the same stream.
        unsafe { self.inner.launch(stream, &args) }.map_err(|e| e.to_string())?;
        Ok(Sampled { tokens, logprobs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC compiles the kernel where `LD_LIBRARY_PATH` holds the CUDA wheel's libraries (as on
    /// the GPU machine); elsewhere compiling fails with an error, never a crash. The CPU sampler
    /// never takes the fused path.
    #[test]
    fn the_kernel_compiles_where_nvrtc_is_on_the_loader_path() {
        let nvrtc_dir =
            std::path::Path::new(env!("WAX_LIBTORCH_LIB")).join("../../nvidia/cu13/lib");
        let on_path = std::env::var("LD_LIBRARY_PATH").is_ok_and(|p| {
            std::env::split_paths(&p).any(|d| d.join("libnvrtc-builtins.so.13.0").exists())
        });
        match wax_kernels::topp::compile_ptx() {
            Ok(ptx) => assert!(ptx.to_src().contains(wax_kernels::topp::KERNEL_NAME)),
            Err(e) => {
                assert!(!on_path, "NVRTC is on LD_LIBRARY_PATH ({}) but: {e}", nvrtc_dir.display())
            }
        }
        let logits = Tensor::zeros([2, 5], (Kind::Float, Device::Cpu));
        assert!(for_logits(&logits, &Sampling::default()).is_none());
    }
}
