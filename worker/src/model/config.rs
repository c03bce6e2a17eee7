//! `ModelConfig`: the subset of a Hugging Face `config.json` that determines the forward pass.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::ModelError;
use super::rope::{RopeConfig, RopeScaling};

/// The decoder families this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    GptNeoX,
    /// OLMo-2: block outputs normalised before they are added (no pre-norms), and RMSNorm on
    /// the whole query and key projections.
    Olmo2,
    /// GPT-OSS: mixture-of-experts MLPs, attention sinks, alternating sliding-window and full
    /// attention.
    GptOss,
}

/// The `model_type` strings accepted in `config.json`.
pub const SUPPORTED_MODEL_TYPES: &[&str] =
    &["llama", "qwen2", "qwen3", "gpt_neox", "olmo2", "gpt_oss"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm with a weight (Llama, Qwen): the normalised value is rounded to the model's kind
    /// before the weight multiplies it.
    Rms,
    /// RMSNorm whose weight multiplies the float32 normalised value, rounded once (GPT-OSS, whose
    /// norm weights transformers keeps in float32).
    RmsF32Weight,
    /// LayerNorm with weight and bias (GPT-NeoX).
    Layer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU-gated MLP (`gate_proj`, `up_proj`, `down_proj`).
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
}

/// The mixture-of-experts MLP of GPT-OSS: a router picks `experts_per_token` of `num_experts`
/// experts per token, each a clamped SwiGLU of width `intermediate_size`.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: i64,
    pub experts_per_token: i64,
    /// The gate is clamped above, the up projection to `±swiglu_limit`.
    pub swiglu_limit: f64,
    /// The sigmoid's gain in `gate · σ(alpha · gate)`.
    pub swiglu_alpha: f64,
}

/// The architecture of a decoder, as read from `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub family: Family,
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    /// Number of leading dimensions of each head that RoPE rotates (`head_dim` unless partial).
    pub rotary_dim: i64,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub activation: Activation,
    /// Biases on the q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMSNorm on queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
    /// RMSNorm over the whole query and key projections (all heads at once) before RoPE
    /// (OLMo-2).
    pub qk_norm_full: bool,
    /// Each block's attention and MLP outputs are normalised before they are added, and their
    /// inputs are not (OLMo-2): `mid = x + ln1(attn(x))`, `out = mid + ln2(mlp(mid))`.
    pub post_norm: bool,
    /// GPT-NeoX parallel residual: `x + attn(ln1(x)) + mlp(ln2(x))`.
    pub parallel_residual: bool,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: i64,
    pub rope: RopeConfig,
    /// Mixture-of-experts MLPs (GPT-OSS) instead of dense ones.
    pub moe: Option<MoeConfig>,
    /// A learned logit per head joins each attention softmax and is dropped after it (GPT-OSS).
    pub attention_sinks: bool,
    /// The window of sliding-window layers: a query at token position `p` reads the keys at
    /// positions `p - window < k <= p`.
    pub sliding_window: Option<i64>,
    /// Which layers attend through the window (empty or all false: none).
    pub sliding_layers: Vec<bool>,
    /// The whole `config.json`, written back unchanged (except `dtype`) by `save_pretrained`.
    pub raw: Value,
}

pub(super) struct Reader<'a> {
    pub(super) path: &'a Path,
    pub(super) obj: &'a Map<String, Value>,
}

impl Reader<'_> {
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
    pub(super) fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }
    pub(super) fn int(&self, field: &str) -> Result<i64, ModelError> {
        self.opt_int(field)?.ok_or_else(|| self.err(field, "missing"))
    }
    pub(super) fn opt_int(&self, field: &str) -> Result<Option<i64>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(i) if i > 0 => Ok(Some(i)),
                _ => Err(self.err(field, format!("expected a positive integer, found {v}"))),
            },
        }
    }
    pub(super) fn opt_f64(&self, field: &str) -> Result<Option<f64>, ModelError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a number, found {v}"))),
        }
    }
    pub(super) fn bool_or(&self, field: &str, default: bool) -> Result<bool, ModelError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => {
                v.as_bool().ok_or_else(|| self.err(field, format!("expected a boolean, found {v}")))
            }
        }
    }
    pub(super) fn str_or<'b>(
        &'b self,
        field: &str,
        default: &'b str,
    ) -> Result<&'b str, ModelError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => {
                v.as_str().ok_or_else(|| self.err(field, format!("expected a string, found {v}")))
            }
        }
    }
}

