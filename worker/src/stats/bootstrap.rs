//! Stratified percentile bootstrap confidence intervals.

use super::basic::quantile_sorted;
use crate::rng::{Stream, WaxRng};

/// A point estimate with a bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The statistic on the original (unresampled) data.
    pub estimate: f64,
    /// Lower percentile bound, the `(1 − level)/2` quantile of the resampled statistics.
    pub lo: f64,
    /// Upper percentile bound, the `(1 + level)/2` quantile of the resampled statistics.
    pub hi: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    /// Number of resamples whose statistic was not NaN (those the percentiles are taken over).
    pub resamples: usize,
}

/// Stratified percentile bootstrap of `stat`.
///
/// `groups[g]` is the size of group `g`. Each of `resamples` rounds draws `groups[g]` indices
/// in `0..groups[g]` with replacement for every group and calls `stat(&indices_per_group)`;
/// `estimate` is `stat` on the identity indices. `lo`/`hi` are linearly interpolated
/// percentiles (numpy's default) of the non-NaN resampled statistics; NaN when there are none
/// or `level` is not in `(0, 1)`. Deterministic given `seed` (stream [`Stream::Bootstrap`]).
pub fn bootstrap_ci(
    groups: &[usize],
    resamples: usize,
    level: f64,
    seed: u64,
    mut stat: impl FnMut(&[Vec<usize>]) -> f64,
) -> Interval {
    let mut indices: Vec<Vec<usize>> = groups.iter().map(|&n| (0..n).collect()).collect();
    let estimate = stat(&indices);
    let mut rng = WaxRng::new(seed, Stream::Bootstrap);
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (idx, &n) in indices.iter_mut().zip(groups) {
            idx.iter_mut().for_each(|i| *i = rng.index(n));
        }
        let v = stat(&indices);
        if !v.is_nan() {
            values.push(v);
        }
    }
    values.sort_by(f64::total_cmp);
    let valid_level = level > 0.0 && level < 1.0;
    let bound = |q: f64| if valid_level { quantile_sorted(&values, q) } else { f64::NAN };
    Interval {
        estimate,
        lo: bound((1.0 - level) / 2.0),
        hi: bound((1.0 + level) / 2.0),
        level,
        resamples: values.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::basic::mean;

    fn resampled_mean(data: &[f64]) -> impl FnMut(&[Vec<usize>]) -> f64 + '_ {
        move |idx: &[Vec<usize>]| idx[0].iter().map(|&i| data[i]).sum::<f64>() / data.len() as f64
    }

    #[test]
    fn ci_for_normal_mean_has_nominal_coverage() {
        let reps = 400;
        let mut covered = 0;
        for rep in 0..reps {
            let mut r = WaxRng::new(rep, Stream::Policy);
            let data: Vec<f64> = (0..50).map(|_| r.normal()).collect();
            let ci = bootstrap_ci(&[50], 1000, 0.95, rep, resampled_mean(&data));
            assert!((ci.estimate - mean(&data)).abs() < 1e-12);
            assert!(ci.lo <= ci.hi && ci.resamples == 1000);
            covered += usize::from(ci.lo <= 0.0 && 0.0 <= ci.hi);
        }
        let coverage = covered as f64 / reps as f64;
        assert!((0.92..=0.98).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn width_matches_normal_theory() {
        // The bootstrap distribution of a mean has SD sqrt(var_pop / n); a 95% interval is
        // about 2 · 1.96 of that wide (n = 400, so the mean's distribution is close to normal).
        let mut r = WaxRng::new(11, Stream::Policy);
        let data: Vec<f64> = (0..400).map(|_| 3.0 + 2.0 * r.normal()).collect();
        let m = mean(&data);
        let var_pop = data.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 400.0;
        let ci = bootstrap_ci(&[400], 4000, 0.95, 5, resampled_mean(&data));
        let expected = 2.0 * 1.959_964 * (var_pop / 400.0).sqrt();
        assert!(((ci.hi - ci.lo) / expected - 1.0).abs() < 0.08, "{ci:?} vs {expected}");
    }

    #[test]
    fn constant_sample_gives_degenerate_interval() {
        let data = [2.5; 30];
        let ci = bootstrap_ci(&[30], 200, 0.9, 1, resampled_mean(&data));
        assert_eq!((ci.estimate, ci.lo, ci.hi), (2.5, 2.5, 2.5));
        assert_eq!((ci.level, ci.resamples), (0.9, 200));
    }

    #[test]
    fn resampling_is_uniform_with_replacement() {
        // Two values: a resample of size 2 has mean a, (a+b)/2, b with probabilities 1/4, 1/2,
        // 1/4 (binomial), checked to 5 SD over 20_000 resamples.
        let mut counts = [0usize; 3];
        bootstrap_ci(&[2], 20_000, 0.95, 3, |idx: &[Vec<usize>]| {
            counts[idx[0].iter().sum::<usize>()] += 1;
            0.0
        });
        let sd = |p: f64| 5.0 * (p * (1.0 - p) / 20_000.0f64).sqrt();
        assert!((counts[0] as f64 / 20_000.0 - 0.25).abs() < sd(0.25));
        assert!((counts[1] as f64 / 20_000.0 - 0.5).abs() < sd(0.5));
    }

    /// Every index set `bootstrap_ci` hands to `stat` for these groups and seed.
    fn record(groups: &[usize], seed: u64) -> Vec<Vec<Vec<usize>>> {
        let mut seen = Vec::new();
        bootstrap_ci(groups, 50, 0.8, seed, |idx: &[Vec<usize>]| {
            seen.push(idx.to_vec());
            0.0
        });
        seen
    }

    #[test]
    fn stratified_and_deterministic() {
        let seen = record(&[3, 5, 0], 9);
        assert_eq!(seen.len(), 51);
        assert_eq!(seen[0], [vec![0, 1, 2], vec![0, 1, 2, 3, 4], vec![]]);
        for idx in &seen {
            assert_eq!(idx.iter().map(Vec::len).collect::<Vec<_>>(), [3, 5, 0]);
            assert!(idx[0].iter().all(|&i| i < 3) && idx[1].iter().all(|&i| i < 5));
        }
        assert_eq!(seen, record(&[3, 5, 0], 9));
        assert_ne!(seen, record(&[3, 5, 0], 10));
    }

    #[test]
    fn nan_statistics_are_skipped() {
        let mut calls = 0;
        let ci = bootstrap_ci(&[5], 100, 0.8, 2, |idx: &[Vec<usize>]| {
            calls += 1;
            if calls % 2 == 0 { f64::NAN } else { idx[0][0] as f64 }
        });
        // Call 1 is the estimate; the resamples are calls 2..=101, of which the 50 odd ones count.
        assert_eq!(ci.resamples, 50);
        assert!(ci.lo.is_finite() && ci.hi.is_finite() && ci.lo <= ci.hi);
    }

    #[test]
    fn bad_level_or_all_nan_gives_nan_bounds() {
        let ci = bootstrap_ci(&[4], 50, 1.0, 0, |_: &[Vec<usize>]| 1.0);
        assert!(ci.lo.is_nan() && ci.hi.is_nan() && ci.estimate == 1.0);
        let ci = bootstrap_ci(&[4], 50, 0.95, 0, |_: &[Vec<usize>]| f64::NAN);
        assert!(ci.lo.is_nan() && ci.hi.is_nan() && ci.resamples == 0);
        let ci = bootstrap_ci(&[], 0, 0.95, 0, |_: &[Vec<usize>]| 0.0);
        assert!(ci.lo.is_nan() && ci.resamples == 0);
    }
}
