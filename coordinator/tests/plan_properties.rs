//! Stage ids are content hashes: the same manifest written with its keys in any order plans
//! the same stages; changing a value changes exactly the stages that read it.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use wax_coordinator::manifest::{self, ManifestFormat};
use wax_coordinator::plan;

/// A manifest as (table, key, value) lines that can be written in any order.
#[derive(Debug, Clone)]
struct Spec {
    base: Vec<(String, String, String)>,
    axes: Vec<(String, Vec<i64>)>,
}

fn render(spec: &Spec, order: &[usize], axis_order: &[usize]) -> String {
    let mut out = String::from("[sweep]\nname = \"p\"\n");
    // Base entries as dotted keys under [base], in the given order.
    out.push_str("[base]\n");
    for &i in order {
        let (section, key, value) = &spec.base[i];
        out.push_str(&format!("{section}.{key} = {value}\n"));
    }
    out.push_str("[axes]\n");
    for &i in axis_order {
        let (path, values) = &spec.axes[i];
        let v: Vec<String> = values.iter().map(|x| x.to_string()).collect();
        out.push_str(&format!("\"{path}\" = [{}]\n", v.join(", ")));
    }
    out
}

/// Trial parameters (sorted) → that trial's stage ids by role.
fn planned(text: &str) -> (BTreeMap<String, BTreeMap<String, String>>, BTreeSet<String>) {
    let m = manifest::parse(text, ManifestFormat::Toml, "p.toml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let trials = manifest::expand(&m).unwrap();
    let p = plan::plan(&m, &trials, 0).unwrap();
    let by_params = p
        .trials
        .iter()
        .map(|t| {
            let params: BTreeMap<&String, &serde_json::Value> = t.params.iter().collect();
            (serde_json::to_string(&params).unwrap(), t.stages.clone())
        })
        .collect();
    (by_params, p.stages.iter().map(|s| s.id.clone()).collect())
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let base_entries = prop::sample::subsequence(
        vec![
            ("rl", "steps", "7"),
            ("rl", "temperature", "0.7"),
            ("rl", "algorithm", "\"grpo\""),
            ("model", "ref", "\"builtin:small\""),
            ("env", "turns", "11"),
            ("extract", "per_class", "100"),
            ("evaluate", "alphas", "[-2, 0, 2]"),
        ],
        0..=7,
    );
    let axis_paths = prop::sample::subsequence(
        vec!["seed", "rl.group_size", "maze.width", "extract.max_len"],
        1..=3,
    );
    (
        base_entries,
        axis_paths,
        prop::collection::vec(prop::collection::btree_set(1i64..60, 1..4), 3),
    )
        .prop_map(|(base, paths, values)| Spec {
            base: base
                .into_iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect(),
            axes: paths
                .into_iter()
                .zip(values)
                .map(|(p, v)| (p.to_string(), v.into_iter().collect()))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn key_order_does_not_change_stage_ids(spec in spec_strategy(), seed in any::<u64>()) {
        let n = spec.base.len();
        let identity: Vec<usize> = (0..n).collect();
        let axes_identity: Vec<usize> = (0..spec.axes.len()).collect();
        // A deterministic shuffle of both orders from `seed`.
        let mut order = identity.clone();
        let mut axes_order = axes_identity.clone();
        let mut x = seed | 1;
        for v in [&mut order, &mut axes_order] {
            for i in (1..v.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                v.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let (a, ids_a) = planned(&render(&spec, &identity, &axes_identity));
        let (b, ids_b) = planned(&render(&spec, &order, &axes_order));
        prop_assert_eq!(a, b);
        prop_assert_eq!(ids_a, ids_b);
    }
}

#[test]
fn changing_a_value_changes_exactly_the_stages_that_read_it() {
    let base =
        "[sweep]\nname = \"p\"\n[base]\nrl = { learning_rate = 1e-5 }\n[axes]\nseed = [0, 1]\n";
    let changed = base.replace("1e-5", "2e-5");
    let (a, _) = planned(base);
    let (b, _) = planned(&changed);
    for (params, roles_a) in &a {
        let roles_b = &b[params];
        for role in ["model", "extract-naive"] {
            assert_eq!(roles_a[role], roles_b[role], "{role} does not read rl");
        }
        for role in ["rl", "extract-trained", "evaluate"] {
            assert_ne!(roles_a[role], roles_b[role], "{role} reads rl");
        }
    }
    // A new cache_version changes every id.
    let bumped = base.replace("name = \"p\"", "name = \"p\"\ncache_version = 2");
    let (c, _) = planned(&bumped);
    for (params, roles_a) in &a {
        for (role, id) in roles_a {
            assert_ne!(id, &c[params][role], "{role} after a cache_version bump");
        }
    }
}
