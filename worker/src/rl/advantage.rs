//! Advantage estimators for the maze RL algorithms (docs/protocol.md §2), in plain `f64`.
//!
//! * [`group_advantages`]: Dr. GRPO (`R_i − mean_g`) and GRPO (`(R_i − mean_g)/(std_g + eps)`),
//!   where the mean and the unbiased standard deviation run over the rollouts of one group
//!   (one maze).
//! * [`returns_to_go`] and [`reinforce_advantages`]: token-level REINFORCE with per-turn rewards,
//!   undiscounted returns-to-go and a per-position group baseline over ragged trajectories.
//! * [`gae`]: generalised advantage estimation for PPO, one trajectory at a time.
//! * [`mean_std`]: the mean and unbiased standard deviation used above.

use std::collections::HashMap;

/// Returns the mean and the unbiased (`n − 1`) sample standard deviation of `xs`.
///
/// The standard deviation is 0 when `xs` has fewer than two elements; the mean of an empty
/// slice is 0.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Computes one advantage per rollout from its scalar return and its group.
///
/// `returns[i]` is the return of rollout `i` and `groups[i]` its group id; ids are arbitrary
/// labels and need not be contiguous or sorted. With `normalize_std == false` this is Dr. GRPO:
/// `A_i = R_i − mean_g`. With `normalize_std == true` this is GRPO:
/// `A_i = (R_i − mean_g) / (std_g + eps)`, with `std_g` the unbiased standard deviation of the
/// group. A group with a single rollout gets advantage 0 in both modes.
///
/// The two slices must have the same length (checked by a debug assertion); in release builds
/// the extra elements of the longer slice are ignored.
pub fn group_advantages(
    returns: &[f64],
    groups: &[usize],
    normalize_std: bool,
    eps: f64,
) -> Vec<f64> {
    debug_assert_eq!(returns.len(), groups.len(), "one group id per return");
    let mut members: HashMap<usize, Vec<f64>> = HashMap::new();
    for (&r, &g) in returns.iter().zip(groups) {
        members.entry(g).or_default().push(r);
    }
    let stats: HashMap<usize, (f64, f64, usize)> = members
        .iter()
        .map(|(&g, xs)| {
            let (mean, std) = mean_std(xs);
            (g, (mean, std, xs.len()))
        })
        .collect();
    returns
        .iter()
        .zip(groups)
        .map(|(&r, g)| {
            let (mean, std, size) = stats[g];
            if size < 2 {
                0.0
            } else if normalize_std {
                (r - mean) / (std + eps)
            } else {
                r - mean
            }
        })
        .collect()
}

/// Returns the undiscounted returns-to-go of one trajectory: `G_t = Σ_{k=t}^{T−1} r_k`.
pub fn returns_to_go(rewards: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; rewards.len()];
    let mut acc = 0.0;
    for t in (0..rewards.len()).rev() {
        acc += rewards[t];
        out[t] = acc;
    }
    out
}

/// Computes token-level REINFORCE advantages for ragged trajectories.
///
/// `rewards[i]` holds the per-turn rewards of trajectory `i` (its length `T_i` may differ from
/// the others) and `groups[i]` its group id (arbitrary labels). For every group `g` and turn
/// position `t`, the baseline `b_t^(g)` is the mean of `G_{i,t}` over the trajectories `i` of
/// `g` with `t < T_i` (see [`returns_to_go`]). The result has the shape of `rewards`, with
/// `A_{i,t} = G_{i,t} − b_t^(g(i))`; positions past `T_i` simply do not exist in the output.
///
/// The two slices must have the same length (checked by a debug assertion); in release builds
/// the extra elements of the longer slice are ignored.
pub fn reinforce_advantages(rewards: &[Vec<f64>], groups: &[usize]) -> Vec<Vec<f64>> {
    debug_assert_eq!(rewards.len(), groups.len(), "one group id per trajectory");
    let n = rewards.len().min(groups.len());
    let rtg: Vec<Vec<f64>> = rewards[..n].iter().map(|r| returns_to_go(r)).collect();
    // Per group: (sum of G at position t, count of valid trajectories at position t).
    let mut sums: HashMap<usize, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for (g, ret) in groups[..n].iter().zip(&rtg) {
        let (sum, count) = sums.entry(*g).or_default();
        if sum.len() < ret.len() {
            sum.resize(ret.len(), 0.0);
            count.resize(ret.len(), 0.0);
        }
        for (t, v) in ret.iter().enumerate() {
            sum[t] += v;
            count[t] += 1.0;
        }
    }
    groups[..n]
        .iter()
        .zip(&rtg)
        .map(|(g, ret)| {
            let (sum, count) = &sums[g];
            ret.iter().enumerate().map(|(t, v)| v - sum[t] / count[t].max(1.0)).collect()
        })
        .collect()
}

