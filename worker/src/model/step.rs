//! The decode step in the form a CUDA graph can record: one token per row, written at a cache slot
//! held in a device tensor, attention over a fixed window of slots, no hooks, no host reads.
//!
//! [`Model::forward_select`] takes the write position as a Rust integer and builds its mask from
//! host-known lengths, so each call is different work. Here everything that changes from one
//! step to the next — token ids, positions, which slots are real, the slot written — lives in
//! tensors the caller updates in place, and the same recorded work serves every step whose slot
//! lies inside the attended window. Each block runs `Model::block`, the code `forward_select`
//! runs, with steering (rows and vectors in device tensors) as its only hooks; the tests check
//! the two agree.

use tch::{Kind, Tensor};

use super::attend::SlotAttention;
use super::cache::KvCache;
use super::decoder::{AttnMask, Model, Taps, additive_mask, group_mask};
use super::error::ModelError;
use super::hooks::{HookPoint, masked_delta, summed_delta};
use super::prep::SlotPrep;
use super::resid::{SlotNorms, StepLayers};
use super::rope;
use super::window;

/// The kind a decode loop over [`Model::forward_step_into`] keeps its logits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLogits {
    /// float32 (the default).
    Float32,
    /// The model's own kind where that is bfloat16: its logits are bfloat16 values, so nothing
    /// is lost, and on CUDA the fused sampler reads half the bytes on each pass over `[B, V]`
    /// (the libtorch sampler widens them itself).
    Model,
}

impl StepLogits {
    /// The process default: `WAX_DECODE_LOGITS=bf16` selects [`StepLogits::Model`] (read once).
    pub fn from_env() -> StepLogits {
        static CHOICE: std::sync::OnceLock<StepLogits> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("WAX_DECODE_LOGITS").as_deref() {
            Ok("bf16") => StepLogits::Model,
            _ => StepLogits::Float32,
        })
    }
}

/// The tensors one decode step reads (all on the model's device; updated in place between steps).
#[derive(Debug)]
pub struct StepInput<'a> {
    /// `[B, 1]` int64 token ids.
    pub ids: &'a Tensor,
    /// `[B, 1]` int64 positions.
    pub positions: &'a Tensor,
    /// `[B, capacity]` bool: which cache slots hold real tokens (the step's own slot included).
    pub real: &'a Tensor,
    /// One int64: the cache slot this step writes.
    pub slot: &'a Tensor,
    /// Slots `0..view` are attended (the step's slot must lie inside).
    pub view: i64,
    /// Steering, added as [`crate::model::Hooks`] adds it.
    pub steering: &'a [StepSteer<'a>],
}

/// One steering entry of a decode step: `vector` (`[W]` in the model's kind, α already applied)
/// is added at `point` in the rows where `rows` (`[B]` bool, on the model's device) is true.
#[derive(Debug)]
pub struct StepSteer<'a> {
    pub point: HookPoint,
    pub vector: &'a Tensor,
    pub rows: Tensor,
}

/// The step's hook points: steering only (a graph records no captures).
struct StepTaps {
    /// Each entry's delta `[B, 1, W]`, as `Hooks` computes it: `rows · vector` in the model's kind.
    deltas: Vec<(HookPoint, Tensor)>,
}

impl Taps for StepTaps {
    fn site(&mut self, point: HookPoint, x: Tensor) -> Tensor {
        match self.delta(point) {
            Some(d) => x + d,
            None => x,
        }
    }
    fn delta(&self, point: HookPoint) -> Option<Tensor> {
        summed_delta(&self.deltas, point)
    }
    fn steers(&self, point: HookPoint) -> bool {
        self.deltas.iter().any(|(p, _)| *p == point)
    }
    fn record(&mut self, _: HookPoint, _: &Tensor) {}
    fn any(&self) -> bool {
        false
    }
}

impl Model {
    /// Whether [`Model::forward_step`] computes what `forward_select` would: not for dynamic
    /// RoPE, whose frequencies depend on the longest position (a host read).
    pub fn supports_step(&self) -> bool {
        !self.config.rope.is_dynamic()
    }

    /// Next-token logits `[B, V]` (float32) for one new token per row, written into `cache` at
    /// `input.slot`. Does not advance the cache's length (the caller knows how many steps ran).
    pub fn forward_step(&self, input: &StepInput, cache: &KvCache) -> Result<Tensor, ModelError> {
        Ok(self.step_raw_logits(input, cache)?.to_kind(Kind::Float))
    }

    /// [`Model::forward_step`] with the logits written into `out` (`[B, V]` on the model's
    /// device): float32 — for a reduced-precision model one converting copy instead of a cast
    /// and a copy, the same values (the conversion to float32 is exact) — or the model's own
    /// kind, which holds the logits exactly unless steering adds to them (refused then).
    pub fn forward_step_into(
        &self,
        input: &StepInput,
        cache: &KvCache,
        out: &Tensor,
    ) -> Result<(), ModelError> {
        let (b, v) = (input.ids.size()[0], self.config.vocab_size);
        let steered = input.steering.iter().any(|s| s.point == HookPoint::Logits);
        let kind_ok = out.kind() == Kind::Float || (out.kind() == self.kind && !steered);
        if out.size() != [b, v] || !kind_ok || out.device() != self.device() {
            return Err(ModelError::Input(format!(
                "step: logits buffer {:?} {:?} on {:?} must be float32 (or {:?} without logits \
                 steering) [{b}, {v}] on {:?}",
                out.kind(),
                out.size(),
                out.device(),
                self.kind,
                self.device()
            )));
        }
        let logits = self.step_raw_logits(input, cache)?;
        out.shallow_clone().f_copy_(&logits)?;
        Ok(())
    }

