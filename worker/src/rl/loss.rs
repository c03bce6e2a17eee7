//! Loss terms and diagnostics for the maze RL algorithms (docs/protocol.md §2), on `tch` tensors.
//!
//! Per-token functions work elementwise on tensors of any shape (the trainer uses `[B, T]`,
//! batch by turn) on any device, in the floating kind of their inputs. Masks are float tensors
//! of 0 and 1 with the shape of the values they mask; a bool mask is also accepted, since every
//! function converts its mask to the kind of the values first.
//!
//! * [`dual_clip_surrogate`]: the PPO-style clipped surrogate with a dual clip for negative
//!   advantages.
//! * [`equalized_entropy`]: the entropy bonus summed over tile classes of the four moves.
//! * [`aggregate`]: reduction of per-token terms to one scalar loss ([`Aggregation`]).
//! * [`kl`], [`approx_kl`]: KL estimators ([`KlEstimator`]).
//! * [`cosine_multiplier`]: the cosine decay of a coefficient over training.
//! * [`clipped_value_loss`], [`normalize_advantages`], [`explained_variance`]: PPO pieces.
//! * [`masked_mean`]: a masked mean as a plain `f64`, for logging.

use tch::{Kind, Tensor};

/// The per-token result of [`dual_clip_surrogate`].
#[derive(Debug)]
pub struct Surrogate {
    /// The per-token loss, same shape and kind as the inputs.
    pub loss: Tensor,
    /// Bool, true where the clipped-ratio term won the max (`−ρ̄A > −ρA`).
    pub clipped: Tensor,
    /// Bool, true where `A < 0` and the dual-clip bound `−cA` replaced the max.
    pub dual_clipped: Tensor,
}

/// Computes the dual-clip surrogate loss per token.
///
/// With `ρ = exp(clamp(logp − old_logp, −log_ratio_clamp, log_ratio_clamp))` and
/// `ρ̄ = clamp(ρ, 1 − eps, 1 + eps)`, the loss is `max(−ρA, −ρ̄A)` where `A ≥ 0`, and
/// `min(max(−ρA, −ρ̄A), −dual_c·A)` where `A < 0`. The three tensors must broadcast together;
/// gradients flow through `logp` only when it requires them.
pub fn dual_clip_surrogate(
    logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    eps: f64,
    dual_c: f64,
    log_ratio_clamp: f64,
) -> Surrogate {
    let ratio = (logp - old_logp).clamp(-log_ratio_clamp, log_ratio_clamp).exp();
    let clipped_ratio = ratio.clamp(1.0 - eps, 1.0 + eps);
    let unclipped_term = -(&ratio * adv);
    let clipped_term = -(&clipped_ratio * adv);
    let clipped = clipped_term.gt_tensor(&unclipped_term);
    let pessimistic = unclipped_term.maximum(&clipped_term);
    let dual_term = adv * (-dual_c);
    let dual_clipped = adv.lt(0.0).logical_and(&dual_term.lt_tensor(&pessimistic));
    let loss = dual_term.where_self(&dual_clipped, &pessimistic);
    Surrogate { loss, clipped, dual_clipped }
}

