//! Means, variances and cosines of plain slices.

/// Arithmetic mean; NaN if `x` is empty.
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Unbiased sample variance (denominator `n − 1`), computed about the mean in two passes;
/// NaN if `x` has fewer than two values.
pub fn sample_var(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
}

/// Cosine of the angle between `a` and `b`; NaN if the lengths differ, either is empty or
/// either is a zero vector.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::NAN;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return f64::NAN;
    }
    (dot / (na * nb)).clamp(-1.0, 1.0)
}

/// The `q`-quantile of `x` with linear interpolation between order statistics (numpy's default
/// `method="linear"`); NaN if `x` is empty, contains NaN, or `q` is outside `[0, 1]`.
pub fn quantile(x: &[f64], q: f64) -> f64 {
    if x.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile_sorted(&sorted, q)
}

/// [`quantile`] of an ascending slice without NaN.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let frac = h - below as f64;
    sorted[below] + frac * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_var_match_numpy() {
        let x = [2.5, -1.0, 4.0, 0.5, 3.25];
        // np.mean([2.5,-1.0,4.0,0.5,3.25]) -> 1.85
        assert!((mean(&x) - 1.85).abs() < 1e-12);
        // np.var([2.5,-1.0,4.0,0.5,3.25], ddof=1) -> 4.2375
        assert!((sample_var(&x) - 4.2375).abs() < 1e-12);
    }

    #[test]
    fn var_is_shift_invariant_and_stable() {
        // Closed form: var of {c, c+1, c+2} is 1 for any shift c.
        assert!((sample_var(&[1e9, 1e9 + 1.0, 1e9 + 2.0]) - 1.0).abs() < 1e-9);
        assert_eq!(sample_var(&[3.0, 3.0, 3.0]), 0.0);
    }

    #[test]
    fn degenerate_inputs_give_nan() {
        assert!(mean(&[]).is_nan());
        assert!(sample_var(&[]).is_nan());
        assert!(sample_var(&[1.0]).is_nan());
        assert!(cosine(&[1.0, 2.0], &[1.0]).is_nan());
        assert!(cosine(&[], &[]).is_nan());
        assert!(cosine(&[0.0, 0.0], &[1.0, 2.0]).is_nan());
        assert!(cosine(&[1.0, 2.0], &[0.0, 0.0]).is_nan());
    }

    #[test]
    fn quantile_matches_numpy() {
        let x = [3.0, -1.0, 7.5, 2.0, 2.0, 10.0, 0.5];
        // np.quantile([3.,-1.,7.5,2.,2.,10.,.5], q) for each q below.
        let reference = [
            (0.0, -1.0),
            (0.025, -0.774_999_999_999_999_9),
            (0.3, 1.699_999_999_999_999_7),
            (0.5, 2.0),
            (0.975, 9.625),
            (1.0, 10.0),
        ];
        for (q, want) in reference {
            assert!((quantile(&x, q) - want).abs() < 1e-12, "q = {q}");
        }
        assert_eq!(quantile(&[4.0], 0.3), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert!(quantile(&[1.0, f64::NAN], 0.5).is_nan());
        assert!(quantile(&[1.0, 2.0], 1.5).is_nan());
        assert!(quantile(&[1.0, 2.0], f64::NAN).is_nan());
    }

    #[test]
    fn cosine_closed_forms() {
        // Orthogonal, parallel, antiparallel, 45 degrees.
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-15);
        assert!((cosine(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-15);
        assert!((cosine(&[1.0, 2.0], &[-3.0, -6.0]) + 1.0).abs() < 1e-15);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-15);
        // a=np.array([1.,-2.,0.5,3.]); b=np.array([0.3,1.,-1.,2.]);
        // a@b/np.linalg.norm(a)/np.linalg.norm(b) -> 0.40791297353626904
        let c = cosine(&[1.0, -2.0, 0.5, 3.0], &[0.3, 1.0, -1.0, 2.0]);
        assert!((c - REF_COS).abs() < 1e-12, "{c}");
    }
    const REF_COS: f64 = 0.407_912_973_536_269_04;
}
