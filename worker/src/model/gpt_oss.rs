//! The parts of a GPT-OSS `config.json` other families lack: the experts and their clamped
//! SwiGLU, the layer types of alternating sliding-window and full attention, and the YaRN
//! parameters transformers assumes when a snapshot names none.

use serde_json::{Map, Value, json};

use super::config::{MoeConfig, Reader, unsupported};
use super::error::ModelError;

/// transformers' `GptOssConfig.default_theta`.
pub(super) const DEFAULT_ROPE_THETA: f64 = 150_000.0;

/// `(sliding_window, per-layer sliding)` from `layer_types` (transformers' default when absent:
/// even layers slide, odd ones attend fully) and `sliding_window` (default 128).
pub(super) fn sliding_layers(
    r: &Reader<'_>,
    num_layers: i64,
) -> Result<(Option<i64>, Vec<bool>), ModelError> {
    let sliding: Vec<bool> = match r.get("layer_types") {
        None => (0..num_layers).map(|i| (i + 1) % 2 == 1).collect(),
        Some(types) => {
            let types =
                types.as_array().ok_or_else(|| r.err("layer_types", "expected an array"))?;
            if types.len() as i64 != num_layers {
                return Err(r.err(
                    "layer_types",
                    format!("{} entries for {num_layers} layers", types.len()),
                ));
            }
            let mut out = Vec::with_capacity(types.len());
            for (i, t) in types.iter().enumerate() {
                out.push(match t.as_str() {
                    Some("sliding_attention") => true,
                    Some("full_attention") => false,
                    other => {
                        return Err(unsupported(
                            r.path,
                            "layer_types",
                            format!(
                                "layer {i} is {other:?}; expected sliding_attention or \
                                 full_attention"
                            ),
                        ));
                    }
                });
            }
            out
        }
    };
    if !sliding.iter().any(|&s| s) {
        return Ok((None, sliding));
    }
    // transformers' config default; `null` with sliding layers is an error there too.
    let window = match r.obj.get("sliding_window") {
        None => 128,
        Some(Value::Null) => {
            return Err(r.err("sliding_window", "null, but some layers are sliding_attention"));
        }
        Some(_) => r.int("sliding_window")?,
    };
    Ok((Some(window), sliding))
}

/// The experts: `num_local_experts` (alias `num_experts`), `num_experts_per_tok`,
/// `swiglu_limit` (default 7) and `swiglu_alpha` (default 1.702).
pub(super) fn moe_config(r: &Reader<'_>) -> Result<MoeConfig, ModelError> {
    let num_experts = match r.opt_int("num_local_experts")? {
        Some(n) => n,
        None => r.int("num_experts")?,
    };
    let experts_per_token = r.opt_int("num_experts_per_tok")?.unwrap_or(4);
    if experts_per_token > num_experts {
        return Err(r.err(
            "num_experts_per_tok",
            format!("{experts_per_token} exceeds the {num_experts} experts"),
        ));
    }
    let swiglu_limit = r.opt_f64("swiglu_limit")?.unwrap_or(7.0);
    let swiglu_alpha = r.opt_f64("swiglu_alpha")?.unwrap_or(1.702);
    if let Some(q) = r.get("quantization_config") {
        let method = q.get("quant_method").and_then(Value::as_str);
        if method != Some("mxfp4") {
            return Err(unsupported(
                r.path,
                "quantization_config",
                format!("quant_method {method:?} (only mxfp4 experts are dequantized at load)"),
            ));
        }
    }
    Ok(MoeConfig { num_experts, experts_per_token, swiglu_limit, swiglu_alpha })
}

