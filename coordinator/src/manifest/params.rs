//! `axes`, `zip`, `include` and `exclude`: the parameter space, checked so that expansion can
//! only fail on things that need `base` or the trial count.

use super::model::{Location, canonical_path};
use super::node::{Entry, MAX_DEPTH, Node, canonical_json, join};
use super::validate::{Ctx, SeedAxis, field};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashMap;

pub(crate) struct Space {
    pub axes: IndexMap<String, Vec<Value>>,
    pub zip: Vec<IndexMap<String, Vec<Value>>>,
    pub include: Vec<IndexMap<String, Value>>,
    pub exclude: Vec<IndexMap<String, Value>>,
}

/// Where a varied path was declared, for "already varied by …" messages.
struct Owner {
    label: String,
    /// The key as written, when it differs from the path (an alias).
    alias: Option<String>,
    loc: Location,
}

impl Owner {
    fn describe(&self) -> String {
        match &self.alias {
            Some(a) => format!("{} (as `{a}`, {})", self.label, at(self.loc)),
            None => format!("{} ({})", self.label, at(self.loc)),
        }
    }
}

fn at(loc: Location) -> String {
    format!("line {}, column {}", loc.line, loc.column)
}

/// The canonical path of a key in `axes`, `zip`, `include` or `exclude`. Its length is bounded
/// so that the configs built from it stay as shallow as the documents that are read.
fn path_of(entry: &Entry, section: &str, ctx: &mut Ctx<'_>) -> Option<String> {
    let path = canonical_path(&entry.key);
    let segments = path.split('.').count();
    let problem = if path.split('.').any(str::is_empty) {
        Some("is not a path: each `.`-separated part must be non-empty".to_owned())
    } else if segments > MAX_DEPTH {
        Some(format!("is not a path: more than {MAX_DEPTH} parts"))
    } else {
        None
    };
    match problem {
        Some(p) => {
            ctx.diag.at(entry.key_loc, &join(section, &entry.key), format!("`{}` {p}", entry.key));
            None
        }
        None => Some(path.to_owned()),
    }
}

/// A non-empty list of values; `distinct` refuses repeats (an axis that repeats a value would
/// repeat trials).
fn values(node: &Node, label: &str, distinct: bool, ctx: &mut Ctx<'_>) -> Option<Vec<Value>> {
    let items = ctx.list(node, label)?;
    if items.is_empty() {
        ctx.diag.at(node.loc, label, "must list at least one value");
        return None;
    }
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let value = ctx.json(item, &format!("{label}[{i}]"));
        if distinct && let Some(j) = seen.insert(canonical_json(&value), i) {
            ctx.diag.at(
                item.loc,
                &format!("{label}[{i}]"),
                format!("repeats the value {value} of {label}[{j}]"),
            );
            ok = false;
        }
        out.push(value);
    }
    ok.then_some(out)
}

pub(crate) fn read(entries: &[Entry], seeds: Option<SeedAxis>, ctx: &mut Ctx<'_>) -> Space {
    let mut owners: IndexMap<String, Owner> = IndexMap::new();
    if let Some(s) = &seeds {
        owners.insert(
            "seed".into(),
            Owner { label: "sweep.seeds".into(), alias: None, loc: s.key_loc },
        );
    }
    let mut axes = IndexMap::new();
    if let Some(node) = field(entries, "axes") {
        for e in ctx.table(node, "axes").unwrap_or_default() {
            let Some(path) = path_of(e, "axes", ctx) else {
                continue;
            };
            let label = join("axes", &path);
            if !claim(&mut owners, &path, &label, e, ctx) {
                continue;
            }
            if let Some(v) = values(&e.value, &label, true, ctx) {
                axes.insert(path, v);
            }
        }
    }
    if let Some(s) = seeds {
        // After the declared axes, so that the seeds of one condition are neighbours (the
        // last axis varies fastest).
        ctx.record("axes.seed", s.loc);
        for (i, loc) in s.locs.iter().enumerate() {
            ctx.record(&format!("axes.seed[{i}]"), *loc);
        }
        axes.insert("seed".into(), s.values);
    }

    let mut zip = Vec::new();
    if let Some(node) = field(entries, "zip") {
        for (g, group) in ctx.list(node, "zip").unwrap_or_default().iter().enumerate() {
            if let Some(z) = zip_group(group, &format!("zip[{g}]"), &mut owners, ctx) {
                zip.push(z);
            }
        }
    }
    check_nesting(&owners, ctx);

    let include = overrides(entries, "include", ctx);
    let exclude = overrides(entries, "exclude", ctx);
    for (i, entry) in exclude.iter().enumerate() {
        check_exclude(entry, &format!("exclude[{i}]"), &axes, &zip, &owners, ctx);
    }
    Space { axes, zip, include, exclude }
}

