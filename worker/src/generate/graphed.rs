//! CUDA graphs for the decode loop of [`super::decode`]: its two pieces of device work, "sample"
//! and "feed", recorded once and replayed every step.
//!
//! Op by op, a decode step of a 0.6B model issues ~1,300 libtorch calls and the host, not the GPU,
//! sets the pace. The loop keeps all per-step state in device tensors allocated before any
//! capture and updated in place (the logits, which rows are active, the last token, positions,
//! the noise counter, the output column and the cache slot), so a graph of the sample piece and
//! one of the feed piece ([`Model::forward_step`]) serve every step. A feed graph is keyed by its
//! attention window (slots `0..view`, `view` a multiple of [`WINDOW`]), so one capture serves
//! [`WINDOW`] consecutive steps. Without capture ([`Decode::Static`]) the same pieces run op by
//! op, on any device; the tests check that this path, the captured one and the eager loop give
//! the same tokens.
//!
//! [`Model::forward_step`]: crate::model::Model::forward_step

use super::decode::{Pieces, State, sample_piece, set, steered_rows};
use super::session::{Decode, GenerateError, GenerateOptions, Session};
use crate::cuda_graph::{self, CudaGraph, PoolId};
use crate::model::{ModelError, StepAttention, StepInput, StepNorm, StepPrep, StepSteer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Feed graphs attend over a multiple of this many cache slots.
pub const WINDOW: i64 = 128;

/// Below this many new tokens, `Decode::Auto` decodes op by op: capturing costs about two eager
/// steps per graph.
pub const AUTO_MIN_NEW_TOKENS: usize = 16;

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
        if !self.model.supports_step() {
            return Err("dynamic RoPE scaling decodes op by op".into());
        }
        if self.model.step_attention() == StepAttention::Reference
            || self.model.step_prep() == StepPrep::Reference
            || self.model.step_norm() == StepNorm::Reference
        {
            return Err("the host references of the decode kernels decode op by op".into());
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

    /// Captures the sample piece: the start of a graphed decode loop.
    pub(super) fn start_graphs(
        &self,
        st: &State,
        pieces: &Pieces,
    ) -> Result<Graphs, GenerateError> {
        let ordinal = match self.model.device() {
            Device::Cuda(i) => i,
            _ => 0,
        };
        let t0 = Instant::now();
        let sample = self.capture(ordinal, None, st, pieces, None)?;
        let pool = sample.pool().map_err(graph_err)?;
        Ok(Graphs {
            sample,
            feeds: Vec::new(),
            pool,
            ordinal,
            capture_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// Runs the feed graph of window `view`, capturing it on first use.
    pub(super) fn replay_feed(
        &self,
        graphs: &mut Graphs,
        st: &State,
        pieces: &Pieces,
        view: i64,
    ) -> Result<(), GenerateError> {
        let i = match graphs.feeds.iter().position(|(v, _)| *v == view) {
            Some(i) => i,
            None => {
                let t0 = Instant::now();
                let g = self.capture(graphs.ordinal, Some(graphs.pool), st, pieces, Some(view))?;
                graphs.capture_s += t0.elapsed().as_secs_f64();
                graphs.feeds.push((view, g));
                graphs.feeds.len() - 1
            }
        };
        graphs.feeds[i].1.replay().map_err(graph_err)
    }

    /// Feeds every row's latest token at the slot `st.slot`, steered as the session says; the
    /// new logits replace `st.logits`.
    pub(super) fn feed_piece(
        &self,
        st: &State,
        pieces: &Pieces,
        view: i64,
    ) -> Result<(), GenerateError> {
        let _ = self.slots.shallow_clone().index_copy_(1, &st.slot, &st.unfed.unsqueeze(1));
        let ids = st.last.unsqueeze(1);
        let positions = st.pos.unsqueeze(1);
        let steering: Vec<StepSteer> = pieces
            .steer
            .iter()
            .map(|(point, scope, vector)| StepSteer {
                point: *point,
                vector,
                rows: steered_rows(*scope, &st.unfed, &st.pos),
            })
            .collect();
        let input = StepInput {
            ids: &ids,
            positions: &positions,
            real: &self.slots,
            slot: &st.slot,
            view,
            steering: &steering,
        };
        self.model.forward_step_into(&input, &self.cache, &st.logits)?;
        let _ = st.pos.shallow_clone().g_add_(&st.unfed.to_kind(Kind::Int64));
        let _ = st.slot.shallow_clone().g_add_scalar_(1);
        Ok(())
    }

    /// Captures the sample piece (`view` None) or the feed piece for `view`. One warm-up run
    /// precedes the capture; the state it changes is restored afterwards (it also writes keys and
    /// values at the next slot, which the real feed overwrites before anything reads them).
    fn capture(
        &self,
        ordinal: usize,
        pool: Option<PoolId>,
        st: &State,
        pieces: &Pieces,
        view: Option<i64>,
    ) -> Result<CudaGraph, GenerateError> {
        let saved: Vec<Tensor> = st.buffers().iter().map(|t| t.copy()).collect();
        let saved_slots = self.slots.copy();
        let captured = CudaGraph::capture(ordinal, pool, 1, || match view {
            None => sample_piece(st, pieces),
            Some(v) => self.feed_piece(st, pieces, v),
        });
        for (dst, src) in st.buffers().into_iter().zip(&saved) {
            set(dst, src);
        }
        set(&self.slots, &saved_slots);
        captured.map_err(graph_err)
    }
}

/// The graphs of one `generate` call (they share the sample graph's memory pool).
pub(super) struct Graphs {
    sample: CudaGraph,
    feeds: Vec<(i64, CudaGraph)>,
    pool: PoolId,
    ordinal: usize,
    /// Host wall time spent capturing (warm-up runs included), seconds.
    pub(super) capture_s: f64,
}

impl Graphs {
    /// Runs the sample graph.
    pub(super) fn replay_sample(&self) -> Result<(), GenerateError> {
        self.sample.replay().map_err(graph_err)
    }
}

/// Says once per process that a capture failed and the loop decodes op by op.
pub(super) fn warn_fallback(e: &GenerateError) {
    if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("wax: CUDA graph capture failed, decoding op by op: {e}");
    }
}

fn graph_err(e: cuda_graph::GraphError) -> GenerateError {
    GenerateError::Model(ModelError::Input(e.to_string()))
}
