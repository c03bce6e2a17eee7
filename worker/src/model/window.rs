//! Attention masks for models whose attention is not a plain causal mask over real slots: the
//! sliding window of GPT-OSS's `sliding_attention` layers (and, since its sinks need explicit
//! scores, its full-attention layers too).
//!
//! The window is defined on token positions: a query at position `p` reads the real keys at
//! positions `p − W < k ≤ p`. Positions count real tokens (wax's convention: a row's `k`-th real
//! token is at position `k`, whatever pads sit between), so the distance between two slots is
//! the number of real slots after the key up to the query, computed on the device from the
//! real-slot mask as a difference of its running counts. A left-padded row then attends exactly
//! as the same row unpadded, and a cached multi-turn conversation, whose chunks are left-padded
//! within each chunk, keeps the window across turns. (transformers' mask compares cache
//! indices instead; on an unpadded row, or within one forward pass over left-padded rows, that
//! is the same window.)

use tch::{Kind, Tensor};

use super::config::ModelConfig;
use super::decoder::{AttnMask, additive_mask, attention_mask, group_mask};

/// The masks of one forward call over slots `past..past+T` (`real`: `[B, past + T]` bool):
/// causal over real slots (and each query's own slot) for full layers, and that within the
/// window for sliding ones.
pub(super) fn forward_masks(
    c: &ModelConfig,
    real: &Tensor,
    past: i64,
    t: i64,
    kind: Kind,
) -> AttnMask {
    let group = c.num_heads / c.num_kv_heads;
    let allowed = attention_mask(real, past, t);
    let full = additive_mask(&group_mask(&allowed, group), kind);
    let window = c.sliding_window.filter(|_| c.has_sliding_layers()).map(|w| {
        let counts = real_counts(real);
        let queries = counts.narrow(1, past, t);
        // `[B, T, S]`: real slots after the key up to the query, fewer than the window.
        let within = (queries.unsqueeze(2) - counts.unsqueeze(1)).lt(w);
        additive_mask(&group_mask(&allowed.logical_and(&within.unsqueeze(1)), group), kind)
    });
    AttnMask::Layered { full, window }
}

/// The masks of the graph-ready decode step: one token per row at cache slot `slot` (one int64
/// on the device) over slots `0..view` (`real`: `[B, ≥ view]` bool, the new slot marked).
pub(super) fn step_masks(
    c: &ModelConfig,
    real: &Tensor,
    slot: &Tensor,
    view: i64,
    kind: Kind,
) -> AttnMask {
    let group = c.num_heads / c.num_kv_heads;
    let real = real.narrow(1, 0, view);
    let j = Tensor::arange(view, (Kind::Int64, real.device())).unsqueeze(0);
    let at = slot.reshape([1, 1]);
    let allowed = real.logical_or(&j.eq_tensor(&at)).logical_and(&j.le_tensor(&at));
    let grouped =
        |m: &Tensor| additive_mask(&group_mask(&m.unsqueeze(1).unsqueeze(1), group), kind);
    let full = grouped(&allowed);
    let window = c.sliding_window.filter(|_| c.has_sliding_layers()).map(|w| {
        let counts = real_counts(&real);
        let query = counts.index_select(1, &slot.reshape([1]));
        grouped(&allowed.logical_and(&(query - counts).lt(w)))
    });
    AttnMask::Layered { full, window }
}

/// `[B, S]` int64: the number of real slots up to and including each slot.
fn real_counts(real: &Tensor) -> Tensor {
    real.cumsum(1, Kind::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: i64) -> ModelConfig {
        let raw = serde_json::json!({
            "model_type": "gpt_oss", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 8, "num_local_experts": 2, "num_experts_per_tok": 1,
            "sliding_window": window
        });
        ModelConfig::from_value(raw, std::path::Path::new("config.json")).unwrap()
    }

    /// The first group member's row of each query: true where the key is read.
    fn read(mask: &Tensor, b: i64, t: i64) -> Vec<Vec<bool>> {
        let m = mask.narrow(2, 0, t).eq(0.0);
        (0..t).map(|i| Vec::<bool>::try_from(m.get(b).get(0).get(i)).unwrap()).collect()
    }

    #[test]
    fn the_window_counts_real_tokens_so_pads_between_chunks_do_not_shrink_it() {
        let c = config(3);
        // Row 0: a, pad, b, c (cached) then d, e; row 1 unpadded.
        let real = Tensor::from_slice(&[
            true, false, true, true, true, true, //
            true, true, true, true, true, true,
        ])
        .view([2, 6]);
        let AttnMask::Layered { full, window: Some(window) } =
            forward_masks(&c, &real, 4, 2, Kind::Float)
        else {
            panic!("a window")
        };
        let (f, w) = (read(&full, 0, 2), read(&window, 0, 2));
        assert_eq!(f[1], [true, false, true, true, true, true]);
        // e (position 4) reads positions 2..=4: c, d, e; the pad takes no room.
        assert_eq!(w[1], [false, false, false, true, true, true]);
        // d (position 3) reads b, c, d.
        assert_eq!(w[0], [false, false, true, true, true, false]);
        assert_eq!(read(&window, 1, 2)[1], [false, false, false, true, true, true]);
    }

    #[test]
    fn the_step_masks_read_what_the_forward_masks_read() {
        let c = config(3);
        let real = Tensor::from_slice(&[
            true, false, true, true, true, true, false, false, //
            false, true, true, true, true, true, false, false,
        ])
        .view([2, 8]);
        let slot = Tensor::from_slice(&[5i64]);
        let AttnMask::Layered { full, window: Some(window) } =
            step_masks(&c, &real, &slot, 8, Kind::Float)
        else {
            panic!("a window")
        };
        let AttnMask::Layered { full: f2, window: Some(w2) } =
            forward_masks(&c, &real.narrow(1, 0, 6), 5, 1, Kind::Float)
        else {
            panic!("a window")
        };
        for b in 0..2 {
            let step = |m: &Tensor| read(m, b, 1)[0][..6].to_vec();
            assert_eq!(step(&full), read(&f2, b, 1)[0], "row {b}");
            assert_eq!(step(&window), read(&w2, b, 1)[0], "row {b}");
            assert!(!read(&window, b, 1)[0][6..].iter().any(|&x| x), "no later slot");
        }
    }
}
