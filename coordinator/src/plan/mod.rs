//! Planning: trials → a deduplicated DAG of content-addressed stages.
//!
//! A stage's id is the hash of its canonical identity — kind, schema version (from the
//! catalog), resolved config, input stage ids, and the manifest's `cache_version` — and nothing
//! else: not the binary, not the sweep, not the trial. Identical stages across trials (the
//! untrained model's vectors, shared by every algorithm and seed) and across sweeps
//! (re-submitting, adding an axis value) are therefore one node, and a committed node is a cache
//! hit.

mod canonical;
mod check;
mod pipeline;

pub use check::{StageCheck, StageProblem, check_plan};

pub use canonical::{canonical_json, content_hash, deep_merge};

use crate::manifest::error::{ManifestError, ManifestErrors};
use crate::manifest::model::{Manifest, Pipeline, Trial};
use crate::records::{Millis, Resources, StageId, StageSpec};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// A planned sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub trials: Vec<TrialPlan>,
    /// Distinct stages, inputs before the stages that read them.
    pub stages: Vec<StageSpec>,
}

/// The stages of one trial, by role (`model`, `rl`, `extract-trained`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialPlan {
    pub index: u32,
    pub params: IndexMap<String, Value>,
    pub stages: BTreeMap<String, StageId>,
}

impl Plan {
    /// The plan as stored with the sweep (trials, their parameters and stage ids).
    pub fn summary(&self) -> Value {
        json!({ "trials": self.trials })
    }
}

/// The identity a stage id hashes.
pub fn stage_id(
    kind: &str,
    schema_version: u32,
    config: &Value,
    inputs: &[StageId],
    cache_version: u32,
) -> StageId {
    content_hash(&json!({
        "kind": kind,
        "schema_version": schema_version,
        "config": config,
        "inputs": inputs,
        "cache_version": cache_version,
    }))
}

/// Collects stages, merging duplicates.
pub(crate) struct Builder<'m> {
    manifest: &'m Manifest,
    now: Millis,
    stages: Vec<StageSpec>,
    index: HashMap<StageId, usize>,
}

impl<'m> Builder<'m> {
    fn new(manifest: &'m Manifest, now: Millis) -> Self {
        Builder { manifest, now, stages: Vec::new(), index: HashMap::new() }
    }

    /// Adds (or finds) the stage of `kind` with `config` (defaults from the catalog merged
    /// under it) reading `inputs`; returns its id.
    pub(crate) fn add(
        &mut self,
        kind: &str,
        config: Value,
        inputs: Vec<StageId>,
        depth: i64,
    ) -> StageId {
        let spec = wax_proto::catalog::find(kind).expect("pipelines only use catalog kinds");
        let config = deep_merge(&wax_proto::catalog::defaults(kind), &config);
        let id = stage_id(
            kind,
            spec.schema_version,
            &config,
            &inputs,
            self.manifest.sweep.cache_version,
        );
        if !self.index.contains_key(&id) {
            self.index.insert(id.clone(), self.stages.len());
            self.stages.push(StageSpec {
                id: id.clone(),
                kind: kind.to_string(),
                schema_version: spec.schema_version,
                config,
                inputs,
                resources: self.resources(kind),
                priority: depth,
                created_ms: self.now,
            });
        }
        id
    }

    fn resources(&self, kind: &str) -> Resources {
        let d = wax_proto::catalog::default_resources(kind);
        let mut r = Resources {
            gpus: d.gpus,
            gpu_memory_bytes: d.gpu_memory_bytes,
            cpu_millis: d.cpu_millis,
            memory_bytes: d.memory_bytes,
        };
        if let Some(o) = self.manifest.resources.get(kind) {
            r.gpus = o.gpus.unwrap_or(r.gpus);
            r.gpu_memory_bytes = o.gpu_memory_bytes.unwrap_or(r.gpu_memory_bytes);
            r.cpu_millis = o.cpu_millis.unwrap_or(r.cpu_millis);
            r.memory_bytes = o.memory_bytes.unwrap_or(r.memory_bytes);
        }
        r
    }

    /// A located error about the trial field `path` (looked up among base, axes, zip and
    /// include locations).
    pub(crate) fn error(&self, trial: &Trial, path: &str, message: String) -> ManifestError {
        locate(self.manifest, Some(trial.index), path, message)
    }
}

/// A located error about the trial field `path` of trial `trial` (looked up among base, axes,
/// zip and include locations; a field that was never written is located at the nearest
/// enclosing section that was).
pub fn locate(
    manifest: &Manifest,
    trial: Option<u32>,
    path: &str,
    message: String,
) -> ManifestError {
    let locs = &manifest.locations;
    let mut shown = format!("base.{path}");
    let mut location = None;
    let mut probe = path.to_string();
    'outer: loop {
        let mut candidates = vec![format!("axes.{probe}"), format!("base.{probe}")];
        for (g, _) in manifest.zip.iter().enumerate() {
            candidates.push(format!("zip[{g}].{probe}"));
        }
        for (i, _) in manifest.include.iter().enumerate() {
            candidates.push(format!("include[{i}].{probe}"));
        }
        // A whole section (`base.rl`) also locates errors about its leaves.
        for c in &candidates {
            let hit = locs.by_path.get(c).copied().or_else(|| {
                locs.by_path.iter().find(|(k, _)| k.starts_with(&format!("{c}."))).map(|(_, l)| *l)
            });
            if let Some(l) = hit {
                (shown, location) = (c.clone(), Some(l));
                break 'outer;
            }
        }
        match probe.rfind(['.', '[']) {
            Some(cut) => probe.truncate(cut),
            None => break,
        }
    }
    if location.is_none() {
        shown = format!("base.{path}");
    } else if shown.len() < path.len() {
        // Located at an enclosing section: still name the field itself.
        shown = format!("{shown} ({path})");
    }
    let message = match trial {
        Some(t) => format!("trial {t}: {message}"),
        None => message,
    };
    ManifestError { source: locs.source.clone(), location, path: shown, message }
}

/// Plans a manifest's trials.
pub fn plan(manifest: &Manifest, trials: &[Trial], now: Millis) -> Result<Plan, ManifestErrors> {
    let mut builder = Builder::new(manifest, now);
    let mut errors = Vec::new();
    let mut planned = Vec::with_capacity(trials.len());
    for trial in trials {
        let stages = match manifest.sweep.pipeline {
            Pipeline::Paper => pipeline::paper_trial(&mut builder, trial),
            Pipeline::SingleStage => pipeline::single_stage_trial(&mut builder, trial),
        };
        match stages {
            Ok(stages) => {
                planned.push(TrialPlan { index: trial.index, params: trial.params.clone(), stages })
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        // One message per distinct problem: the same mistake in every trial is said once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| {
            seen.insert((e.path.clone(), e.message.split_once(": ").map(|(_, m)| m.to_string())))
        });
        return Err(ManifestErrors(errors));
    }
    if manifest.sweep.pipeline == Pipeline::Paper {
        pipeline::paper_report(&mut builder, &planned);
    }
    Ok(Plan { trials: planned, stages: builder.stages })
}