/// Computes the equalized entropy of each decision.
///
/// `logits4` is `[N, 4]` (float): the logits of the moves N, E, S, W. `classes` is `[N, 4]`
/// (int64): the tile class of each move, 0 = Path, 1 = Mold, 2 = Gold, or −1 for a move with
/// no tile (a wall), which is excluded. For each class `c`, the softmax restricted to the moves
/// of class `c` gives the entropy `H_c`; a class with fewer than two moves has `H_c = 0`. The
/// result is `[N]`: `H_Path + H_Mold + H_Gold`.
///
/// A logit of −∞ is allowed (the move then has probability 0 within its class). The
/// computation never forms `log 0` or `0 · ∞`, so both the value and its gradient are finite
/// for every pattern of classes.
pub fn equalized_entropy(logits4: &Tensor, classes: &Tensor) -> Tensor {
    let rows = logits4.size().first().copied().unwrap_or(0);
    let mut total = Tensor::zeros([rows], (logits4.kind(), logits4.device()));
    for c in 0..3i64 {
        let member = classes.eq(c);
        let outside = member.logical_not();
        // Largest logit of the class (a constant shift; 0 for a row without the class).
        let shift =
            logits4.detach().masked_fill(&outside, f64::NEG_INFINITY).amax(&[1i64][..], true);
        let shift = shift.masked_fill(&shift.isinf(), 0.0);
        // Members get logit − shift ≤ 0 (floored at −1e4, where exp is exactly 0); others get
        // 0, so exp stays finite and is then zeroed.
        let z = (logits4 - &shift).clamp_min(-1e4).masked_fill(&outside, 0.0);
        let e = z.exp() * member.to_kind(logits4.kind());
        // With at least one member the largest term is exp(0) = 1, so the sum is ≥ 1 and the
        // clamp only touches rows without members (sum 0), where every p below is 0.
        let sum = e.sum_dim_intlist(&[1i64][..], true, None::<Kind>).clamp_min(1.0);
        let logp = z - sum.log();
        let p = e / sum;
        // One member gives p = 1, log p = 0, so H_c = 0 exactly, as for no member.
        total += -(p * logp).sum_dim_intlist(&[1i64][..], false, None::<Kind>);
    }
    total
}

/// How [`aggregate`] reduces per-token terms to one scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// `mean_b (Σ_t mask·term / Z)`: per-sequence sums over a constant `Z` (Dr. GRPO).
    SeqMeanTokenSum,
    /// `mean_b (Σ_t mask·term / max(Σ_t mask, 1))`: length-normalised (GRPO).
    SeqMeanTokenMean,
    /// `Σ mask·term / max(Σ mask, 1)` over all tokens of the batch.
    TokenMean,
}

/// Reduces `per_token` (`[B, T]`) under `mask` (`[B, T]`, float 0/1) to a scalar tensor.
///
/// The mean over sequences divides by `B`, so a fully masked sequence counts as a 0. `z` is
/// used by [`Aggregation::SeqMeanTokenSum`] only. The result keeps the gradient of `per_token`.
pub fn aggregate(per_token: &Tensor, mask: &Tensor, how: Aggregation, z: f64) -> Tensor {
    let mask = mask.to_kind(per_token.kind());
    let masked = per_token * &mask;
    let dim = &[1i64][..];
    match how {
        Aggregation::SeqMeanTokenSum => {
            (masked.sum_dim_intlist(dim, false, None::<Kind>) / z).mean(None::<Kind>)
        }
        Aggregation::SeqMeanTokenMean => {
            let lengths = mask.sum_dim_intlist(dim, false, None::<Kind>).clamp_min(1.0);
            (masked.sum_dim_intlist(dim, false, None::<Kind>) / lengths).mean(None::<Kind>)
        }
        Aggregation::TokenMean => masked.sum(None::<Kind>) / mask.sum(None::<Kind>).clamp_min(1.0),
    }
}

/// A per-token estimator of the KL divergence from the reference policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log π − log π_ref`: unbiased, can be negative.
    K1,
    /// `exp(log π_ref − log π) − (log π_ref − log π) − 1`: unbiased for tokens sampled from π,
    /// never negative.
    K3,
}

/// Computes the KL estimate per token from the sampled tokens' log-probabilities under the
/// policy (`logp`) and the reference (`ref_logp`). Same shape as the inputs.
pub fn kl(logp: &Tensor, ref_logp: &Tensor, est: KlEstimator) -> Tensor {
    match est {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K3 => {
            let d = ref_logp - logp;
            d.exp() - &d - 1.0
        }
    }
}

/// Returns the multiplier `½(1 + cos(π p))` of a cosine-decayed coefficient at `step`.
///
/// `p = clamp(step / (total − 1) · factor, 0, 1)`, so the multiplier falls from 1 at step 0 to
/// 0 at step `(total − 1) / factor` and stays 0 after it. When `total ≤ 1` there is no span to
/// decay over: the multiplier is 1 at step 0 and 0 at every later step.
pub fn cosine_multiplier(step: usize, total: usize, factor: f64) -> f64 {
    let p = if total <= 1 {
        if step == 0 { 0.0 } else { 1.0 }
    } else {
        (step as f64 / (total - 1) as f64 * factor).clamp(0.0, 1.0)
    };
    0.5 * (1.0 + (std::f64::consts::PI * p).cos())
}

