//! Simple linear regression with classical standard errors.

/// Fit of `y = intercept + slope · x` by ordinary least squares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ols {
    /// Estimated slope `b1`.
    pub slope: f64,
    /// Estimated intercept `b0`.
    pub intercept: f64,
    /// Classical standard error of the slope, `sqrt(σ² / Sxx)`.
    pub slope_se: f64,
    /// Classical standard error of the intercept, `sqrt(σ² (1/n + x̄² / Sxx))`.
    pub intercept_se: f64,
    /// Number of points.
    pub n: usize,
    /// Coefficient of determination `1 − RSS/TSS`; 1.0 when `y` is constant (perfect fit).
    pub r2: f64,
}

/// Least-squares fit of `y = b0 + b1 x` with `σ² = RSS / (n − 2)`.
///
/// `None` if the lengths differ, `n < 3`, any value is not finite, or `x` is constant.
pub fn ols(x: &[f64], y: &[f64]) -> Option<Ols> {
    let n = x.len();
    if n != y.len() || n < 3 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    if x.iter().all(|&v| v == x[0]) {
        return None;
    }
    let nf = n as f64;
    let (xbar, ybar) = (x.iter().sum::<f64>() / nf, y.iter().sum::<f64>() / nf);
    let sxx: f64 = x.iter().map(|v| (v - xbar) * (v - xbar)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - xbar) * (b - ybar)).sum();
    let tss: f64 = y.iter().map(|v| (v - ybar) * (v - ybar)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = ybar - slope * xbar;
    let rss: f64 = x.iter().zip(y).map(|(a, b)| (b - intercept - slope * a).powi(2)).sum();
    let sigma2 = rss / (nf - 2.0);
    Some(Ols {
        slope,
        intercept,
        slope_se: (sigma2 / sxx).sqrt(),
        intercept_se: (sigma2 * (1.0 / nf + xbar * xbar / sxx)).sqrt(),
        n,
        r2: if tss > 0.0 { 1.0 - rss / tss } else { 1.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn closed_form_hand_data() {
        // x̄ = ȳ = 1, Sxx = 2, Sxy = 1: b1 = 0.5, b0 = 0.5; residuals (-0.5, 1, -0.5), RSS = 1.5,
        // σ² = 1.5, se(b1) = sqrt(1.5/2), se(b0) = sqrt(1.5 (1/3 + 1/2)), R² = 1 - 1.5/2.
        let f = ols(&[0.0, 1.0, 2.0], &[0.0, 2.0, 1.0]).unwrap();
        assert!(close(f.slope, 0.5) && close(f.intercept, 0.5));
        assert!(close(f.slope_se, 0.75f64.sqrt()));
        assert!(close(f.intercept_se, 1.25f64.sqrt()));
        assert!(close(f.r2, 0.25));
        assert_eq!(f.n, 3);
    }

    #[test]
    fn exact_line_has_zero_errors() {
        let f = ols(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]).unwrap();
        assert!(close(f.slope, 2.0) && close(f.intercept, 1.0));
        assert!(f.slope_se < 1e-12 && f.intercept_se < 1e-12);
        assert!(close(f.r2, 1.0));
        let flat = ols(&[0.0, 1.0, 2.0], &[4.0, 4.0, 4.0]).unwrap();
        assert!(close(flat.slope, 0.0) && close(flat.intercept, 4.0) && flat.r2 == 1.0);
    }

    #[test]
    fn matches_numpy_lstsq() {
        // x=np.array([1.,2.,3.5,4.,6.,7.5]); y=np.array([2.1,2.9,5.2,5.1,8.3,9.0])
        // X=np.column_stack([np.ones_like(x),x]); beta,rss,_,_=np.linalg.lstsq(X,y)
        // se=np.sqrt(np.diag(rss[0]/4*np.linalg.inv(X.T@X))); r2=1-rss[0]/((y-y.mean())**2).sum()
        let x = [1.0, 2.0, 3.5, 4.0, 6.0, 7.5];
        let y = [2.1, 2.9, 5.2, 5.1, 8.3, 9.0];
        let f = ols(&x, &y).unwrap();
        assert!((f.intercept - 0.904_519_774_011_301_6).abs() < 1e-10);
        assert!((f.slope - 1.132_203_389_830_507_7).abs() < 1e-10);
        assert!((f.intercept_se - 0.380_726_305_932_970_9).abs() < 1e-10);
        assert!((f.slope_se - 0.083_246_627_304_529_64).abs() < 1e-10);
        assert!((f.r2 - 0.978_833_301_648_118_5).abs() < 1e-10);
        assert_eq!(f.n, 6);
    }

    #[test]
    fn bad_input_is_none() {
        assert!(ols(&[1.0, 2.0], &[1.0, 2.0]).is_none());
        assert!(ols(&[1.0, 2.0, 3.0], &[1.0, 2.0]).is_none());
        assert!(ols(&[0.1, 0.1, 0.1], &[1.0, 2.0, 3.0]).is_none());
        assert!(ols(&[1.0, 2.0, f64::NAN], &[1.0, 2.0, 3.0]).is_none());
        assert!(ols(&[], &[]).is_none());
    }
}
