//! Turning next-token logits into tokens: temperature, top-k, top-p, an allowed-token set
//! (action masking), and sampling by inversion of the cumulative distribution with one
//! counter-based uniform per sequence.
//!
//! The processing order is transformers': temperature, then top-k, then top-p. The returned
//! log-probability of each chosen token is under the distribution actually sampled from (after
//! masking, temperature and truncation) — the "old log-prob" an RL update needs. Everything stays
//! on the logits' device; nothing here reads a value back to the host.
//!
//! Both the nucleus and the draw work on fixed-point weights: each probability times 2^40,
//! rounded to an integer. Integer sums are exact and the same in any order, so the result does not
//! depend on the reduction order of a backend, and neither step sorts the vocabulary: the nucleus
//! threshold is found by a two-pass radix select over order-preserving 32-bit keys of the logits
//! (two histograms of 65,536 buckets), the draw by a cumulative sum and one comparison per token.
//! A token whose probability is below 2^-41 rounds to weight 0 and is never drawn.

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

/// 2^40: probabilities are turned into integer weights at this scale.
const FIXED_ONE: f64 = 1_099_511_627_776.0;
/// The radix-select passes over the 32-bit keys, most significant digit first: (shift, bits).
/// Small digits keep the per-row histograms small (2,048 buckets) whatever the vocabulary.
const PASSES: [(i64, i64); 3] = [(21, 11), (10, 11), (0, 10)];

/// Integer weights `round(p · 2^40)` of probabilities `p` (float32 in, int64 out).
fn fixed(probs: &Tensor) -> Tensor {
    (probs * FIXED_ONE).round().to_kind(Kind::Int64)
}

/// Order-preserving keys in `0..2^32` of float32 values: `x < y` implies `key(x) < key(y)`, and
/// equal values have equal keys (except −0 and +0, which only matter for exact ties at zero).
fn order_key(x: &Tensor) -> Tensor {
    let bits = x.contiguous().view_dtype(Kind::Int).to_kind(Kind::Int64);
    // Negative floats order backwards by their bits: flip the 31 magnitude bits.
    bits.where_self(&bits.ge(0), &bits.bitwise_xor(0x7fff_ffff)) + (1_i64 << 31)
}

/// `above[.., h] = Σ_{h' > h} hist[.., h']` along the last dimension (int64, exact).
fn mass_above(hist: &Tensor) -> Tensor {
    hist.flip([-1]).cumsum(-1, Kind::Int64).flip([-1]) - hist
}

/// The nucleus of each row of float32 logits `x` `[N, V]`: token `t` is kept iff the probability
/// mass of the tokens whose logit is strictly larger than `t`'s is below `p`. This is the smallest
/// set of most likely tokens reaching mass `p`, with tied logits kept or dropped together.
///
/// Radix select: each pass histograms the weight of the still-undecided tokens by one digit of
/// the key, finds the digit where the descending cumulative mass reaches `p`, and narrows the
/// undecided tokens to that digit; after the last pass the threshold key is known exactly.
fn nucleus(x: &Tensor, p: f64) -> Tensor {
    let (rows, device) = (x.size()[0], x.device());
    let w = fixed(&x.softmax(-1, Kind::Float));
    let target = ((p * FIXED_ONE).round() as i64).max(1);
    let key = order_key(x);
    let mut undecided = w.shallow_clone();
    let mut base = Tensor::zeros([rows, 1], (Kind::Int64, device));
    let mut threshold = Tensor::zeros([rows, 1], (Kind::Int64, device));
    for (i, (shift, bits)) in PASSES.into_iter().enumerate() {
        let digit = key.bitwise_right_shift_tensor_scalar(shift).bitwise_and((1 << bits) - 1);
        let hist = Tensor::zeros([rows, 1 << bits], (Kind::Int64, device))
            .scatter_add(1, &digit, &undecided);
        let above = mass_above(&hist) + &base;
        let chosen = above.ge(target).sum_dim_intlist(-1, true, Kind::Int64);
        base = above.gather(1, &chosen, false);
        threshold = threshold * (1_i64 << bits) + &chosen;
        if i + 1 < PASSES.len() {
            undecided *= digit.eq_tensor(&chosen);
        }
    }
    key.ge_tensor(&threshold)
}

/// Log-probabilities `[B, V]` (float32) of the distribution [`sample`] draws from; excluded
/// tokens get −∞. `allowed` is a bool mask `[V]` or `[B, V]`.
pub fn log_probs(logits: &Tensor, sampling: &Sampling, allowed: Option<&Tensor>) -> Tensor {
    let mut x = logits.to_kind(Kind::Float);
    if let Some(mask) = allowed {
        x = x.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    }
    if sampling.temperature > 0.0 {
        // Not in place: `to_kind` returns the caller's tensor itself when it is already float32.
        let scaled = &x / sampling.temperature;
        x = scaled;
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
            let shape = x.size();
            let rows = x.reshape([-1, shape[shape.len() - 1]]);
            let keep = nucleus(&rows, p).reshape(shape.as_slice());
            x = x.masked_fill(&keep.logical_not(), f64::NEG_INFINITY);
        }
    }
    x.log_softmax(-1, Kind::Float)
}

