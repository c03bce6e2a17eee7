//! The decode loop as two fixed pieces of device work — "sample" and "feed" — that CUDA graphs
//! record once and replay every step.
//!
//! Op by op, a decode step of a 0.6B model issues ~1,300 libtorch calls and the host, not the GPU,
//! sets the pace. Here all per-step state lives in device tensors allocated before any capture
//! and updated in place: the logits, which rows are active, the last token, positions, the noise
//! counter, the output column and the cache slot. The sample piece draws a token for every row
//! and records it; the feed piece runs [`Model::forward_step`] on it. A feed graph is keyed by
//! its attention window (slots `0..view`, `view` a multiple of [`WINDOW`]), so one capture serves
//! [`WINDOW`] consecutive steps. Without capture ([`Decode::Static`]) the same pieces run op by
//! op, on any device; the tests check that this path, the captured one and the eager loop give
//! the same tokens.

use super::sampling::{Sampling, sample_at};
use super::session::{Decode, Decoded, GenerateError, GenerateOptions, Session};
use crate::cuda_graph::{self, CudaGraph, PoolId};
use crate::model::{ModelError, StepInput};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Kind, Tensor};

/// Feed graphs attend over a multiple of this many cache slots.
pub const WINDOW: i64 = 128;

/// Below this many new tokens, `Decode::Auto` decodes op by op: capturing costs about two eager
/// steps per graph.
pub const AUTO_MIN_NEW_TOKENS: usize = 16;

/// The decode loop's device-side state. Every tensor keeps its address for the whole call.
struct State {
    /// `[B, V]` float32 next-token logits.
    logits: Tensor,
    /// `[B]` bool: rows still generating.
    active: Tensor,
    /// `[B]` bool: rows that sampled at the latest step (their token is fed next).
    unfed: Tensor,
    /// `[B]` int64: each row's latest sampled token.
    last: Tensor,
    /// `[B]` int64: the next position of each row.
    pos: Tensor,
    /// One int64: the noise counter (the session's `draws`).
    draw: Tensor,
    /// One int64: the output column of the next sample.
    column: Tensor,
    /// One int64: the cache slot of the next feed.
    slot: Tensor,
    /// `[B, N]` outputs.
    tokens: Tensor,
    logprobs: Tensor,
    valid: Tensor,
    /// `[V]` bool: this step's allowed tokens (copied in before each step when masks vary).
    allowed: Option<Tensor>,
}

