//! How the graph-ready decode step ([`Model::forward_step`]) attends: libtorch's
//! scaled-dot-product attention over the whole window with an additive mask, or the split-K
//! decode kernel of [`wax_kernels::decode_attn`], which reads only the slots each row attends to
//! (real slots up to the new token) instead of every slot of the window.
//!
//! Chosen per model ([`Model::set_step_attention`]); the default comes from
//! `WAX_DECODE_ATTENTION` (read once per process): `kernel` for the CUDA kernel, anything else or
//! unset for SDPA. The kernel applies to CUDA models in float32 or bfloat16 with a head size up
//! to 256 and at most 8 query heads per kv head, and plain attention (no GPT-OSS sinks or
//! sliding windows: those models attend through explicit masks, see `super::window`, and
//! report `Sdpa`); elsewhere, or if NVRTC cannot compile it (said once), the step uses SDPA. [`StepAttention::Reference`] runs the kernel's algorithm on the
//! host ([`wax_kernels::decode_attn::reference`]): slow, for checking the kernel's layouts
//! against SDPA on any device.
//!
//! [`Model::forward_step`]: super::Model::forward_step
//! [`Model::set_step_attention`]: super::Model::set_step_attention

use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};
use wax_kernels::decode_attn::{self, AttnArgs, AttnShape, DecodeAttention, HostAttn};

use super::error::ModelError;
use crate::cuda_graph;
use crate::kernel_cache::{Cache, Run, compiled_once, run_for};

/// The decode step's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAttention {
    /// libtorch's scaled-dot-product attention with an additive mask over the window.
    Sdpa,
    /// The split-K CUDA kernel where it applies (CUDA, float32 or bfloat16), SDPA elsewhere.
    Kernel,
    /// The kernel's algorithm on the host (copies to and from the device every layer): for tests.
    Reference,
}

impl StepAttention {
    /// The process default: `WAX_DECODE_ATTENTION=kernel` selects the kernel (read once).
    pub fn from_env() -> StepAttention {
        static CHOICE: OnceLock<StepAttention> = OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("WAX_DECODE_ATTENTION").as_deref() {
            Ok("kernel") => StepAttention::Kernel,
            _ => StepAttention::Sdpa,
        })
    }
}

/// One step's attention over cache slots, resolved once per step for every layer.
pub(super) struct SlotAttention {
    how: How,
    shape: AttnShape,
    /// `[B, real_stride]` bool, contiguous.
    real: Tensor,
    /// One int64: the slot of the new token.
    slot: Tensor,
    view: i64,
    scale: f64,
}

type How = Run<DecodeAttention>;

/// The kernel for `shape` on CUDA device `ordinal`, compiled and loaded on first use (so before
/// any graph capture: a capture's warm-up run takes this path first).
fn kernel(ordinal: usize, shape: AttnShape) -> Option<&'static DecodeAttention> {
    static KERNELS: Cache<(usize, AttnShape), DecodeAttention> = Cache::new();
    compiled_once(&KERNELS, (ordinal, shape), || {
        DecodeAttention::new(ordinal, shape).map_err(|e| {
            format!("decode attention kernel unavailable on cuda:{ordinal} ({e}); using SDPA")
        })
    })
}

/// How a step of a model with these head counts attends under `choice` (`None`: SDPA).
fn how(choice: StepAttention, shape: Option<AttnShape>, kind: Kind, device: Device) -> Option<How> {
    let (k, r) = (choice == StepAttention::Kernel, choice == StepAttention::Reference);
    run_for(k, r, kind, device, |ordinal| {
        let shape = shape.filter(|s| s.check().is_ok())?;
        kernel(ordinal, shape)
    })
}

/// The kernel shape of a model with these head counts and kind.
fn shape_of(heads: i64, kv_heads: i64, head_dim: i64, kind: Kind) -> Option<AttnShape> {
    if kv_heads <= 0 || heads % kv_heads != 0 {
        return None;
    }
    Some(AttnShape {
        head_dim: usize::try_from(head_dim).ok()?,
        group: usize::try_from(heads / kv_heads).ok()?,
        bf16: kind == Kind::BFloat16,
    })
}

/// What a step of such a model runs under `choice`: `Kernel` only where the CUDA kernel applies
/// and compiles (compiling it now if needed), otherwise `Sdpa`; `Reference` stays.
pub(super) fn in_use(
    choice: StepAttention,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    kind: Kind,
    device: Device,
) -> StepAttention {
    match how(choice, shape_of(heads, kv_heads, head_dim, kind), kind, device) {
        None => StepAttention::Sdpa,
        Some(How::Host) => StepAttention::Reference,
        Some(How::Cuda(..)) => StepAttention::Kernel,
    }
}