/// Computes generalised advantage estimates and value targets for one trajectory.
///
/// `values[t]` is the critic's estimate `V_t` at turn `t`; the trajectory ends after its last
/// turn, so `V_T = 0`. With `δ_t = r_t + γ V_{t+1} − V_t` and `A_T = 0`, the advantages are
/// `A_t = δ_t + γ λ A_{t+1}` and the returns (value targets) are `A_t + V_t`. Returns
/// `(advantages, returns)`, each of length `rewards.len()`.
///
/// `values` must have the length of `rewards` (checked by a debug assertion); in release
/// builds a shorter `values` is padded with zeros.
pub fn gae(rewards: &[f64], values: &[f64], gamma: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(rewards.len(), values.len(), "one value per reward");
    let n = rewards.len();
    let v = |t: usize| values.get(t).copied().unwrap_or(0.0);
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for t in (0..n).rev() {
        let next_v = if t + 1 < n { v(t + 1) } else { 0.0 };
        let delta = rewards[t] + gamma * next_v - v(t);
        next_adv = delta + gamma * lambda * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().enumerate().map(|(t, a)| a + v(t)).collect();
    (adv, returns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn mean_std_small_cases() {
        assert_eq!(mean_std(&[]), (0.0, 0.0));
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
        // mean 2; squared deviations 1 + 0 + 1 = 2; 2 / (3 − 1) = 1 → std 1.
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        close(&[m, s], &[2.0, 1.0], 1e-12);
    }

    #[test]
    fn group_advantages_dr_grpo_and_grpo() {
        // Group 0 = {1, 2, 3} at indices 0, 2, 4; group 1 = {10, 20} at 1, 3; group 7 = {5}.
        let r = [1.0, 10.0, 2.0, 20.0, 3.0, 5.0];
        let g = [0, 1, 0, 1, 0, 7];
        // Dr. GRPO: group 0 mean 2 → −1, 0, 1; group 1 mean 15 → −5, 5; singleton → 0.
        let dr = group_advantages(&r, &g, false, 1e-6);
        close(&dr, &[-1.0, -5.0, 0.0, 5.0, 1.0, 0.0], 1e-12);
        // GRPO: group 0 std = sqrt(2/2) = 1 → −1, 0, 1 (divided by 1 + 1e-6);
        // group 1 std = sqrt((25 + 25)/1) = sqrt(50) = 7.0710678 → ∓5/7.0710678 = ∓0.70710678.
        let grpo = group_advantages(&r, &g, true, 1e-6);
        let s = std::f64::consts::FRAC_1_SQRT_2; // 5 / √50 = 1 / √2
        close(&grpo, &[-1.0, -s, 0.0, s, 1.0, 0.0], 1e-5);
    }

    #[test]
    fn group_of_one_is_zero() {
        assert_eq!(group_advantages(&[3.5], &[42], false, 1e-6), vec![0.0]);
        assert_eq!(group_advantages(&[3.5], &[42], true, 1e-6), vec![0.0]);
        assert!(group_advantages(&[], &[], true, 1e-6).is_empty());
    }

    #[test]
    fn returns_to_go_by_hand() {
        // [1, 0, 2] → [1+0+2, 0+2, 2] = [3, 2, 2].
        assert_eq!(returns_to_go(&[1.0, 0.0, 2.0]), vec![3.0, 2.0, 2.0]);
        assert_eq!(returns_to_go(&[4.0]), vec![4.0]);
        assert!(returns_to_go(&[]).is_empty());
    }

    #[test]
    fn reinforce_ragged_groups() {
        let rewards = vec![
            vec![1.0, 0.0, 2.0],  // group 5, G = [3, 2, 2]
            vec![1.0, 1.0],       // group 9, G = [2, 1]
            vec![0.0, 3.0],       // group 5, G = [3, 3]
            vec![4.0],            // group 5, G = [4]
            vec![2.0, -1.0, 5.0], // group 9, G = [6, 4, 5]
        ];
        let groups = [5, 9, 5, 5, 9];
        // Group 5 baselines: t0 (3+3+4)/3 = 10/3; t1 (2+3)/2 = 2.5; t2 only trajectory 0 → 2.
        // Group 9 baselines: t0 (2+6)/2 = 4; t1 (1+4)/2 = 2.5; t2 only trajectory 4 → 5.
        let a = reinforce_advantages(&rewards, &groups);
        assert_eq!(a.len(), 5);
        close(&a[0], &[3.0 - 10.0 / 3.0, -0.5, 0.0], 1e-12);
        close(&a[1], &[-2.0, -1.5], 1e-12);
        close(&a[2], &[3.0 - 10.0 / 3.0, 0.5], 1e-12);
        close(&a[3], &[4.0 - 10.0 / 3.0], 1e-12);
        close(&a[4], &[2.0, 1.5, 0.0], 1e-12);
    }

    #[test]
    fn gae_special_cases_and_worked_example() {
        let r = [1.0, 0.0, 2.0];
        let v = [0.5, 1.0, 1.5];
        // γ = λ = 1: A = G − V = [3, 2, 2] − [0.5, 1, 1.5] = [2.5, 1, 0.5]; returns = G.
        let (a, ret) = gae(&r, &v, 1.0, 1.0);
        close(&a, &[2.5, 1.0, 0.5], 1e-12);
        close(&ret, &[3.0, 2.0, 2.0], 1e-12);
        // λ = 0, γ = 0.9: A = δ: δ2 = 2 + 0 − 1.5 = 0.5; δ1 = 0 + 0.9·1.5 − 1 = 0.35;
        // δ0 = 1 + 0.9·1 − 0.5 = 1.4.
        let (a, _) = gae(&r, &v, 0.9, 0.0);
        close(&a, &[1.4, 0.35, 0.5], 1e-12);
        // γ = 0.9, λ = 0.8 (γλ = 0.72): A2 = 0.5; A1 = 0.35 + 0.72·0.5 = 0.71;
        // A0 = 1.4 + 0.72·0.71 = 1.9112. Returns = A + V = [2.4112, 1.71, 2.0].
        let (a, ret) = gae(&r, &v, 0.9, 0.8);
        close(&a, &[1.9112, 0.71, 0.5], 1e-12);
        close(&ret, &[2.4112, 1.71, 2.0], 1e-12);
    }
}
