//! Concept vectors (docs/protocol.md §3–§5): extraction from synthetic trajectories, layer
//! selection, geometry, logit lens, emotion vectors.
//!
//! - [`subject`]: a model under measurement (weights, tokenizer, templates, provenance).
//! - [`capture`]: batched residual capture, averaged over one span per sequence.
//! - [`extract`]: synthetic trajectories → class sums (streaming) → one-vs-rest vectors, the
//!   Path-reference variant, held-out projections and layer selection ([`select`]) on an
//!   index split that is unbiased under the null ([`split`]).
//! - [`store`]: `.safetensors` with metadata, JSONL tables.
//! - [`geometry`], [`lens`], [`emotions`]: the analyses of §5.

pub mod capture;
pub mod emotions;
pub mod extract;
pub mod geometry;
pub mod lens;
pub mod run;
pub mod select;
pub mod split;
pub mod store;
pub mod subject;

pub use extract::{Concept, ExtractConfig, Extraction, extract};
pub use subject::{Provenance, Subject};

use std::path::Path;

/// Errors of extraction and the vector analyses; messages name the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{0}")]
    Input(String),
    #[error("model: {0}")]
    Model(String),
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error(transparent)]
    Synthetic(#[from] crate::maze::synthetic::SyntheticError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Stats(#[from] crate::stats::StatsError),
}

impl VectorError {
    pub fn io(path: &Path, why: impl Into<String>) -> VectorError {
        VectorError::Io { path: path.display().to_string(), why: why.into() }
    }
}