    /// The step's logits `[B, V]` in the model's kind, or float32 where steering adds at the
    /// logits (as `Hooks` adds there, to the float32 logits).
    fn step_raw_logits(&self, input: &StepInput, cache: &KvCache) -> Result<Tensor, ModelError> {
        let c = &self.config;
        if !self.supports_step() {
            return Err(ModelError::Input(
                "the graph-ready decode step does not support dynamic RoPE scaling".into(),
            ));
        }
        let b = input.ids.size()[0];
        if input.ids.size() != [b, 1] || input.positions.size() != [b, 1] {
            return Err(ModelError::Input(format!(
                "step: ids {:?} and positions {:?} must both be [B, 1]",
                input.ids.size(),
                input.positions.size()
            )));
        }
        if cache.batch() != b || cache.keys.len() != self.layers.len() {
            return Err(ModelError::Cache(format!(
                "step: cache of batch {} and {} layers for {b} rows and {} layers",
                cache.batch(),
                cache.keys.len(),
                self.layers.len()
            )));
        }
        if input.view < 1 || input.view > cache.capacity() {
            return Err(ModelError::Cache(format!(
                "step: window of {} slots outside the capacity {}",
                input.view,
                cache.capacity()
            )));
        }
        let real_size = input.real.size();
        if real_size.len() != 2 || real_size[0] != b || real_size[1] < input.view {
            return Err(ModelError::Input(format!(
                "step: real-slot mask {real_size:?} must be [{b}, ≥ {}]",
                input.view
            )));
        }
        let mut taps = self.step_taps(input.steering, b)?;
        let device = self.device();
        // The decode kernel knows neither sinks nor windows: such models attend through masks.
        let slots = c.plain_attention().then(|| {
            SlotAttention::resolve(
                self.step_attention,
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                self.kind,
                device,
                input.real,
                input.slot,
                input.view,
            )
        });
        let mask = match slots.flatten() {
            Some(slots) => AttnMask::Slots(slots),
            None if !c.plain_attention() => {
                window::step_masks(c, input.real, input.slot, input.view, self.kind)
            }
            None => AttnMask::Additive(step_mask(
                input.real,
                input.slot,
                input.view,
                c.num_heads / c.num_kv_heads,
                self.kind,
            )),
        };
        let rotation =
            rope::Rotation::new(&self.inv_freq, self.rope_scaling, input.positions, self.kind);
        let prep =
            SlotPrep::resolve(self.step_prep, c, self.kind, device, rotation.tables(), input.slot);

        let mut x = Tensor::f_embedding(&self.embed, input.ids, -1, false, false)?;
        let step = StepLayers {
            rotation: &rotation,
            mask: &mask,
            cache,
            slot: input.slot,
            view: input.view,
            prep: prep.as_ref(),
        };
        let x = match SlotNorms::resolve(self.step_norm, c, self.kind, device) {
            Some(norms) => self.fused_layers(x, &norms, &step, &mut taps)?,
            None => {
                for (l, layer) in self.layers.iter().enumerate() {
                    x = self.block(l, layer, x, &rotation, &mask, step.kv(l), &mut taps)?;
                }
                taps.site(HookPoint::FinalNorm, self.final_norm.forward(&x))
            }
        };
        let logits = x.linear::<Tensor>(&self.lm_head, None);
        let logits = if taps.steers(HookPoint::Logits) {
            taps.site(HookPoint::Logits, logits.to_kind(Kind::Float))
        } else {
            logits
        };
        Ok(logits.squeeze_dim(1))
    }

    /// Checks the steering entries of a step of `b` rows and computes their deltas.
    fn step_taps(&self, steering: &[StepSteer], b: i64) -> Result<StepTaps, ModelError> {
        let c = &self.config;
        let mut deltas = Vec::with_capacity(steering.len());
        for (i, s) in steering.iter().enumerate() {
            let width = match s.point {
                HookPoint::Layer { layer, .. } if layer >= self.layers.len() => {
                    return Err(ModelError::Hook(format!(
                        "step steering entry {i}: layer {layer} out of range (model has {} \
                         layers)",
                        self.layers.len()
                    )));
                }
                HookPoint::Layer { .. } | HookPoint::FinalNorm => c.hidden_size,
                HookPoint::Logits => c.vocab_size,
            };
            if s.vector.size() != [width] || s.rows.size() != [b] || s.rows.kind() != Kind::Bool {
                return Err(ModelError::Hook(format!(
                    "step steering entry {i} at {:?}: vector {:?} must be [{width}] and rows \
                     {:?} {:?} bool [{b}]",
                    s.point,
                    s.vector.size(),
                    s.rows.kind(),
                    s.rows.size()
                )));
            }
            deltas.push((s.point, masked_delta(&s.rows.view([b, 1]), s.vector, self.kind)));
        }
        Ok(StepTaps { deltas })
    }
}

/// The additive mask `[B, 1, group, view]` (grouped as [`group_mask`] groups) of one decode token
/// per row at cache slot `slot` (one int64 on the device): real slots up to the new one, and
/// always the new one.
pub(super) fn step_mask(real: &Tensor, slot: &Tensor, view: i64, group: i64, kind: Kind) -> Tensor {
    let j = Tensor::arange(view, (Kind::Int64, real.device())).unsqueeze(0);
    let slot = slot.reshape([1, 1]);
    let causal = j.le_tensor(&slot);
    let own = j.eq_tensor(&slot);
    let mask = real.narrow(1, 0, view).logical_or(&own).logical_and(&causal);
    additive_mask(&group_mask(&mask.unsqueeze(1).unsqueeze(1), group), kind)
}
