//! Principal component analysis by thin SVD, and projection onto orthogonal complements.

use super::StatsError;
use tch::{Device, Kind, Tensor};

/// A fitted PCA. All tensors are `f64` on the CPU.
#[derive(Debug)]
pub struct Pca {
    /// Column means of the data, `[d]`.
    pub mean: Tensor,
    /// Principal directions as unit rows, `[k, d]`, by decreasing variance. Sign convention:
    /// each row's entry of largest magnitude (the first such) is positive.
    pub components: Tensor,
    /// Variance along each component, `s² / (n − 1)`.
    pub explained_variance: Vec<f64>,
    /// Each component's share of the total variance (over all directions, not just the `k`).
    pub explained_ratio: Vec<f64>,
}

fn input(msg: String) -> StatsError {
    StatsError::Input(msg)
}

/// PCA of the rows of `x` (`[n, d]`, any float kind or device), keeping `k` components.
///
/// Columns are centred, then a thin SVD is taken in `f64` on the CPU. Errors if `x` is not a
/// 2-D float tensor, `n < 2`, `k` is 0 or exceeds `min(n, d)`, a value is not finite, or the
/// data have zero total variance.
pub fn pca(x: &Tensor, k: usize) -> Result<Pca, StatsError> {
    let (n, d) = match x.size().as_slice() {
        &[n, d] => (n, d),
        s => return Err(input(format!("pca: expected a [n, d] tensor, got shape {s:?}"))),
    };
    if !x.f_is_floating_point()? {
        return Err(input(format!("pca: expected a float tensor, got {:?}", x.kind())));
    }
    if n < 2 {
        return Err(input(format!("pca: need at least 2 rows, got {n}")));
    }
    if k == 0 || k as i64 > n.min(d) {
        return Err(input(format!("pca: k = {k} must be in 1..=min(n, d) = {}", n.min(d))));
    }
    let x = x.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    if x.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
        return Err(input("pca: input contains NaN or infinite values".into()));
    }
    let mean = x.f_mean_dim(Some([0i64].as_slice()), false, Kind::Double)?;
    let centred = x.f_sub(&mean)?;
    // `torch.svd` (thin; V not transposed) rather than `linalg_svd`: tch always passes a
    // `driver` string to the latter, which libtorch rejects for CPU tensors.
    let (_, s, v) = centred.f_svd(true, true)?;
    let vh = v.f_transpose(0, 1)?;
    let s = Vec::<f64>::try_from(&s)?;
    let variance: Vec<f64> = s.iter().map(|v| v * v / (n - 1) as f64).collect();
    let total: f64 = variance.iter().sum();
    if total <= 0.0 {
        return Err(input("pca: all rows are identical (zero total variance)".into()));
    }
    let mut rows = Vec::<Vec<f64>>::try_from(&vh.f_narrow(0, 0, k as i64)?)?;
    for row in &mut rows {
        let mut peak = 0;
        for (j, v) in row.iter().enumerate() {
            if v.abs() > row[peak].abs() {
                peak = j;
            }
        }
        if row[peak] < 0.0 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
    let flat: Vec<f64> = rows.concat();
    let components = Tensor::f_from_slice(&flat)?.f_reshape([k as i64, d])?;
    let explained_variance = variance[..k].to_vec();
    let explained_ratio = explained_variance.iter().map(|v| v / total).collect();
    Ok(Pca { mean, components, explained_variance, explained_ratio })
}

/// The smallest `m` whose cumulative explained ratio reaches `threshold` (within `1e-12`);
/// `threshold` should lie in `(0, 1]`. Returns 0 for `threshold ≤ 0`, and the number of kept
/// components when even all of them fall short (or `threshold` is NaN).
pub fn components_for_variance(p: &Pca, threshold: f64) -> usize {
    if threshold <= 0.0 {
        return 0;
    }
    let mut cumulative = 0.0;
    for (i, r) in p.explained_ratio.iter().enumerate() {
        cumulative += r;
        if cumulative >= threshold - 1e-12 {
            return i + 1;
        }
    }
    p.explained_ratio.len()
}

