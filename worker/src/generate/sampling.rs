//! Turning next-token logits into tokens: temperature, top-k, top-p, an allowed-token set
//! (action masking), and exact sampling by the Gumbel-max trick with per-sequence seeds.
//!
//! The processing order is transformers': temperature, then top-k, then top-p. The returned
//! log-probability of each chosen token is under the distribution actually sampled from (after
//! masking, temperature and truncation) — the "old log-prob" an RL update needs. Everything stays
//! on the logits' device; nothing here reads a value back to the host.

use super::noise;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens (ties at the k-th value are kept).
    pub top_k: Option<i64>,
    /// Keep the smallest set of most likely tokens whose mass reaches p (nucleus sampling).
    pub top_p: Option<f64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 1.0, top_k: None, top_p: None }
    }
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Sampling = Sampling { temperature: 0.0, top_k: None, top_p: None };

    /// Checks the parameters, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be ≥ 0, got {}", self.temperature));
        }
        if let Some(k) = self.top_k
            && k < 1
        {
            return Err(format!("top_k must be ≥ 1, got {k}"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!("top_p must be in (0, 1], got {p}"));
        }
        Ok(())
    }
}

/// Tokens chosen for one decode step.
#[derive(Debug)]
pub struct Sampled {
    /// `[B]` int64.
    pub tokens: Tensor,
    /// `[B]` float32: log-probability of each token under the sampled distribution (for greedy
    /// decoding: under the temperature-1 distribution restricted to the allowed set).
    pub logprobs: Tensor,
}

/// Log-probabilities `[B, V]` (float32) of the distribution [`sample`] draws from; excluded
/// tokens get −∞. `allowed` is a bool mask `[V]` or `[B, V]`.
pub fn log_probs(logits: &Tensor, sampling: &Sampling, allowed: Option<&Tensor>) -> Tensor {
    let mut x = logits.to_kind(Kind::Float);
    if let Some(mask) = allowed {
        x = x.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    }
    if sampling.temperature > 0.0 {
        x /= sampling.temperature;
        if let Some(k) = sampling.top_k {
            let vocab = x.size()[x.dim() - 1];
            if k < vocab {
                let (kth, _) = x.topk(k, -1, true, true);
                let threshold = kth.narrow(-1, k - 1, 1);
                x = x.masked_fill(&x.lt_tensor(&threshold), f64::NEG_INFINITY);
            }
        }
        if let Some(p) = sampling.top_p
            && p < 1.0
        {
            let (sorted, order) = x.sort(-1, true);
            let probs = sorted.softmax(-1, Kind::Float);
            // Mass strictly before each token; a token is dropped once that reaches p. The most
            // likely token always has 0 before it and is always kept.
            let before = probs.cumsum(-1, Kind::Float) - &probs;
            let drop_sorted = before.ge(p);
            let drop = drop_sorted.scatter(-1, &order, &drop_sorted);
            x = x.masked_fill(&drop, f64::NEG_INFINITY);
        }
    }
    x.log_softmax(-1, Kind::Float)
}

