//! The one validator: a [`Node`] tree from any format → [`Manifest`], reporting every problem
//! it finds (it keeps going with defaults after each) as located errors with field paths.

use super::model::{Limits, Location, Locations, Manifest, Pipeline, ResourceSpec, SweepSection};
use super::node::{Diagnostics, Entry, Node, NodeValue, join, suggest, unknown_key_message};
use super::params;
use super::units;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub(crate) const SECTIONS: &[&str] =
    &["sweep", "limits", "resources", "base", "axes", "zip", "include", "exclude"];
pub(crate) const SWEEP_FIELDS: &[&str] =
    &["name", "description", "cache_version", "priority", "pipeline", "seeds"];
pub(crate) const LIMIT_FIELDS: &[&str] = &["max_trials", "max_concurrent"];
pub(crate) const RESOURCE_FIELDS: &[&str] = &["gpus", "gpu_memory", "cpu", "memory"];
pub(crate) const PIPELINES: &[&str] = &["paper", "single-stage"];

pub(crate) const DEFAULT_MAX_TRIALS: u32 = 10_000;
/// `seeds = N` is materialised as a list; this keeps a typo from allocating gigabytes.
pub(crate) const MAX_SEEDS: i64 = 1_000_000;

/// Shared state of one validation: the error sink and the locations gathered so far.
pub(crate) struct Ctx<'d> {
    pub diag: &'d mut Diagnostics,
    pub locs: BTreeMap<String, Location>,
}

impl Ctx<'_> {
    pub fn record(&mut self, path: &str, loc: Location) {
        self.locs.insert(path.to_owned(), loc);
    }

    /// The node's value as JSON, recording the location of everything in it.
    pub fn json(&mut self, node: &Node, path: &str) -> Value {
        let locs = &mut self.locs;
        node.to_json(path, &mut |p, l| {
            locs.insert(p, l);
        })
    }

    pub fn table<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Entry]> {
        self.record(path, node.loc);
        let entries = node.as_map();
        if entries.is_none() {
            self.diag.at(node.loc, path, format!("expected a table, found {}", node.kind()));
        }
        entries
    }

    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        self.record(path, node.loc);
        let items = node.as_list();
        if items.is_none() {
            self.diag.at(node.loc, path, format!("expected a list, found {}", node.kind()));
        }
        items
    }

    /// Reports keys outside `allowed`, with a suggestion when one is a likely typo.
    pub fn only_keys(&mut self, entries: &[Entry], path: &str, allowed: &[&str]) {
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                self.diag.at(e.key_loc, &join(path, &e.key), unknown_key_message(&e.key, allowed));
            }
        }
    }

    /// An integer in `min..=max`, or `None` after reporting why not.
    pub fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        self.record(path, node.loc);
        let NodeValue::Int(i) = node.value else {
            self.diag.at(node.loc, path, format!("expected an integer, found {}", node.kind()));
            return None;
        };
        if i < min {
            self.diag.at(node.loc, path, format!("must be at least {min}, found {i}"));
            None
        } else if i > max {
            self.diag.at(node.loc, path, format!("must be at most {max}, found {i}"));
            None
        } else {
            Some(i)
        }
    }

    pub fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        self.record(path, node.loc);
        match &node.value {
            NodeValue::Str(s) => Some(s),
            _ => {
                self.diag.at(node.loc, path, format!("expected a string, found {}", node.kind()));
                None
            }
        }
    }
}

pub(crate) fn field<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Node> {
    entries.iter().find(|e| e.key == key).map(|e| &e.value)
}

/// Validates the whole document. The manifest is meaningful only if no error was reported.
pub(crate) fn validate(root: &Node, diag: &mut Diagnostics) -> Manifest {
    let mut ctx = Ctx { diag, locs: BTreeMap::new() };
    let Some(entries) = root.as_map() else {
        ctx.diag.at(
            root.loc,
            "",
            format!("a manifest must be a table at the top, found {}", root.kind()),
        );
        return Manifest {
            sweep: default_sweep(),
            limits: Limits { max_trials: DEFAULT_MAX_TRIALS, max_concurrent: 0 },
            resources: BTreeMap::new(),
            base: Map::new(),
            axes: Default::default(),
            zip: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            locations: Locations::default(),
        };
    };
    ctx.only_keys(entries, "", SECTIONS);

    let limits = field(entries, "limits")
        .map_or(Limits { max_trials: DEFAULT_MAX_TRIALS, max_concurrent: 0 }, |n| {
            limits(n, &mut ctx)
        });
    let (sweep, seeds) = match field(entries, "sweep") {
        Some(n) => sweep(n, &limits, &mut ctx),
        None => {
            ctx.diag.error(
                None,
                "sweep",
                "missing; a manifest needs a `sweep` table with at least a `name`",
            );
            (default_sweep(), None)
        }
    };
    let resources =
        field(entries, "resources").map_or_else(BTreeMap::new, |n| resources(n, &mut ctx));
    let base = match field(entries, "base") {
        Some(n) => match ctx.table(n, "base") {
            Some(_) => base(n, &mut ctx),
            None => Map::new(),
        },
        None => Map::new(),
    };
    let space = params::read(entries, seeds, &mut ctx);

    Manifest {
        sweep,
        limits,
        resources,
        base,
        axes: space.axes,
        zip: space.zip,
        include: space.include,
        exclude: space.exclude,
        locations: Locations { source: String::new(), by_path: ctx.locs },
    }
}

