//! Decoder-only language models (Llama, Qwen2, Qwen3, GPT-NeoX, OLMo-2, GPT-OSS) on libtorch,
//! loaded from Hugging Face snapshots (GPT-OSS's MXFP4 experts dequantized at load), with a
//! preallocated KV cache, activation capture and steering hooks, and `save_pretrained`.
//!
//! Numerics follow transformers 5.x: norms in float32 cast back to the model kind, RoPE
//! frequencies as `modeling_rope_utils.py` computes them, attention through
//! `scaled_dot_product_attention` with a boolean mask (causal over absolute cache slots and
//! padding; a pad query attends to its own slot so it never produces NaN). GPT-OSS's attention
//! sinks and sliding windows run as explicit scores and softmax (`sinks`, `window`), its
//! experts as `moe`.
//!
//! Note on transformers' `output_hidden_states`: entry `l + 1` is the output of decoder layer `l`
//! for every layer but the last; the last entry is the *final-normed* output (checked by
//! `scripts/fixtures/tiny_models.py` with transformers 5.24). `ResidPost` of the last layer is
//! the raw layer output; `FinalNorm` is that last entry.

mod attend;
mod attend_bench;
mod cache;
mod config;
mod decoder;
mod error;
mod gpt_oss;
mod hooks;
mod layers;
mod lora;
mod moe;
mod mxfp4;
mod prep;
mod resid;
mod rope;
mod save;
mod sinks;
mod steer;
mod step;
mod weights;
mod window;

pub use attend::StepAttention;
pub use attend_bench::{AttnBenchConfig, AttnBenchRow, attention_bench};
pub use cache::KvCache;
pub use config::{Activation, Family, ModelConfig, MoeConfig, NormKind, SUPPORTED_MODEL_TYPES};
pub use decoder::{ForwardInput, LogitsSelect, Model};
pub use error::ModelError;
pub use hooks::{CaptureRequest, HookPoint, Hooks, LayerSite, Positions, Steering, scaled_vector};
pub use layers::Packing;
pub use lora::LoraConfig;
pub use moe::Routing;
pub use mxfp4::dequantize as mxfp4_dequantize;
pub use prep::StepPrep;
pub use resid::StepNorm;
pub use rope::{RopeConfig, RopeScaling};
pub use steer::{SteerScope, TokenRole, steering_mask};
pub use step::{StepInput, StepLogits, StepSteer};
