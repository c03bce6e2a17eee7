//! The ladder of builtin model sizes: Qwen3-architecture decoders from about 1M to about 100M
//! parameters, all with tied embeddings and the builtin tokenizer's vocabulary.

use serde_json::{Value, json};

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderSize {
    /// The name used in `builtin:<name>`.
    pub name: &'static str,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub intermediate_size: i64,
}

/// The sizes, smallest first. Parameter counts with the builtin tokenizer's 4096-token
/// vocabulary (tied embeddings counted once): 1m = 1,115,520; 6m = 5,771,264;
/// 25m = 25,699,840; 100m = 99,897,600.
pub const LADDER: [LadderSize; 4] = [
    LadderSize {
        name: "1m",
        hidden_size: 128,
        num_layers: 4,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 32,
        intermediate_size: 256,
    },
    LadderSize {
        name: "6m",
        hidden_size: 256,
        num_layers: 6,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 64,
        intermediate_size: 768,
    },
    LadderSize {
        name: "25m",
        hidden_size: 512,
        num_layers: 8,
        num_heads: 8,
        num_kv_heads: 4,
        head_dim: 64,
        intermediate_size: 1408,
    },
    LadderSize {
        name: "100m",
        hidden_size: 768,
        num_layers: 12,
        num_heads: 12,
        num_kv_heads: 4,
        head_dim: 64,
        intermediate_size: 2816,
    },
];

/// Context length written to `max_position_embeddings`.
pub const MAX_POSITIONS: i64 = 2048;
/// RoPE base.
pub const ROPE_THETA: f64 = 10_000.0;

/// The ladder's names, comma separated (for error messages).
pub fn ladder_names() -> String {
    LADDER.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The rung called `name` (case-insensitive).
pub fn ladder_size(name: &str) -> Option<&'static LadderSize> {
    LADDER.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

impl LadderSize {
    /// Every parameter tensor under its Hugging Face name with its shape, in a fixed order
    /// (the order of the seeded initialisation), and whether it is a norm weight (init 1).
    pub fn tensors(&self, vocab_size: i64) -> Vec<(String, Vec<i64>, bool)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let (qd, kvd, hd) =
            (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.head_dim);
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![vocab_size, h], false)];
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            let a = format!("{p}.self_attn");
            out.push((format!("{p}.input_layernorm.weight"), vec![h], true));
            out.push((format!("{a}.q_proj.weight"), vec![qd, h], false));
            out.push((format!("{a}.k_proj.weight"), vec![kvd, h], false));
            out.push((format!("{a}.v_proj.weight"), vec![kvd, h], false));
            out.push((format!("{a}.q_norm.weight"), vec![hd], true));
            out.push((format!("{a}.k_norm.weight"), vec![hd], true));
            out.push((format!("{a}.o_proj.weight"), vec![h, qd], false));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h], true));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h], false));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h], false));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i], false));
        }
        out.push(("model.norm.weight".to_string(), vec![h], true));
        out
    }

    /// Number of parameters with a vocabulary of `vocab_size` (tied head counted once),
    /// computed from the shapes without allocating anything.
    pub fn parameter_count(&self, vocab_size: i64) -> i64 {
        self.tensors(vocab_size).iter().map(|(_, s, _)| s.iter().product::<i64>()).sum()
    }

    /// `config.json` of this size, as transformers 5.x writes a Qwen3 config.
    pub fn config_json(&self, vocab_size: i64, eos_id: Option<u32>, pad_id: Option<u32>) -> Value {
        let layer_types: Vec<&str> = (0..self.num_layers).map(|_| "full_attention").collect();
        json!({
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": null,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "dtype": "float32",
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_types": layer_types,
            "max_position_embeddings": MAX_POSITIONS,
            "max_window_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_kv_heads,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_theta": ROPE_THETA, "rope_type": "default"},
            "sliding_window": null,
            "tie_word_embeddings": true,
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": vocab_size,
        })
    }
}
