//! Logit lens (docs/protocol.md §5.2): a concept vector times the unembedding, top-k promoted
//! (largest) and suppressed (smallest) tokens, decoded to readable strings. Whether the final
//! norm is applied first is not stated in the paper; both readings are computed and labelled.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::VectorError;
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// One token of a lens table.
#[derive(Debug, Clone, Serialize)]
pub struct LensToken {
    pub id: i64,
    /// The vocabulary entry (byte-level BPE spelling).
    pub token: String,
    /// The decoded text, with a leading space shown as `␣` and newlines as `↵`.
    pub text: String,
    pub logit: f64,
}

/// The lens of one vector.
#[derive(Debug, Clone, Serialize)]
pub struct Lens {
    pub name: String,
    pub layer: usize,
    /// Whether the final norm was applied to the vector before the unembedding.
    pub final_norm: bool,
    pub promoted: Vec<LensToken>,
    pub suppressed: Vec<LensToken>,
}

/// Readable form of a decoded token.
pub fn visible(text: &str) -> String {
    let mut s = text.replace('\n', "↵").replace('\t', "⇥");
    if s.starts_with(' ') {
        s.replace_range(0..1, "␣");
    }
    if s.is_empty() { "∅".into() } else { s }
}

fn describe(tok: &Tokenizer, ids: &Tensor, logits: &Tensor) -> Result<Vec<LensToken>, VectorError> {
    let ids = Vec::<i64>::try_from(ids)?;
    let vals = Vec::<f64>::try_from(logits.to_kind(Kind::Double))?;
    ids.iter()
        .zip(vals)
        .map(|(&id, logit)| {
            let u = id as u32;
            let token = tok.id_token(u).unwrap_or_default();
            let text = tok.decode(&[u], false).map_err(|e| VectorError::Model(e.to_string()))?;
            Ok(LensToken { id, token, text: visible(&text), logit })
        })
        .collect()
}

/// The top-`k` promoted and suppressed tokens of `vector` (`[H]`).
pub fn logit_lens(
    model: &Model,
    tok: &Tokenizer,
    name: &str,
    layer: usize,
    vector: &Tensor,
    k: usize,
    final_norm: bool,
) -> Result<Lens, VectorError> {
    let _guard = tch::no_grad_guard();
    let w = model.lm_head(); // [V, H], on the model's device and in its kind
    if vector.size() != [w.size()[1]] {
        return Err(VectorError::Input(format!(
            "logit lens `{name}`: vector has shape {:?}, the unembedding expects [{}]",
            vector.size(),
            w.size()[1]
        )));
    }
    // Project in float32 where the unembedding lives; only the [V] logits come to the CPU.
    let v = vector.to_device(model.device()).to_kind(Kind::Float);
    let v = if final_norm { model.apply_final_norm(&v.unsqueeze(0)).squeeze_dim(0) } else { v };
    let logits = w.to_kind(Kind::Float).mv(&v).to_device(tch::Device::Cpu); // [V]
    let k = (k as i64).min(logits.size()[0]);
    let (top, top_i) = logits.topk(k, 0, true, true);
    let (bot, bot_i) = logits.topk(k, 0, false, true);
    Ok(Lens {
        name: name.into(),
        layer,
        final_norm,
        promoted: describe(tok, &top_i, &top)?,
        suppressed: describe(tok, &bot_i, &bot)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_marks_spaces_and_newlines() {
        assert_eq!(visible(" worse"), "␣worse");
        assert_eq!(visible("ok\n"), "ok↵");
        assert_eq!(visible(""), "∅");
    }
}
