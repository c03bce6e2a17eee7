//! Manifest → trials: the axes' cartesian product crossed with each zip group, minus
//! exclusions, plus includes. The trial count is computed before anything is built, so a
//! manifest that expands to billions is refused in microseconds.

use super::error::{ManifestError, ManifestErrors};
use super::model::{Location, Manifest, Trial};
use super::node::canonical_json;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Work allowed for counting the trials that the exclude entries remove; far more than any
/// hand-written manifest needs.
const COUNT_BUDGET: u64 = 1_000_000;
/// Work allowed for each "is anything left below here?" check while enumerating.
const PRUNE_BUDGET: u64 = 10_000;

/// One dimension of the product: an axis (one path) or a zip group (several paths).
struct Dim<'m> {
    /// (manifest label of the path, e.g. `axes.seed` / `zip[0].rl.algorithm`; path; values)
    columns: Vec<(String, &'m str, &'m [Value])>,
    len: usize,
}

/// An exclude entry as a block of the product: per varying dimension, the allowed value indices (sorted), or
/// `None` when the entry does not constrain that dimension.
type Block = Vec<Option<Vec<usize>>>;

struct Errors<'m> {
    m: &'m Manifest,
    list: Vec<ManifestError>,
}

impl Errors<'_> {
    fn push(&mut self, path: &str, loc_of: &[&str], message: String) {
        let location = loc_of.iter().find_map(|p| self.m.locations.by_path.get(*p).copied());
        self.list.push(ManifestError {
            source: self.m.locations.source.clone(),
            location,
            path: path.to_owned(),
            message,
        });
    }
}

/// Every trial of the manifest, in order: the product (axes in declaration order, then zip
/// groups, the last varying fastest) without the excluded ones, then the includes.
pub fn expand(m: &Manifest) -> Result<Vec<Trial>, ManifestErrors> {
    let mut errors = Errors { m, list: Vec::new() };
    let dims = dimensions(m);

    for dim in &dims {
        for (label, path, _) in &dim.columns {
            check_base_path(m, path, label, &mut errors);
        }
    }
    for (i, include) in m.include.iter().enumerate() {
        for path in include.keys() {
            check_base_path(m, path, &format!("include[{i}].{path}"), &mut errors);
        }
    }

    // Dimensions of one value are the same in every trial; only the others are enumerated,
    // which also bounds the recursion below by the 127 doublings that fit in a u128.
    let varying: Vec<usize> = (0..dims.len()).filter(|&d| dims[d].len != 1).collect();
    let lens: Vec<usize> = varying.iter().map(|&d| dims[d].len).collect();
    let blocks: Vec<Block> =
        m.exclude.iter().filter_map(|e| exclude_block(e, &dims, &varying)).collect();

    let raw = lens.iter().try_fold(1u128, |acc, &n| acc.checked_mul(n as u128));
    let all_blocks: Vec<&Block> = blocks.iter().collect();
    let all_dims: Vec<usize> = (0..lens.len()).collect();
    let mut counter = Counter { lens: &lens, budget: COUNT_BUDGET };
    let limit = u128::from(m.limits.max_trials);
    let too_many = |n: String| {
        format!(
            "the manifest expands to {n} trials, more than limits.max_trials = {}",
            m.limits.max_trials
        )
    };
    let max_loc = ["limits.max_trials", "limits", "axes", "sweep"];
    let kept = match raw {
        None => {
            errors.push("limits.max_trials", &max_loc, too_many("more than 10^38".into()));
            return Err(ManifestErrors(errors.list));
        }
        Some(_) => match counter.survivors(&all_blocks, &all_dims) {
            Some(kept) => kept,
            None => {
                errors.push(
                    "exclude",
                    &["exclude"],
                    "the exclude entries overlap in too many ways to count the trials; \
                     simplify them"
                        .into(),
                );
                return Err(ManifestErrors(errors.list));
            }
        },
    };
    let total = kept + m.include.len() as u128;
    if total > limit {
        errors.push("limits.max_trials", &max_loc, too_many(total.to_string()));
    } else if total == 0 {
        errors.push(
            "exclude",
            &["exclude"],
            format!(
                "every trial is excluded: the exclude entries drop all {} trials",
                raw.unwrap_or(0)
            ),
        );
    }
    if !errors.list.is_empty() {
        return Err(ManifestErrors(errors.list));
    }

    // Grown as needed: a large max_trials should not reserve memory up front.
    let mut trials = Vec::with_capacity((total as usize).min(1 << 12));
    let mut choice = vec![0usize; dims.len()];
    let mut walk = Walk {
        m,
        dims: &dims,
        varying: &varying,
        counter: Counter { lens: &lens, budget: 0 },
        trials: &mut trials,
    };
    if kept > 0 {
        walk.visit(0, &mut choice, all_blocks);
    }

    // Trial configs seen so far → (trial index, the include that made it, if one did).
    let mut seen: HashMap<String, (usize, Option<usize>)> =
        trials.iter().enumerate().map(|(i, t)| (canonical_json(&t.config), (i, None))).collect();
    for (i, include) in m.include.iter().enumerate() {
        let config = config(&m.base, include.iter().map(|(p, v)| (p.as_str(), v)));
        let key = canonical_json(&config);
        if let Some(&(j, by)) = seen.get(&key) {
            let what = match by {
                Some(k) => format!("include[{k}]"),
                None => format!("trial {j}, {}", params_text(&trials[j].params)),
            };
            let label = format!("include[{i}]");
            errors.push(&label, &[&label], format!("this include is identical to {what}"));
            continue;
        }
        seen.insert(key, (trials.len(), Some(i)));
        trials.push(Trial { index: trials.len() as u32, params: include.clone(), config });
    }
    if errors.list.is_empty() { Ok(trials) } else { Err(ManifestErrors(errors.list)) }
}

