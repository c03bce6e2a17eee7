//! The typed sweep manifest, after parsing and validation.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A validated sweep manifest.
///
/// ```toml
/// [sweep]
/// name = "quickstart"
/// seeds = 2                      # shorthand for the axis seed = [0, 1]
///
/// [limits]
/// max_trials = 100
/// max_concurrent = 4
///
/// [resources.rl]                 # per stage kind, overriding the catalog defaults
/// gpus = 1
/// gpu_memory = "40GiB"
///
/// [base]                         # one trial: sections per stage kind, free-form
/// model = { ref = "builtin:tiny" }
/// rl = { algorithm = "dr-grpo", steps = 20 }
///
/// [axes]                         # cartesian product; keys are aliases or dotted paths
/// mapping = ["office", "office-swapped"]
/// "rl.learning_rate" = [1e-5, 3e-5]
///
/// [[zip]]                        # each group's lists vary together (equal lengths)
/// algorithm = ["dr-grpo", "sft"]
/// "rl.entropy_coef" = [0.01, 0.0]
///
/// [[include]]                    # extra trials: overrides on top of base
/// algorithm = "reinforce"
///
/// [[exclude]]                    # drop trials whose parameters match every key
/// algorithm = "sft"
/// mapping = "office-swapped"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub sweep: SweepSection,
    pub limits: Limits,
    /// Resource overrides per stage kind.
    pub resources: BTreeMap<String, ResourceSpec>,
    /// The base trial: a JSON object whose top-level keys are sections (`model`, `rl`, …).
    pub base: Map<String, Value>,
    /// Cartesian axes, in declaration order (the last varies fastest). Keys are canonical
    /// dotted paths (aliases already resolved, see [`canonical_path`]).
    pub axes: IndexMap<String, Vec<Value>>,
    /// Zipped groups: within a group, the i-th values go together. Groups are crossed with each
    /// other and with the axes.
    pub zip: Vec<IndexMap<String, Vec<Value>>>,
    /// Extra trials, each a set of path → value overrides applied to `base`.
    pub include: Vec<IndexMap<String, Value>>,
    /// Trials whose parameters equal every path → value of an entry are dropped.
    pub exclude: Vec<IndexMap<String, Value>>,
    /// Where each field was written (canonical path → location), for errors found after
    /// parsing (expansion, planning, worker-side validation).
    #[serde(skip)]
    pub locations: Locations,
}

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSection {
    /// Required, non-empty.
    pub name: String,
    pub description: String,
    /// Part of every stage id: bump it to recompute everything (default 1).
    pub cache_version: u32,
    /// Higher-priority sweeps' stages are leased first (default 0).
    pub priority: i32,
    /// How a trial becomes stages (default `paper`).
    pub pipeline: Pipeline,
}

/// How each trial expands into stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// model → [pretrain] → rl → extract (trained) and extract (naive) → evaluate, plus one
    /// report per sweep.
    Paper,
    /// One stage per trial, of the kind named by `base.kind` (or an axis over `kind`), with the
    /// rest of the trial as its config. For testing the scheduler with `sleep` and
    /// `fail-n-times`.
    SingleStage,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Refuse manifests that expand to more trials (default 10000).
    pub max_trials: u32,
    /// Most stages of this sweep leased at once; 0 = unlimited (default 0).
    pub max_concurrent: u32,
}

/// `[resources.<kind>]`: each field optional; sizes in bytes or with a unit ("40GiB", "512MB").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub gpus: Option<u32>,
    pub gpu_memory_bytes: Option<u64>,
    /// Cores, fractional allowed (written `cpu = 0.5`), stored in thousandths.
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
}

/// A position in the manifest source. Lines and columns count from 1; columns in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Canonical path → location of its value (`axes.rl.learning_rate`, `include[1].seed`,
/// `base.rl.steps`, `limits.max_trials`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Locations {
    pub source: String,
    pub by_path: BTreeMap<String, Location>,
}

/// One expanded trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Position in expansion order (axes product, then includes), from 0.
    pub index: u32,
    /// The values that distinguish this trial: canonical path → value, in axis order.
    pub params: IndexMap<String, Value>,
    /// `base` with `params` applied (a JSON object).
    pub config: Value,
}

/// Short axis names a manifest may use and the dotted paths they stand for.
pub const ALIASES: &[(&str, &str)] = &[
    ("mapping", "env.mapping"),
    ("model", "model.ref"),
    ("algorithm", "rl.algorithm"),
    ("checkpoint", "checkpoint"),
    ("seed", "seed"),
];

/// The canonical dotted path for an axis key (resolving [`ALIASES`]).
pub fn canonical_path(key: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == key).map_or(key, |(_, p)| p)
}
