//! What a snapshot holds, read from `config.json`, the safetensors headers and the tokenizer,
//! without loading any weights.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::BuiltinError;
use crate::model::ModelConfig;
use crate::tokenizer::{ChatArgs, Message, PlainTemplate, Tokenizer};

/// A summary of a model snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub dir: String,
    /// `model_type` (e.g. `qwen3`).
    pub family: String,
    /// Scalar parameters (a tied head counted once).
    pub parameters: i64,
    pub layers: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
    pub vocab_size: i64,
    pub tied_embeddings: bool,
    pub dtype: String,
    pub max_positions: i64,
    /// Tokens of the tokenizer (`None` without `tokenizer.json`).
    pub tokenizer_vocab: Option<usize>,
    /// `default` when the snapshot has a chat template, else `plain` (the base-model dialogue).
    pub chat_template: Option<String>,
    /// A two-turn maze-like conversation rendered with that template, generation prompt open.
    pub chat_preview: Option<String>,
    pub chat_preview_tokens: Option<usize>,
}

/// The conversation rendered in [`ModelSummary::chat_preview`].
pub fn preview_conversation() -> Vec<Message> {
    vec![
        Message::user(
            "You are in a maze. Currently, you're at location (3, 4). To the north there is a wall; \
             to the east there is an open tile. Where do you move? Output only N/E/S/W.",
        ),
        Message::assistant("E"),
        Message::user(
            "You moved east to (4, 4). To the north there is an open tile; to the south there is \
             a wall. Where do you move? Output only N/E/S/W.",
        ),
    ]
}

fn read_json(path: &Path) -> Result<Value, BuiltinError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuiltinError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| BuiltinError::io(path, format!("invalid JSON: {e}")))
}

/// `(parameters, dtypes)` from the safetensors headers of `dir`.
fn count_parameters(dir: &Path, tied: bool) -> Result<(i64, BTreeSet<String>), BuiltinError> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<String> = if index.is_file() {
        let v = read_json(&index)?;
        let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
            BuiltinError::io(&index, "field `weight_map`: missing or not an object")
        })?;
        let set: BTreeSet<String> =
            map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
        set.into_iter().collect()
    } else {
        vec!["model.safetensors".to_string()]
    };
    let (mut total, mut dtypes) = (0i64, BTreeSet::new());
    for file in files {
        let path = dir.join(&file);
        let header = read_header(&path)?;
        let obj =
            header.as_object().ok_or_else(|| BuiltinError::io(&path, "header is not an object"))?;
        for (name, entry) in obj {
            if name == "__metadata__"
                || (tied && name == "lm_head.weight")
                || name.ends_with("rotary_emb.inv_freq")
                || name.ends_with(".attention.bias")
                || name.ends_with(".attention.masked_bias")
            {
                continue;
            }
            let shape = entry
                .get("shape")
                .and_then(Value::as_array)
                .ok_or_else(|| BuiltinError::io(&path, format!("tensor `{name}`: no shape")))?;
            let dtype = entry.get("dtype").and_then(Value::as_str);
            total += stored_parameters(name, dtype, shape);
            if let Some(d) = dtype {
                dtypes.insert(d.to_string());
            }
        }
    }
    Ok((total, dtypes))
}

/// Scalar parameters a stored tensor holds: its elements, except for MXFP4 experts (GPT-OSS),
/// whose `*_blocks` bytes pack two FP4 values each and whose `*_scales` bytes are one shared
/// exponent per 32 of them (quantization data, not parameters).
fn stored_parameters(name: &str, dtype: Option<&str>, shape: &[Value]) -> i64 {
    let elements = shape.iter().map(|d| d.as_i64().unwrap_or(0)).product::<i64>();
    match dtype {
        Some("U8") if name.ends_with("_blocks") => 2 * elements,
        Some("U8") if name.ends_with("_scales") => 0,
        _ => elements,
    }
}

fn read_header(path: &Path) -> Result<Value, BuiltinError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| BuiltinError::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| BuiltinError::io(path, format!("not a safetensors file: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(BuiltinError::io(
            path,
            format!("not a safetensors file (header of {len} bytes)"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(|e| BuiltinError::io(path, format!("truncated header: {e}")))?;
    serde_json::from_slice(&buf).map_err(|e| BuiltinError::io(path, format!("invalid header: {e}")))
}

/// Summarises the snapshot in `dir`.
pub fn inspect_snapshot(dir: &Path) -> Result<ModelSummary, BuiltinError> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let (parameters, dtypes) = count_parameters(dir, config.tie_word_embeddings)?;
    let dtype = config
        .raw
        .get("dtype")
        .or_else(|| config.raw.get("torch_dtype"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| dtypes.into_iter().collect::<Vec<_>>().join("+"));
    let (mut tokenizer_vocab, mut chat_template, mut chat_preview, mut chat_preview_tokens) =
        (None, None, None, None);
    if dir.join("tokenizer.json").is_file() {
        let tok = Tokenizer::load(dir)?;
        tokenizer_vocab = Some(tok.vocab_size());
        let args = ChatArgs::new(true);
        let rendered = match tok.chat_template() {
            Some(t) => {
                chat_template = Some(t.name().to_string());
                t.render(&preview_conversation(), &args)?
            }
            None => {
                chat_template = Some("plain".to_string());
                PlainTemplate::default()
                    .compile(tok.special_tokens())?
                    .render(&preview_conversation(), &args)?
            }
        };
        chat_preview_tokens = Some(tok.encode(&rendered, false)?.len());
        chat_preview = Some(rendered);
    }
    Ok(ModelSummary {
        dir: dir.display().to_string(),
        family: config.model_type.clone(),
        parameters,
        layers: config.num_layers,
        hidden_size: config.hidden_size,
        intermediate_size: config.intermediate_size,
        heads: config.num_heads,
        kv_heads: config.num_kv_heads,
        head_dim: config.head_dim,
        vocab_size: config.vocab_size,
        tied_embeddings: config.tie_word_embeddings,
        dtype,
        max_positions: config.max_position_embeddings,
        tokenizer_vocab,
        chat_template,
        chat_preview,
        chat_preview_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mxfp4_blocks_count_two_values_per_byte_and_scales_none() {
        // GPT-OSS-20B's first gate_up: 32 experts, 5760 rows, 90 groups of 16 bytes.
        let blocks = json!([32, 5760, 90, 16]);
        let scales = json!([32, 5760, 90]);
        let n = |name, dtype, shape: &Value| {
            stored_parameters(name, Some(dtype), shape.as_array().unwrap())
        };
        let dense = 32 * 5760 * 2880;
        assert_eq!(n("model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", &blocks), dense);
        assert_eq!(n("model.layers.0.mlp.experts.gate_up_proj_scales", "U8", &scales), 0);
        // A dequantized snapshot stores the same matrix as [E, H, 2I].
        let plain = json!([32, 2880, 5760]);
        assert_eq!(n("model.layers.0.mlp.experts.gate_up_proj", "BF16", &plain), dense);
        assert_eq!(n("model.embed_tokens.weight", "BF16", &json!([201088, 2880])), 201088 * 2880);
    }
}