impl ModelConfig {
    /// Whether layer `l` attends through the sliding window.
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(l).copied().unwrap_or(false)
    }

    /// Whether any layer attends through the sliding window.
    pub fn has_sliding_layers(&self) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.iter().any(|&s| s)
    }

    /// Whether attention needs more than a causal mask over real slots (sinks or a window):
    /// then it runs as explicit scores and softmax, never the fused kernels.
    pub fn plain_attention(&self) -> bool {
        !self.attention_sinks && !self.has_sliding_layers()
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<ModelConfig, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|source| ModelError::Json { path: path.to_path_buf(), source })?;
        Self::from_value(raw, path)
    }

    /// Validates an already parsed `config.json`; `path` is only used in error messages.
    pub fn from_value(raw: Value, path: &Path) -> Result<ModelConfig, ModelError> {
        let obj = raw.as_object().ok_or_else(|| ModelError::Config {
            path: path.to_path_buf(),
            field: "<root>".into(),
            message: "expected a JSON object".into(),
        })?;
        let r = Reader { path, obj };
        let model_type = model_type(&r)?;
        let family = match model_type.as_str() {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gpt_neox" => Family::GptNeoX,
            "olmo2" => Family::Olmo2,
            "gpt_oss" => Family::GptOss,
            other => {
                return Err(ModelError::UnsupportedModelType {
                    path: path.to_path_buf(),
                    found: other.to_string(),
                    supported: SUPPORTED_MODEL_TYPES.join(", "),
                });
            }
        };
        let hidden_size = r.int("hidden_size")?;
        let num_heads = r.int("num_attention_heads")?;
        let num_layers = r.int("num_hidden_layers")?;
        let vocab_size = r.int("vocab_size")?;
        let intermediate_size = r.int("intermediate_size")?;
        let max_position_embeddings = r.opt_int("max_position_embeddings")?.unwrap_or(2048);
        let num_kv_heads = match family {
            Family::GptNeoX => num_heads,
            _ => r.opt_int("num_key_value_heads")?.unwrap_or(num_heads),
        };
        if num_heads % num_kv_heads != 0 {
            return Err(r.err(
                "num_key_value_heads",
                format!("{num_kv_heads} does not divide num_attention_heads = {num_heads}"),
            ));
        }
        let head_dim = match family {
            Family::GptNeoX => None,
            _ => r.opt_int("head_dim")?,
        };
        let head_dim = match head_dim {
            Some(d) => d,
            None => {
                if hidden_size % num_heads != 0 {
                    return Err(r.err(
                        "hidden_size",
                        format!("{hidden_size} is not divisible by {num_heads} heads"),
                    ));
                }
                hidden_size / num_heads
            }
        };
        let activation = match r
            .str_or("hidden_act", if family == Family::GptNeoX { "gelu" } else { "silu" })?
        {
            // The experts' clamped SwiGLU ignores `hidden_act` (transformers too).
            _ if family == Family::GptOss => Activation::Silu,
            "silu" | "swish" if family != Family::GptNeoX => Activation::Silu,
            "gelu" if family == Family::GptNeoX => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" if family == Family::GptNeoX => {
                Activation::GeluTanh
            }
            other => {
                return Err(unsupported(
                    path,
                    "hidden_act",
                    format!("activation `{other}` for {model_type}"),
                ));
            }
        };
        let (sliding_window, sliding_layers) = if family == Family::GptOss {
            super::gpt_oss::sliding_layers(&r, num_layers)?
        } else {
            check_no_sliding_window(&r, num_layers)?;
            (None, Vec::new())
        };
        for field in ["pretraining_tp"] {
            if let Some(v) = r.opt_int(field)?
                && v != 1
            {
                return Err(unsupported(path, field, format!("{v} (only 1 is supported)")));
            }
        }
        let rope = RopeConfig::from_config(obj, path, family, max_position_embeddings)?;
        let rotary_dim = rope.rotary_dim(head_dim);
        if rotary_dim % 2 != 0 || rotary_dim == 0 {
            return Err(r.err(
                "partial_rotary_factor",
                format!("gives an invalid rotary dimension {rotary_dim}"),
            ));
        }
        if let RopeScaling::Unsupported(kind) = &rope.scaling {
            return Err(unsupported(
                path,
                "rope_type",
                format!("`{kind}` (supported: default, linear, dynamic, llama3, yarn)"),
            ));
        }
        let (norm, norm_eps) = match family {
            Family::GptNeoX => (NormKind::Layer, r.opt_f64("layer_norm_eps")?.unwrap_or(1e-5)),
            Family::GptOss => (NormKind::RmsF32Weight, r.opt_f64("rms_norm_eps")?.unwrap_or(1e-5)),
            _ => (NormKind::Rms, r.opt_f64("rms_norm_eps")?.unwrap_or(1e-6)),
        };
        let (qkv_bias, o_bias, mlp_bias) = match family {
            Family::Llama => {
                let a = r.bool_or("attention_bias", false)?;
                (a, a, r.bool_or("mlp_bias", false)?)
            }
            Family::Qwen2 => (true, false, false),
            Family::Qwen3 | Family::Olmo2 => {
                let a = r.bool_or("attention_bias", false)?;
                (a, a, false)
            }
            Family::GptNeoX => {
                let a = r.bool_or("attention_bias", true)?;
                (a, a, true)
            }
            // The experts' biases are always there (part of `MoeConfig`'s layout).
            Family::GptOss => {
                let a = r.bool_or("attention_bias", true)?;
                (a, a, false)
            }
        };
        let moe = match family {
            Family::GptOss => Some(super::gpt_oss::moe_config(&r)?),
            _ => None,
        };
        let tie_word_embeddings = r.bool_or("tie_word_embeddings", false)?;
        Ok(ModelConfig {
            family,
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            norm,
            norm_eps,
            activation,
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm: family == Family::Qwen3,
            qk_norm_full: family == Family::Olmo2,
            post_norm: family == Family::Olmo2,
            parallel_residual: family == Family::GptNeoX
                && r.bool_or("use_parallel_residual", true)?,
            tie_word_embeddings,
            max_position_embeddings,
            rope,
            moe,
            attention_sinks: family == Family::GptOss,
            sliding_window,
            sliding_layers,
            raw,
        })
    }
}

