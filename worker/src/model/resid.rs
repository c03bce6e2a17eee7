//! How the graph-ready decode step ([`Model::forward_step`]) adds to the residual stream and norms
//! it: libtorch ops (an add, the RMS norm and the weight's product: three to nine small kernels
//! per norm), or one launch of [`wax_kernels::resid_norm`] per norm.
//!
//! With the kernel the step's layers run [`Model::fused_layers`]: each block's MLP output is not
//! added to the stream at once but by the next norm's launch (the next layer's, or the final
//! norm's), and the attention output by the MLP norm's, so a layer costs two launches where the
//! ops cost two adds and two norms. Where steering adds at a point between an add and its norm
//! (resid_post, resid_pre, resid_mid), that norm runs as the ops with the steering in between,
//! exactly as [`Model::block`] runs it.
//!
//! Chosen per model ([`Model::set_step_norm`]); the default comes from `WAX_DECODE_NORM` (read
//! once per process): `kernel` for the CUDA kernel, anything else or unset for the ops. The kernel
//! applies to CUDA models in float32 or bfloat16 with RMS norms rounded before their weight and
//! a sequential residual (Qwen3, Llama, Qwen2; not GPT-OSS, whose norms round after the weight);
//! elsewhere, or if NVRTC cannot compile it (said once), the step runs the ops.
//! [`StepNorm::Reference`] runs the kernel's arithmetic on the host
//! ([`wax_kernels::resid_norm::reference`]): slow, for checking the fused layer loop against the
//! ops on any device.
//!
//! [`Model::forward_step`]: super::Model::forward_step
//! [`Model::set_step_norm`]: super::Model::set_step_norm
//! [`Model::block`]: super::Model::block

use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};
use wax_kernels::resid_norm::{self, NormArgs, NormShape, ResidNorm};

use super::attend::floats;
use super::cache::KvCache;
use super::config::{ModelConfig, NormKind};
use super::decoder::{AttnMask, KvWrite, Model, Taps};
use super::error::ModelError;
use super::hooks::{HookPoint, LayerSite};
use super::layers::Norm;
use super::moe::Dispatch;
use super::prep::SlotPrep;
use super::rope::Rotation;
use crate::cuda_graph;
use crate::kernel_cache::{Cache, Run, compiled_once, run_for};

/// The decode step's residual adds and norms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepNorm {
    /// libtorch ops.
    Ops,
    /// The CUDA kernel where it applies (CUDA, float32 or bfloat16, RMS norms, sequential
    /// residual), the ops elsewhere.
    Kernel,
    /// The kernel's arithmetic on the host (copies every norm): for tests.
    Reference,
}

impl StepNorm {
    /// The process default: `WAX_DECODE_NORM=kernel` selects the kernel (read once).
    pub fn from_env() -> StepNorm {
        static CHOICE: OnceLock<StepNorm> = OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("WAX_DECODE_NORM").as_deref() {
            Ok("kernel") => StepNorm::Kernel,
            _ => StepNorm::Ops,
        })
    }
}

type How = Run<ResidNorm>;

/// The kernel for `shape` on CUDA device `ordinal`, compiled and loaded on first use (before any
/// capture: a capture's warm-up run comes first).
fn kernel(ordinal: usize, shape: NormShape) -> Option<&'static ResidNorm> {
    static KERNELS: Cache<(usize, NormShape), ResidNorm> = Cache::new();
    compiled_once(&KERNELS, (ordinal, shape), || {
        ResidNorm::new(ordinal, shape).map_err(|e| {
            format!("residual-norm kernel unavailable on cuda:{ordinal} ({e}); using ops")
        })
    })
}

/// The kernel shape of a model, `None` where the fused layers cannot serve it.
fn shape_of(c: &ModelConfig, kind: Kind) -> Option<NormShape> {
    if c.norm != NormKind::Rms || c.parallel_residual || c.post_norm {
        return None;
    }
    let shape =
        NormShape { width: usize::try_from(c.hidden_size).ok()?, bf16: kind == Kind::BFloat16 };
    shape.check().ok()?;
    Some(shape)
}

fn how(choice: StepNorm, shape: NormShape, kind: Kind, device: Device) -> Option<How> {
    let (k, r) = (choice == StepNorm::Kernel, choice == StepNorm::Reference);
    run_for(k, r, kind, device, |ordinal| kernel(ordinal, shape))
}

/// What a step of such a model runs under `choice` (`Kernel` only where the kernel applies and
/// compiles, compiling it now if needed).
pub(super) fn in_use(choice: StepNorm, c: &ModelConfig, kind: Kind, device: Device) -> StepNorm {
    match shape_of(c, kind).and_then(|s| how(choice, s, kind, device)) {
        None => StepNorm::Ops,
        Some(How::Host) => StepNorm::Reference,
        Some(How::Cuda(..)) => StepNorm::Kernel,
    }
}