impl SlotAttention {
    /// The attention `choice` gives for a step of a model with these head counts, or `None` for
    /// SDPA. `real` is `[B, ≥ view]` bool and `slot` one int64, both on the model's device.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resolve(
        choice: StepAttention,
        heads: i64,
        kv_heads: i64,
        head_dim: i64,
        kind: Kind,
        device: Device,
        real: &Tensor,
        slot: &Tensor,
        view: i64,
    ) -> Option<SlotAttention> {
        let shape = shape_of(heads, kv_heads, head_dim, kind)?;
        let how = how(choice, Some(shape), kind, device)?;
        Some(SlotAttention {
            how,
            shape,
            real: real.to_kind(Kind::Bool).contiguous(),
            slot: slot.reshape([1]).to_kind(Kind::Int64).contiguous(),
            view,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// Attention output `[B, heads, 1, head_dim]` for queries `q` (`[B, heads, 1, head_dim]`)
    /// over `keys` and `values`: the window `[B, kv_heads, view, head_dim]` of a contiguous
    /// `[B, kv_heads, capacity, head_dim]` cache, the new token already written.
    pub(super) fn attend(
        &self,
        q: &Tensor,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let (b, kv_heads, hd) = (keys.size()[0], keys.size()[1], self.shape.head_dim as i64);
        let heads = kv_heads * self.shape.group as i64;
        if q.size() != [b, heads, 1, hd] || keys.size() != [b, kv_heads, self.view, hd] {
            return Err(ModelError::Input(format!(
                "decode attention: queries {:?} and window {:?} for {heads} heads of {hd} over \
                 {} slots",
                q.size(),
                keys.size(),
                self.view
            )));
        }
        let q = q.contiguous();
        match self.how {
            How::Cuda(kernel, ordinal) => self.launch(kernel, ordinal, &q, keys, values),
            How::Host => self.host(&q, keys, values),
        }
    }

    fn launch(
        &self,
        kernel: &DecodeAttention,
        ordinal: usize,
        q: &Tensor,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let size = q.size();
        let (b, heads, hd) = (size[0], size[1], size[3]);
        let capacity = cache_capacity(keys)?;
        if cache_capacity(values)? != capacity || values.size() != keys.size() {
            return Err(ModelError::Cache("decode attention: keys and values differ".into()));
        }
        let device = q.device();
        let kind = if self.shape.bf16 { Kind::BFloat16 } else { Kind::Float };
        let kinds = [q.kind(), keys.kind(), values.kind(), self.real.kind(), self.slot.kind()];
        let devices = [q.device(), keys.device(), values.device(), self.real.device()];
        if kinds != [kind, kind, kind, Kind::Bool, Kind::Int64]
            || devices.iter().chain([&self.slot.device()]).any(|d| *d != Device::Cuda(ordinal))
        {
            return Err(ModelError::Kernel(format!(
                "decode attention compiled for {kind:?} on cuda:{ordinal}: queries, keys, values, \
                 real slots and slot are {kinds:?} on {devices:?}, {:?}",
                self.slot.device()
            )));
        }
        let out = Tensor::empty([b, heads, 1, hd], (kind, device));
        let n = decode_attn::splits(self.view as usize) as i64;
        let scratch = (n > 1).then(|| {
            (
                Tensor::empty([b, heads, n, hd], (Kind::Float, device)),
                Tensor::empty([b, heads, n, 2], (Kind::Float, device)),
            )
        });
        let ptr = |t: &Tensor| t.data_ptr() as u64;
        let args = AttnArgs {
            q: ptr(q),
            keys: ptr(keys),
            values: ptr(values),
            real: ptr(&self.real),
            slot: ptr(&self.slot),
            part_acc: scratch.as_ref().map_or(0, |s| ptr(&s.0)),
            part_ml: scratch.as_ref().map_or(0, |s| ptr(&s.1)),
            out: ptr(&out),
            batch: b as usize,
            kv_heads: keys.size()[1] as usize,
            capacity: capacity as usize,
            real_stride: self.real.size()[1] as usize,
            view: self.view as usize,
            scale: self.scale as f32,
        };
        let stream =
            cuda_graph::launch_stream(ordinal).map_err(|e| ModelError::Kernel(e.to_string()))?;
        // SAFETY: `q`, `real`, `slot`, `out` and the scratch are contiguous tensors of the
        // kernel's kinds and shapes on this device; `keys`/`values` are windows starting at slot
        // 0 of contiguous caches of `capacity` slots (checked by `cache_capacity`). All stay alive
        // until the launch is ordered on libtorch's current stream, after which the caching
        // allocator only reuses their memory for work issued later on that stream.
        unsafe { kernel.launch(stream, &args) }.map_err(|e| ModelError::Kernel(e.to_string()))?;
        Ok(out)
    }

    fn host(&self, q: &Tensor, keys: &Tensor, values: &Tensor) -> Result<Tensor, ModelError> {
        let size = q.size();
        let (b, heads, hd) = (size[0], size[1], size[3]);
        let real_t = self.real.to_device(Device::Cpu).to_kind(Kind::Bool).contiguous().view([-1]);
        let real = Vec::<bool>::try_from(&real_t)?;
        let (qh, kh, vh) = (floats(q)?, floats(keys)?, floats(values)?);
        let out = decode_attn::reference(&HostAttn {
            shape: self.shape,
            q: &qh,
            keys: &kh,
            values: &vh,
            real: &real,
            slot: self.slot.int64_value(&[0]),
            batch: b as usize,
            kv_heads: keys.size()[1] as usize,
            capacity: self.view as usize,
            real_stride: self.real.size()[1] as usize,
            view: self.view as usize,
            scale: self.scale as f32,
        })
        .map_err(|e| ModelError::Kernel(e.to_string()))?;
        Ok(Tensor::from_slice(&out).view([b, heads, 1, hd]).to_kind(q.kind()).to_device(q.device()))
    }
}

/// A tensor's values as float32 on the host, in row-major order (the host references' input).
pub(super) fn floats(t: &Tensor) -> Result<Vec<f32>, ModelError> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Ok(Vec::<f32>::try_from(&t)?)
}

/// The slot count of the contiguous cache `window` is the first slots of (`[B, H, view, D]` with
/// strides `[H·C·D, C·D, D, 1]`), or an error when it is not such a window.
fn cache_capacity(window: &Tensor) -> Result<i64, ModelError> {
    let (size, stride) = (window.size(), window.stride());
    let bad = || {
        ModelError::Cache(format!(
            "decode attention needs a window of a contiguous cache, got size {size:?} stride \
             {stride:?}"
        ))
    };
    if size.len() != 4 || stride[3] != 1 || stride[2] != size[3] || size[3] == 0 {
        return Err(bad());
    }
    let capacity = stride[1] / size[3];
    if capacity < size[2] || stride[1] != capacity * size[3] || stride[0] != size[1] * stride[1] {
        return Err(bad());
    }
    Ok(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_a_contiguous_cache_gives_its_capacity_and_anything_else_an_error() {
        let cache = Tensor::zeros([2, 3, 40, 8], (Kind::Float, Device::Cpu));
        assert_eq!(cache_capacity(&cache.narrow(2, 0, 16)).unwrap(), 40);
        assert_eq!(cache_capacity(&cache).unwrap(), 40);
        assert!(cache_capacity(&cache.transpose(1, 2)).is_err());
        assert!(cache_capacity(&cache.narrow(3, 0, 4)).is_err());
        assert!(cache_capacity(&cache.narrow(1, 0, 2)).is_err());
        assert!(cache_capacity(&cache.view([2, 3, 320])).is_err());
    }

    #[test]
    fn the_kernel_is_never_chosen_off_cuda_and_sdpa_is_never_replaced() {
        let real = Tensor::ones([2, 8], (Kind::Bool, Device::Cpu));
        let slot = Tensor::from_slice(&[3i64]);
        let resolve = |choice| {
            SlotAttention::resolve(choice, 4, 2, 16, Kind::Float, Device::Cpu, &real, &slot, 8)
        };
        assert!(resolve(StepAttention::Sdpa).is_none());
        assert!(resolve(StepAttention::Kernel).is_none());
        assert!(matches!(resolve(StepAttention::Reference).map(|s| s.how), Some(How::Host)));
        let used = |choice| in_use(choice, 4, 2, 16, Kind::Float, Device::Cpu);
        assert_eq!(used(StepAttention::Kernel), StepAttention::Sdpa);
        assert_eq!(used(StepAttention::Reference), StepAttention::Reference);
    }
}
