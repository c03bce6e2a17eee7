//! How the graph-ready decode step ([`Model::forward_step`]) prepares queries and keys: libtorch
//! ops (q/k norm, RoPE, two `index_copy_` into the cache: 10–14 small kernels per layer), or one
//! launch of [`wax_kernels::qk_prep`].
//!
//! Chosen per model ([`Model::set_step_prep`]); the default comes from `WAX_DECODE_PREP` (read
//! once per process): `kernel` for the CUDA kernel, anything else or unset for the ops. The kernel
//! applies to CUDA models in float32 or bfloat16 with a head size up to 256 and RMS q/k norms (or
//! none); elsewhere, or if NVRTC cannot compile it (said once), the step uses the ops.
//! [`StepPrep::Reference`] runs the kernel's arithmetic on the host
//! ([`wax_kernels::qk_prep::reference_head`]): slow, for checking the kernel's layouts against the
//! ops on any device.
//!
//! [`Model::forward_step`]: super::Model::forward_step
//! [`Model::set_step_prep`]: super::Model::set_step_prep

use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};
use wax_kernels::qk_prep::{self, PrepArgs, PrepShape, QkPrep, Strided};

use super::attend::floats;
use super::config::{ModelConfig, NormKind};
use super::error::ModelError;
use super::layers::Norm;
use crate::cuda_graph;
use crate::kernel_cache::{Cache, Run, compiled_once, run_for};

/// The decode step's query/key preparation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPrep {
    /// libtorch ops.
    Ops,
    /// The CUDA kernel where it applies (CUDA, float32 or bfloat16), the ops elsewhere.
    Kernel,
    /// The kernel's arithmetic on the host (copies every layer): for tests.
    Reference,
}

impl StepPrep {
    /// The process default: `WAX_DECODE_PREP=kernel` selects the kernel (read once).
    pub fn from_env() -> StepPrep {
        static CHOICE: OnceLock<StepPrep> = OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("WAX_DECODE_PREP").as_deref() {
            Ok("kernel") => StepPrep::Kernel,
            _ => StepPrep::Ops,
        })
    }
}

type How = Run<QkPrep>;

/// The kernel for `shape` on CUDA device `ordinal`, compiled and loaded on first use (before any
/// capture: a capture's warm-up run comes first).
fn kernel(ordinal: usize, shape: PrepShape) -> Option<&'static QkPrep> {
    static KERNELS: Cache<(usize, PrepShape), QkPrep> = Cache::new();
    compiled_once(&KERNELS, (ordinal, shape), || {
        QkPrep::new(ordinal, shape).map_err(|e| {
            format!("q/k preparation kernel unavailable on cuda:{ordinal} ({e}); using ops")
        })
    })
}

/// The kernel shape of a model, `None` where the kernel cannot serve it.
fn shape_of(c: &ModelConfig, kind: Kind) -> Option<PrepShape> {
    if (c.qk_norm && c.norm != NormKind::Rms) || c.qk_norm_full {
        return None;
    }
    let shape = PrepShape {
        head_dim: usize::try_from(c.head_dim).ok()?,
        rot: usize::try_from(c.rotary_dim).ok()?,
        norm: c.qk_norm,
        bf16: kind == Kind::BFloat16,
    };
    shape.check().ok()?;
    Some(shape)
}

fn how(choice: StepPrep, shape: PrepShape, kind: Kind, device: Device) -> Option<How> {
    let (k, r) = (choice == StepPrep::Kernel, choice == StepPrep::Reference);
    run_for(k, r, kind, device, |ordinal| kernel(ordinal, shape))
}

/// What a step of such a model runs under `choice` (`Kernel` only where the kernel applies and
/// compiles, compiling it now if needed).
pub(super) fn in_use(choice: StepPrep, c: &ModelConfig, kind: Kind, device: Device) -> StepPrep {
    match shape_of(c, kind).and_then(|s| how(choice, s, kind, device)) {
        None => StepPrep::Ops,
        Some(How::Host) => StepPrep::Reference,
        Some(How::Cuda(..)) => StepPrep::Kernel,
    }
}

/// One step's preparation, resolved once per step for every layer.
pub(super) struct SlotPrep {
    how: How,
    shape: PrepShape,
    /// `[B, rot]` each, the model's kind.
    cos: Tensor,
    sin: Tensor,
    /// One int64.
    slot: Tensor,
}