/// Records that `label` varies `path`; false (after reporting) if something already does.
fn claim(
    owners: &mut IndexMap<String, Owner>,
    path: &str,
    label: &str,
    entry: &Entry,
    ctx: &mut Ctx<'_>,
) -> bool {
    if let Some(o) = owners.get(path) {
        ctx.diag.at(
            entry.key_loc,
            label,
            format!(
                "`{path}` is already varied by {}; a path may vary in one place only",
                o.describe()
            ),
        );
        return false;
    }
    owners.insert(path.to_owned(), owner(label, path, entry));
    true
}

fn owner(label: &str, path: &str, entry: &Entry) -> Owner {
    Owner {
        label: label.to_owned(),
        alias: (entry.key != path).then(|| entry.key.clone()),
        loc: entry.key_loc,
    }
}

fn zip_group(
    node: &Node,
    gpath: &str,
    owners: &mut IndexMap<String, Owner>,
    ctx: &mut Ctx<'_>,
) -> Option<IndexMap<String, Vec<Value>>> {
    let keys = ctx.table(node, gpath)?;
    if keys.is_empty() {
        ctx.diag.at(node.loc, gpath, "a zip group needs at least one list");
        return None;
    }
    let mut group = IndexMap::new();
    let mut first: Option<(String, usize)> = None;
    let mut ok = true;
    for e in keys {
        let Some(path) = path_of(e, gpath, ctx) else {
            ok = false;
            continue;
        };
        let label = join(gpath, &path);
        if !claim(owners, &path, &label, e, ctx) {
            ok = false;
            continue;
        }
        let Some(v) = values(&e.value, &label, false, ctx) else {
            ok = false;
            continue;
        };
        match &first {
            None => first = Some((label, v.len())),
            Some((first_label, n)) if *n != v.len() => {
                ctx.diag.at(
                    e.value.loc,
                    &label,
                    format!(
                        "has {} values but {first_label} has {n}; the lists of a zip group must \
                         have equal lengths",
                        v.len()
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
        group.insert(path, v);
    }
    if !ok {
        return None;
    }
    // Identical value sets would be identical trials.
    let (first_path, first_values) = group.first()?;
    let mut seen = HashMap::new();
    for i in 0..first_values.len() {
        let set: Vec<&Value> = group.values().map(|v| &v[i]).collect();
        let key = canonical_json(&Value::Array(set.into_iter().cloned().collect()));
        if let Some(j) = seen.insert(key, i) {
            let label = format!("{}[{i}]", join(gpath, first_path));
            let loc = ctx.locs.get(&label).copied().unwrap_or(node.loc);
            ctx.diag.at(
                loc,
                gpath,
                format!("value set {i} repeats value set {j}; the trials would be identical"),
            );
            ok = false;
        }
    }
    ok.then_some(group)
}

/// A varied path inside another (`rl` and `rl.learning_rate`) would make the result depend on
/// the order they are applied in.
fn check_nesting(owners: &IndexMap<String, Owner>, ctx: &mut Ctx<'_>) {
    for (path, owner) in owners {
        for (i, _) in path.match_indices('.') {
            let outer = &path[..i];
            if let Some(o) = owners.get(outer) {
                ctx.diag.at(
                    owner.loc,
                    &owner.label,
                    format!(
                        "`{path}` lies inside `{outer}`, which is varied by {} ({}); vary one or \
                         the other",
                        o.label,
                        at(o.loc)
                    ),
                );
            }
        }
    }
}

/// `include` or `exclude`: a list of tables of path → value.
fn overrides(entries: &[Entry], section: &str, ctx: &mut Ctx<'_>) -> Vec<IndexMap<String, Value>> {
    let mut out = Vec::new();
    let Some(node) = field(entries, section) else {
        return out;
    };
    for (i, item) in ctx.list(node, section).unwrap_or_default().iter().enumerate() {
        let ipath = format!("{section}[{i}]");
        let Some(keys) = ctx.table(item, &ipath) else {
            continue;
        };
        if section == "exclude" && keys.is_empty() {
            ctx.diag.at(item.loc, &ipath, "an empty exclude entry would drop every trial");
            continue;
        }
        let mut map: IndexMap<String, Value> = IndexMap::new();
        let mut owners: IndexMap<String, Owner> = IndexMap::new();
        let mut ok = true;
        for e in keys {
            let Some(path) = path_of(e, &ipath, ctx) else {
                ok = false;
                continue;
            };
            let label = join(&ipath, &path);
            if let Some(o) = owners.get(&path) {
                ctx.diag.at(
                    e.key_loc,
                    &label,
                    format!("`{path}` is already set by {}", o.describe()),
                );
                ok = false;
                continue;
            }
            owners.insert(path.clone(), owner(&label, &path, e));
            let value = ctx.json(&e.value, &label);
            map.insert(path, value);
        }
        let before = ctx.diag.len();
        check_nesting(&owners, ctx);
        if ok && ctx.diag.len() == before {
            out.push(map);
        }
    }
    out
}

/// An exclude entry that no trial can match is almost certainly a typo.
fn check_exclude(
    entry: &IndexMap<String, Value>,
    epath: &str,
    axes: &IndexMap<String, Vec<Value>>,
    zip: &[IndexMap<String, Vec<Value>>],
    declared: &IndexMap<String, Owner>,
    ctx: &mut Ctx<'_>,
) {
    let mut by_group: Vec<Vec<(&String, &Value)>> = vec![Vec::new(); zip.len()];
    for (path, value) in entry {
        let label = join(epath, path);
        let loc = ctx.locs.get(&label).copied();
        if let Some(values) = axes.get(path) {
            if !values.contains(value) {
                ctx.diag.error(
                    loc,
                    &label,
                    format!(
                        "{value} is not one of the values of axes.{path}, so this entry could \
                         never match"
                    ),
                );
            }
        } else if let Some(g) = zip.iter().position(|z| z.contains_key(path)) {
            by_group[g].push((path, value));
        } else if declared.contains_key(path) {
            // Varied, but its axis or zip group was refused (and reported) already.
        } else {
            ctx.diag.error(
                loc,
                &label,
                format!("`{path}` is not varied by axes or zip, so this entry could never match"),
            );
        }
    }
    for (g, wanted) in by_group.iter().enumerate() {
        let Some(&(first, _)) = wanted.first() else {
            continue;
        };
        let n = zip[g].first().map_or(0, |(_, v)| v.len());
        let matches = (0..n).any(|i| {
            wanted.iter().all(|(p, v)| zip[g].get(p.as_str()).and_then(|vs| vs.get(i)) == Some(*v))
        });
        if !matches {
            let label = join(epath, first);
            let loc = ctx.locs.get(&label).copied();
            let conditions: Vec<String> =
                wanted.iter().map(|(p, v)| format!("{p} = {v}")).collect();
            ctx.diag.error(
                loc,
                &label,
                format!(
                    "no value set of zip[{g}] has {}, so this entry could never match",
                    conditions.join(" and ")
                ),
            );
        }
    }
}