/// Computes the clipped value loss per token:
/// `½ max((V − R)², (V_old + clamp(V − V_old, −clip, clip) − R)²)`.
pub fn clipped_value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    clip: f64,
) -> Tensor {
    let unclipped = (values - returns).square();
    let v_clipped = old_values + (values - old_values).clamp(-clip, clip);
    let clipped = (v_clipped - returns).square();
    unclipped.maximum(&clipped) * 0.5
}

/// Normalises advantages over the masked entries: `(A − mean) / (std + 1e-8)`, with the mean
/// and the population standard deviation taken over entries where `mask` is 1. Entries where
/// `mask` is 0 are set to 0. An all-zero mask gives all zeros.
pub fn normalize_advantages(adv: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.to_kind(adv.kind());
    let count = mask.sum(None::<Kind>).clamp_min(1.0);
    let mean = (adv * &mask).sum(None::<Kind>) / &count;
    let centered = (adv - mean) * &mask;
    let std = (centered.square().sum(None::<Kind>) / &count).sqrt();
    centered / (std + 1e-8)
}

/// Returns the explained variance `1 − Var(R − V) / Var(R)` of value predictions `values`
/// against targets `returns` (population variances). Returns 0.0 when `Var(R)` is 0 or the
/// slices are empty. The slices must have equal lengths (checked by a debug assertion).
pub fn explained_variance(values: &[f64], returns: &[f64]) -> f64 {
    debug_assert_eq!(values.len(), returns.len(), "one value per return");
    let n = values.len().min(returns.len());
    let var_r = population_variance(&returns[..n]);
    if var_r == 0.0 {
        return 0.0;
    }
    let diff: Vec<f64> = returns.iter().zip(values).map(|(r, v)| r - v).collect();
    1.0 - population_variance(&diff) / var_r
}

/// The population variance of `xs` (0 for an empty slice).
fn population_variance(xs: &[f64]) -> f64 {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n
}

/// Returns the masked mean of the k3 estimator with the old policy in the reference role:
/// `exp(old_logp − logp) − (old_logp − logp) − 1`, i.e. `kl(logp, old_logp, K3)`. For tokens
/// sampled from the current policy this estimates `KL(π ‖ π_old)`; for the rollout tokens
/// (sampled from `π_old`) it is a close approximation while the two policies stay near. For
/// logging: no gradient is kept.
pub fn approx_kl(logp: &Tensor, old_logp: &Tensor, mask: &Tensor) -> f64 {
    let k3 = kl(&logp.detach(), &old_logp.detach(), KlEstimator::K3);
    masked_mean(&k3, mask)
}

