//! Activation capture and steering at named points of the forward pass.
//!
//! Hook points per decoder layer `l`:
//! - `ResidPre`: the residual stream entering layer `l` (= `ResidPost` of `l - 1`, or the embeddings).
//! - `AttnOut`: the attention block's output (after the output projection), before it is added
//!   (for OLMo-2's post-norms: after the norm, i.e. what is added; likewise `MlpOut`).
//! - `ResidMid`: `ResidPre + AttnOut`. For GPT-NeoX's parallel residual the MLP reads `ResidPre`,
//!   not this sum, so `ResidMid` feeds only the block output; steering it adds to the block output.
//! - `MlpOut`: the MLP block's output, before it is added (for GPT-OSS's experts: the weighted
//!   sum of the chosen experts' outputs).
//! - `ResidPost`: the block output (`ResidMid + MlpOut`), i.e. transformers' decoder-layer output.
//!
//! plus `FinalNorm` (the final norm's output) and `Logits` (the computed logits, float32).
//!
//! At each point the steering entries are applied first, then captures read the (steered) value.
//! Captures keep only the selected positions, detached from the autograd graph.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::error::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerSite {
    ResidPre,
    AttnOut,
    ResidMid,
    MlpOut,
    ResidPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    Layer { layer: usize, site: LayerSite },
    FinalNorm,
    Logits,
}

impl HookPoint {
    pub fn layer(layer: usize, site: LayerSite) -> HookPoint {
        HookPoint::Layer { layer, site }
    }
}

/// Which positions of the current forward call a capture keeps.
#[derive(Debug)]
pub enum Positions {
    /// `[B, T, W]`.
    All,
    /// The last position of the call: `[B, W]`.
    Last,
    /// Positions where the `[B, T]` bool mask is true, in row-major order: `[N, W]`.
    Mask(Tensor),
    /// One position per row, `[B]` i64: `[B, W]`.
    Index(Tensor),
}

#[derive(Debug)]
pub struct CaptureRequest {
    pub name: String,
    pub point: HookPoint,
    pub positions: Positions,
}

/// Adds `alpha * vector` at `point` on the positions where `mask` (`[B, T]` bool, over the tokens
/// of this forward call) is true.
#[derive(Debug)]
pub struct Steering {
    pub point: HookPoint,
    pub vector: Tensor,
    pub alpha: f64,
    pub mask: Tensor,
}

/// The capture requests and steering entries of one or more forward calls, and the captured
/// tensors of the latest call.
#[derive(Debug, Default)]
pub struct Hooks {
    pub captures: Vec<CaptureRequest>,
    pub steering: Vec<Steering>,
    results: HashMap<String, Tensor>,
}

/// Per-call state derived from the requests before the layer loop (all host synchronisation
/// happens here).
pub(crate) struct Prepared {
    /// (request index, flattened row indices) for `Positions::Mask` requests.
    mask_rows: Vec<Option<Tensor>>,
    /// (point, delta `[B, T, W]`) for each steering entry.
    deltas: Vec<(HookPoint, Tensor)>,
    any: bool,
}

impl Hooks {
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Requests a capture; returns `self` for chaining.
    pub fn capture(
        &mut self,
        name: impl Into<String>,
        point: HookPoint,
        positions: Positions,
    ) -> &mut Self {
        self.captures.push(CaptureRequest { name: name.into(), point, positions });
        self
    }

    pub fn steer(&mut self, steering: Steering) -> &mut Self {
        self.steering.push(steering);
        self
    }