fn default_sweep() -> SweepSection {
    SweepSection {
        name: String::new(),
        description: String::new(),
        cache_version: 1,
        priority: 0,
        pipeline: Pipeline::Paper,
    }
}

/// `sweep.seeds` as an axis: its values and their nodes' locations.
pub(crate) struct SeedAxis {
    pub key_loc: Location,
    pub loc: Location,
    pub values: Vec<Value>,
    pub locs: Vec<Location>,
}

fn sweep(node: &Node, limits: &Limits, ctx: &mut Ctx<'_>) -> (SweepSection, Option<SeedAxis>) {
    let mut s = default_sweep();
    let Some(entries) = ctx.table(node, "sweep") else {
        return (s, None);
    };
    ctx.only_keys(entries, "sweep", SWEEP_FIELDS);
    match field(entries, "name") {
        None => ctx.diag.at(node.loc, "sweep.name", "missing; every sweep needs a name"),
        Some(n) => {
            if let Some(name) = ctx.string(n, "sweep.name") {
                if name.trim().is_empty() {
                    ctx.diag.at(n.loc, "sweep.name", "must not be empty");
                }
                s.name = name.to_owned();
            }
        }
    }
    if let Some(n) = field(entries, "description") {
        s.description = ctx.string(n, "sweep.description").unwrap_or_default().to_owned();
    }
    if let Some(n) = field(entries, "cache_version") {
        let v = ctx.int(n, "sweep.cache_version", 1, u32::MAX.into());
        s.cache_version = v.map_or(1, |v| v as u32);
    }
    if let Some(n) = field(entries, "priority") {
        let v = ctx.int(n, "sweep.priority", i32::MIN.into(), i32::MAX.into());
        s.priority = v.map_or(0, |v| v as i32);
    }
    if let Some(n) = field(entries, "pipeline") {
        match ctx.string(n, "sweep.pipeline") {
            Some("paper") => s.pipeline = Pipeline::Paper,
            Some("single-stage") => s.pipeline = Pipeline::SingleStage,
            Some(other) => {
                let message = match suggest(other, PIPELINES) {
                    Some(p) => format!("unknown pipeline `{other}`; did you mean `{p}`?"),
                    None => format!("unknown pipeline `{other}`; expected paper or single-stage"),
                };
                ctx.diag.at(n.loc, "sweep.pipeline", message);
            }
            None => {}
        }
    }
    let seeds = entries.iter().find(|e| e.key == "seeds").and_then(|e| seeds(e, limits, ctx));
    (s, seeds)
}

fn seeds(entry: &Entry, limits: &Limits, ctx: &mut Ctx<'_>) -> Option<SeedAxis> {
    let node = &entry.value;
    let path = "sweep.seeds";
    ctx.record(path, node.loc);
    match &node.value {
        NodeValue::Int(_) => {
            let n = ctx.int(node, path, 1, i64::MAX)?;
            let max_trials = i64::from(limits.max_trials);
            let problem = if n > max_trials {
                Some(format!("{n} seeds alone exceed limits.max_trials ({max_trials})"))
            } else if n > MAX_SEEDS {
                Some(format!("at most {MAX_SEEDS} seeds"))
            } else {
                None
            };
            if let Some(message) = problem {
                ctx.diag.at(node.loc, path, message);
                return None;
            }
            Some(SeedAxis {
                key_loc: entry.key_loc,
                loc: node.loc,
                values: (0..n).map(Value::from).collect(),
                locs: vec![node.loc; n as usize],
            })
        }
        NodeValue::List(items) => {
            let mut axis = SeedAxis {
                key_loc: entry.key_loc,
                loc: node.loc,
                values: Vec::new(),
                locs: Vec::new(),
            };
            if items.is_empty() {
                ctx.diag.at(node.loc, path, "must list at least one seed");
            }
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let Some(seed) = ctx.int(item, &p, 0, i64::MAX) else {
                    continue;
                };
                let value = Value::from(seed);
                if let Some(j) = axis.values.iter().position(|v| *v == value) {
                    ctx.diag.at(item.loc, &p, format!("repeats seed {seed} (sweep.seeds[{j}])"));
                    continue;
                }
                axis.values.push(value);
                axis.locs.push(item.loc);
            }
            (!axis.values.is_empty()).then_some(axis)
        }
        _ => {
            ctx.diag.at(
                node.loc,
                path,
                format!(
                    "expected a number of seeds (N ≥ 1, meaning 0..N) or a list of seeds, found {}",
                    node.kind()
                ),
            );
            None
        }
    }
}