pub(super) fn unsupported(path: &Path, field: &str, message: String) -> ModelError {
    ModelError::Unsupported { path: PathBuf::from(path), field: field.into(), message }
}

fn model_type(r: &Reader<'_>) -> Result<String, ModelError> {
    if let Some(t) = r.get("model_type") {
        return t
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| r.err("model_type", "expected a string"));
    }
    let arch = r
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .ok_or_else(|| r.err("model_type", "missing (and no `architectures` to infer it from)"))?;
    Ok(match arch {
        "LlamaForCausalLM" => "llama",
        "Qwen2ForCausalLM" => "qwen2",
        "Qwen3ForCausalLM" => "qwen3",
        "GPTNeoXForCausalLM" => "gpt_neox",
        "Olmo2ForCausalLM" => "olmo2",
        "GptOssForCausalLM" => "gpt_oss",
        other => other,
    }
    .to_string())
}

/// Sliding-window attention changes results for long sequences; refuse it when it is enabled.
fn check_no_sliding_window(r: &Reader<'_>, num_layers: i64) -> Result<(), ModelError> {
    if let Some(types) = r.get("layer_types") {
        let types = types.as_array().ok_or_else(|| r.err("layer_types", "expected an array"))?;
        for (i, t) in types.iter().enumerate() {
            match t.as_str() {
                Some("full_attention") => {}
                other => {
                    return Err(unsupported(
                        r.path,
                        "layer_types",
                        format!("layer {i} is {other:?}; only full_attention is supported"),
                    ));
                }
            }
        }
        return Ok(());
    }
    if r.bool_or("use_sliding_window", false)? && r.get("sliding_window").is_some() {
        let from = r.opt_int("max_window_layers")?.unwrap_or(0);
        if from < num_layers {
            return Err(unsupported(
                r.path,
                "use_sliding_window",
                format!("sliding-window attention is enabled for layers {from}..{num_layers}"),
            ));
        }
    }
    Ok(())
}
