//! The decode loop: one loop for every [`Decode`] mode, over per-row state kept on the device.
//!
//! Each step samples a token for every row and records it ("sample"), then feeds the rows' new
//! tokens to the model ("feed"). The sample piece and the bookkeeping around it — the last token,
//! stop tokens, the output columns, the noise counter — are the same in every mode; only the feed
//! differs:
//! - [`Feed::Eager`]: `Model::forward_sampled` op by op, through the hooks;
//! - [`Feed::Static`]: the graph-ready `Model::forward_step` op by op, on any device, with the
//!   steering masks computed on the device from the loop's state;
//! - [`Feed::Graphs`]: both pieces captured as CUDA graphs and replayed ([`super::graphed`]).
//!
//! All state lives in device tensors allocated before the first step and updated in place, which
//! is what lets a CUDA graph record a step once (the eager feed, never recorded, replaces the
//! logits and positions instead). A step reads nothing back to the host, except the
//! optional "has everyone stopped?" check every `check_every` steps.

use super::graphed::{self, WINDOW};
use super::sampling::{Sampling, sample_at};
use super::session::{Decode, Decoded, GenerateError, GenerateOptions, Session};
use crate::model::{HookPoint, Model, SteerScope, scaled_vector};
use tch::{Kind, Tensor};

/// How the loop feeds sampled tokens to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    /// `forward_sampled` through the hooks, op by op.
    Eager,
    /// `forward_step` op by op.
    Static,
    /// `forward_step` and the sample piece replayed as captured CUDA graphs.
    Graphs,
}

/// The decode loop's device-side state.
pub(super) struct State {
    /// `[B, V]` next-token logits: float32, or bfloat16 (see [`logits_kind`]).
    pub(super) logits: Tensor,
    /// `[B]` bool: rows still generating.
    pub(super) active: Tensor,
    /// `[B]` bool: rows that sampled at the latest step (their token is fed next).
    pub(super) unfed: Tensor,
    /// `[B]` int64: each row's latest sampled token.
    pub(super) last: Tensor,
    /// `[B]` int64: the next position of each row.
    pub(super) pos: Tensor,
    /// One int64: the noise counter (the session's `draws`).
    pub(super) draw: Tensor,
    /// One int64: the output column of the next sample.
    pub(super) column: Tensor,
    /// One int64: the cache slot of the next feed.
    pub(super) slot: Tensor,
    /// `[B, N]` outputs.
    pub(super) tokens: Tensor,
    pub(super) logprobs: Tensor,
    pub(super) valid: Tensor,
    /// `[V]` bool: this step's allowed tokens (copied in before each step when masks vary).
    pub(super) allowed: Option<Tensor>,
}

impl State {
    /// Every tensor of the state (a graph capture saves and restores them).
    pub(super) fn buffers(&self) -> Vec<&Tensor> {
        let mut v = vec![
            &self.logits,
            &self.active,
            &self.unfed,
            &self.last,
            &self.pos,
            &self.draw,
            &self.column,
            &self.slot,
            &self.tokens,
            &self.logprobs,
            &self.valid,
        ];
        v.extend(self.allowed.as_ref());
        v
    }
}

/// Everything the two pieces read besides the state.
pub(super) struct Pieces<'a> {
    pub(super) sampling: Sampling,
    pub(super) seeds: &'a Tensor,
    pub(super) stops: Option<&'a Tensor>,
    /// The session's steering: point, scope and α·v in the model's kind (as `Hooks` scales it).
    pub(super) steer: Vec<(HookPoint, SteerScope, Tensor)>,
}

/// The kind the decode loop keeps its logits in: [`Model::step_logits_kind`] with the step feed
/// ([`Feed::Static`] or [`Feed::Graphs`], which write them in place), float32 with the eager
/// feed. A bfloat16 model's logits are bfloat16 values (session steering adds to hidden states,
/// never to logits), so keeping them in bfloat16 loses nothing; the fused sampler then reads half
/// the bytes on each of its passes over `[B, V]` (the libtorch sampler widens them itself).
pub(super) fn logits_kind(model: &Model, feed: Feed) -> Kind {
    if feed == Feed::Eager { Kind::Float } else { model.step_logits_kind() }
}

/// Which of the rows fed at position `pos` (`[B]`) a steering entry of `scope` steers: the rows
/// in `fed` (`[B]` bool). Every fed token was generated, so it lies inside every scope but
/// `FromIndex(k)`, which also needs position ≥ k.
pub(super) fn steered_rows(scope: SteerScope, fed: &Tensor, pos: &Tensor) -> Tensor {
    match scope {
        SteerScope::FromIndex(k) => fed.logical_and(&pos.ge(k)),
        SteerScope::All | SteerScope::AssistantTurns | SteerScope::Generated => fed.shallow_clone(),
    }
}

/// `dst ← src`, in place.
pub(super) fn set(dst: &Tensor, src: &Tensor) {
    dst.shallow_clone().copy_(src);
}

