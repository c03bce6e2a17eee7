//! Trajectories as training tensors, and the policy's forward pass over them.
//!
//! A batch is right-padded to its longest conversation; per-decision quantities are laid out
//! `[B, T]` (row, turn) with a 0/1 mask for rows that ended early. The forward pass runs the
//! whole conversation once, with gradients, keeps the final-normed hidden state only at the
//! decision positions, and projects it onto the four move tokens (the policy is the tempered
//! softmax over those four, exactly the distribution the rollout sampled from).

use super::rollout::Trajectory;
use crate::model::{ForwardInput, Hooks, LogitsSelect, Model, ModelError};
use tch::{Device, Kind, Tensor};

/// Tensors of a set of trajectories.
pub struct Batch {
    pub input: ForwardInput,
    /// `[B·T]` indices into the flattened `[B·L]` positions: the decision positions, row-major
    /// (padded turns point at position 0 of their row and are masked).
    pub gather: Tensor,
    /// `[B, T]` float 0/1.
    pub mask: Tensor,
    /// `[B, T]` int64 move index 0..4.
    pub actions: Tensor,
    /// `[B, T]` float: sampling-time log-probabilities.
    pub old_logp: Tensor,
    /// `[B, T, 4]` int64 tile class of each neighbour.
    pub classes: Tensor,
    pub rows: i64,
    pub turns: i64,
}

impl Batch {
    /// Lays out `trajs` on `device`. Every trajectory must have at least one decision.
    pub fn new(trajs: &[&Trajectory], device: Device) -> Batch {
        let b = trajs.len();
        let l = trajs.iter().map(|t| t.tokens.len()).max().unwrap_or(1).max(1);
        let t = trajs.iter().map(|t| t.decisions.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0i64; b * l];
        let mut real = vec![false; b * l];
        let mut gather = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        let mut actions = vec![0i64; b * t];
        let mut old = vec![0f32; b * t];
        let mut classes = vec![0i64; b * t * 4];
        for (r, tr) in trajs.iter().enumerate() {
            ids[r * l..r * l + tr.tokens.len()].copy_from_slice(&tr.tokens);
            real[r * l..r * l + tr.tokens.len()].fill(true);
            for k in 0..t {
                gather[r * t + k] = (r * l) as i64;
            }
            for (k, d) in tr.decisions.iter().enumerate() {
                let i = r * t + k;
                gather[i] = (r * l + d.pos) as i64;
                mask[i] = 1.0;
                actions[i] = d.action as i64;
                old[i] = d.old_logp;
                classes[i * 4..i * 4 + 4].copy_from_slice(&d.classes);
            }
        }
        let (bi, li, ti) = (b as i64, l as i64, t as i64);
        let on = |x: Tensor| x.to_device(device);
        Batch {
            input: ForwardInput {
                input_ids: on(Tensor::from_slice(&ids).view([bi, li])),
                positions: on(Tensor::arange(li, (Kind::Int64, Device::Cpu)).repeat([bi, 1])),
                attention_mask: on(Tensor::from_slice(&real).view([bi, li])),
            },
            gather: on(Tensor::from_slice(&gather)),
            mask: on(Tensor::from_slice(&mask).view([bi, ti])),
            actions: on(Tensor::from_slice(&actions).view([bi, ti])),
            old_logp: on(Tensor::from_slice(&old).view([bi, ti])),
            classes: on(Tensor::from_slice(&classes).view([bi, ti, 4])),
            rows: bi,
            turns: ti,
        }
    }

    /// A `[B, T]` float tensor of per-decision host values laid out like the batch (missing
    /// turns 0).
    pub fn per_decision(&self, values: &[Vec<f64>], device: Device) -> Tensor {
        let (b, t) = (self.rows as usize, self.turns as usize);
        let mut out = vec![0f32; b * t];
        for (r, row) in values.iter().enumerate().take(b) {
            for (k, v) in row.iter().enumerate().take(t) {
                out[r * t + k] = *v as f32;
            }
        }
        Tensor::from_slice(&out).view([b as i64, t as i64]).to_device(device)
    }
}

/// The policy at the decision positions.
pub struct PolicyOut {
    /// `[B, T, H]` final-normed hidden states (model kind).
    pub hidden: Tensor,
    /// `[B, T, 4]` float32 move logits divided by the temperature.
    pub logits4: Tensor,
    /// `[B, T]` float32 log-probability of the taken move.
    pub logp: Tensor,
}

/// Runs the model over the batch (with gradients unless the caller disabled them).
pub fn policy_forward(
    model: &Model,
    batch: &Batch,
    moves: &[i64; 4],
    temperature: f64,
) -> Result<PolicyOut, ModelError> {
    let hidden = decision_hidden(model, batch)?;
    let ids = Tensor::from_slice(moves).to_device(model.device());
    let w = model.lm_head().index_select(0, &ids);
    let logits4 = hidden.matmul(&w.tr()).to_kind(Kind::Float) / temperature;
    let logp = logits4.log_softmax(-1, Kind::Float).gather(-1, &batch.actions.unsqueeze(-1), false);
    Ok(PolicyOut { hidden, logits4, logp: logp.squeeze_dim(-1) })
}

/// `[B, T, H]` final-normed hidden states at the decision positions.
pub fn decision_hidden(model: &Model, batch: &Batch) -> Result<Tensor, ModelError> {
    let h = model.forward_select(&batch.input, None, &mut Hooks::new(), LogitsSelect::None)?;
    let width = h.size()[2];
    let flat = h.reshape([-1, width]).index_select(0, &batch.gather);
    Ok(flat.view([batch.rows, batch.turns, width]))
}
