//! llama.cpp tensor names → Hugging Face names for the Llama architecture, the shape each
//! tensor must have, and the undoing of llama.cpp's rotary row order.
//!
//! llama.cpp's converter reorders the rows of every head of `q_proj` and `k_proj` from
//! Hugging Face's "rotate half" layout (the first half of a head's dimensions, then the second)
//! to interleaved pairs (dimension `i` of the first half next to dimension `i` of the second),
//! the layout its RoPE kernel expects. [`unpermute_rows`] restores Hugging Face's order.

use super::config::{Layout, LlamaDims};

/// Where one GGUF tensor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub hf_name: String,
    /// The shape it must have, in PyTorch order.
    pub shape: Vec<u64>,
    /// Undo llama.cpp's rotary row order over this many heads.
    pub unpermute_heads: Option<u64>,
}

/// The Hugging Face name of a llama.cpp tensor name, or why there is none.
pub fn llama_target(gguf_name: &str, d: &LlamaDims) -> Result<Target, String> {
    let plain = |hf: &str, shape: Vec<u64>| Target {
        hf_name: hf.to_string(),
        shape,
        unpermute_heads: None,
    };
    match gguf_name {
        "token_embd.weight" => {
            return Ok(plain("model.embed_tokens.weight", vec![d.vocab, d.hidden]));
        }
        "output_norm.weight" => return Ok(plain("model.norm.weight", vec![d.hidden])),
        "output.weight" => return Ok(plain("lm_head.weight", vec![d.vocab, d.hidden])),
        "rope_freqs.weight" => {
            return Err("per-frequency RoPE factors (Llama 3.1-style rope scaling) are not \
                        supported"
                .into());
        }
        _ => {}
    }
    let unknown = || format!("not a tensor of a llama.cpp Llama model with {} layers", d.layers);
    let rest = gguf_name.strip_prefix("blk.").ok_or_else(unknown)?;
    let (digits, rest) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: u64 = digits.parse().map_err(|_| unknown())?;
    // `blk.01` is not layer 1: only the canonical spelling maps, so no two names collide.
    if layer >= d.layers || layer.to_string() != digits {
        return Err(unknown());
    }
    let (part, kind) = rest.rsplit_once('.').ok_or_else(unknown)?;
    let bias = match kind {
        "weight" => false,
        "bias" => true,
        _ => return Err(unknown()),
    };
    let (q, kv) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
    // (Hugging Face module, output rows, input columns; None for a norm, heads to unpermute)
    let (module, rows, cols, heads) = match part {
        "attn_norm" => ("input_layernorm", d.hidden, None, None),
        "ffn_norm" => ("post_attention_layernorm", d.hidden, None, None),
        "attn_q" => ("self_attn.q_proj", q, Some(d.hidden), Some(d.heads)),
        "attn_k" => ("self_attn.k_proj", kv, Some(d.hidden), Some(d.kv_heads)),
        "attn_v" => ("self_attn.v_proj", kv, Some(d.hidden), None),
        "attn_output" => ("self_attn.o_proj", d.hidden, Some(q), None),
        "ffn_gate" => ("mlp.gate_proj", d.ffn, Some(d.hidden), None),
        "ffn_up" => ("mlp.up_proj", d.ffn, Some(d.hidden), None),
        "ffn_down" => ("mlp.down_proj", d.hidden, Some(d.ffn), None),
        _ => return Err(unknown()),
    };
    let shape = match (cols, bias) {
        (None, true) => return Err(unknown()),
        (Some(c), false) => vec![rows, c],
        _ => vec![rows],
    };
    Ok(Target {
        hf_name: format!("model.layers.{layer}.{module}.{kind}"),
        shape,
        unpermute_heads: heads,
    })
}

/// The llama.cpp names a Llama with `layout` must have, in a fixed order.
pub fn llama_required(d: &LlamaDims, layout: &Layout) -> Vec<String> {
    let mut names = vec!["token_embd.weight".to_string()];
    for l in 0..d.layers {
        for part in ["attn_norm", "ffn_norm"] {
            names.push(format!("blk.{l}.{part}.weight"));
        }
        for (part, bias) in [
            ("attn_q", layout.attention_bias),
            ("attn_k", layout.attention_bias),
            ("attn_v", layout.attention_bias),
            ("attn_output", layout.attention_bias),
            ("ffn_gate", layout.mlp_bias),
            ("ffn_up", layout.mlp_bias),
            ("ffn_down", layout.mlp_bias),
        ] {
            names.push(format!("blk.{l}.{part}.weight"));
            if bias {
                names.push(format!("blk.{l}.{part}.bias"));
            }
        }
    }
    names.push("output_norm.weight".to_string());
    if !layout.tied {
        names.push("output.weight".to_string());
    }
    names
}

