//! Geometry of the concept vectors (docs/protocol.md §3.5, §3.6, §5.1): per-layer
//! `cos(v_Mold, v_Gold)` with its average, minimum and argmin; the Path-reference cosine
//! `cos(ṽ_Mold, ṽ_Gold)`; centred class-mean cosines at ⌊2L/3⌋; norms at the selected layers.
//! Beyond the paper: a block-bootstrap interval for the minimum (the extraction keeps per-class
//! block sums, resampled with replacement within each class) and a random-direction null.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::extract::{Concept, Extraction, one_vs_rest};
use super::select::centred_layer;
use crate::stats::{Interval, NullSummary, bootstrap_ci, cosine, random_direction_null};

/// One layer of the geometry table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerGeometry {
    pub layer: usize,
    pub cos_mold_gold: f64,
    pub cos_path_reference: f64,
    pub norm_mold: f64,
    pub norm_gold: f64,
    pub norm_path: f64,
}

/// Cosines of the centred class means at one layer.
#[derive(Debug, Clone, Serialize)]
pub struct CentredMeans {
    pub layer: usize,
    pub mold_gold: f64,
    pub mold_path: f64,
    pub gold_path: f64,
}

/// A statistic with its bootstrap interval and random-direction null.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    pub estimate: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub ci_level: f64,
    pub resamples: usize,
    /// Null: the same statistic with one vector replaced by a random direction.
    pub null_mean: f64,
    pub null_q025: f64,
    pub null_q975: f64,
    pub null_p: f64,
    pub null_draws: usize,
}

impl Headline {
    pub fn new(ci: Interval, null: NullSummary) -> Headline {
        Headline {
            estimate: ci.estimate,
            ci_lo: ci.lo,
            ci_hi: ci.hi,
            ci_level: ci.level,
            resamples: ci.resamples,
            null_mean: null.mean,
            null_q025: null.q025,
            null_q975: null.q975,
            null_p: null.p_two_sided,
            null_draws: null.draws,
        }
    }
}

/// The geometry of one extraction.
#[derive(Debug, Clone, Serialize)]
pub struct Geometry {
    pub model: String,
    pub layers: Vec<LayerGeometry>,
    /// `(1/L) Σ_ℓ cos(v_Mold, v_Gold)`.
    pub avg: f64,
    pub min: f64,
    pub argmin: usize,
    /// The minimum-layer cosine with its interval and null.
    pub min_headline: Headline,
    pub centred: CentredMeans,
    /// Norms at the selected steering layers.
    pub steer_norm_mold: Option<(usize, f64)>,
    pub steer_norm_gold: Option<(usize, f64)>,
}

/// A tensor's values as f64, flattened.
pub(crate) fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap_or_default()
}

/// Per-layer cosine between the rows of two `[L, H]` tensors.
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let dot = (a * b).sum_dim_intlist([1].as_slice(), false, Kind::Double);
    let na = a.norm_scalaropt_dim(2, [1].as_slice(), false).to_kind(Kind::Double);
    let nb = b.norm_scalaropt_dim(2, [1].as_slice(), false).to_kind(Kind::Double);
    to_vec(&(dot / (na * nb)))
}

/// Settings of the uncertainty estimates.
#[derive(Debug, Clone, Copy)]
pub struct Uncertainty {
    pub resamples: usize,
    pub level: f64,
    pub null_draws: usize,
    pub seed: u64,
}

impl Default for Uncertainty {
    fn default() -> Self {
        Uncertainty { resamples: 500, level: 0.95, null_draws: 1000, seed: 0 }
    }
}

