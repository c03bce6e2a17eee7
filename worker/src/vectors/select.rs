//! Layer selection (docs/protocol.md §4): per layer, held-out positives and negatives are projected
//! on the concept vector; AUROC and |Cohen's d| of the projections and the 50-bin histogram
//! overlap of the cosines are computed; `ℓ* = ⌊(argmax AUROC + argmax |d| + argmin ovl) / 3⌋`.
//! Fixed layers: logit lens ⌊5L/6⌋, centred class means ⌊2L/3⌋.

use serde::{Deserialize, Serialize};

use crate::stats::{auroc, cohens_d, histogram_overlap};

/// Separation scores of one concept at one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerScore {
    pub layer: usize,
    pub auroc: f64,
    pub d: f64,
    pub overlap: f64,
}

/// The selected layer and the per-metric optima it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub layer: usize,
    pub by_auroc: usize,
    pub by_d: usize,
    pub by_overlap: usize,
}

/// Scores of one layer from held-out projections (`proj`) and cosines (`cos`) of positives and
/// negatives.
pub fn score_layer(
    layer: usize,
    proj_pos: &[f64],
    proj_neg: &[f64],
    cos_pos: &[f64],
    cos_neg: &[f64],
    bins: usize,
) -> LayerScore {
    LayerScore {
        layer,
        auroc: auroc(proj_pos, proj_neg),
        d: cohens_d(proj_pos, proj_neg),
        overlap: histogram_overlap(cos_pos, cos_neg, bins),
    }
}

/// First index of the largest `key` (NaN never wins); `None` if all are NaN.
fn arg_best(scores: &[LayerScore], key: impl Fn(&LayerScore) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for s in scores {
        let k = key(s);
        if k.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| k > b) {
            best = Some((s.layer, k));
        }
    }
    best.map(|(l, _)| l)
}

/// The App. L rule over per-layer scores; `None` when no layer has finite scores.
pub fn select_layer(scores: &[LayerScore]) -> Option<Selection> {
    let by_auroc = arg_best(scores, |s| s.auroc)?;
    let by_d = arg_best(scores, |s| s.d.abs())?;
    let by_overlap = arg_best(scores, |s| -s.overlap)?;
    Some(Selection { layer: (by_auroc + by_d + by_overlap) / 3, by_auroc, by_d, by_overlap })
}

/// The emotion-scatter layer: `argmax_ℓ ½(AUROC_mold(ℓ) + AUROC_gold(ℓ))`.
pub fn emotion_layer(mold: &[LayerScore], gold: &[LayerScore]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (m, g) in mold.iter().zip(gold) {
        let k = 0.5 * (m.auroc + g.auroc);
        if !k.is_nan() && best.is_none_or(|(_, b)| k > b) {
            best = Some((m.layer, k));
        }
    }
    best.map(|(l, _)| l)
}

/// The logit-lens layer ⌊5L/6⌋ (30 of 36).
pub fn lens_layer(num_layers: usize) -> usize {
    (5 * num_layers / 6).min(num_layers.saturating_sub(1))
}

/// The centred class-mean layer ⌊2L/3⌋ (24 of 36, 16 of 24).
pub fn centred_layer(num_layers: usize) -> usize {
    (2 * num_layers / 3).min(num_layers.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(layer: usize, auroc: f64, d: f64, overlap: f64) -> LayerScore {
        LayerScore { layer, auroc, d, overlap }
    }

    #[test]
    fn the_rule_floors_the_mean_of_the_three_optima() {
        let scores = vec![
            s(0, 0.6, 0.5, 0.7),
            s(1, 0.9, -3.0, 0.5),
            s(2, 0.95, 1.0, 0.4),
            s(3, 0.7, 2.0, 0.1),
        ];
        let sel = select_layer(&scores).unwrap();
        assert_eq!((sel.by_auroc, sel.by_d, sel.by_overlap), (2, 1, 3));
        assert_eq!(sel.layer, 2); // ⌊(2 + 1 + 3) / 3⌋
        let sel =
            select_layer(&[s(0, 0.9, 1.0, 0.2), s(1, 0.8, 0.9, 0.3), s(2, 0.7, 2.0, 0.1)]).unwrap();
        assert_eq!(sel.layer, 1); // ⌊(0 + 2 + 2) / 3⌋
    }

    #[test]
    fn nan_layers_never_win_and_all_nan_selects_nothing() {
        let scores = vec![s(0, f64::NAN, f64::NAN, f64::NAN), s(1, 0.6, 0.2, 0.9)];
        assert_eq!(select_layer(&scores).unwrap().layer, 1);
        assert!(select_layer(&[s(0, f64::NAN, f64::NAN, f64::NAN)]).is_none());
    }

    #[test]
    fn fixed_layers_match_the_paper() {
        assert_eq!(lens_layer(36), 30);
        assert_eq!(lens_layer(24), 20);
        assert_eq!(centred_layer(36), 24);
        assert_eq!(centred_layer(24), 16);
        let m = vec![s(0, 0.6, 0.0, 0.0), s(1, 0.9, 0.0, 0.0)];
        let g = vec![s(0, 0.9, 0.0, 0.0), s(1, 0.7, 0.0, 0.0)];
        assert_eq!(emotion_layer(&m, &g), Some(1));
    }
}
