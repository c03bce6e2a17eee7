//! Null distributions of a statistic over uniformly random directions.

use super::basic::{mean, quantile_sorted, sample_var};
use crate::rng::{Stream, WaxRng};

/// Summary of a random-direction null distribution and where an observed value falls in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NullSummary {
    /// The observed statistic being tested.
    pub observed: f64,
    /// Mean of the null statistics.
    pub mean: f64,
    /// Sample SD (`n − 1`) of the null statistics.
    pub sd: f64,
    /// 2.5% quantile of the null statistics (linear interpolation).
    pub q025: f64,
    /// 97.5% quantile of the null statistics (linear interpolation).
    pub q975: f64,
    /// `(1 + #{|null| ≥ |observed|}) / (1 + draws)`; NaN if `observed` is NaN or `draws` is 0.
    pub p_two_sided: f64,
    /// Number of null statistics that were not NaN (those summarised).
    pub draws: usize,
}

/// A uniformly random unit vector in `R^dim` (a normalised standard Gaussian vector).
/// `out` must be non-empty.
fn random_unit(rng: &mut WaxRng, out: &mut [f64]) {
    loop {
        out.iter_mut().for_each(|v| *v = rng.normal());
        let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|v| *v /= norm);
            return;
        }
    }
}

/// Null distribution of `stat` over `draws` uniformly random unit directions in `R^dim`.
///
/// `stat(dir)` receives a unit vector (callers rescale to the norm they need). NaN statistics
/// are dropped. Deterministic given `seed` (stream [`Stream::NullDirections`]). With `dim == 0`
/// no direction exists: every field but `observed` is NaN and `draws` is 0.
pub fn random_direction_null(
    dim: usize,
    draws: usize,
    seed: u64,
    observed: f64,
    mut stat: impl FnMut(&[f64]) -> f64,
) -> NullSummary {
    let mut values = Vec::with_capacity(draws);
    if dim > 0 {
        let mut rng = WaxRng::new(seed, Stream::NullDirections);
        let mut dir = vec![0.0; dim];
        for _ in 0..draws {
            random_unit(&mut rng, &mut dir);
            let v = stat(&dir);
            if !v.is_nan() {
                values.push(v);
            }
        }
    }
    values.sort_by(f64::total_cmp);
    let extreme = values.iter().filter(|v| v.abs() >= observed.abs()).count();
    let p = if values.is_empty() || observed.is_nan() {
        f64::NAN
    } else {
        (1 + extreme) as f64 / (1 + values.len()) as f64
    };
    NullSummary {
        observed,
        mean: mean(&values),
        sd: sample_var(&values).sqrt(),
        q025: quantile_sorted(&values, 0.025),
        q975: quantile_sorted(&values, 0.975),
        p_two_sided: p,
        draws: values.len(),
    }
}

/// Exact SD of the cosine between a uniformly random unit vector in `R^dim` and a fixed one:
/// `1/sqrt(dim)` (the squared cosine is Beta(1/2, (dim−1)/2) with mean `1/dim`). NaN if
/// `dim == 0`.
pub fn null_cosine_sd(dim: usize) -> f64 {
    if dim == 0 {
        return f64::NAN;
    }
    1.0 / (dim as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::basic::cosine;

    fn fixed_unit(dim: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..dim).map(|i| (i as f64 * 0.7).sin() + 0.3).collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn cosine_null_matches_closed_form() {
        for (dim, draws) in [(64, 4000), (5, 4000)] {
            let fixed = fixed_unit(dim);
            let s = random_direction_null(dim, draws, 1, 0.0, |d| cosine(d, &fixed));
            let sd = null_cosine_sd(dim);
            assert_eq!(s.draws, draws);
            // Mean 0 with SD sd/sqrt(draws); allow 5 SD.
            assert!(s.mean.abs() < 5.0 * sd / (draws as f64).sqrt(), "{s:?}");
            // The sample SD has relative SD ≈ 1/sqrt(2 draws) ≈ 1.1% (a bit more for dim 5).
            assert!((s.sd / sd - 1.0).abs() < 0.06, "{s:?} vs {sd}");
            // Symmetric about 0.
            assert!((s.q025 + s.q975).abs() < 0.15 * s.q975, "{s:?}");
            assert!(s.p_two_sided > 0.99);
        }
    }

    #[test]
    fn directions_are_unit_and_quantiles_match_normal_limit() {
        // For large dim, sqrt(dim) · cos is close to N(0,1): the 97.5% quantile ≈ 1.96/sqrt(dim).
        let fixed = fixed_unit(1000);
        let s = random_direction_null(1000, 4000, 2, 0.0, |d| {
            let norm = d.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12);
            cosine(d, &fixed)
        });
        assert!((s.q975 * 1000f64.sqrt() - 1.96).abs() < 0.12, "{s:?}");
    }

    #[test]
    fn large_observed_cosine_has_minimal_p_value() {
        let fixed = fixed_unit(64);
        let s = random_direction_null(64, 2000, 3, 0.9, |d| cosine(d, &fixed));
        // No random direction in dim 64 reaches |cos| = 0.9 (tail probability ~ 1e-20).
        assert_eq!(s.p_two_sided, 1.0 / 2001.0);
        assert_eq!(s.observed, 0.9);
    }

    #[test]
    fn p_value_counts_two_sided_exceedances() {
        // stat = first coordinate's sign ±1: every draw has |null| = 1 ≥ 0.5, none ≥ 1.5.
        let s = random_direction_null(3, 99, 4, -0.5, |d| d[0].signum());
        assert_eq!(s.p_two_sided, 1.0);
        let s = random_direction_null(3, 99, 4, 1.5, |d| d[0].signum());
        assert_eq!(s.p_two_sided, 0.01);
    }

    #[test]
    fn deterministic_given_seed() {
        let fixed = fixed_unit(8);
        let run = |seed| random_direction_null(8, 100, seed, 0.2, |d| cosine(d, &fixed));
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn degenerate_inputs() {
        let s = random_direction_null(0, 10, 0, 0.5, |_| 1.0);
        assert!(s.mean.is_nan() && s.sd.is_nan() && s.p_two_sided.is_nan() && s.draws == 0);
        let s = random_direction_null(4, 0, 0, 0.5, |_| 1.0);
        assert!(s.p_two_sided.is_nan() && s.draws == 0);
        let s = random_direction_null(4, 10, 0, f64::NAN, |_| 1.0);
        assert!(s.p_two_sided.is_nan() && s.mean == 1.0);
        let s = random_direction_null(4, 10, 0, 0.5, |_| f64::NAN);
        assert!(s.q025.is_nan() && s.draws == 0);
        assert!(null_cosine_sd(0).is_nan());
        assert_eq!(null_cosine_sd(16), 0.25);
    }
}