/// Returns `Σ x·mask / max(Σ mask, 1)` as an `f64` (no gradient).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> f64 {
    let x = x.detach().to_kind(Kind::Double);
    let mask = mask.detach().to_kind(Kind::Double);
    let total = (&x * &mask).sum(Kind::Double).double_value(&[]);
    total / mask.sum(Kind::Double).double_value(&[]).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vals(x: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(x.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    fn flags(x: &Tensor) -> Vec<bool> {
        Vec::<bool>::try_from(x.flatten(0, -1)).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn dual_clip_every_branch() {
        // eps = 0.2 (ρ̄ ∈ [0.8, 1.2]), c = 3, L = 20; old log-prob 0, so log ρ = logp.
        let ln = |x: f32| x.ln();
        // (log ρ, A, loss, clipped, dual-clipped)
        let cases = [
            (ln(1.1), 1.0, -1.1, false, false), // ρ inside: max(−1.1, −1.1)
            (ln(1.5), 1.0, -1.2, true, false),  // max(−1.5, −1.2) = −1.2
            (ln(0.5), 1.0, -0.5, false, false), // max(−0.5, −0.8) = −0.5
            (ln(1.1), -1.0, 1.1, false, false), // ρ inside: max(1.1, 1.1); 3 is not below
            (ln(0.5), -1.0, 0.8, true, false),  // max(0.5, 0.8) = 0.8; 3 is not below
            (ln(5.0), -1.0, 3.0, false, true),  // max(5, 1.2) = 5; min(5, 3) = 3
            (ln(2.0), -2.0, 4.0, false, false), // max(4, 2.4) = 4; min(4, 6) = 4
            (30.0, 1.0, -1.2, true, false),     // log ρ → 20: max(−e^20, −1.2) = −1.2
            (-30.0, 1.0, 0.0, false, false),    // log ρ → −20: −e^−20 (checked below)
        ];
        let logp = t(&cases.map(|c| c.0)).view([3, 3]);
        let adv = t(&cases.map(|c| c.1)).view([3, 3]);
        let s = dual_clip_surrogate(&logp, &logp.zeros_like(), &adv, 0.2, 3.0, 20.0);
        assert_eq!(s.loss.size(), vec![3, 3]);
        close(&vals(&s.loss), &cases.map(|c| c.2), 1e-5);
        assert_eq!(flags(&s.clipped), cases.map(|c| c.3));
        assert_eq!(flags(&s.dual_clipped), cases.map(|c| c.4));
        // e^−20 = 2.0611536e−9; without the clamp it would be e^−30 = 9.4e−14.
        let tiny = vals(&s.loss)[8];
        assert!((tiny + 2.061_153_6e-9).abs() < 1e-3 * 2.06e-9, "{tiny}");
        // Dual bound out of reach: A = −1, log ρ 30 → max(e^20, 1.2) = e^20 = 4.8516520e8.
        let s = dual_clip_surrogate(&t(&[30.0]), &t(&[0.0]), &t(&[-1.0]), 0.2, 1e12, 20.0);
        let big = vals(&s.loss)[0];
        assert!((big / 4.851_652e8 - 1.0).abs() < 1e-5, "{big}");
        assert_eq!((flags(&s.clipped), flags(&s.dual_clipped)), (vec![false], vec![false]));
    }

    #[test]
    fn equalized_entropy_by_class() {
        let (l2, l3, l4) = (2f32.ln(), 3f32.ln(), 4f32.ln());
        let cases: [([f32; 4], [i64; 4], f64); 9] = [
            // Path = moves {0, 1}: p = (e, 1)/(e + 1) = (0.7310586, 0.2689414);
            // H = 0.7310586·0.3132617 + 0.2689414·1.3132617 = 0.5822031; Mold, Gold: k = 1.
            ([1.0, 0.0, 2.0, -1.0], [0, 0, 1, 2], 0.582_203_1),
            // One class, p = (1, 2, 3, 4)/10: H = 0.2302585 + 0.3218876 + 0.3611918 + 0.3665163.
            ([0.0, l2, l3, l4], [0, 0, 0, 0], 1.279_854_2),
            // Four equal logits: ln 4 = 1.3862944.
            ([0.0; 4], [2, 2, 2, 2], 1.386_294_4),
            // Every class has k = 1 (the wall is excluded): 0.
            ([0.0, l2, l3, l4], [0, 1, 2, -1], 0.0),
            // Mold = moves {0, 2, 3}, p = (1, 3, 4)/8 (the wall's weight 2 is excluded):
            // H = 0.2599302 + 0.3678107 + 0.3465736 = 0.9743145.
            ([0.0, l2, l3, l4], [1, -1, 1, 1], 0.974_314_5),
            // Two classes of two equal logits: ln 2 + ln 2 = 1.3862944.
            ([0.3; 4], [0, 0, 1, 1], 1.386_294_4),
            // All walls: 0.
            ([5.0, -3.0, 1.0, 2.0], [-1; 4], 0.0),
            // p = (1, e^−200): H = 200·e^−200 ≈ 0, with no overflow from the extreme logits.
            ([100.0, -100.0, 50.0, 0.0], [0, 0, -1, -1], 0.0),
            // Path = moves {0, 1, 2} with a −∞ logit: p = (0, 1/2, 1/2) → ln 2 = 0.6931472.
            ([f32::NEG_INFINITY, 0.0, 0.0, 1.0], [0, 0, 0, -1], std::f64::consts::LN_2),
        ];
        let logits = t(&cases.iter().flat_map(|c| c.0).collect::<Vec<_>>())
            .view([9, 4])
            .set_requires_grad(true);
        let classes =
            Tensor::from_slice(&cases.iter().flat_map(|c| c.1).collect::<Vec<_>>()).view([9, 4]);
        let h = equalized_entropy(&logits, &classes);
        close(&vals(&h), &cases.map(|c| c.2), 1e-5);
        h.sum(None::<Kind>).backward();
        assert!(vals(&logits.grad()).iter().all(|g| g.is_finite()));
    }

    #[test]
    fn aggregate_all_modes() {
        let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let m = t(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]).view([2, 3]);
        let one = |how, z| aggregate(&x, &m, how, z).double_value(&[]);
        // Masked row sums: 1 + 2 = 3 and 4; lengths 2 and 1.
        // seq-mean-token-sum: (3/Z + 4/Z)/2 = 7/(2Z): Z = 2048 → 7/4096; Z = 2 → 1.75.
        close(&[one(Aggregation::SeqMeanTokenSum, 2048.0)], &[7.0 / 4096.0], 1e-6);
        close(&[one(Aggregation::SeqMeanTokenSum, 2.0)], &[1.75], 1e-6);
        // seq-mean-token-mean: (3/2 + 4/1)/2 = 2.75, whatever Z.
        close(&[one(Aggregation::SeqMeanTokenMean, 2.0)], &[2.75], 1e-6);
        // token-mean: (1 + 2 + 4)/3 = 7/3.
        close(&[one(Aggregation::TokenMean, 2048.0)], &[7.0 / 3.0], 1e-6);
        assert_eq!(
            serde_json::to_string(&Aggregation::SeqMeanTokenSum).unwrap(),
            "\"seq-mean-token-sum\""
        );
        assert_eq!(
            serde_json::from_str::<Aggregation>("\"token-mean\"").unwrap(),
            Aggregation::TokenMean
        );
        assert_eq!(serde_json::to_string(&KlEstimator::K3).unwrap(), "\"k3\"");
    }

    #[test]
    fn kl_estimators() {
        let logp = t(&[0.5f32.ln(), 0.25f32.ln(), 0.3f32.ln()]);
        let refp = t(&[0.25f32.ln(), 0.5f32.ln(), 0.3f32.ln()]);
        let ln2 = std::f64::consts::LN_2;
        // k1 = log(π/π_ref): ln 2, −ln 2, 0.
        close(&vals(&kl(&logp, &refp, KlEstimator::K1)), &[ln2, -ln2, 0.0], 1e-6);
        // k3 with d = log(π_ref/π): d = −ln 2 → 0.5 + ln 2 − 1 = 0.1931472;
        // d = ln 2 → 2 − ln 2 − 1 = 0.3068528; d = 0 → 0.
        let k3 = vals(&kl(&logp, &refp, KlEstimator::K3));
        close(&k3, &[0.193_147_2, 0.306_852_8, 0.0], 1e-6);
        assert!(k3.iter().all(|k| *k >= 0.0));
    }

    #[test]
    fn cosine_schedule() {
        close(&[cosine_multiplier(0, 11, 1.0)], &[1.0], 1e-12);
        close(&[cosine_multiplier(5, 11, 1.0)], &[0.5], 1e-12); // p = 0.5, cos(π/2) = 0
        close(&[cosine_multiplier(10, 11, 1.0)], &[0.0], 1e-12); // p = 1, cos π = −1
        close(&[cosine_multiplier(20, 11, 1.0)], &[0.0], 1e-12); // p capped at 1
        close(&[cosine_multiplier(5, 11, 2.0)], &[0.0], 1e-12); // p = 5/10·2 = 1
        close(&[cosine_multiplier(10, 11, 2.0)], &[0.0], 1e-12);
        // S = 500, step 95: p = 95/499 = 0.1903808; cos(0.5981026) = 0.8264076 → 0.9132038.
        close(&[cosine_multiplier(95, 500, 1.0)], &[0.913_203_8], 1e-6);
        // Step 94: p = 94/499 = 0.1883768; cos(0.5918066) = 0.8299362 → 0.9149681.
        close(&[cosine_multiplier(94, 500, 1.0)], &[0.914_968_1], 1e-6);
        assert_eq!(cosine_multiplier(0, 1, 1.0), 1.0);
        assert_eq!(cosine_multiplier(0, 0, 1.0), 1.0);
        close(&[cosine_multiplier(3, 1, 1.0)], &[0.0], 1e-12);
    }

    #[test]
    fn clipped_value_loss_branches() {
        // clip 0.2; V_old = 0.5 so a clipped V is 0.7 when V = 1.
        let v = t(&[1.0, 1.0, 0.6]);
        let v_old = t(&[0.5, 0.5, 0.5]);
        let r = t(&[0.0, 2.0, 1.0]);
        // R = 0: max((1−0)², (0.7−0)²) = max(1, 0.49) = 1 → 0.5 (unclipped wins).
        // R = 2: max((1−2)², (0.7−2)²) = max(1, 1.69) = 1.69 → 0.845 (clipped wins).
        // V − V_old = 0.1 inside the clip: (0.6 − 1)² = 0.16 → 0.08.
        close(&vals(&clipped_value_loss(&v, &v_old, &r, 0.2)), &[0.5, 0.845, 0.08], 1e-6);
    }

    #[test]
    fn normalize_advantages_masked() {
        let a = t(&[1.0, 2.0, 3.0, 100.0, 5.0, -50.0]).view([2, 3]);
        let m = t(&[1.0, 1.0, 1.0, 0.0, 1.0, 0.0]).view([2, 3]);
        // Masked entries 1, 2, 3, 5: mean 2.75; squared deviations 3.0625 + 0.5625 + 0.0625
        // + 5.0625 = 8.75; /4 = 2.1875; std = 1.4790199.
        let n = normalize_advantages(&a, &m);
        let expected = [-1.183_216, -0.507_092_6, 0.169_030_9, 0.0, 1.521_277_7, 0.0];
        close(&vals(&n), &expected, 1e-5);
        assert!(masked_mean(&n, &m).abs() < 1e-6);
        close(&[masked_mean(&n.square(), &m)], &[1.0], 1e-5);
        let none = normalize_advantages(&a, &m.zeros_like());
        assert!(vals(&none).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn explained_variance_cases() {
        let r = [1.0, 2.0, 3.0];
        assert_eq!(explained_variance(&r, &r), 1.0);
        // Predicting the mean 2: Var(R − 2) = Var(R) → 0.
        close(&[explained_variance(&[2.0, 2.0, 2.0], &r)], &[0.0], 1e-12);
        // R − V = (0, 0, 1): Var = 2/9; Var(R) = 2/3 → 1 − 1/3 = 2/3.
        close(&[explained_variance(&[1.0, 2.0, 2.0], &r)], &[2.0 / 3.0], 1e-12);
        assert_eq!(explained_variance(&[1.0, 5.0], &[4.0, 4.0]), 0.0);
        assert_eq!(explained_variance(&[], &[]), 0.0);
    }

    #[test]
    fn approx_kl_and_masked_mean() {
        let new = t(&[0.5f32.ln(), 0.25f32.ln(), 0.3f32.ln(), 0.9f32.ln()]);
        let old = t(&[0.25f32.ln(), 0.5f32.ln(), 0.3f32.ln(), 0.1f32.ln()]);
        // d = old − new: −ln 2 → 0.5 + ln 2 − 1; ln 2 → 2 − ln 2 − 1; 0 → 0; last masked out.
        // Sum = 0.5 over 3 tokens → 1/6.
        let m = t(&[1.0, 1.0, 1.0, 0.0]);
        close(&[approx_kl(&new, &old, &m)], &[1.0 / 6.0], 1e-6);
        // (1 + 3 + 4)/3 = 8/3, with a float and with a bool mask; an empty mask gives 0.
        let x = t(&[1.0, 2.0, 3.0, 4.0]).view([2, 2]);
        let mf = t(&[1.0, 0.0, 1.0, 1.0]).view([2, 2]);
        close(&[masked_mean(&x, &mf)], &[8.0 / 3.0], 1e-12);
        close(&[masked_mean(&x, &mf.to_kind(Kind::Bool))], &[8.0 / 3.0], 1e-12);
        assert_eq!(masked_mean(&x, &mf.zeros_like()), 0.0);
    }
}