/// One step's residual adds and norms, resolved once per step.
pub(super) struct SlotNorms {
    how: How,
    shape: NormShape,
}

/// What a decode step's layers need besides the stream.
pub(super) struct StepLayers<'a> {
    pub(super) rotation: &'a Rotation,
    pub(super) mask: &'a AttnMask,
    pub(super) cache: &'a KvCache,
    pub(super) slot: &'a Tensor,
    pub(super) view: i64,
    pub(super) prep: Option<&'a SlotPrep>,
}

impl StepLayers<'_> {
    /// Layer `l`'s cache write: the new token at the step's slot, attention over its window.
    pub(super) fn kv(&self, l: usize) -> KvWrite<'_> {
        KvWrite::Slot {
            keys: &self.cache.keys[l],
            values: &self.cache.values[l],
            slot: self.slot,
            view: self.view,
            prep: self.prep,
        }
    }
}

impl SlotNorms {
    /// The adds and norms `choice` gives for a step of this model (`None`: the ops, through
    /// [`Model::block`](super::Model::block)).
    pub(super) fn resolve(
        choice: StepNorm,
        c: &ModelConfig,
        kind: Kind,
        device: Device,
    ) -> Option<SlotNorms> {
        let shape = shape_of(c, kind)?;
        Some(SlotNorms { how: how(choice, shape, kind, device)?, shape })
    }

    /// `(s, norm(s))` for the stream `s = base + pending` (`[B, 1, W]` each) after the steering
    /// of `sites` (in order): one launch, or the ops where any of those sites steers.
    fn add_norm(
        &self,
        base: &Tensor,
        pending: Option<&Tensor>,
        sites: &[HookPoint],
        norm: &Norm,
        taps: &mut impl Taps,
    ) -> Result<(Tensor, Tensor), ModelError> {
        if sites.iter().any(|p| taps.steers(*p)) || norm.kind != NormKind::Rms {
            let mut s = match pending {
                Some(p) => base + p,
                None => base.shallow_clone(),
            };
            for p in sites {
                s = taps.site(*p, s);
            }
            let n = norm.forward(&s);
            return Ok((s, n));
        }
        let width = self.shape.width as i64;
        let b = base.size()[0];
        for t in std::iter::once(base).chain(pending) {
            if t.size() != [b, 1, width] {
                return Err(ModelError::Input(format!(
                    "residual norm: stream {:?} and addend {:?} must be [B, 1, {width}]",
                    base.size(),
                    pending.map(Tensor::size)
                )));
            }
        }
        if norm.weight.size() != [width] {
            return Err(ModelError::Input(format!(
                "residual norm: weight {:?} for rows of {width}",
                norm.weight.size()
            )));
        }
        match self.how {
            How::Cuda(kernel, ordinal) => self.launch(kernel, ordinal, base, pending, norm),
            How::Host => self.host(base, pending, norm),
        }
    }

    fn launch(
        &self,
        kernel: &ResidNorm,
        ordinal: usize,
        base: &Tensor,
        pending: Option<&Tensor>,
        norm: &Norm,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let kind = if self.shape.bf16 { Kind::BFloat16 } else { Kind::Float };
        let device = Device::Cuda(ordinal);
        let width = self.shape.width as i64;
        // Rows read through their stride: elements of a row adjacent, rows apart (a broadcast
        // or otherwise odd layout is copied first).
        let rows = |t: &Tensor| {
            let s = t.stride();
            if s[2] == 1 && s[0] >= width { t.shallow_clone() } else { t.contiguous() }
        };
        let base = rows(base);
        let pending = pending.map(rows);
        let weight = norm.weight.contiguous();
        let tensors: Vec<&Tensor> = [&base, &weight].into_iter().chain(pending.as_ref()).collect();
        if tensors.iter().any(|t| t.kind() != kind || t.device() != device) {
            return Err(ModelError::Kernel(format!(
                "residual norm compiled for {kind:?} on cuda:{ordinal}: got {:?}",
                tensors.iter().map(|t| (t.kind(), t.device())).collect::<Vec<_>>()
            )));
        }
        let size = base.size();
        let normed = Tensor::empty(size.as_slice(), (kind, device));
        let sum = pending.as_ref().map(|_| Tensor::empty(size.as_slice(), (kind, device)));
        let ptr = |t: &Tensor| t.data_ptr() as u64;
        let args = NormArgs {
            x: ptr(&base),
            x_row: base.stride()[0],
            a: pending.as_ref().map_or(0, ptr),
            a_row: pending.as_ref().map_or(0, |p| p.stride()[0]),
            weight: ptr(&weight),
            eps: norm.eps as f32,
            rows: size[0] as usize,
            sum_out: sum.as_ref().map_or(0, ptr),
            normed: ptr(&normed),
        };
        let stream =
            cuda_graph::launch_stream(ordinal).map_err(|e| ModelError::Kernel(e.to_string()))?;
        // SAFETY: every tensor is of the kernel's kind on this device (checked above), the
        // inputs `[B, 1, W]` with adjacent elements read through their row strides, the weight
        // `[W]` and both outputs fresh contiguous `[B, 1, W]`; all stay alive until the launch
        // is ordered on libtorch's current stream.
        unsafe { kernel.launch(stream, &args) }.map_err(|e| ModelError::Kernel(e.to_string()))?;
        Ok((sum.unwrap_or(base), normed))
    }