/// The axes, then the zip groups, each as one dimension of the product.
fn dimensions(m: &Manifest) -> Vec<Dim<'_>> {
    let axes = m.axes.iter().map(|(path, values)| Dim {
        columns: vec![(format!("axes.{path}"), path.as_str(), values.as_slice())],
        len: values.len(),
    });
    let zips = m.zip.iter().enumerate().map(|(g, group)| Dim {
        columns: group
            .iter()
            .map(|(p, v)| (format!("zip[{g}].{p}"), p.as_str(), v.as_slice()))
            .collect(),
        // Equal after validation; the shortest keeps a hand-built manifest in bounds.
        len: group.values().map(Vec::len).min().unwrap_or(0),
    });
    axes.chain(zips).collect()
}

/// A varied path must lead through tables of `base` (or through nothing, which is created).
fn check_base_path(m: &Manifest, path: &str, label: &str, errors: &mut Errors<'_>) {
    let mut table = &m.base;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments[..segments.len() - 1].iter().enumerate() {
        match table.get(*seg) {
            None => return,
            Some(Value::Object(inner)) => table = inner,
            Some(other) => {
                let base_path = format!("base.{}", segments[..=i].join("."));
                let kind = match other {
                    Value::Array(_) => "a list",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                let base_at = m
                    .locations
                    .by_path
                    .get(&base_path)
                    .map(|l| format!(" ({})", at(*l)))
                    .unwrap_or_default();
                errors.push(
                    label,
                    &[label],
                    format!("cannot set `{path}`: {base_path}{base_at} is {kind}, not a table"),
                );
                return;
            }
        }
    }
}

fn params_text(params: &IndexMap<String, Value>) -> String {
    let parts: Vec<String> = params.iter().map(|(p, v)| format!("{p} = {v}")).collect();
    if parts.is_empty() { "the base trial".into() } else { parts.join(", ") }
}

fn at(l: Location) -> String {
    format!("line {}, column {}", l.line, l.column)
}

/// The block of an exclude entry, or `None` if no trial can match it.
fn exclude_block(
    entry: &IndexMap<String, Value>,
    dims: &[Dim<'_>],
    varying: &[usize],
) -> Option<Block> {
    let mut allowed: Vec<Option<Vec<usize>>> = vec![None; dims.len()];
    for (path, value) in entry {
        let (d, c) = dims.iter().enumerate().find_map(|(d, dim)| {
            dim.columns.iter().position(|(_, p, _)| *p == path).map(|c| (d, c))
        })?;
        let values = dims[d].columns[c].2;
        let prev = allowed[d].take();
        let idx: Vec<usize> = (0..dims[d].len)
            .filter(|&i| values.get(i) == Some(value))
            .filter(|i| prev.as_ref().is_none_or(|p| p.contains(i)))
            .collect();
        allowed[d] = Some(idx);
    }
    let mut out = Vec::with_capacity(varying.len());
    for (d, a) in allowed.into_iter().enumerate() {
        match a {
            Some(idx) if idx.is_empty() => return None,
            // A one-value dimension that the entry matches constrains nothing.
            Some(_) if dims[d].len == 1 => {}
            a => {
                if varying.contains(&d) {
                    out.push(a);
                }
            }
        }
    }
    Some(out)
}

/// Counts the points of a product that no block covers, without enumerating them.
///
/// Two facts keep this fast for any exclude list a person writes: the survivors of blocks that
/// constrain disjoint sets of dimensions multiply (so independent groups of entries are counted
/// apart), and within a group, splitting on one dimension groups all the values no block names.
struct Counter<'a> {
    lens: &'a [usize],
    budget: u64,
}

impl Counter<'_> {
    fn survivors(&mut self, blocks: &[&Block], dims: &[usize]) -> Option<u128> {
        self.budget = self.budget.checked_sub(1)?;
        let product = |ds: &mut dyn Iterator<Item = &usize>| -> u128 {
            ds.map(|&d| self.lens[d] as u128).product()
        };
        let constrained: Vec<usize> =
            dims.iter().copied().filter(|&d| blocks.iter().any(|b| b[d].is_some())).collect();
        let free = product(&mut dims.iter().filter(|d| !constrained.contains(d)));
        // A block with nothing left to check covers everything.
        if blocks.iter().any(|b| constrained.iter().all(|&d| b[d].is_none())) {
            return Some(0);
        }
        if constrained.is_empty() {
            return Some(free);
        }
        let groups = components(blocks, &constrained);
        if groups.len() > 1 {
            let mut total = free;
            for dims in groups {
                let sub: Vec<&Block> = blocks
                    .iter()
                    .copied()
                    .filter(|b| dims.iter().any(|&d| b[d].is_some()))
                    .collect();
                total *= self.survivors(&sub, &dims)?;
            }
            return Some(total);
        }
        let d = split_dimension(blocks, &constrained);
        let rest: Vec<usize> = constrained.iter().copied().filter(|&x| x != d).collect();
        let mut named: Vec<usize> =
            blocks.iter().filter_map(|b| b[d].as_ref()).flatten().copied().collect();
        named.sort_unstable();
        named.dedup();
        let mut total = 0u128;
        for &v in &named {
            let sub: Vec<&Block> = blocks
                .iter()
                .copied()
                .filter(|b| b[d].as_ref().is_none_or(|s| s.binary_search(&v).is_ok()))
                .collect();
            total += self.survivors(&sub, &rest)?;
        }
        let others = self.lens[d].saturating_sub(named.len()) as u128;
        if others > 0 {
            let sub: Vec<&Block> = blocks.iter().copied().filter(|b| b[d].is_none()).collect();
            total += others * self.survivors(&sub, &rest)?;
        }
        Some(total * free)
    }
}

