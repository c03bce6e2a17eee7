//! `config.json` and `generation_config.json` of a Llama GGUF, from its `llama.*` and
//! `tokenizer.ggml.*` metadata.
//!
//! Float metadata is stored as f32; it is written as the shortest decimal that reads back as
//! the same f32 (`1e-05`, not `9.999999747378752e-06`), the value the converter started from,
//! and one that every reader rounds to the very f32 the file holds.

use serde_json::{Value as Json, json};

use super::error::GgufError;
use super::reader::GgufFile;

/// The architectures [`llama_config`] reads.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// The dimensions of a Llama decoder, as the tensors must have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaDims {
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub ffn: u64,
    pub vocab: u64,
}

/// Which optional tensors the file has (they decide config fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `output.weight` is absent: the unembedding is the embedding.
    pub tied: bool,
    /// q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
}

/// The special token ids the metadata names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u64>,
    pub eos: Option<u64>,
    pub unk: Option<u64>,
    pub pad: Option<u64>,
    /// End of turn (llama.cpp stops generation on it too).
    pub eot: Option<u64>,
}

impl SpecialIds {
    pub fn read(f: &GgufFile) -> Result<SpecialIds, GgufError> {
        let id = |name: &str| f.opt_u64(&format!("tokenizer.ggml.{name}_token_id"));
        Ok(SpecialIds {
            bos: id("bos")?,
            eos: id("eos")?,
            unk: id("unknown")?,
            pad: id("padding")?,
            eot: id("eot")?,
        })
    }
}

/// `general.architecture`, checked against [`SUPPORTED_ARCHITECTURES`].
pub fn architecture(f: &GgufFile) -> Result<&str, GgufError> {
    let arch = f.req_str("general.architecture")?;
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return Err(GgufError::UnsupportedArchitecture {
            path: f.path().to_path_buf(),
            found: arch.to_string(),
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        });
    }
    Ok(arch)
}

/// The shortest decimal that reads back as the same f32.
fn f32_decimal(x: f64) -> Json {
    let short: f64 = format!("{}", x as f32).parse().unwrap_or(x);
    json!(short)
}

/// Reads the Llama dimensions; `vocab_fallback` (the token list's length) is used when
/// `llama.vocab_size` is absent.
pub fn llama_dims(f: &GgufFile, vocab_fallback: Option<u64>) -> Result<LlamaDims, GgufError> {
    let k = |name: &str| format!("llama.{name}");
    let positive = |name: &str| -> Result<u64, GgufError> {
        let v = f.req_u64(&k(name))?;
        if v == 0 {
            return Err(f.metadata_error(&k(name), "must be positive"));
        }
        Ok(v)
    };
    if let Some(n) = f.opt_u64(&k("expert_count"))?
        && n > 0
    {
        return Err(GgufError::Unsupported {
            path: f.path().to_path_buf(),
            why: format!(
                "`llama.expert_count` is {n}: mixture-of-experts models are not supported"
            ),
        });
    }
    let layers = positive("block_count")?;
    let hidden = positive("embedding_length")?;
    let ffn = positive("feed_forward_length")?;
    let heads = positive("attention.head_count")?;
    let kv_heads = match f.opt_u64(&k("attention.head_count_kv"))? {
        Some(0) => return Err(f.metadata_error(&k("attention.head_count_kv"), "must be positive")),
        Some(n) => n,
        None => heads,
    };
    if heads % kv_heads != 0 {
        return Err(f.metadata_error(
            &k("attention.head_count_kv"),
            format!("{kv_heads} does not divide the {heads} attention heads"),
        ));
    }
    let head_dim = match f.opt_u64(&k("attention.key_length"))? {
        Some(d) => d,
        None if hidden % heads == 0 => hidden / heads,
        None => {
            return Err(f.metadata_error(
                &k("embedding_length"),
                format!("{hidden} is not divisible by {heads} heads"),
            ));
        }
    };
    if let Some(v) = f.opt_u64(&k("attention.value_length"))?
        && v != head_dim
    {
        return Err(f.metadata_error(
            &k("attention.value_length"),
            format!("{v} differs from the key length {head_dim}, which Llama does not support"),
        ));
    }
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(f.metadata_error(
            &k("attention.key_length"),
            format!("head dimension {head_dim} is not a positive even number"),
        ));
    }
    if let Some(r) = f.opt_u64(&k("rope.dimension_count"))?
        && r != head_dim
    {
        return Err(f.metadata_error(
            &k("rope.dimension_count"),
            format!("{r} rotary dimensions of {head_dim}: partial rotary embeddings are not supported for Llama"),
        ));
    }
    let vocab = match f.opt_u64(&k("vocab_size"))? {
        Some(v) => v,
        None => vocab_fallback
            .ok_or_else(|| f.metadata_error(&k("vocab_size"), "missing, and no token list"))?,
    };
    Ok(LlamaDims { layers, hidden, heads, kv_heads, head_dim, ffn, vocab })
}