    fn host(
        &self,
        base: &Tensor,
        pending: Option<&Tensor>,
        norm: &Norm,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let width = self.shape.width;
        let x = floats(base)?;
        let a = pending.map(floats).transpose()?;
        let w = floats(&norm.weight)?;
        let (mut sums, mut normed) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
        for (r, row) in x.chunks(width).enumerate() {
            let add = a.as_ref().map(|a| &a[r * width..(r + 1) * width]);
            let (s, n) = resid_norm::reference(self.shape, row, add, &w, norm.eps as f32);
            sums.extend(s);
            normed.extend(n);
        }
        let back = |v: Vec<f32>| {
            Tensor::from_slice(&v)
                .view(base.size().as_slice())
                .to_kind(base.kind())
                .to_device(base.device())
        };
        let sum = if pending.is_some() { back(sums) } else { base.shallow_clone() };
        Ok((sum, back(normed)))
    }
}

impl Model {
    /// The step's decoder layers and final norm with the residual adds fused into the norms that
    /// read them: what the loop over [`Model::block`] and `final_norm` computes (with `taps`'
    /// steering, which records nothing), from the embeddings `x` `[B, 1, W]`.
    pub(super) fn fused_layers(
        &self,
        x: Tensor,
        norms: &SlotNorms,
        step: &StepLayers,
        taps: &mut impl Taps,
    ) -> Result<Tensor, ModelError> {
        // The stream is `base + pending`; `pending` (a block's MLP output) is added by the next
        // norm's launch. Steering at resid_post of one layer and resid_pre of the next both
        // apply to that sum, in that order.
        let (mut base, mut pending): (Tensor, Option<Tensor>) = (x, None);
        for (l, layer) in self.layers.iter().enumerate() {
            let point = |site| HookPoint::Layer { layer: l, site };
            let mut sites = Vec::with_capacity(2);
            if l > 0 {
                sites.push(HookPoint::Layer { layer: l - 1, site: LayerSite::ResidPost });
            }
            sites.push(point(LayerSite::ResidPre));
            let (x, h) = norms.add_norm(&base, pending.as_ref(), &sites, &layer.ln1, taps)?;
            let attn = self.attention(layer, &h, step.rotation, step.mask, step.kv(l))?;
            let attn = taps.site(point(LayerSite::AttnOut), attn);
            let sites = [point(LayerSite::ResidMid)];
            let (mid, h) = norms.add_norm(&x, Some(&attn), &sites, &layer.ln2, taps)?;
            let mlp = layer.mlp.forward(&h, self.packing.mlp, Dispatch::Dense)?;
            pending = Some(taps.site(point(LayerSite::MlpOut), mlp));
            base = mid;
        }
        let last = self.layers.len().checked_sub(1);
        let sites: Vec<HookPoint> = last
            .map(|layer| HookPoint::Layer { layer, site: LayerSite::ResidPost })
            .into_iter()
            .collect();
        let (_, h) = norms.add_norm(&base, pending.as_ref(), &sites, &self.final_norm, taps)?;
        Ok(taps.site(HookPoint::FinalNorm, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_never_chosen_off_cuda_nor_for_layer_norms_or_a_parallel_residual() {
        let raw = serde_json::json!({
            "model_type": "qwen3", "vocab_size": 32, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-6
        });
        let mut c = ModelConfig::from_value(raw, std::path::Path::new("config.json")).unwrap();
        assert_eq!(in_use(StepNorm::Kernel, &c, Kind::Float, Device::Cpu), StepNorm::Ops);
        assert_eq!(in_use(StepNorm::Ops, &c, Kind::Float, Device::Cpu), StepNorm::Ops);
        assert_eq!(in_use(StepNorm::Reference, &c, Kind::Float, Device::Cpu), StepNorm::Reference);
        // Half precision keeps the ops (the kernel rounds as float32 or bfloat16 only).
        assert_eq!(in_use(StepNorm::Reference, &c, Kind::Half, Device::Cpu), StepNorm::Ops);
        let shape = shape_of(&c, Kind::BFloat16).unwrap();
        assert!(shape.bf16 && shape.width == 16);
        c.parallel_residual = true;
        assert!(shape_of(&c, Kind::Float).is_none());
        assert_eq!(in_use(StepNorm::Reference, &c, Kind::Float, Device::Cpu), StepNorm::Ops);
        c.parallel_residual = false;
        c.norm = NormKind::Layer;
        assert!(shape_of(&c, Kind::Float).is_none());
    }
}
