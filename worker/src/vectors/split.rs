//! Which synthetic trajectories fit the concept vectors and which select their layer
//! (docs/protocol.md §4.1).
//!
//! The synthetic construction is a fixed design: trajectory `i` of every class has the same
//! length and final direction (both cycle with `i`). A per-trajectory random split therefore
//! gives each class a slightly different mix of lengths and directions in the fitting set, and
//! the complementary mix in the held-out set. Features that depend only on the design (which
//! every layer carries) then leak into `v_c` with the sign that the held-out set of the same
//! class lacks, and held-out AUROC sits below 0.5 where no class information exists (0.39–0.40
//! at the early layers of naive SmolLM2 with 20% random splits). Layer selection must be
//! unbiased under the null, so the split is by index instead, the same for every class: the
//! last `heldout` indices of each class are held out. Both sets then have the same design mix
//! in every class, and design-only features cancel in `v_c` and in the held-out comparison.
//! The test below checks this against the random split on a design-only null.

use super::VectorError;

/// Layer selection needs this many held-out (and fitting) trajectories per class at least.
pub const MIN_PER_CLASS: usize = 2;
/// Below this many held-out trajectories per class the selection is noisy (AUROC's standard
/// error under the null is ≈ 0.07 at 30); a warning says so.
pub const FEW_PER_CLASS: usize = 30;

/// The index split of one extraction's synthetic trajectories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldoutSplit {
    per_class: usize,
    heldout: usize,
}

impl HeldoutSplit {
    /// Holds out `round(fraction × per_class)` trajectories of each class; refuses a split that
    /// leaves fewer than [`MIN_PER_CLASS`] in either set, naming the counts.
    pub fn new(per_class: usize, fraction: f64) -> Result<HeldoutSplit, VectorError> {
        let heldout = (fraction * per_class as f64).round() as usize;
        let fit = per_class.saturating_sub(heldout);
        if heldout < MIN_PER_CLASS || fit < MIN_PER_CLASS {
            return Err(VectorError::Input(format!(
                "extract: synthetic.per_class = {per_class} with heldout_fraction = {fraction} \
                 gives {fit} fitting and {heldout} held-out trajectories per class; each concept \
                 needs at least {MIN_PER_CLASS} of both (raise per_class or change \
                 heldout_fraction)"
            )));
        }
        Ok(HeldoutSplit { per_class, heldout })
    }

    /// Held-out trajectories per class.
    pub fn heldout_per_class(&self) -> usize {
        self.heldout
    }

    /// Fitting trajectories per class.
    pub fn fit_per_class(&self) -> usize {
        self.per_class - self.heldout
    }

    /// Whether trajectory `index` (within its class) is held out.
    pub fn holds_out(&self, index: usize) -> bool {
        index >= self.fit_per_class()
    }

    /// A warning when the held-out set is small enough to make layer selection noisy.
    pub fn warning(&self) -> Option<String> {
        (self.heldout < FEW_PER_CLASS).then(|| {
            format!(
                "layer selection uses only {} held-out trajectories per class (fitting: {}); \
                 AUROC's standard error is about {:.2} at that size",
                self.heldout,
                self.fit_per_class(),
                null_auroc_se(self.heldout, 2 * self.heldout)
            )
        })
    }
}

