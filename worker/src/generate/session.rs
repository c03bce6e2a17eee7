//! Batched, multi-turn generation over one preallocated KV cache.
//!
//! A [`Session`] holds `B` conversations side by side. [`Session::append`] feeds each row a chunk
//! of tokens (a prompt, or the environment's next user message); chunks of different lengths are
//! padded on the *left of the chunk*, so every row's newest token sits in the same cache slot and
//! the next-token logits of all rows come from one position. Pad slots anywhere in the cache are
//! masked out of attention, and positions count real tokens only, so a row's computation does not
//! depend on its batch mates' lengths. [`Session::generate`] then decodes up to
//! `max_new_tokens`, one cache slot per step, with per-row seeds, sampling parameters, an allowed
//! token set per step (action masking) and stop tokens.
//!
//! The decode loop keeps all per-row state on the device (which rows are still generating, their
//! positions, the last sampled token), so a step issues no host synchronisation except an
//! optional "has everyone stopped?" check every `check_every` steps; results are read back once
//! at the end. A sampled token enters the cache on the following step; a row's final token (its
//! stop token, or the last one when the budget ran out) is carried over and fed at the start of
//! the next `append`, so a multi-turn episode continues exactly where the model stopped.

use super::decode::{Feed, steered_rows};
use super::sampling::Sampling;
use crate::model::{
    ForwardInput, HookPoint, Hooks, KvCache, LogitsSelect, Model, ModelError, SteerScope, Steering,
    TokenRole, steering_mask,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Errors of generation (input shape mistakes, cache capacity, the model's own errors).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A steering vector applied throughout a session.
#[derive(Debug)]
pub struct SteerSpec {
    pub point: HookPoint,
    /// `[hidden]`, on the model's device and dtype (converted if not).
    pub vector: Tensor,
    pub alpha: f64,
    pub scope: SteerScope,
}

/// One row's tokens to append, with the role of each (for steering scopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub tokens: Vec<i64>,
    pub roles: Vec<TokenRole>,
}

impl Chunk {
    /// A chunk whose tokens all have the same role.
    pub fn uniform(tokens: Vec<i64>, role: TokenRole) -> Chunk {
        let roles = vec![role; tokens.len()];
        Chunk { tokens, roles }
    }
}

/// Which tokens may be sampled.
#[derive(Debug, Default)]
pub enum Allowed {
    /// Any token.
    #[default]
    Any,
    /// The same `[V]` bool mask at every step.
    Always(Tensor),
    /// A mask per decode step; the last one repeats (e.g. a move letter, then end-of-turn).
    PerStep(Vec<Tensor>),
}

impl Allowed {
    /// The masks in step order (the last one repeats): none for `Any`, one for `Always`.
    fn masks(&self) -> Vec<&Tensor> {
        match self {
            Allowed::Any => Vec::new(),
            Allowed::Always(m) => vec![m],
            Allowed::PerStep(v) => v.iter().collect(),
        }
    }

    /// A `[V]` mask allowing exactly `ids`.
    pub fn only(ids: &[i64], vocab: i64, device: Device) -> Tensor {
        let m = Tensor::zeros([vocab], (Kind::Bool, device));
        let idx = Tensor::from_slice(ids).to_device(device);
        m.index_fill(0, &idx, 1)
    }
}

/// Options of one [`Session::generate`] call.
#[derive(Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub allowed: Allowed,
    /// A row stops after sampling one of these (the stop token is part of its output).
    pub stop_tokens: Vec<i64>,
    /// Check every this many steps whether all rows stopped (one host synchronisation each);
    /// 0 never checks early.
    pub check_every: usize,
    /// How the decode loop is executed.
    pub decode: Decode,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 64,
            sampling: Sampling::default(),
            allowed: Allowed::Any,
            stop_tokens: Vec::new(),
            check_every: 8,
            decode: Decode::Auto,
        }
    }
}

/// How [`Session::generate`] runs its decode loop. Every mode computes the same tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decode {
    /// CUDA graphs where the call qualifies (see [`Session::graphs_apply`]), op by op otherwise.
    #[default]
    Auto,
    /// Op by op through libtorch.
    Eager,
    /// The graph-ready step (device-side slot, position and counters) run op by op without
    /// capture: the work a graph records, runnable on any device.
    Static,
    /// The graph-ready step captured as CUDA graphs and replayed; an error where unavailable.
    Graph,
}

impl Decode {
    pub fn name(self) -> &'static str {
        match self {
            Decode::Auto => "auto",
            Decode::Eager => "eager",
            Decode::Static => "static",
            Decode::Graph => "graph",
        }
    }
}