/// Draws a token for every row from `st.logits`, records it in column `st.column`, retires the
/// rows that sampled a stop token, and advances the noise counter and the column.
pub(super) fn sample_piece(st: &State, p: &Pieces) -> Result<(), GenerateError> {
    let s = sample_at(&st.logits, &p.sampling, st.allowed.as_ref(), p.seeds, &st.draw);
    // Rows that sample now are exactly the active ones; their token must be fed next.
    set(&st.unfed, &st.active);
    set(&st.last, &s.tokens.where_self(&st.unfed, &st.last));
    let _ = st.tokens.shallow_clone().index_copy_(1, &st.column, &s.tokens.unsqueeze(1));
    let lp = s.logprobs.to_kind(Kind::Float).unsqueeze(1);
    let _ = st.logprobs.shallow_clone().index_copy_(1, &st.column, &lp);
    let _ = st.valid.shallow_clone().index_copy_(1, &st.column, &st.unfed.unsqueeze(1));
    if let Some(stops) = p.stops {
        let stopped = Tensor::isin(&st.last, stops, false, false).logical_and(&st.unfed);
        set(&st.active, &st.active.logical_and(&stopped.logical_not()));
    }
    let _ = st.draw.shallow_clone().g_add_scalar_(1);
    let _ = st.column.shallow_clone().g_add_scalar_(1);
    Ok(())
}

impl Session<'_> {
    /// Decodes up to `opts.max_new_tokens` per row from `logits` (the latest append's). With
    /// [`Feed::Graphs`], a failed capture is an error for [`Decode::Graph`] and falls back to
    /// [`Feed::Eager`] (with one warning per process) otherwise.
    pub(super) fn decode(
        &mut self,
        opts: &GenerateOptions,
        logits: Tensor,
        masks: &[Tensor],
        stops: &Tensor,
        mut feed: Feed,
    ) -> Result<Decoded, GenerateError> {
        let device = self.model.device();
        let b = self.batch() as i64;
        let n = opts.max_new_tokens as i64;
        let one = |v: i64| Tensor::from_slice(&[v]).to_device(device);
        let mut st = State {
            logits: logits.to_kind(logits_kind(self.model, feed)).contiguous(),
            active: Tensor::ones([b], (Kind::Bool, device)),
            unfed: Tensor::ones([b], (Kind::Bool, device)),
            last: Tensor::zeros([b], (Kind::Int64, device)),
            pos: Tensor::from_slice(self.lengths()).to_device(device),
            draw: one(self.draws),
            column: one(0),
            slot: one(self.cache.len()),
            tokens: Tensor::zeros([b, n], (Kind::Int64, device)),
            logprobs: Tensor::zeros([b, n], (Kind::Float, device)),
            valid: Tensor::zeros([b, n], (Kind::Bool, device)),
            allowed: masks.first().map(|m| m.copy()),
        };
        let seeds = self.seeds.shallow_clone();
        let kind = self.model.kind();
        let steer = self
            .steering
            .iter()
            .map(|s| (s.point, s.scope, scaled_vector(&s.vector, s.alpha, kind)))
            .collect();
        let pieces = Pieces {
            sampling: opts.sampling,
            seeds: &seeds,
            stops: (!opts.stop_tokens.is_empty()).then_some(stops),
            steer,
        };
        let mut graphs = None;
        if feed == Feed::Graphs {
            match self.start_graphs(&st, &pieces) {
                Ok(g) => graphs = Some(g),
                Err(e) if opts.decode == Decode::Graph => return Err(e),
                Err(e) => {
                    graphed::warn_fallback(&e);
                    feed = Feed::Eager;
                }
            }
        }
        let mut steps = 0usize;
        for step in 0..opts.max_new_tokens {
            if step > 0
                && step < masks.len()
                && let Some(a) = &st.allowed
            {
                set(a, &masks[step]);
            }
            match &graphs {
                Some(g) => g.replay_sample()?,
                None => sample_piece(&st, &pieces)?,
            }
            self.draws += 1;
            steps += 1;
            if step + 1 == opts.max_new_tokens {
                break;
            }
            if opts.check_every > 0
                && (step + 1) % opts.check_every == 0
                && !bool::try_from(st.active.any()).unwrap_or(true)
            {
                break;
            }
            match feed {
                // `forward_sampled` advances the cache itself.
                Feed::Eager => st.logits = self.feed(&st.last, &st.unfed, &mut st.pos)?,
                Feed::Static | Feed::Graphs => {
                    let slot = self.cache.len();
                    let view = ((slot / WINDOW + 1) * WINDOW).min(self.cache.capacity());
                    match graphs.as_mut() {
                        Some(g) => self.replay_feed(g, &st, &pieces, view)?,
                        None => self.feed_piece(&st, &pieces, view)?,
                    }
                    self.cache.advance(1);
                }
            }
        }
        Ok(Decoded {
            tokens: st.tokens,
            logprobs: st.logprobs,
            valid: st.valid,
            active: st.active,
            steps,
            capture_s: graphs.as_ref().map_or(0.0, |g| g.capture_s),
            graphed: graphs.is_some(),
        })
    }
}