impl State {
    fn buffers(&self) -> Vec<&Tensor> {
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
struct Pieces<'a> {
    sampling: Sampling,
    seeds: &'a Tensor,
    stops: Option<&'a Tensor>,
}

/// `dst ← src`, in place.
fn set(dst: &Tensor, src: &Tensor) {
    dst.shallow_clone().copy_(src);
}

/// Draws a token for every row from `st.logits` and records it in column `st.column`.
fn sample_piece(st: &State, p: &Pieces) -> Result<(), GenerateError> {
    let s = sample_at(&st.logits, &p.sampling, st.allowed.as_ref(), p.seeds, &st.draw);
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

static FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

impl Session<'_> {
    /// Why this call cannot decode through CUDA graphs (`Ok` when it can).
    pub fn graphs_apply(&self, opts: &GenerateOptions) -> Result<(), String> {
        let device = self.model.device();
        if !matches!(device, Device::Cuda(_)) {
            return Err(format!("CUDA graphs need a CUDA device; the model is on {device:?}"));
        }
        if !cuda_graph::available() {
            return Err("this build has no CUDA-graph support".into());
        }
        if !self.steering.is_empty() {
            return Err("steered sessions decode op by op".into());
        }
        if !self.model.supports_step() {
            return Err("dynamic RoPE scaling decodes op by op".into());
        }
        if self.model.is_training() {
            return Err("a model in training mode (LoRA dropout) decodes op by op".into());
        }
        if opts.decode == Decode::Auto {
            if opts.max_new_tokens < AUTO_MIN_NEW_TOKENS {
                return Err(format!("fewer than {AUTO_MIN_NEW_TOKENS} new tokens"));
            }
            if std::env::var("WAX_CUDA_GRAPHS").is_ok_and(|v| v == "0") {
                return Err("disabled by WAX_CUDA_GRAPHS=0".into());
            }
        }
        Ok(())
    }

    /// The decode loop over the two pieces; captured as CUDA graphs when `capture`.
    pub(super) fn decode_static(
        &mut self,
        opts: &GenerateOptions,
        logits: Tensor,
        masks: &[Tensor],
        stops: &Tensor,
        capture: bool,
    ) -> Result<Decoded, GenerateError> {
        let device = self.model.device();
        let b = self.batch() as i64;
        let n = opts.max_new_tokens as i64;
        let one = |v: i64| Tensor::from_slice(&[v]).to_device(device);
        let st = State {
            logits: logits.to_kind(Kind::Float).contiguous(),
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
        let pieces = Pieces {
            sampling: opts.sampling,
            seeds: &self.seeds,
            stops: (!opts.stop_tokens.is_empty()).then_some(stops),
        };
        let ordinal = match device {
            Device::Cuda(i) => i,
            _ => 0,
        };
        let mut graphs = Graphs { sample: None, feeds: Vec::new(), pool: None, ordinal };
        if capture {
            let first = self.capture(&mut graphs, &st, &pieces, None);
            if let Err(e) = first {
                if opts.decode == Decode::Graph {
                    return Err(e);
                }
                if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("wax: CUDA graph capture failed, decoding op by op: {e}");
                }
                return self.decode_eager(opts, st.logits.shallow_clone(), masks, stops);
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
            match &graphs.sample {
                Some(g) => g.replay().map_err(graph_err)?,
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
            let slot = self.cache.len();
            let view = ((slot / WINDOW + 1) * WINDOW).min(self.cache.capacity());
            if capture {
                let i = match graphs.feeds.iter().position(|(v, _)| *v == view) {
                    Some(i) => i,
                    None => {
                        self.capture(&mut graphs, &st, &pieces, Some(view))?;
                        graphs.feeds.len() - 1
                    }
                };
                graphs.feeds[i].1.replay().map_err(graph_err)?;
            } else {
                self.feed_piece(&st, view)?;
            }
            self.cache.advance(1);
        }
        Ok(Decoded {
            tokens: st.tokens,
            logprobs: st.logprobs,
            valid: st.valid,
            active: st.active,
            steps,
            graphed: capture,
        })
    }

    /// Feeds every row's latest token at the slot `st.slot`; the new logits replace `st.logits`.
    fn feed_piece(&self, st: &State, view: i64) -> Result<(), GenerateError> {
        let _ = self.slots.shallow_clone().index_copy_(1, &st.slot, &st.unfed.unsqueeze(1));
        let ids = st.last.unsqueeze(1);
        let positions = st.pos.unsqueeze(1);
        let input =
            StepInput { ids: &ids, positions: &positions, real: &self.slots, slot: &st.slot, view };
        let logits = self.model.forward_step(&input, &self.cache)?;
        set(&st.logits, &logits);
        let _ = st.pos.shallow_clone().g_add_(&st.unfed.to_kind(Kind::Int64));
        let _ = st.slot.shallow_clone().g_add_scalar_(1);
        Ok(())
    }

    /// Captures the sample piece (`view` None) or the feed piece for `view`. One warm-up run
    /// precedes the capture; the state it changes is restored afterwards (it also writes keys and
    /// values at the next slot, which the real feed overwrites before anything reads them).
    fn capture(
        &self,
        graphs: &mut Graphs,
        st: &State,
        pieces: &Pieces,
        view: Option<i64>,
    ) -> Result<(), GenerateError> {
        let saved: Vec<Tensor> = st.buffers().iter().map(|t| t.copy()).collect();
        let saved_slots = self.slots.copy();
        let captured = CudaGraph::capture(graphs.ordinal, graphs.pool, 1, || match view {
            None => sample_piece(st, pieces),
            Some(v) => self.feed_piece(st, v),
        });
        for (dst, src) in st.buffers().into_iter().zip(&saved) {
            set(dst, src);
        }
        set(&self.slots, &saved_slots);
        let g = captured.map_err(graph_err)?;
        if graphs.pool.is_none() {
            graphs.pool = Some(g.pool().map_err(graph_err)?);
        }
        match view {
            None => graphs.sample = Some(g),
            Some(v) => graphs.feeds.push((v, g)),
        }
        Ok(())
    }
}

/// The graphs of one `generate` call (they share one memory pool).
struct Graphs {
    sample: Option<CudaGraph>,
    feeds: Vec<(i64, CudaGraph)>,
    pool: Option<PoolId>,
    ordinal: usize,
}

fn graph_err(e: cuda_graph::GraphError) -> GenerateError {
    GenerateError::Model(ModelError::Input(e.to_string()))
}