/// The dimensions of `dims` grouped by the blocks that tie them together.
fn components(blocks: &[&Block], dims: &[usize]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..dims.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for b in blocks {
        let mut first = None;
        for (i, &d) in dims.iter().enumerate() {
            if b[d].is_some() {
                match first {
                    None => first = Some(i),
                    Some(f) => {
                        let (a, c) = (root(&mut parent, f), root(&mut parent, i));
                        parent[a] = c;
                    }
                }
            }
        }
    }
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, &d) in dims.iter().enumerate() {
        let r = root(&mut parent, i);
        match groups.iter_mut().find(|(g, _)| *g == r) {
            Some((_, members)) => members.push(d),
            None => groups.push((r, vec![d])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// The dimension most blocks constrain; among ties the middle one, so that a chain of entries
/// (a0&a1, a1&a2, …) falls apart into two halves.
fn split_dimension(blocks: &[&Block], dims: &[usize]) -> usize {
    let count = |d: usize| blocks.iter().filter(|b| b[d].is_some()).count();
    let best = dims.iter().map(|&d| count(d)).max().unwrap_or(0);
    let tied: Vec<usize> = dims.iter().copied().filter(|&d| count(d) == best).collect();
    tied.get(tied.len() / 2).copied().unwrap_or(dims[0])
}

/// Depth-first enumeration in output order, skipping subtrees with nothing left in them.
struct Walk<'a, 'm> {
    m: &'m Manifest,
    dims: &'a [Dim<'m>],
    varying: &'a [usize],
    counter: Counter<'a>,
    trials: &'a mut Vec<Trial>,
}

impl Walk<'_, '_> {
    /// Chooses each value of varying dimension `k` in turn; `active` are the exclude blocks
    /// that every choice so far falls in.
    fn visit(&mut self, k: usize, choice: &mut [usize], active: Vec<&Block>) {
        if k == self.varying.len() {
            // A block still active here matched every choice: the trial is excluded.
            if active.is_empty() {
                self.emit(choice);
            }
            return;
        }
        let rest: Vec<usize> = (k + 1..self.varying.len()).collect();
        for v in 0..self.counter.lens[k] {
            let next: Vec<&Block> = active
                .iter()
                .copied()
                .filter(|b| b[k].as_ref().is_none_or(|s| s.binary_search(&v).is_ok()))
                .collect();
            if !next.is_empty() {
                self.counter.budget = PRUNE_BUDGET;
                // When counting runs out of budget, descend anyway: the leaves decide.
                if self.counter.survivors(&next, &rest) == Some(0) {
                    continue;
                }
            }
            choice[self.varying[k]] = v;
            self.visit(k + 1, choice, next);
        }
    }

    fn emit(&mut self, choice: &[usize]) {
        let params: IndexMap<String, Value> = self
            .dims
            .iter()
            .zip(choice)
            .flat_map(|(dim, &i)| {
                dim.columns.iter().filter_map(move |(_, p, values)| {
                    Some(((*p).to_owned(), values.get(i)?.clone()))
                })
            })
            .collect();
        let config = config(&self.m.base, params.iter().map(|(p, v)| (p.as_str(), v)));
        self.trials.push(Trial { index: self.trials.len() as u32, params, config });
    }
}

/// `base` with each value set at its dotted path, creating tables on the way.
fn config<'v>(
    base: &Map<String, Value>,
    params: impl Iterator<Item = (&'v str, &'v Value)>,
) -> Value {
    let mut root = base.clone();
    for (path, value) in params {
        let mut table = &mut root;
        let mut segments = path.split('.').peekable();
        while let Some(seg) = segments.next() {
            if segments.peek().is_none() {
                table.insert(seg.to_owned(), value.clone());
                break;
            }
            let slot = table.entry(seg.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            // check_base_path has refused paths through non-tables; this only keeps a
            // hand-built manifest from panicking.
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(inner) = slot else { break };
            table = inner;
        }
    }
    Value::Object(root)
}