/// The RoPE parameters `GptOssConfig` fills in when a snapshot has none.
pub(super) fn default_rope_parameters() -> Map<String, Value> {
    let v = json!({
        "rope_type": "yarn",
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "truncate": false,
        "original_max_position_embeddings": 4096,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::config::{Family, ModelConfig};
    use super::super::rope::RopeScaling;
    use super::*;

    fn config(extra: Value) -> Result<ModelConfig, ModelError> {
        let mut v = json!({
            "model_type": "gpt_oss", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 16,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "num_local_experts": 4, "num_experts_per_tok": 2
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        ModelConfig::from_value(v, Path::new("config.json"))
    }

    #[test]
    fn transformers_defaults_fill_what_a_config_omits() {
        let c = config(json!({})).unwrap();
        assert_eq!(c.family, Family::GptOss);
        assert_eq!(c.sliding_window, Some(128));
        assert_eq!(c.sliding_layers, [true, false, true, false]);
        assert!(c.is_sliding(0) && !c.is_sliding(1) && c.attention_sinks && !c.plain_attention());
        assert_eq!(c.rope.theta, DEFAULT_ROPE_THETA);
        assert!(matches!(
            c.rope.scaling,
            RopeScaling::Yarn { factor, truncate: false, original_max_position_embeddings, .. }
                if factor == 32.0 && original_max_position_embeddings == 4096.0
        ));
        let moe = c.moe.unwrap();
        assert_eq!((moe.num_experts, moe.experts_per_token), (4, 2));
        assert_eq!((moe.swiglu_limit, moe.swiglu_alpha), (7.0, 1.702));
        assert!(c.qkv_bias && c.o_bias && c.norm_eps == 1e-5);
    }

    /// openai/gpt-oss-20b's config.json (transformers 4.55 spellings: top-level `rope_theta`,
    /// `rope_scaling`; MXFP4 experts).
    #[test]
    fn the_gpt_oss_20b_config_reads() {
        let types: Vec<&str> = (0..24)
            .map(|i| if i % 2 == 0 { "sliding_attention" } else { "full_attention" })
            .collect();
        let raw = json!({
            "architectures": ["GptOssForCausalLM"], "attention_bias": true,
            "attention_dropout": 0.0, "eos_token_id": 200002, "experts_per_token": 4,
            "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
            "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
            "layer_types": types, "max_position_embeddings": 131072, "model_type": "gpt_oss",
            "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
            "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": false,
            "pad_token_id": 199999,
            "quantization_config": {
                "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                           "model.embed_tokens", "lm_head"],
                "quant_method": "mxfp4"
            },
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                             "original_max_position_embeddings": 4096, "rope_type": "yarn",
                             "truncate": false},
            "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128,
            "swiglu_limit": 7.0, "tie_word_embeddings": false,
            "transformers_version": "4.55.0.dev0", "use_cache": true, "vocab_size": 201088
        });
        let c = ModelConfig::from_value(raw, Path::new("config.json")).unwrap();
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim), (64, 8, 64, 64));
        assert_eq!(c.sliding_window, Some(128));
        assert_eq!(c.sliding_layers.iter().filter(|&&s| s).count(), 12);
        assert!(c.is_sliding(0) && !c.is_sliding(23));
        assert_eq!(c.rope.theta, 150_000.0);
        assert!(matches!(c.rope.scaling, RopeScaling::Yarn { factor, truncate: false, .. }
            if factor == 32.0));
        let moe = c.moe.unwrap();
        assert_eq!((moe.num_experts, moe.experts_per_token, moe.swiglu_limit), (32, 4, 7.0));
    }

    #[test]
    fn layer_types_and_quantization_are_checked() {
        let all_full = config(json!({"layer_types": vec!["full_attention"; 4]})).unwrap();
        assert!(!all_full.has_sliding_layers() && all_full.sliding_window.is_none());
        let msg = config(json!({"layer_types": ["full_attention"]})).unwrap_err().to_string();
        assert!(msg.contains("1 entries for 4 layers"), "{msg}");
        let msg = config(json!({"layer_types": vec!["chunked_attention"; 4]})).unwrap_err();
        assert!(msg.to_string().contains("chunked_attention"), "{msg}");
        let msg = config(json!({"sliding_window": null})).unwrap_err().to_string();
        assert!(msg.contains("sliding_window"), "{msg}");
        let mxfp4 = json!({"quantization_config": {"quant_method": "mxfp4"}});
        assert!(config(mxfp4).is_ok());
        let msg = config(json!({"quantization_config": {"quant_method": "gptq"}})).unwrap_err();
        assert!(msg.to_string().contains("gptq"), "{msg}");
        let msg = config(json!({"num_experts_per_tok": 5})).unwrap_err().to_string();
        assert!(msg.contains("exceeds"), "{msg}");
    }
}