/// `rope_scaling` of config.json (`null` when the file has none).
fn rope_scaling(f: &GgufFile) -> Result<Json, GgufError> {
    let type_key = "llama.rope.scaling.type";
    let factor_key = "llama.rope.scaling.factor";
    let linear = |factor: f64, key: &str| -> Result<Json, GgufError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(f.metadata_error(key, format!("{factor} is not a positive factor")));
        }
        Ok(if factor == 1.0 {
            Json::Null
        } else {
            json!({"rope_type": "linear", "factor": f32_decimal(factor)})
        })
    };
    match f.opt_str(type_key)? {
        None | Some("none") => match f.opt_f64("llama.rope.scale_linear")? {
            Some(factor) => linear(factor, "llama.rope.scale_linear"),
            None => Ok(Json::Null),
        },
        Some("linear") => {
            let factor = f
                .opt_f64(factor_key)?
                .ok_or_else(|| f.metadata_error(factor_key, "missing for linear scaling"))?;
            linear(factor, factor_key)
        }
        Some(other) => Err(GgufError::Unsupported {
            path: f.path().to_path_buf(),
            why: format!("`{type_key}` is `{other}` (supported: none, linear)"),
        }),
    }
}

/// config.json for `LlamaForCausalLM`.
pub fn llama_config(
    f: &GgufFile,
    d: &LlamaDims,
    layout: &Layout,
    ids: &SpecialIds,
) -> Result<Json, GgufError> {
    let eps_key = "llama.attention.layer_norm_rms_epsilon";
    let eps = f.opt_f64(eps_key)?.ok_or_else(|| f.metadata_error(eps_key, "missing"))?;
    let theta = f.opt_f64("llama.rope.freq_base")?.unwrap_or(10_000.0);
    let context = f.req_u64("llama.context_length")?;
    let mut c = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": d.vocab,
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads,
        "num_key_value_heads": d.kv_heads,
        "head_dim": d.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": context,
        "rms_norm_eps": f32_decimal(eps),
        "rope_theta": f32_decimal(theta),
        "rope_scaling": rope_scaling(f)?,
        "attention_bias": layout.attention_bias,
        "attention_dropout": 0.0,
        "mlp_bias": layout.mlp_bias,
        "tie_word_embeddings": layout.tied,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": true,
        "dtype": "float32",
    });
    let obj = c.as_object_mut().expect("a JSON object literal");
    for (field, id) in
        [("bos_token_id", ids.bos), ("eos_token_id", ids.eos), ("pad_token_id", ids.pad)]
    {
        if let Some(id) = id {
            obj.insert(field.into(), json!(id));
        }
    }
    if let Some(name) = f.opt_str("general.name")? {
        obj.insert("_name_or_path".into(), json!(name));
    }
    Ok(c)
}

/// generation_config.json: BOS, PAD, and every id that ends a turn (EOS, then end-of-turn).
pub fn generation_config(ids: &SpecialIds) -> Json {
    let mut c = serde_json::Map::new();
    if let Some(b) = ids.bos {
        c.insert("bos_token_id".into(), json!(b));
    }
    let mut eos: Vec<u64> = ids.eos.into_iter().collect();
    if let Some(t) = ids.eot
        && !eos.contains(&t)
    {
        eos.push(t);
    }
    match eos.as_slice() {
        [] => {}
        [one] => {
            c.insert("eos_token_id".into(), json!(one));
        }
        many => {
            c.insert("eos_token_id".into(), json!(many));
        }
    }
    if let Some(p) = ids.pad {
        c.insert("pad_token_id".into(), json!(p));
    }
    Json::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_metadata_is_written_as_its_shortest_decimal() {
        assert_eq!(f32_decimal(f64::from(1e-5f32)), json!(1e-5));
        assert_eq!(f32_decimal(f64::from(100_000f32)), json!(100_000.0));
        assert_eq!(f32_decimal(f64::from(1e-6f32)), json!(1e-6));
    }

    #[test]
    fn generation_config_lists_end_of_turn_after_eos() {
        let ids = SpecialIds { bos: Some(1), eos: Some(2), pad: Some(2), unk: None, eot: Some(7) };
        assert_eq!(
            generation_config(&ids),
            json!({"bos_token_id": 1, "eos_token_id": [2, 7], "pad_token_id": 2})
        );
        let ids = SpecialIds { eot: Some(2), ..ids };
        assert_eq!(generation_config(&ids)["eos_token_id"], json!(2));
    }
}