    /// The capture called `name` from the latest forward call.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.results.get(name)
    }

    pub fn take(&mut self, name: &str) -> Option<Tensor> {
        self.results.remove(name)
    }

    pub fn results(&self) -> &HashMap<String, Tensor> {
        &self.results
    }

    pub fn clear_results(&mut self) {
        self.results.clear();
    }

    /// Validates the requests against this call's shapes and precomputes masks and deltas.
    /// `logits_t` is the number of positions the logits are computed for.
    pub(crate) fn prepare(
        &mut self,
        b: i64,
        t: i64,
        logits_t: i64,
        hidden: i64,
        vocab: i64,
        layers: usize,
        kind: Kind,
        device: Device,
    ) -> Result<Prepared, ModelError> {
        let dims = |point: HookPoint| -> Result<(i64, i64), ModelError> {
            match point {
                HookPoint::Layer { layer, .. } if layer >= layers => Err(ModelError::Hook(
                    format!("layer {layer} out of range (model has {layers} layers)"),
                )),
                HookPoint::Layer { .. } | HookPoint::FinalNorm => Ok((t, hidden)),
                HookPoint::Logits => Ok((logits_t, vocab)),
            }
        };
        let check_mask = |what: &str, mask: &Tensor, tt: i64| -> Result<(), ModelError> {
            if mask.size() != [b, tt] || mask.kind() != Kind::Bool {
                return Err(ModelError::Hook(format!(
                    "{what}: mask must be bool [{b}, {tt}], found {:?} {:?}",
                    mask.kind(),
                    mask.size()
                )));
            }
            Ok(())
        };
        let mut mask_rows = Vec::with_capacity(self.captures.len());
        for c in &self.captures {
            let (tt, _) = dims(c.point)?;
            let what = format!("capture `{}`", c.name);
            mask_rows.push(match &c.positions {
                Positions::Mask(m) => {
                    check_mask(&what, m, tt)?;
                    Some(m.to_device(device).reshape([-1]).nonzero().squeeze_dim(-1))
                }
                Positions::Index(i) => {
                    if i.size() != [b] || i.kind() != Kind::Int64 {
                        return Err(ModelError::Hook(format!("{what}: index must be i64 [{b}]")));
                    }
                    let lo = i.min().int64_value(&[]);
                    let hi = i.max().int64_value(&[]);
                    if lo < 0 || hi >= tt {
                        return Err(ModelError::Hook(format!(
                            "{what}: index values must lie in 0..{tt}"
                        )));
                    }
                    None
                }
                Positions::All | Positions::Last => None,
            });
        }
        let mut deltas = Vec::with_capacity(self.steering.len());
        for (i, s) in self.steering.iter().enumerate() {
            let (tt, w) = dims(s.point)?;
            let what = format!("steering entry {i} at {:?}", s.point);
            check_mask(&what, &s.mask, tt)?;
            if s.vector.size() != [w] {
                return Err(ModelError::Hook(format!(
                    "{what}: vector must have shape [{w}], found {:?}",
                    s.vector.size()
                )));
            }
            let v = scaled_vector(&s.vector.to_device(device), s.alpha, kind);
            deltas.push((s.point, masked_delta(&s.mask.to_device(device), &v, kind)));
        }
        self.results.clear();
        let any = !self.captures.is_empty() || !deltas.is_empty();
        Ok(Prepared { mask_rows, deltas, any })
    }
}

impl Prepared {
    /// Whether any capture or steering is active in this call.
    pub(crate) fn any(&self) -> bool {
        self.any
    }
}

/// α·v in `kind`, scaled in float32 and rounded once: the vector steering adds.
pub fn scaled_vector(vector: &Tensor, alpha: f64, kind: Kind) -> Tensor {
    (vector.to_kind(Kind::Float) * alpha).to_kind(kind)
}

/// The steering delta `[B, T, W]`: `v` (`[W]`, in `kind`) where `mask` (`[B, T]` bool) is true,
/// zero elsewhere.
pub(crate) fn masked_delta(mask: &Tensor, v: &Tensor, kind: Kind) -> Tensor {
    mask.unsqueeze(-1).to_kind(kind) * v
}

/// The sum of the steering deltas at `point` in entry order, if any (the decode step adds its
/// steering the same way).
pub(crate) fn summed_delta(deltas: &[(HookPoint, Tensor)], point: HookPoint) -> Option<Tensor> {
    let mut sum: Option<Tensor> = None;
    for (p, d) in deltas {
        if *p == point {
            sum = Some(match sum {
                None => d.shallow_clone(),
                Some(s) => s + d,
            });
        }
    }
    sum
}

impl Hooks {
    /// Whether any capture or steering entry is at `point`.
    pub(crate) fn touches(&self, point: HookPoint) -> bool {
        self.captures.iter().any(|c| c.point == point)
            || self.steering.iter().any(|s| s.point == point)
    }

    /// The sum of the steering deltas at `point`, if any.
    pub(crate) fn delta(&self, prepared: &Prepared, point: HookPoint) -> Option<Tensor> {
        summed_delta(&prepared.deltas, point)
    }

    /// Applies steering at `point` to `x` `[B, T, W]`, then records the captures at `point`.
    pub(crate) fn site(&mut self, prepared: &Prepared, point: HookPoint, x: Tensor) -> Tensor {
        if !prepared.any {
            return x;
        }
        let x = match self.delta(prepared, point) {
            Some(d) => x + d,
            None => x,
        };
        self.record(prepared, point, &x);
        x
    }

    /// Records the captures at `point` without steering.
    pub(crate) fn record(&mut self, prepared: &Prepared, point: HookPoint, x: &Tensor) {
        for (c, rows) in self.captures.iter().zip(&prepared.mask_rows) {
            if c.point != point {
                continue;
            }
            let size = x.size();
            let (b, t, w) = (size[0], size[1], size[2]);
            let value = match (&c.positions, rows) {
                (Positions::All, _) => x.detach(),
                (Positions::Last, _) => x.select(1, t - 1).detach(),
                (Positions::Mask(_), Some(rows)) => {
                    x.reshape([b * t, w]).index_select(0, rows).detach()
                }
                (Positions::Index(i), _) => {
                    let idx = i.to_device(x.device()).view([b, 1, 1]).expand([b, 1, w], false);
                    x.gather(1, &idx, false).squeeze_dim(1).detach()
                }
                (Positions::Mask(_), None) => continue,
            };
            self.results.insert(c.name.clone(), value);
        }
    }
}