/// Computes the geometry of `e`.
pub fn geometry(e: &Extraction, u: Uncertainty) -> Geometry {
    let (vm, vg, vp) = (e.vector(Concept::Mold), e.vector(Concept::Gold), e.vector(Concept::Path));
    let cos = row_cosines(&vm, &vg);
    let cos_ref = row_cosines(&e.path_reference(Concept::Mold), &e.path_reference(Concept::Gold));
    let norms = |v: &Tensor| to_vec(&v.norm_scalaropt_dim(2, [1].as_slice(), false));
    let (nm, ng, np) = (norms(&vm), norms(&vg), norms(&vp));
    let layers: Vec<LayerGeometry> = (0..cos.len())
        .map(|l| LayerGeometry {
            layer: l,
            cos_mold_gold: cos[l],
            cos_path_reference: cos_ref[l],
            norm_mold: nm[l],
            norm_gold: ng[l],
            norm_path: np[l],
        })
        .collect();
    let avg = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
    let (argmin, min) = cos
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::INFINITY), |(bi, b), (i, c)| if c < b { (i, c) } else { (bi, b) });

    // Block bootstrap of the minimum-layer cosine (at the observed argmin layer).
    let l = argmin as i64;
    let blocks: Vec<Tensor> = e.block_sums.iter().map(|b| b.select(1, l)).collect(); // [K, H]
    let bcounts = &e.block_counts;
    let groups: Vec<usize> = blocks.iter().map(|b| b.size()[0] as usize).collect();
    let ci = bootstrap_ci(&groups, u.resamples, u.level, u.seed, |idx| {
        let mut sums = Vec::with_capacity(3);
        let mut n = [0usize; 3];
        for c in 0..3 {
            let ix = Tensor::from_slice(&idx[c].iter().map(|&i| i as i64).collect::<Vec<_>>());
            sums.push(blocks[c].index_select(0, &ix).sum_dim_intlist(
                [0].as_slice(),
                false,
                Kind::Double,
            ));
            n[c] = idx[c].iter().map(|&i| bcounts[c][i]).sum();
        }
        if n.contains(&0) {
            return f64::NAN;
        }
        let sums: [Tensor; 3] = sums.try_into().expect("three classes");
        let a = to_vec(&one_vs_rest(&sums, n, Concept::Mold));
        let b = to_vec(&one_vs_rest(&sums, n, Concept::Gold));
        cosine(&a, &b)
    });
    let gold_row = to_vec(&vg.get(l));
    let null = random_direction_null(gold_row.len(), u.null_draws, u.seed, min, |dir| {
        cosine(dir, &gold_row)
    });

    let cl = centred_layer(cos.len());
    let means: Vec<Vec<f64>> =
        Concept::ALL.iter().map(|&c| to_vec(&e.mean(c).get(cl as i64))).collect();
    let grand: Vec<f64> =
        (0..means[0].len()).map(|j| (means[0][j] + means[1][j] + means[2][j]) / 3.0).collect();
    let centred: Vec<Vec<f64>> =
        means.iter().map(|m| m.iter().zip(&grand).map(|(a, g)| a - g).collect()).collect();
    let steer_norm =
        |c: Concept| e.layer(c).map(|l| (l, if c == Concept::Mold { nm[l] } else { ng[l] }));
    Geometry {
        model: e.meta.model.clone(),
        avg,
        min,
        argmin,
        min_headline: Headline::new(ci, null),
        centred: CentredMeans {
            layer: cl,
            mold_gold: cosine(&centred[0], &centred[1]),
            mold_path: cosine(&centred[0], &centred[2]),
            gold_path: cosine(&centred[1], &centred[2]),
        },
        steer_norm_mold: steer_norm(Concept::Mold),
        steer_norm_gold: steer_norm(Concept::Gold),
        layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_cosines_match_the_definition() {
        let a = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 1.0]).view([2, 2]);
        let b = Tensor::from_slice(&[-1.0f64, 0.0, 1.0, 0.0]).view([2, 2]);
        let c = row_cosines(&a, &b);
        assert!((c[0] + 1.0).abs() < 1e-12);
        assert!((c[1] - 1.0 / 2f64.sqrt()).abs() < 1e-12);
    }
}
