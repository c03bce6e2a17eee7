//! Overlap of two empirical distributions on a shared histogram.

/// Histogram overlap `Σ_b min(p̂a_b, p̂b_b)` in `[0, 1]`.
///
/// Both samples are binned into `bins` equal-width bins spanning the joint `[min, max]` of the
/// two samples (the maximum falls in the last bin, as in `numpy.histogram`); `p̂ = count / n`.
/// 1.0 when every value of both samples is equal. NaN if either sample is empty, `bins` is 0,
/// or any value is not finite.
pub fn histogram_overlap(a: &[f64], b: &[f64], bins: usize) -> f64 {
    if a.is_empty() || b.is_empty() || bins == 0 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let lo = a.iter().chain(b).copied().fold(f64::INFINITY, f64::min);
    let hi = a.iter().chain(b).copied().fold(f64::NEG_INFINITY, f64::max);
    if lo == hi {
        return 1.0;
    }
    let histogram = |x: &[f64]| {
        let mut counts = vec![0usize; bins];
        for &v in x {
            let pos = (v - lo) / (hi - lo) * bins as f64;
            counts[(pos as usize).min(bins - 1)] += 1;
        }
        counts
    };
    let (ha, hb) = (histogram(a), histogram(b));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    ha.iter().zip(&hb).map(|(&ca, &cb)| (ca as f64 / na).min(cb as f64 / nb)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_overlap_fully() {
        let x = [0.3, -1.2, 4.4, 2.0, 2.0, 0.0];
        assert!((histogram_overlap(&x, &x, 7) - 1.0).abs() < 1e-12);
        // Same distribution of values in a different order and multiplicity.
        assert!((histogram_overlap(&[1.0, 2.0], &[2.0, 1.0, 1.0, 2.0], 3) - 1.0).abs() < 1e-12);
        assert_eq!(histogram_overlap(&[5.0, 5.0], &[5.0], 10), 1.0);
    }

    #[test]
    fn disjoint_samples_do_not_overlap() {
        assert_eq!(histogram_overlap(&[0.0, 0.1, 0.2], &[0.9, 1.0], 4), 0.0);
    }

    #[test]
    fn hand_counted_case() {
        // Joint range [0, 4], bins of width 1: a puts 1/4 in each bin, b puts [0, 0, 1/4, 3/4]
        // (4.0 is the maximum and falls in the last bin): overlap = 1/4 + 1/4.
        let o = histogram_overlap(&[0.0, 1.0, 2.0, 3.0], &[2.0, 3.0, 4.0, 4.0], 4);
        assert!((o - 0.5).abs() < 1e-12);
    }

    #[test]
    fn matches_numpy_histogram() {
        // a=np.array([.1,.4,.35,.8,.9,.2]); b=np.array([.5,.55,.7,.95,.3]); r=(.1,.95)
        // np.minimum(np.histogram(a,5,r)[0]/6, np.histogram(b,5,r)[0]/5).sum() -> 0.4
        let a = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2];
        let b = [0.5, 0.55, 0.7, 0.95, 0.3];
        assert!((histogram_overlap(&a, &b, 5) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_nan() {
        assert!(histogram_overlap(&[], &[1.0], 5).is_nan());
        assert!(histogram_overlap(&[1.0], &[], 5).is_nan());
        assert!(histogram_overlap(&[1.0], &[2.0], 0).is_nan());
        assert!(histogram_overlap(&[1.0, f64::NAN], &[2.0], 5).is_nan());
        assert!(histogram_overlap(&[1.0, f64::INFINITY], &[2.0], 5).is_nan());
    }
}