/// Picks one token per row of `logits` (`[B, V]`). Row `b` uses the random stream of
/// `seeds[b]` at position `step`, so a sequence's draw does not depend on its batch mates.
pub fn sample(
    logits: &Tensor,
    sampling: &Sampling,
    allowed: Option<&Tensor>,
    seeds: &Tensor,
    step: i64,
) -> Sampled {
    let logp = log_probs(logits, sampling, allowed);
    let tokens = if sampling.temperature > 0.0 {
        let vocab = logits.size()[logits.dim() - 1];
        let g = noise::gumbel(seeds, step, vocab, logits.device());
        (&logp + g).argmax(-1, false)
    } else {
        logp.argmax(-1, false)
    };
    let logprobs = logp.gather(-1, &tokens.unsqueeze(-1), false).squeeze_dim(-1);
    Sampled { tokens, logprobs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn row(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).unsqueeze(0)
    }

    fn kept(logp: &Tensor) -> Vec<bool> {
        Vec::<bool>::try_from(&logp.isfinite().squeeze_dim(0)).unwrap()
    }

    fn probs(p: &[f64]) -> Tensor {
        row(&p.iter().map(|x| x.ln() as f32).collect::<Vec<_>>())
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        let l = probs(&[0.15, 0.5, 0.05, 0.3]);
        let s = |p| Sampling { top_p: Some(p), ..Default::default() };
        assert_eq!(kept(&log_probs(&l, &s(0.45), None)), [false, true, false, false]);
        assert_eq!(kept(&log_probs(&l, &s(0.79), None)), [false, true, false, true]);
        assert_eq!(kept(&log_probs(&l, &s(0.81), None)), [true, true, false, true]);
        assert_eq!(kept(&log_probs(&l, &s(0.01), None)), [false, true, false, false]);
        assert_eq!(kept(&log_probs(&l, &s(1.0), None)), [true; 4]);
        // Renormalised over the nucleus: 0.5 / 0.8.
        let lp = log_probs(&l, &s(0.79), None);
        assert!((lp.double_value(&[0, 1]).exp() - 0.625).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_allowed_set_restrict_and_renormalise() {
        let l = probs(&[0.15, 0.5, 0.05, 0.3]);
        let s = Sampling { top_k: Some(2), ..Default::default() };
        assert_eq!(kept(&log_probs(&l, &s, None)), [false, true, false, true]);
        let allowed = Tensor::from_slice(&[true, false, true, false]);
        let lp = log_probs(&l, &Sampling::default(), Some(&allowed));
        assert_eq!(kept(&lp), [true, false, true, false]);
        assert!((lp.double_value(&[0, 0]).exp() - 0.75).abs() < 1e-6);
        // Temperature 2 flattens: p ∝ sqrt(p).
        let lp = log_probs(&l, &Sampling { temperature: 2.0, ..Default::default() }, None);
        let z: f64 = [0.15f64, 0.5, 0.05, 0.3].iter().map(|p| p.sqrt()).sum();
        assert!((lp.double_value(&[0, 1]).exp() - 0.5f64.sqrt() / z).abs() < 1e-6);
    }

    #[test]
    fn greedy_is_argmax_within_the_allowed_set() {
        let l = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 0.0, 5.0, -1.0]).view([2, 3]);
        let seeds = Tensor::from_slice(&[1i64, 2]);
        let out = sample(&l, &Sampling::GREEDY, None, &seeds, 0);
        assert_eq!(Vec::<i64>::try_from(&out.tokens).unwrap(), [1, 1]);
        let allowed = Tensor::from_slice(&[true, false, true]);
        let out = sample(&l, &Sampling::GREEDY, Some(&allowed), &seeds, 0);
        assert_eq!(Vec::<i64>::try_from(&out.tokens).unwrap(), [2, 0]);
    }

    /// Empirical frequencies over many seeds match the processed distribution (chi-square), and
    /// the reported log-probs are those of the chosen tokens.
    #[test]
    fn samples_follow_the_processed_distribution() {
        let p = [0.4, 0.25, 0.2, 0.1, 0.05];
        let n = 20_000i64;
        let logits = probs(&p).repeat([n, 1]);
        let seeds = Tensor::arange(n, (Kind::Int64, Device::Cpu)) * 7919 + 3;
        for (sampling, allowed, expect) in [
            (Sampling::default(), None, p.to_vec()),
            (
                Sampling { top_p: Some(0.7), ..Default::default() },
                None,
                vec![0.4 / 0.85, 0.25 / 0.85, 0.2 / 0.85, 0.0, 0.0],
            ),
            (
                Sampling::default(),
                Some(Tensor::from_slice(&[false, true, false, true, true])),
                vec![0.0, 0.625, 0.0, 0.25, 0.125],
            ),
        ] {
            let out = sample(&logits, &sampling, allowed.as_ref(), &seeds, 5);
            let counts = Vec::<i64>::try_from(&out.tokens.bincount::<Tensor>(None, 5)).unwrap();
            let mut chi2 = 0.0;
            for (c, e) in counts.iter().zip(&expect) {
                if *e == 0.0 {
                    assert_eq!(*c, 0, "sampled an excluded token: {counts:?}");
                } else {
                    let ex = e * n as f64;
                    chi2 += (*c as f64 - ex).powi(2) / ex;
                }
            }
            // ≤ 4 degrees of freedom; p = 1e-4 critical value 23.5.
            assert!(chi2 < 23.5, "{sampling:?}: counts {counts:?}, chi-square {chi2}");
            let want = log_probs(&logits, &sampling, allowed.as_ref())
                .gather(-1, &out.tokens.unsqueeze(-1), false)
                .squeeze_dim(-1);
            assert!(out.logprobs.equal(&want));
        }
    }

    #[test]
    fn a_sequence_draws_the_same_token_in_any_batch() {
        let l = Tensor::randn([4, 100], (Kind::Float, Device::Cpu));
        let seeds = Tensor::from_slice(&[11i64, 12, 13, 14]);
        let all = sample(&l, &Sampling::default(), None, &seeds, 9).tokens;
        let idx = Tensor::from_slice(&[2i64, 0]);
        let some = sample(
            &l.index_select(0, &idx),
            &Sampling::default(),
            None,
            &seeds.index_select(0, &idx),
            9,
        )
        .tokens;
        assert!(all.index_select(0, &idx).equal(&some));
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = Sampling { top_p: Some(1.5), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("top_p"));
        let bad = Sampling { temperature: -1.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("temperature"));
        let bad = Sampling { top_k: Some(0), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("top_k"));
    }
}
