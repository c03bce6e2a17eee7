//! GGUF import: a llama.cpp model file turned into a Hugging Face snapshot directory that
//! [`crate::model::Model::load`], [`crate::tokenizer::Tokenizer::load`] and transformers read
//! (`wax model import <file.gguf> --out DIR`).
//!
//! - [`reader`]: the GGUF container (versions 2 and 3): header, metadata of every value type,
//!   tensor table, alignment, tensor bytes through a memory map; every length checked against
//!   the file.
//! - [`value`]: metadata values.
//! - [`types`]: ggml tensor types (ids, names, block sizes).
//! - [`dequant`]: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K → f32, bit for bit as ggml and
//!   gguf-py compute them.
//! - [`names`]: llama.cpp tensor names → Hugging Face names and shapes for Llama, and the undoing
//!   of llama.cpp's rotary row order of q/k.
//! - [`config`]: `config.json` and `generation_config.json` from the `llama.*` metadata.
//! - [`tokenizer`]: `tokenizer.json` and `tokenizer_config.json` for byte-level BPE
//!   vocabularies, as transformers builds them from the same metadata.
//! - [`snapshot`]: [`import`], which checks everything, writes the snapshot (weights in
//!   float32) in a hidden sibling directory and renames it into place.
//!
//! Supported: the `llama` architecture (dense, RoPE without per-frequency factors) with a
//! `gpt2` (byte-level BPE) tokenizer. Anything else is refused with an error naming what the
//! file has and what is supported.

pub mod config;
pub mod dequant;
mod error;
pub mod names;
pub mod reader;
mod safetensors_out;
pub mod snapshot;
pub mod tokenizer;
pub mod types;
pub mod value;

#[cfg(test)]
mod import_tests;
#[cfg(test)]
pub(crate) mod testing;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use snapshot::{ImportSummary, MARKER, Progress, import};
pub use types::GgmlType;
pub use value::Value;
