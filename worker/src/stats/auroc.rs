//! Area under the ROC curve via midranks (the Mann–Whitney statistic).

/// AUROC of scores `pos` against `neg`: `Pr[s+ > s−] + ½ Pr[s+ = s−]` over all pairs.
///
/// Computed in `O((n+m) log(n+m))` from the rank sum of `pos` in the pooled sample, with tied
/// values given their midrank. NaN if either slice is empty or any score is NaN.
pub fn auroc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() || pos.iter().chain(neg).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    // (score, is_positive), sorted by score.
    let mut pooled: Vec<(f64, bool)> =
        pos.iter().map(|&v| (v, true)).chain(neg.iter().map(|&v| (v, false))).collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut pos_rank_sum = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        // `==` rather than total_cmp so that -0.0 and +0.0 tie.
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let midrank = (start + 1 + end) as f64 / 2.0;
        let positives = pooled[start..end].iter().filter(|p| p.1).count();
        pos_rank_sum += midrank * positives as f64;
        start = end;
    }
    let (n, m) = (pos.len() as f64, neg.len() as f64);
    let u = pos_rank_sum - n * (n + 1.0) / 2.0;
    u / (n * m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct O(nm) pair counting: the definition.
    fn brute(pos: &[f64], neg: &[f64]) -> f64 {
        let mut score = 0.0;
        for p in pos {
            for q in neg {
                if p > q {
                    score += 1.0;
                } else if p == q {
                    score += 0.5;
                }
            }
        }
        score / (pos.len() * neg.len()) as f64
    }

    #[test]
    fn hand_cases() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auroc(&[1.0, 1.0], &[1.0]), 0.5);
        // Pairs (2,1)>, (2,2)=, (2,3)<, (0,*)< : (1 + 0.5) / 6 = 0.25.
        assert_eq!(auroc(&[2.0, 0.0], &[1.0, 2.0, 3.0]), 0.25);
        assert_eq!(auroc(&[0.0], &[-0.0]), 0.5);
    }

    #[test]
    fn bad_input_is_nan() {
        assert!(auroc(&[], &[1.0]).is_nan());
        assert!(auroc(&[1.0], &[]).is_nan());
        assert!(auroc(&[1.0, f64::NAN], &[0.0]).is_nan());
    }

    proptest! {
        #[test]
        fn matches_pair_counting_with_ties(
            pos in prop::collection::vec(0u8..6, 1..40),
            neg in prop::collection::vec(0u8..6, 1..40),
        ) {
            // Few distinct values force many ties.
            let pos: Vec<f64> = pos.into_iter().map(|v| f64::from(v) * 0.5).collect();
            let neg: Vec<f64> = neg.into_iter().map(|v| f64::from(v) * 0.5).collect();
            prop_assert!((auroc(&pos, &neg) - brute(&pos, &neg)).abs() < 1e-12);
        }

        #[test]
        fn matches_pair_counting_continuous(
            pos in prop::collection::vec(-1e3f64..1e3, 1..60),
            neg in prop::collection::vec(-1e3f64..1e3, 1..60),
        ) {
            prop_assert!((auroc(&pos, &neg) - brute(&pos, &neg)).abs() < 1e-12);
        }
    }
}