impl SlotPrep {
    /// The preparation `choice` gives for a step (`None`: the ops). `cos`/`sin` are the step's
    /// rotation tables (`[B, 1, 1, rot]`), `slot` one int64 on the model's device.
    pub(super) fn resolve(
        choice: StepPrep,
        c: &ModelConfig,
        kind: Kind,
        device: Device,
        (cos, sin): (&Tensor, &Tensor),
        slot: &Tensor,
    ) -> Option<SlotPrep> {
        let shape = shape_of(c, kind)?;
        let how = how(choice, shape, kind, device)?;
        let b = cos.size()[0];
        let table = |t: &Tensor| t.reshape([b, shape.rot as i64]).contiguous();
        Some(SlotPrep {
            how,
            shape,
            cos: table(cos),
            sin: table(sin),
            slot: slot.reshape([1]).to_kind(Kind::Int64).contiguous(),
        })
    }

    /// Prepares one layer: `q`, `k`, `v` are its projections `[B, 1, heads, head_dim]` (views,
    /// elements of a head contiguous), `norms` its q/k norms; writes keys and values into the
    /// contiguous caches `keys`/`values` (`[B, kv_heads, capacity, head_dim]`) at the slot and
    /// returns the queries `[B, heads, 1, head_dim]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        norms: (Option<&Norm>, Option<&Norm>),
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let hd = self.shape.head_dim as i64;
        let (b, nh, nkv) = (q.size()[0], q.size()[2], k.size()[2]);
        let ok = |t: &Tensor, heads: i64| t.size() == [b, 1, heads, hd] && t.stride()[3] == 1;
        let cache = keys.size();
        if !ok(q, nh) || !ok(k, nkv) || !ok(v, nkv) {
            return Err(ModelError::Input(format!(
                "q/k preparation: projections {:?} {:?} {:?} must be [B, 1, heads, {hd}] with \
                 contiguous heads",
                q.size(),
                k.size(),
                v.size()
            )));
        }
        if cache.len() != 4
            || cache[..2] != [b, nkv]
            || cache[3] != hd
            || values.size() != cache
            || !keys.is_contiguous()
            || !values.is_contiguous()
        {
            return Err(ModelError::Cache(format!(
                "q/k preparation: caches {cache:?} / {:?} for {b} rows of {nkv} kv heads of {hd}",
                values.size()
            )));
        }
        let weights = match (self.shape.norm, norms) {
            (true, (Some(qn), Some(kn))) => Some((qn, kn)),
            (false, _) => None,
            (true, _) => return Err(ModelError::Input("q/k preparation: norms missing".into())),
        };
        match self.how {
            How::Cuda(kernel, ordinal) => {
                self.launch(kernel, ordinal, [q, k, v], weights, keys, values)
            }
            How::Host => self.host([q, k, v], weights, keys, values),
        }
    }

    fn launch(
        &self,
        kernel: &QkPrep,
        ordinal: usize,
        [q, k, v]: [&Tensor; 3],
        weights: Option<(&Norm, &Norm)>,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let kind = if self.shape.bf16 { Kind::BFloat16 } else { Kind::Float };
        let (b, nh) = (q.size()[0], q.size()[2]);
        let hd = self.shape.head_dim as i64;
        let mut tensors = vec![q, k, v, keys, values, &self.cos, &self.sin];
        if let Some((qn, kn)) = weights {
            tensors.extend([&qn.weight, &kn.weight]);
        }
        let weights_ok =
            weights.is_none_or(|(qn, kn)| qn.weight.size() == [hd] && kn.weight.size() == [hd]);
        if tensors.iter().any(|t| t.kind() != kind || t.device() != Device::Cuda(ordinal))
            || !weights_ok
            || self.slot.kind() != Kind::Int64
            || self.slot.device() != Device::Cuda(ordinal)
        {
            return Err(ModelError::Kernel(format!(
                "q/k preparation compiled for {kind:?} on cuda:{ordinal}: got {:?}",
                tensors.iter().map(|t| (t.kind(), t.device())).collect::<Vec<_>>()
            )));
        }
        let eps = match weights {
            Some((qn, kn)) => eps(qn, kn)?,
            None => 0.0,
        };
        let weights = weights.map(|(qn, kn)| (qn.weight.contiguous(), kn.weight.contiguous()));
        let out = Tensor::empty([b, nh, 1, hd], (kind, q.device()));
        let ptr = |t: &Tensor| t.data_ptr() as u64;
        let strided = |t: &Tensor| Strided { ptr: ptr(t), row: t.stride()[0], head: t.stride()[2] };
        let args = PrepArgs {
            q: strided(q),
            k: strided(k),
            v: strided(v),
            q_weight: weights.as_ref().map_or(0, |w| ptr(&w.0)),
            k_weight: weights.as_ref().map_or(0, |w| ptr(&w.1)),
            eps,
            cos: ptr(&self.cos),
            sin: ptr(&self.sin),
            slot: ptr(&self.slot),
            batch: b as usize,
            heads: nh as usize,
            kv_heads: k.size()[2] as usize,
            capacity: keys.size()[2] as usize,
            q_out: ptr(&out),
            keys: ptr(keys),
            values: ptr(values),
        };
        let stream =
            cuda_graph::launch_stream(ordinal).map_err(|e| ModelError::Kernel(e.to_string()))?;
        // SAFETY: every tensor is of the kernel's kind on this device (checked above); sources
        // are read through their own strides within their extent, caches and `out` are
        // contiguous of the documented shapes, the tables `[B, rot]` contiguous and the slot one
        // int64. All stay alive until the launch is ordered on libtorch's current stream.
        unsafe { kernel.launch(stream, &args) }.map_err(|e| ModelError::Kernel(e.to_string()))?;
        Ok(out)
    }

    fn host(
        &self,
        [q, k, v]: [&Tensor; 3],
        weights: Option<(&Norm, &Norm)>,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let shape = self.shape;
        let hd = shape.head_dim as i64;
        let (b, nh, nkv) = (q.size()[0], q.size()[2], k.size()[2]);
        let (cos, sin) = (floats(&self.cos)?, floats(&self.sin)?);
        let weights = match weights {
            Some((qn, kn)) => Some((floats(&qn.weight)?, floats(&kn.weight)?, eps(qn, kn)?)),
            None => None,
        };
        let rot = shape.rot;
        let heads = |x: &Tensor, n: i64, key: bool| -> Result<Vec<f32>, ModelError> {
            let x = floats(x)?;
            let mut out = Vec::with_capacity(x.len());
            for (i, head) in x.chunks(hd as usize).enumerate() {
                let row = i / n as usize;
                let (c, s) = (&cos[row * rot..(row + 1) * rot], &sin[row * rot..(row + 1) * rot]);
                let (w, e) = match &weights {
                    Some((qw, kw, e)) => (Some(if key { &kw[..] } else { &qw[..] }), *e),
                    None => (None, 0.0),
                };
                out.extend(qk_prep::reference_head(shape, head, w, e, c, s));
            }
            Ok(out)
        };
        let device = q.device();
        let kind = q.kind();
        let back = |x: Vec<f32>, n: i64| {
            Tensor::from_slice(&x).view([b, n, 1, hd]).to_kind(kind).to_device(device)
        };
        let q_out = back(heads(q, nh, false)?, nh);
        let k_new = back(heads(k, nkv, true)?, nkv);
        let v_new = v.transpose(1, 2);
        let at = self.slot.to_device(device);
        let _ = keys.shallow_clone().index_copy_(2, &at, &k_new);
        let _ = values.shallow_clone().index_copy_(2, &at, &v_new);
        Ok(q_out)
    }
}

