//! Standardised mean differences.

use super::basic::mean;

/// Cohen's d: `(mean+ − mean−) / s_pool` with
/// `s_pool = sqrt(((n1−1)s1² + (n2−1)s2²) / (n1+n2−2))`.
///
/// NaN if either group is empty, `n1 + n2 < 3`, `s_pool` is zero, or any value is NaN.
pub fn cohens_d(pos: &[f64], neg: &[f64]) -> f64 {
    let (n1, n2) = (pos.len(), neg.len());
    if n1 == 0 || n2 == 0 || n1 + n2 < 3 {
        return f64::NAN;
    }
    let (m1, m2) = (mean(pos), mean(neg));
    // (n−1)s² is the sum of squared deviations; it is 0 (not NaN) for a single value.
    let ss = |x: &[f64], m: f64| x.iter().map(|v| (v - m) * (v - m)).sum::<f64>();
    let pooled = ((ss(pos, m1) + ss(neg, m2)) / (n1 + n2 - 2) as f64).sqrt();
    if pooled == 0.0 || pooled.is_nan() {
        return f64::NAN;
    }
    (m1 - m2) / pooled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::basic::sample_var;

    #[test]
    fn matches_numpy() {
        let a = [1.0, 2.5, 3.0, 4.5, 2.0];
        let b = [0.5, 1.0, -0.5, 2.0];
        // a=np.array([1,2.5,3,4.5,2.]); b=np.array([.5,1,-.5,2.])
        // sp=np.sqrt(((5-1)*a.var(ddof=1)+(4-1)*b.var(ddof=1))/7); (a.mean()-b.mean())/sp
        // -> 1.5517051732605711
        assert!((cohens_d(&a, &b) - 1.551_705_173_260_571_1).abs() < 1e-12);
        assert!((cohens_d(&b, &a) + 1.551_705_173_260_571_1).abs() < 1e-12);
    }

    #[test]
    fn closed_form_with_equal_variances() {
        // Both groups have variance 1 (values m-1, m, m+1), so d is the mean difference.
        let d = cohens_d(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert!((d - 3.0).abs() < 1e-12);
        assert_eq!(sample_var(&[4.0, 5.0, 6.0]), 1.0);
        // A single-value group contributes no variance: s_pool = sqrt(2/2) = 1.
        assert!((cohens_d(&[10.0], &[1.0, 2.0, 3.0]) - 8.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs_give_nan() {
        assert!(cohens_d(&[], &[1.0, 2.0, 3.0]).is_nan());
        assert!(cohens_d(&[1.0], &[2.0]).is_nan());
        assert!(cohens_d(&[1.0, 1.0], &[2.0, 2.0]).is_nan());
        assert!(cohens_d(&[1.0, f64::NAN], &[2.0, 3.0]).is_nan());
    }
}
