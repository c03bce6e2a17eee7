//! Attention with learned sinks (GPT-OSS): each query head's softmax runs over its scores and
//! one extra logit, the head's sink, which is then dropped, so a head can put weight on nothing.
//! The scores are computed explicitly (libtorch's fused attention has no such logit), in the
//! order transformers' eager `GptOssAttention` uses: scaled scores plus the additive mask, the
//! sink appended, the row maximum subtracted, softmax, the sink column cut off.

use tch::Tensor;

/// Attention output `[B, heads, T, D]` of queries `q` (`[B, heads, T, D]`) over keys and values
/// `[B, heads / group, S, D]` with the additive `mask` (grouped as
/// [`super::decoder::group_mask`] groups, `[B, 1, group·T, S]`) and `sinks` (`[heads]`).
pub(super) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    sinks: &Tensor,
    group: i64,
) -> Tensor {
    let s = q.size();
    let (b, heads, t, d) = (s[0], s[1], s[2], s[3]);
    let kv_heads = heads / group;
    // The `group` query heads sharing a kv head become extra query rows of that head.
    let q = q.reshape([b, kv_heads, group * t, d]);
    let scores = q.matmul(&k.transpose(-2, -1)) * (d as f64).powf(-0.5) + mask;
    let sink = sinks
        .to_kind(scores.kind())
        .view([1, kv_heads, group, 1])
        .expand([b, kv_heads, group, t], false)
        .reshape([b, kv_heads, group * t, 1]);
    let logits = Tensor::cat(&[&scores, &sink], -1);
    let logits = &logits - logits.amax([-1], true);
    let slots = scores.size()[3];
    let probs = logits.softmax(-1, logits.kind()).narrow(-1, 0, slots);
    probs.to_kind(v.kind()).matmul(v).reshape([b, heads, t, d])
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    /// Head by head, query by query, in f64.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, allowed: &[bool], sinks: &[f64]) -> Tensor {
        let s = q.size();
        let (heads, t, d) = (s[1], s[2], s[3]);
        let group = heads / k.size()[1];
        let slots = k.size()[2];
        let dq = |x: &Tensor| x.to_kind(Kind::Double);
        let mut out = Vec::new();
        for h in 0..heads {
            for i in 0..t {
                let qi = dq(&q.get(0).get(h).get(i));
                let mut logits = Vec::new();
                for j in 0..slots {
                    if allowed[(i * slots + j) as usize] {
                        let kj = dq(&k.get(0).get(h / group).get(j));
                        logits.push((j, qi.dot(&kj).double_value(&[]) / (d as f64).sqrt()));
                    }
                }
                let m = logits.iter().map(|l| l.1).fold(sinks[h as usize], f64::max);
                let z: f64 = logits.iter().map(|l| (l.1 - m).exp()).sum::<f64>()
                    + (sinks[h as usize] - m).exp();
                let mut o = Tensor::zeros([d], (Kind::Double, Device::Cpu));
                for (j, l) in &logits {
                    o += dq(&v.get(0).get(h / group).get(*j)) * ((l - m).exp() / z);
                }
                out.push(o);
            }
        }
        Tensor::stack(&out, 0).view([1, heads, t, d])
    }

    #[test]
    fn sinks_take_their_share_of_each_softmax_and_grouped_heads_read_their_kv_head() {
        tch::manual_seed(9);
        let f = (Kind::Float, Device::Cpu);
        let (heads, kv_heads, t, slots, d) = (4, 2, 3, 5, 8);
        let q = Tensor::randn([1, heads, t, d], f);
        let k = Tensor::randn([1, kv_heads, slots, d], f);
        let v = Tensor::randn([1, kv_heads, slots, d], f);
        // Query i (slot 2 + i) reads slots ≤ 2 + i except slot 1.
        let allowed: Vec<bool> =
            (0..t).flat_map(|i| (0..slots).map(move |j| j <= 2 + i && j != 1)).collect();
        let sinks = [0.5, -1.0, 2.0, 0.0];
        let bool_mask = Tensor::from_slice(&allowed).view([1, 1, t, slots]);
        let mask = super::super::decoder::additive_mask(
            &super::super::decoder::group_mask(&bool_mask, heads / kv_heads),
            Kind::Float,
        );
        let sinks_t = Tensor::from_slice(&sinks).to_kind(Kind::Float);
        let got = attention(&q, &k, &v, &mask, &sinks_t, heads / kv_heads);
        let want = reference(&q, &k, &v, &allowed, &sinks);
        let err = (got.to_kind(Kind::Double) - want).abs().max().double_value(&[]);
        assert!(err < 1e-5, "{err}");
        // A very negative sink is no sink: plain softmax attention.
        let none = Tensor::full([heads], -1e4, f);
        let plain = super::super::decoder::masked_attention(&q, &k, &v, &mask, heads / kv_heads);
        let err = (attention(&q, &k, &v, &mask, &none, heads / kv_heads) - plain)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-5, "{err}");
    }
}