/// Removes from `v` (`[..., d]`) its components in the span of `basis` (`[m, d]`, orthonormal
/// rows): `v − (v·Bᵀ)B`. The basis is cast to `v`'s kind and device (`f64` if `v` is not a
/// float tensor). If the shapes do not fit, returns a NaN tensor shaped like `v`.
pub fn project_out(v: &Tensor, basis: &Tensor) -> Tensor {
    let kind = if v.is_floating_point() { v.kind() } else { Kind::Double };
    let fits = match (v.size().last(), basis.size().as_slice()) {
        (Some(&d), &[_, bd]) => d == bd,
        _ => false,
    };
    let result = fits.then(|| -> Result<Tensor, tch::TchError> {
        let v = v.f_to_kind(kind)?;
        let b = basis.f_to_device(v.device())?.f_to_kind(kind)?;
        v.f_sub(&v.f_matmul(&b.f_transpose(0, 1)?)?.f_matmul(&b)?)
    });
    match result {
        Some(Ok(t)) => t,
        _ => Tensor::full(v.size(), f64::NAN, (kind, v.device())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, WaxRng};

    fn gaussian(rows: i64, cols: i64, seed: u64) -> Tensor {
        let mut r = WaxRng::new(seed, Stream::Policy);
        let v: Vec<f64> = (0..rows * cols).map(|_| r.normal()).collect();
        Tensor::from_slice(&v).reshape([rows, cols])
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(&t.to_kind(Kind::Double)).unwrap()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Data with distinct planted variances along the axes, plus an offset.
    fn anisotropic(n: i64, seed: u64) -> Tensor {
        let scales = Tensor::from_slice(&[5.0f64, 3.0, 2.0, 1.0, 0.5, 0.2]);
        gaussian(n, 6, seed) * scales.unsqueeze(0) + 10.0
    }

    #[test]
    fn matches_covariance_eigendecomposition() {
        let (rotation, _) = Tensor::linalg_qr(&gaussian(6, 6, 2), "reduced");
        let x = (anisotropic(300, 1).matmul(&rotation)).to_kind(Kind::Float);
        let p = pca(&x, 4).unwrap();
        // Independent route: eigh of the covariance X_cᵀX_c/(n−1), centred by hand.
        let xd = x.to_kind(Kind::Double);
        let xc = &xd - xd.sum_dim_intlist(0, true, Kind::Double) / 300.0;
        let cov = xc.transpose(0, 1).matmul(&xc) / 299.0;
        let (evals, evecs) = cov.linalg_eigh("L");
        let evals = Vec::<f64>::try_from(&evals).unwrap();
        let evecs = rows(&evecs.transpose(0, 1));
        let total: f64 = evals.iter().sum();
        let comps = rows(&p.components);
        assert_eq!(comps.len(), 4);
        for (i, comp) in comps.iter().enumerate() {
            let j = 5 - i; // eigh sorts ascending.
            assert!((p.explained_variance[i] / evals[j] - 1.0).abs() < 1e-9);
            assert!((p.explained_ratio[i] - evals[j] / total).abs() < 1e-9);
            assert!(dot(comp, &evecs[j]).abs() > 0.9999);
        }
        // Orthonormal rows, positive largest-|entry|, mean ≈ column means.
        for (i, c) in comps.iter().enumerate() {
            for (j, d) in comps.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot(c, d) - want).abs() < 1e-10);
            }
            let peak = c.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(peak > 0.0);
        }
        let mean_err = (&p.mean - xd.mean_dim(0, false, Kind::Double)).abs().max();
        assert!(mean_err.double_value(&[]) < 1e-12);
    }

    #[test]
    fn planted_low_rank() {
        // Rank-2 data in R^8 plus an offset: two components carry all the variance, they span
        // the planted row space, and removing them leaves only the mean.
        let basis = gaussian(2, 8, 3);
        let x = gaussian(100, 2, 4).matmul(&basis) + Tensor::from_slice(&[1.0f64; 8]);
        let p = pca(&x, 3).unwrap();
        assert!((p.explained_ratio[0] + p.explained_ratio[1] - 1.0).abs() < 1e-10);
        assert!(p.explained_ratio[2] < 1e-12);
        assert_eq!(components_for_variance(&p, 0.999_999), 2);
        assert_eq!(components_for_variance(&p, 1.0), 2);
        let top2 = p.components.narrow(0, 0, 2);
        let residual = project_out(&basis, &top2);
        assert!(residual.abs().max().double_value(&[]) < 1e-10);
        let centred = &x - &p.mean;
        assert!(project_out(&centred, &top2).abs().max().double_value(&[]) < 1e-10);
    }

    #[test]
    fn deterministic_signs() {
        let x = anisotropic(50, 5);
        let a = pca(&x, 3).unwrap();
        let b = pca(&(-&x), 3).unwrap();
        // Negating the data flips every singular vector, which the sign rule undoes.
        let diff = (&a.components - &b.components).abs().max().double_value(&[]);
        assert!(diff < 1e-10);
    }

    #[test]
    fn components_for_variance_counts() {
        let p = Pca {
            mean: Tensor::zeros([3], (Kind::Double, Device::Cpu)),
            components: Tensor::eye(3, (Kind::Double, Device::Cpu)),
            explained_variance: vec![5.0, 3.0, 1.5],
            explained_ratio: vec![0.5, 0.3, 0.15],
        };
        assert_eq!(components_for_variance(&p, 0.5), 1);
        assert_eq!(components_for_variance(&p, 0.8), 2);
        assert_eq!(components_for_variance(&p, 0.81), 3);
        assert_eq!(components_for_variance(&p, 0.95), 3);
        assert_eq!(components_for_variance(&p, 0.99), 3);
        assert_eq!(components_for_variance(&p, f64::NAN), 3);
        assert_eq!(components_for_variance(&p, 0.0), 0);
    }

    #[test]
    fn project_out_closed_form() {
        let v = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape([2, 3]);
        let h = 0.5f64.sqrt();
        let basis = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 0.0, h, h]).reshape([2, 3]);
        // Removing e1 and (e2+e3)/√2 leaves (0, (y−z)/2, (z−y)/2).
        let out = project_out(&v, &basis);
        assert_eq!(out.kind(), Kind::Float);
        let want = [[0.0, -0.5, 0.5], [0.0, -0.5, 0.5]];
        for (got, want) in rows(&out).iter().zip(want) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6);
            }
        }
        // Batched [..., d] input and an empty basis.
        let batched = project_out(&v.reshape([1, 2, 3]), &basis);
        assert_eq!(batched.size(), [1, 2, 3]);
        let empty = Tensor::zeros([0, 3], (Kind::Double, Device::Cpu));
        assert!(project_out(&v, &empty).equal(&v));
        // Shape mismatch → NaN.
        let bad = project_out(&v, &Tensor::ones([1, 4], (Kind::Double, Device::Cpu)));
        assert_eq!(bad.size(), [2, 3]);
        assert!(bool::try_from(bad.isnan().all()).unwrap());
    }

    #[test]
    fn bad_input_is_error() {
        let cpu = (Kind::Double, Device::Cpu);
        let x = gaussian(10, 4, 6);
        assert!(pca(&x, 0).is_err());
        assert!(pca(&x, 5).is_err());
        assert!(pca(&Tensor::zeros([10], cpu), 1).is_err());
        assert!(pca(&Tensor::zeros([1, 4], cpu), 1).is_err());
        assert!(pca(&Tensor::ones([5, 4], cpu), 1).is_err());
        assert!(pca(&Tensor::ones([5, 4], (Kind::Int64, Device::Cpu)), 1).is_err());
        let mut with_nan = gaussian(10, 4, 7);
        let _ = with_nan.get(2).get(1).fill_(f64::NAN);
        let err = pca(&with_nan, 2).unwrap_err().to_string();
        assert!(err.contains("NaN"), "{err}");
        with_nan = with_nan.nan_to_num(0.0, None, None);
        assert!(pca(&with_nan, 2).is_ok());
    }
}