/// Picks one token per row of `logits` (`[B, V]`). Row `b` uses the uniform draw of `seeds[b]` at
/// position `step`, so a sequence's draw does not depend on its batch mates.
pub fn sample(
    logits: &Tensor,
    sampling: &Sampling,
    allowed: Option<&Tensor>,
    seeds: &Tensor,
    step: i64,
) -> Sampled {
    sample_at(logits, sampling, allowed, seeds, &Tensor::from(step))
}

/// [`sample`] with the step in a one-element int64 tensor (on the CPU or the logits' device; see
/// [`noise::uniform_at`]). On CUDA the fused kernel of [`super::fused`] computes the draw where it
/// applies; elsewhere, and if its launch fails, [`sample_reference`] does.
pub fn sample_at(
    logits: &Tensor,
    sampling: &Sampling,
    allowed: Option<&Tensor>,
    seeds: &Tensor,
    step: &Tensor,
) -> Sampled {
    // The kernel takes one `[V]` allowed set shared by all rows.
    let shared_mask = allowed.is_none_or(|a| a.dim() == 1);
    if let Some(kernel) = shared_mask.then(|| super::fused::for_logits(logits, sampling)).flatten()
    {
        match kernel.sample(logits, sampling, allowed, seeds, step) {
            Ok(s) => return s,
            Err(e) => {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("wax: fused sampler failed ({e}); using libtorch's");
                }
            }
        }
    }
    sample_reference(logits, sampling, allowed, seeds, step)
}

/// The libtorch implementation of [`sample_at`] (any device).
pub fn sample_reference(
    logits: &Tensor,
    sampling: &Sampling,
    allowed: Option<&Tensor>,
    seeds: &Tensor,
    step: &Tensor,
) -> Sampled {
    let logp = log_probs(logits, sampling, allowed);
    let vocab = logits.size()[logits.dim() - 1];
    let tokens = if sampling.temperature > 0.0 {
        // Inversion: the first token whose cumulative weight exceeds u · total.
        let cdf = fixed(&logp.exp()).cumsum(-1, Kind::Int64);
        let total = cdf.narrow(-1, vocab - 1, 1).to_kind(Kind::Double);
        let u = noise::uniform_at(seeds, step, 1, logits.device());
        let r = (u * total).floor().to_kind(Kind::Int64);
        cdf.le_tensor(&r).sum_dim_intlist(-1, false, Kind::Int64).clamp_max(vocab - 1)
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

    /// The radix-select nucleus equals a brute-force computation in float64 (mass strictly
    /// above each token, summed token by token) on rows with mixed signs, spread and masked
    /// entries.
    #[test]
    fn nucleus_matches_a_brute_force_reference() {
        tch::manual_seed(3);
        let (n, v) = (64, 700);
        let scale = Tensor::from_slice(&[0.1f32, 1.0, 4.0, 12.0]).repeat([n / 4]).unsqueeze(1);
        let mut x = Tensor::randn([n, v], (Kind::Float, Device::Cpu)) * scale;
        let masked = Tensor::rand([n, v], (Kind::Float, Device::Cpu)).lt(0.2);
        x = x.masked_fill(&masked, f64::NEG_INFINITY);
        for p in [0.05, 0.5, 0.9, 0.95, 0.999] {
            let got = Vec::<bool>::try_from(&nucleus(&x, p).flatten(0, 1)).unwrap();
            let probs = x.to_kind(Kind::Double).softmax(-1, Kind::Double);
            let xs = Vec::<f32>::try_from(&x.flatten(0, 1)).unwrap();
            let ps = Vec::<f64>::try_from(&probs.flatten(0, 1)).unwrap();
            let mut mismatches = 0;
            let v = v as usize;
            for r in 0..n as usize {
                let (row, prow) = (&xs[r * v..][..v], &ps[r * v..][..v]);
                for t in (0..v).filter(|&t| prow[t] > 0.0) {
                    let above: f64 = (0..v).filter(|&j| row[j] > row[t]).map(|j| prow[j]).sum();
                    if got[r * v + t] != (above < p) {
                        mismatches += 1;
                    }
                }
            }
            assert_eq!(mismatches, 0, "p = {p}");
        }
    }

    #[test]
    fn tied_logits_at_the_boundary_are_kept_together() {
        let l = probs(&[0.4, 0.2, 0.2, 0.2]);
        let s = Sampling { top_p: Some(0.5), ..Default::default() };
        assert_eq!(kept(&log_probs(&l, &s, None)), [true, true, true, true]);
        let s = Sampling { top_p: Some(0.35), ..Default::default() };
        assert_eq!(kept(&log_probs(&l, &s, None)), [true, false, false, false]);
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