fn limits(node: &Node, ctx: &mut Ctx<'_>) -> Limits {
    let mut l = Limits { max_trials: DEFAULT_MAX_TRIALS, max_concurrent: 0 };
    let Some(entries) = ctx.table(node, "limits") else {
        return l;
    };
    ctx.only_keys(entries, "limits", LIMIT_FIELDS);
    if let Some(n) = field(entries, "max_trials")
        && let Some(v) = ctx.int(n, "limits.max_trials", 1, u32::MAX.into())
    {
        l.max_trials = v as u32;
    }
    if let Some(n) = field(entries, "max_concurrent")
        && let Some(v) = ctx.int(n, "limits.max_concurrent", 0, u32::MAX.into())
    {
        l.max_concurrent = v as u32;
    }
    l
}

fn resources(node: &Node, ctx: &mut Ctx<'_>) -> BTreeMap<String, ResourceSpec> {
    let mut out = BTreeMap::new();
    let Some(kinds) = ctx.table(node, "resources") else {
        return out;
    };
    let known: Vec<&str> = wax_proto::catalog::STAGE_KINDS.iter().map(|k| k.kind).collect();
    for kind in kinds {
        let path = join("resources", &kind.key);
        if !known.contains(&kind.key.as_str()) {
            let message = match suggest(&kind.key, &known) {
                Some(s) => format!("unknown stage kind `{}`; did you mean `{s}`?", kind.key),
                None => format!(
                    "unknown stage kind `{}`; expected one of: {}",
                    kind.key,
                    known.join(", ")
                ),
            };
            ctx.diag.at(kind.key_loc, &path, message);
        }
        let Some(fields) = ctx.table(&kind.value, &path) else {
            continue;
        };
        ctx.only_keys(fields, &path, RESOURCE_FIELDS);
        let mut spec = ResourceSpec::default();
        if let Some(n) = field(fields, "gpus") {
            spec.gpus = ctx.int(n, &join(&path, "gpus"), 0, u32::MAX.into()).map(|v| v as u32);
        }
        if let Some(n) = field(fields, "gpu_memory") {
            spec.gpu_memory_bytes = size(n, &join(&path, "gpu_memory"), ctx);
        }
        if let Some(n) = field(fields, "memory") {
            spec.memory_bytes = size(n, &join(&path, "memory"), ctx);
        }
        if let Some(n) = field(fields, "cpu") {
            let p = join(&path, "cpu");
            ctx.record(&p, n.loc);
            let cores = match n.value {
                NodeValue::Int(i) => Some(i as f64),
                NodeValue::Float(f) => Some(f),
                _ => None,
            };
            spec.cpu_millis = match cores.map(units::cpu_millis) {
                Some(Ok(m)) => Some(m),
                Some(Err(message)) => {
                    ctx.diag.at(n.loc, &p, message);
                    None
                }
                None => {
                    ctx.diag.at(
                        n.loc,
                        &p,
                        format!("expected a number of cores (like 2 or 0.5), found {}", n.kind()),
                    );
                    None
                }
            };
        }
        out.insert(kind.key.clone(), spec);
    }
    out
}

fn size(node: &Node, path: &str, ctx: &mut Ctx<'_>) -> Option<u64> {
    ctx.record(path, node.loc);
    let parsed = match &node.value {
        NodeValue::Int(i) => {
            u64::try_from(*i).map_err(|_| format!("must be at least 0, found {i}"))
        }
        NodeValue::Str(s) => units::parse_size(s),
        _ => Err(format!(
            "expected a size in bytes or a string like \"40GiB\", found {}",
            node.kind()
        )),
    };
    parsed.map_err(|m| ctx.diag.at(node.loc, path, m)).ok()
}

/// `base` as JSON. Its keys are section and field names; a `.` in one would be
/// indistinguishable from nesting once axes address fields by dotted path.
fn base(node: &Node, ctx: &mut Ctx<'_>) -> Map<String, Value> {
    check_base_keys(node, "base", ctx);
    match ctx.json(node, "base") {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Only tables nested in tables are reachable by a dotted path, so lists are not searched.
fn check_base_keys(node: &Node, path: &str, ctx: &mut Ctx<'_>) {
    for e in node.as_map().unwrap_or_default() {
        let p = join(path, &e.key);
        if e.key.contains('.') || e.key.is_empty() {
            ctx.diag.at(
                e.key_loc,
                &p,
                "keys in base must be non-empty and contain no `.`; nest tables instead",
            );
        }
        check_base_keys(&e.value, &p, ctx);
    }
}
