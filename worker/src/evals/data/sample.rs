//! Stratified subsampling (docs/protocol.md §6.8–§6.9: topic-stratified SimpleQA,
//! subject-stratified MMLU, stratified GSM8K and judge cross-check records).

use std::collections::BTreeMap;

use crate::rng::{Stream, WaxRng};

/// Picks `n` of `items` spread evenly over the strata given by `key`, and returns their indices.
///
/// The strata are visited in sorted key order; each stratum's indices are shuffled with one
/// `WaxRng::new(seed, Stream::Split)` (drawn stratum by stratum, in that order). The pick then
/// goes round-robin: the first index of every stratum, then the second of every stratum that
/// still has one, and so on, until `n` are taken, so every prefix of the result is itself as
/// balanced as possible. The indices come back in pick order. With `n >= items.len()` the result
/// is every index in order (`0..len`), without drawing.
pub fn stratified_sample<T>(
    items: &[T],
    n: usize,
    key: impl Fn(&T) -> String,
    seed: u64,
) -> Vec<usize> {
    if n >= items.len() {
        return (0..items.len()).collect();
    }
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        strata.entry(key(item)).or_default().push(i);
    }
    let mut rng = WaxRng::new(seed, Stream::Split);
    let strata: Vec<Vec<usize>> = strata
        .into_values()
        .map(|mut members| {
            rng.shuffle(&mut members);
            members
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        for members in &strata {
            if let Some(&i) = members.get(round)
                && out.len() < n
            {
                out.push(i);
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    fn counts(items: &[&str], picked: &[usize]) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for &i in picked {
            *c.entry(items[i].to_string()).or_default() += 1;
        }
        c
    }

    #[test]
    fn balances_strata_and_is_deterministic() {
        // 30 of "a", 10 of "b", 2 of "c", interleaved.
        let items: Vec<&str> = (0..42u32)
            .map(|i| {
                if i < 2 {
                    "c"
                } else if i.is_multiple_of(4) {
                    "b"
                } else {
                    "a"
                }
            })
            .collect();
        let a = items.iter().filter(|s| **s == "a").count();
        assert_eq!((a, items.len() - a - 2), (30, 10));
        let pick = stratified_sample(&items, 12, |s| s.to_string(), 7);
        assert_eq!(pick.len(), 12);
        assert_eq!(pick.iter().collect::<HashSet<_>>().len(), 12);
        // Round-robin: c runs out after 2, then a and b alternate.
        let c = counts(&items, &pick);
        assert_eq!(c["a"], 5);
        assert_eq!(c["b"], 5);
        assert_eq!(c["c"], 2);
        // The first round is one of each, in sorted key order.
        assert_eq!(items[pick[0]], "a");
        assert_eq!(items[pick[1]], "b");
        assert_eq!(items[pick[2]], "c");
        // Every prefix is balanced.
        let c3 = counts(&items, &pick[..6]);
        assert_eq!((c3["a"], c3["b"], c3["c"]), (2, 2, 2));
        assert_eq!(pick, stratified_sample(&items, 12, |s| s.to_string(), 7));
        assert_ne!(pick, stratified_sample(&items, 12, |s| s.to_string(), 8));
        // A smaller sample is a prefix of a larger one.
        assert_eq!(stratified_sample(&items, 5, |s| s.to_string(), 7)[..], pick[..5]);
    }

    #[test]
    fn edge_cases() {
        let items = ["x", "y", "x"];
        assert_eq!(stratified_sample(&items, 3, |s| s.to_string(), 1), vec![0, 1, 2]);
        assert_eq!(stratified_sample(&items, 10, |s| s.to_string(), 1), vec![0, 1, 2]);
        assert!(stratified_sample(&items, 0, |s| s.to_string(), 1).is_empty());
        let empty: [&str; 0] = [];
        assert!(stratified_sample(&empty, 4, |s| s.to_string(), 1).is_empty());
        // One stratum: a seeded shuffle of everything.
        let same = ["k"; 20];
        let pick = stratified_sample(&same, 19, |s| s.to_string(), 3);
        assert_eq!(pick.iter().collect::<HashSet<_>>().len(), 19);
        assert_ne!(pick, (0..19).collect::<Vec<_>>());
    }
}