/// The kernel takes one epsilon for both norms.
fn eps(qn: &Norm, kn: &Norm) -> Result<f32, ModelError> {
    if qn.eps != kn.eps {
        return Err(ModelError::Input(format!(
            "q/k preparation: q norm eps {} differs from k norm eps {}",
            qn.eps, kn.eps
        )));
    }
    Ok(qn.eps as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_never_chosen_off_cuda_and_layer_norms_keep_the_ops() {
        let raw = serde_json::json!({
            "model_type": "qwen3", "vocab_size": 32, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-6
        });
        let mut c = ModelConfig::from_value(raw, std::path::Path::new("config.json")).unwrap();
        assert_eq!(in_use(StepPrep::Kernel, &c, Kind::Float, Device::Cpu), StepPrep::Ops);
        assert_eq!(in_use(StepPrep::Ops, &c, Kind::Float, Device::Cpu), StepPrep::Ops);
        assert_eq!(in_use(StepPrep::Reference, &c, Kind::Float, Device::Cpu), StepPrep::Reference);
        assert_eq!(in_use(StepPrep::Reference, &c, Kind::Half, Device::Cpu), StepPrep::Ops);
        c.qk_norm = true;
        c.norm = NormKind::Layer;
        assert!(shape_of(&c, Kind::Float).is_none());
        c.norm = NormKind::Rms;
        let shape = shape_of(&c, Kind::BFloat16).unwrap();
        assert!(shape.norm && shape.bf16 && shape.rot == c.rotary_dim as usize);
    }
}