/// Restores Hugging Face's row order of a q or k projection (`rows` x `cols`, row-major) that
/// llama.cpp stored with each head's two halves interleaved: stored row `2 i + j` of a head is
/// row `j * head_dim / 2 + i` of the original.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = h * head_dim + 2 * i + j;
                let to = h * head_dim + j * half + i;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: LlamaDims =
        LlamaDims { layers: 2, hidden: 8, heads: 4, kv_heads: 2, head_dim: 2, ffn: 12, vocab: 10 };

    #[test]
    fn llama_names_map_to_hugging_face_names_and_shapes() {
        let t = |n: &str| llama_target(n, &D).unwrap();
        assert_eq!(t("token_embd.weight").hf_name, "model.embed_tokens.weight");
        assert_eq!(t("token_embd.weight").shape, [10, 8]);
        assert_eq!(t("output.weight").hf_name, "lm_head.weight");
        assert_eq!(t("output_norm.weight").hf_name, "model.norm.weight");
        let q = t("blk.1.attn_q.weight");
        assert_eq!(
            (q.hf_name.as_str(), q.shape.clone()),
            ("model.layers.1.self_attn.q_proj.weight", vec![8, 8])
        );
        assert_eq!(q.unpermute_heads, Some(4));
        let k = t("blk.0.attn_k.bias");
        assert_eq!(
            (k.hf_name.as_str(), k.shape.clone()),
            ("model.layers.0.self_attn.k_proj.bias", vec![4])
        );
        assert_eq!(k.unpermute_heads, Some(2));
        assert_eq!(t("blk.0.attn_v.weight").unpermute_heads, None);
        assert_eq!(t("blk.0.attn_output.weight").shape, [8, 8]);
        assert_eq!(t("blk.1.ffn_down.weight").hf_name, "model.layers.1.mlp.down_proj.weight");
        assert_eq!(t("blk.1.ffn_down.weight").shape, [8, 12]);
        assert_eq!(t("blk.1.ffn_gate.weight").shape, [12, 8]);
        assert_eq!(t("blk.0.attn_norm.weight").hf_name, "model.layers.0.input_layernorm.weight");
        assert_eq!(
            t("blk.0.ffn_norm.weight").hf_name,
            "model.layers.0.post_attention_layernorm.weight"
        );
        for bad in [
            "blk.2.attn_q.weight",
            "blk.01.attn_q.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_q.scale",
            "blk.0.attn_norm.bias",
            "blk.0.ffn_gate_exps.weight",
            "token_embd",
            "",
        ] {
            assert!(llama_target(bad, &D).is_err(), "{bad}");
        }
        assert!(llama_target("rope_freqs.weight", &D).unwrap_err().contains("rope scaling"));
    }

    #[test]
    fn every_required_name_maps() {
        let layout = Layout { tied: false, attention_bias: true, mlp_bias: false };
        let names = llama_required(&D, &layout);
        assert_eq!(names.len(), 1 + 2 * (2 + 7 + 4) + 2);
        for n in &names {
            llama_target(n, &D).unwrap();
        }
    }

    /// llama.cpp's forward permutation, written independently: reshape the rows to
    /// (heads, 2, half) and swap the last two axes.
    fn permute(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
        let half = rows / heads / 2;
        let mut out = vec![0.0; data.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let src = (h * 2 + j) * half + i;
                    let dst = (h * half + i) * 2 + j;
                    out[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&data[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermuting_inverts_llama_cpps_permutation() {
        let (rows, cols, heads) = (12, 3, 2);
        let original: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let stored = permute(&original, rows, cols, heads);
        assert_ne!(stored, original);
        // Head 0, head_dim 6: stored rows are original rows 0, 3, 1, 4, 2, 5.
        let first_col: Vec<f32> = stored.iter().step_by(cols).take(6).map(|v| v / 3.0).collect();
        assert_eq!(first_col, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(unpermute_rows(&stored, rows, cols, heads), original);
    }
}