/// What each row generated in one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated token ids per row (including the stop token when one was sampled).
    pub tokens: Vec<Vec<i64>>,
    /// Log-probability of each generated token under the sampled distribution.
    pub logprobs: Vec<Vec<f32>>,
    /// Whether the row ended on a stop token (false: it ran out of `max_new_tokens`).
    pub stopped: Vec<bool>,
}

/// `B` conversations decoding side by side over one KV cache.
pub struct Session<'m> {
    pub(super) model: &'m Model,
    pub(super) cache: KvCache,
    /// `[B, capacity]` bool: which cache slots hold real tokens.
    pub(super) slots: Tensor,
    /// Real tokens per row so far (the next position).
    next_pos: Vec<i64>,
    /// A sampled token per row not yet fed to the model.
    pending: Vec<Option<i64>>,
    pub(super) seeds: Tensor,
    /// Noise counter: advanced once per decode step.
    pub(super) draws: i64,
    pub(super) steering: Vec<SteerSpec>,
    /// `[B, V]` next-token logits after the latest append.
    last_logits: Option<Tensor>,
    /// Whether the latest `generate` replayed captured CUDA graphs.
    last_graphed: bool,
    last_capture_s: f64,
}

impl<'m> Session<'m> {
    /// A session of `seeds.len()` rows with room for `capacity` cache slots per row.
    pub fn new(
        model: &'m Model,
        seeds: &[u64],
        capacity: i64,
        steering: Vec<SteerSpec>,
    ) -> Result<Session<'m>, GenerateError> {
        if seeds.is_empty() {
            return Err(GenerateError::Input("a session needs at least one row".into()));
        }
        let device = model.device();
        let b = seeds.len() as i64;
        let hidden = model.config().hidden_size;
        let mut steer = Vec::with_capacity(steering.len());
        for s in steering {
            if s.point == HookPoint::Logits {
                return Err(GenerateError::Input(
                    "a session steers hidden states (vectors of the hidden size); the logits are \
                     not a session steering point"
                        .into(),
                ));
            }
            if s.vector.size() != [hidden] {
                return Err(GenerateError::Input(format!(
                    "steering vector has shape {:?}, the model's hidden size is {hidden}",
                    s.vector.size()
                )));
            }
            let vector = s.vector.to_device(device).to_kind(model.kind());
            steer.push(SteerSpec { vector, ..s });
        }
        let seeds: Vec<i64> = seeds.iter().map(|&s| s as i64).collect();
        Ok(Session {
            model,
            cache: model.new_cache(b, capacity)?,
            slots: Tensor::zeros([b, capacity], (Kind::Bool, device)),
            next_pos: vec![0; seeds.len()],
            pending: vec![None; seeds.len()],
            seeds: Tensor::from_slice(&seeds).to_device(device),
            draws: 0,
            steering: steer,
            last_logits: None,
            last_graphed: false,
            last_capture_s: 0.0,
        })
    }

    /// Rows in the session.
    pub fn batch(&self) -> usize {
        self.next_pos.len()
    }

    /// Cache slots used so far (the same for every row).
    pub fn slots_used(&self) -> i64 {
        self.cache.len()
    }

    /// Real tokens per row so far.
    pub fn lengths(&self) -> &[i64] {
        &self.next_pos
    }

    /// Feeds each row its chunk (after any token the previous `generate` left pending). Every
    /// row must end up with at least one token to feed.
    pub fn append(&mut self, chunks: &[Chunk]) -> Result<(), GenerateError> {
        let b = self.batch();
        if chunks.len() != b {
            return Err(GenerateError::Input(format!(
                "append: {} chunks for a session of {b} rows",
                chunks.len()
            )));
        }
        let mut rows: Vec<(Vec<i64>, Vec<TokenRole>)> = Vec::with_capacity(b);
        for (i, (c, pending)) in chunks.iter().zip(&self.pending).enumerate() {
            if c.tokens.len() != c.roles.len() {
                return Err(GenerateError::Input(format!(
                    "append: row {i} has {} tokens but {} roles",
                    c.tokens.len(),
                    c.roles.len()
                )));
            }
            let mut tokens = Vec::with_capacity(c.tokens.len() + 1);
            let mut roles = Vec::with_capacity(c.tokens.len() + 1);
            if let Some(t) = *pending {
                tokens.push(t);
                roles.push(TokenRole::Generated);
            }
            tokens.extend_from_slice(&c.tokens);
            roles.extend_from_slice(&c.roles);
            if tokens.is_empty() {
                return Err(GenerateError::Input(format!("append: row {i} has nothing to feed")));
            }
            rows.push((tokens, roles));
        }
        let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let past = self.cache.len();
        if past + t as i64 > self.cache.capacity() {
            return Err(GenerateError::Input(format!(
                "append: {past} slots used + {t} new exceed the session capacity {}",
                self.cache.capacity()
            )));
        }
        // Each row right-aligned in the chunk; pad slots keep role `Pad` (never real, never
        // steered) and position 0.
        let mut ids = vec![vec![0i64; t]; b];
        let mut roles = vec![vec![TokenRole::Pad; t]; b];
        let mut positions = vec![vec![0i64; t]; b];
        for (i, (toks, rls)) in rows.iter().enumerate() {
            let offset = t - toks.len();
            ids[i][offset..].copy_from_slice(toks);
            roles[i][offset..].copy_from_slice(rls);
            for (j, p) in positions[i][offset..].iter_mut().enumerate() {
                *p = self.next_pos[i] + j as i64;
            }
        }
        let device = self.model.device();
        let shape = [b as i64, t as i64];
        let real: Vec<bool> = roles.iter().flatten().map(|&r| r != TokenRole::Pad).collect();
        let real = Tensor::from_slice(&real).view(shape).to_device(device);
        let mut hooks =
            self.steering_hooks(|s| steering_mask(s.scope, &roles, &positions, device))?;
        let input = ForwardInput {
            input_ids: Tensor::from_slice(&ids.concat()).view(shape).to_device(device),
            positions: Tensor::from_slice(&positions.concat()).view(shape).to_device(device),
            attention_mask: self.mark_slots(past, &real),
        };
        let logits = self.model.forward_select(
            &input,
            Some(&mut self.cache),
            &mut hooks,
            LogitsSelect::Last,
        )?;
        // Only now is the chunk part of the conversation: a failed call leaves the pending
        // tokens and positions as they were.
        for (i, (toks, _)) in rows.iter().enumerate() {
            self.next_pos[i] += toks.len() as i64;
            self.pending[i] = None;
        }
        self.last_logits = Some(logits.squeeze_dim(1));
        Ok(())
    }

    /// The session's steering entries with this call's masks.
    fn steering_hooks(
        &self,
        mask: impl Fn(&SteerSpec) -> Result<Tensor, ModelError>,
    ) -> Result<Hooks, ModelError> {
        let mut hooks = Hooks::new();
        for s in &self.steering {
            hooks.steer(Steering {
                point: s.point,
                vector: s.vector.shallow_clone(),
                alpha: s.alpha,
                mask: mask(s)?,
            });
        }
        Ok(hooks)
    }

    /// Records which of the slots `past..past+T` are real and returns the attention mask over
    /// all slots up to `past + T`.
    fn mark_slots(&mut self, past: i64, real: &Tensor) -> Tensor {
        let t = real.size()[1];
        self.slots.narrow(1, past, t).copy_(real);
        self.slots.narrow(1, 0, past + t)
    }

    /// Decodes up to `max_new_tokens` per row after the latest `append`.
    pub fn generate(&mut self, opts: &GenerateOptions) -> Result<Generation, GenerateError> {
        opts.sampling.validate().map_err(GenerateError::Input)?;
        let no_prompt = || {
            GenerateError::Input("generate: append the prompt (or the next message) first".into())
        };
        if self.last_logits.is_none() {
            return Err(no_prompt());
        }
        let b = self.batch();
        if opts.max_new_tokens == 0 {
            return Ok(Generation {
                tokens: vec![Vec::new(); b],
                logprobs: vec![Vec::new(); b],
                stopped: vec![false; b],
            });
        }
        let device = self.model.device();
        let vocab = self.model.config().vocab_size;
        let mut masks = Vec::new();
        for (step, m) in opts.allowed.masks().into_iter().enumerate() {
            if m.size() != [vocab] || m.kind() != Kind::Bool {
                return Err(GenerateError::Input(format!(
                    "allowed-token mask {step} must be bool [{vocab}], found {:?} {:?}",
                    m.kind(),
                    m.size()
                )));
            }
            masks.push(m.to_device(device));
        }
        let stops = Tensor::from_slice(&opts.stop_tokens).to_device(device);
        let room = self.cache.capacity() - self.cache.len();
        let feeds = opts.max_new_tokens as i64 - 1;
        if feeds > room {
            return Err(GenerateError::Input(format!(
                "generate: {} new tokens need {feeds} more cache slots, {room} left",
                opts.max_new_tokens
            )));
        }
        let feed = match opts.decode {
            Decode::Eager => Feed::Eager,
            Decode::Static => Feed::Static,
            Decode::Graph => {
                self.graphs_apply(opts).map_err(GenerateError::Input)?;
                Feed::Graphs
            }
            Decode::Auto => match self.graphs_apply(opts) {
                Ok(()) => Feed::Graphs,
                Err(_) => Feed::Eager,
            },
        };
        // Only now is the call committed: a rejected request leaves the session as it was.
        let logits = self.last_logits.take().ok_or_else(no_prompt)?;
        let decoded = self.decode(opts, logits, &masks, &stops, feed)?;
        self.last_graphed = decoded.graphed;
        self.last_capture_s = decoded.capture_s;
        self.finish(decoded)
    }

    /// Whether the latest [`Session::generate`] ran as captured CUDA graphs (false when it
    /// decoded op by op, including after a failed capture in `Decode::Auto`).
    pub fn last_decode_graphed(&self) -> bool {
        self.last_graphed
    }

    /// Host wall time the latest [`Session::generate`] spent capturing CUDA graphs (warm-up runs
    /// included; 0 when it decoded op by op), seconds.
    pub fn last_capture_s(&self) -> f64 {
        self.last_capture_s
    }

    /// Reads a decode loop's results back (once per call) and updates the conversation state.
    fn finish(&mut self, decoded: Decoded) -> Result<Generation, GenerateError> {
        let b = self.batch();
        let n = decoded.steps as i64;
        let toks = decoded.tokens.narrow(1, 0, n).to_device(Device::Cpu);
        let lps = decoded.logprobs.narrow(1, 0, n).to_kind(Kind::Float).to_device(Device::Cpu);
        let valid = decoded.valid.narrow(1, 0, n).to_device(Device::Cpu);
        let active =
            Vec::<bool>::try_from(&decoded.active.to_device(Device::Cpu)).map_err(tch_err)?;
        let toks = Vec::<i64>::try_from(&toks.contiguous().view([-1])).map_err(tch_err)?;
        let lps = Vec::<f32>::try_from(&lps.contiguous().view([-1])).map_err(tch_err)?;
        let valid = Vec::<bool>::try_from(&valid.contiguous().view([-1])).map_err(tch_err)?;
        let mut out = Generation {
            tokens: vec![Vec::new(); b],
            logprobs: vec![Vec::new(); b],
            stopped: vec![false; b],
        };
        for i in 0..b {
            for j in 0..n as usize {
                let k = i * n as usize + j;
                if valid[k] {
                    out.tokens[i].push(toks[k]);
                    out.logprobs[i].push(lps[k]);
                }
            }
            out.stopped[i] = !active[i];
            // A row that sampled at the last step has that token still to feed; a row that
            // stopped earlier had its stop token fed on the step after.
            let sampled_last = valid[i * n as usize + n as usize - 1];
            self.pending[i] = if sampled_last { out.tokens[i].last().copied() } else { None };
            self.next_pos[i] += out.tokens[i].len() as i64 - i64::from(self.pending[i].is_some());
        }
        Ok(out)
    }

    /// Feeds the last sampled token of the rows in `unfed` (pads elsewhere) into the next cache
    /// slot; returns the next-token logits `[B, V]`.
    pub(super) fn feed(
        &mut self,
        last: &Tensor,
        unfed: &Tensor,
        pos: &mut Tensor,
    ) -> Result<Tensor, GenerateError> {
        let past = self.cache.len();
        let real = unfed.unsqueeze(1);
        let mut hooks =
            self.steering_hooks(|s| Ok(steered_rows(s.scope, unfed, pos).unsqueeze(1)))?;
        let input = ForwardInput {
            input_ids: last.unsqueeze(1),
            positions: pos.unsqueeze(1),
            attention_mask: self.mark_slots(past, &real),
        };
        // The fed ids were sampled from the model's own vocabulary: no range check (it would
        // synchronise with the host every step).
        let logits = self.model.forward_sampled(
            &input,
            Some(&mut self.cache),
            &mut hooks,
            LogitsSelect::Last,
        )?;
        *pos = &*pos + unfed.to_kind(Kind::Int64);
        Ok(logits.squeeze_dim(1))
    }
}

/// What a decode loop leaves on the device: `[B, ≥ steps]` tokens, log-probs and validity (only
/// the first `steps` columns count), and which rows are still active.
pub(super) struct Decoded {
    pub(super) tokens: Tensor,
    pub(super) logprobs: Tensor,
    pub(super) valid: Tensor,
    pub(super) active: Tensor,
    pub(super) steps: usize,
    /// Whether the loop replayed captured CUDA graphs.
    pub(super) graphed: bool,
    /// Host wall time spent capturing them, seconds.
    pub(super) capture_s: f64,
}

pub(super) fn tch_err(e: tch::TchError) -> GenerateError {
    GenerateError::Model(ModelError::from(e))
}