/// Standard error of AUROC under the null with `n_pos` positives and `n_neg` negatives
/// (Mann–Whitney: √((n₊ + n₋ + 1) / (12 n₊ n₋))).
pub fn null_auroc_se(n_pos: usize, n_neg: usize) -> f64 {
    let (p, n) = (n_pos as f64, n_neg as f64);
    ((p + n + 1.0) / (12.0 * p * n)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::{Dir, SyntheticConfig};
    use crate::rng::{Stream, WaxRng};
    use crate::vectors::extract::{Concept, HeldOut, one_vs_rest};
    use tch::{Kind, Tensor};

    #[test]
    fn refuses_splits_that_would_drop_a_concept() {
        let e = HeldoutSplit::new(10, 0.04).unwrap_err().to_string();
        assert!(e.contains("10 fitting and 0 held-out") && e.contains("heldout_fraction"), "{e}");
        assert!(HeldoutSplit::new(10, 0.9).is_err());
        let s = HeldoutSplit::new(10, 0.2).unwrap();
        assert_eq!((s.fit_per_class(), s.heldout_per_class()), (8, 2));
        assert!(!s.holds_out(7) && s.holds_out(8) && s.holds_out(9));
        assert!(s.warning().unwrap().contains("only 2 held-out"));
        assert!(HeldoutSplit::new(5000, 0.2).unwrap().warning().is_none());
    }

    #[test]
    fn null_standard_error_matches_the_closed_form() {
        // n₊ = n₋ = 1: the AUROC is 0 or 1 with equal chance, SD 0.5 = √(3/12).
        assert!((null_auroc_se(1, 1) - 0.5).abs() < 1e-12);
        assert!((null_auroc_se(30, 60) - (91.0f64 / 21_600.0).sqrt()).abs() < 1e-12);
    }

    /// Held-out AUROC of every class, averaged over replicates, when activations carry the
    /// design (length and final direction, as every model's do) and noise but no class.
    fn null_auroc(split: impl Fn(&mut WaxRng, usize) -> bool) -> (f64, f64) {
        let design = SyntheticConfig::default();
        let (per_class, h, replicates) = (120usize, 8usize, 150u64);
        let mut rng = WaxRng::new(11, Stream::NullDirections);
        let mut embed = |n: usize| -> Vec<Vec<f64>> {
            (0..n).map(|_| (0..h).map(|_| rng.normal()).collect()).collect()
        };
        let (by_len, by_dir) = (embed(16), embed(4));
        let mut aurocs = Vec::new();
        for r in 0..replicates {
            let mut noise = WaxRng::new(r, Stream::NullDirections);
            let mut split_rng = WaxRng::new(r, Stream::Split);
            let mut sums = [vec![0.0; h], vec![0.0; h], vec![0.0; h]];
            let mut counts = [0usize; 3];
            let (mut held, mut labels) = (Vec::new(), Vec::new());
            for i in 0..per_class {
                let (len, dir) = design.target(i);
                let d = Dir::ALL.iter().position(|&x| Some(x) == dir).unwrap();
                for c in Concept::ALL {
                    let x: Vec<f64> = (0..h)
                        .map(|k| by_len[len as usize][k] + by_dir[d][k] + noise.normal())
                        .collect();
                    if split(&mut split_rng, i) {
                        held.extend_from_slice(&x);
                        labels.push(c);
                    } else {
                        sums[c.index()].iter_mut().zip(&x).for_each(|(s, v)| *s += v);
                        counts[c.index()] += 1;
                    }
                }
            }
            let sums = sums.map(|s| Tensor::from_slice(&s).view([1, h as i64]));
            let vectors: Vec<Tensor> =
                Concept::ALL.iter().map(|&c| one_vs_rest(&sums, counts, c)).collect();
            let acts = Tensor::from_slice(&held).view([labels.len() as i64, 1, h as i64]);
            let mut ho = HeldOut::default();
            ho.add(&vectors, &acts.to_kind(Kind::Double), &labels).unwrap();
            aurocs.extend(ho.scores(1, 50).iter().map(|s| s[0].auroc));
        }
        let n = aurocs.len() as f64;
        let mean = aurocs.iter().sum::<f64>() / n;
        let var = aurocs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, (var / n).sqrt())
    }

    #[test]
    fn the_index_split_is_unbiased_under_a_design_only_null() {
        let split = HeldoutSplit::new(120, 0.2).unwrap();
        let (mean, se) = null_auroc(|_, i| split.holds_out(i));
        assert!((mean - 0.5).abs() < 3.0 * se, "index split: mean AUROC {mean:.4} ± {se:.4}");
        // The test has power: a per-trajectory random split of the same design is biased low.
        let (biased, bse) = null_auroc(|rng, _| rng.unit() < 0.2);
        eprintln!(
            "null AUROC: index split {mean:.4} ± {se:.4}, random split {biased:.4} ± {bse:.4}"
        );
        assert!(biased < 0.5 - 3.0 * bse, "random split: mean AUROC {biased:.4} ± {bse:.4}");
    }
}
