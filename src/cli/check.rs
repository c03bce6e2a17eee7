//! Checking a planned sweep with the worker's own config types before anything runs: the glue
//! between the coordinator's plan (which never interprets a stage config) and the worker's
//! readers. Used by `wax manifest check`, `wax submit` and `wax run`.

use wax_coordinator::manifest::ManifestErrors;
use wax_coordinator::manifest::model::Manifest;
use wax_coordinator::plan::{Plan, StageCheck, StageProblem, check_plan};
use wax_coordinator::records::StageSpec;
use wax_worker::stages::{PlannedStage, check_stage};

/// Reads stage configs as a worker will; `local`: model references must resolve here.
pub struct WorkerCheck {
    pub local: bool,
}

fn planned(s: &StageSpec) -> PlannedStage<'_> {
    PlannedStage { kind: &s.kind, schema_version: s.schema_version, config: &s.config }
}

impl StageCheck for WorkerCheck {
    fn check(&self, stage: &StageSpec, inputs: &[&StageSpec]) -> Vec<StageProblem> {
        let inputs: Vec<PlannedStage> = inputs.iter().map(|s| planned(s)).collect();
        check_stage(&planned(stage), &inputs, self.local)
            .into_iter()
            .map(|e| StageProblem { path: e.path, message: e.message })
            .collect()
    }
}

/// Every stage of `plan` read with the worker's types; located errors otherwise.
pub fn check(manifest: &Manifest, plan: &Plan, local: bool) -> Result<(), ManifestErrors> {
    check_plan(manifest, plan, &WorkerCheck { local })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use wax_worker::stages::StageConfig;
    use wax_worker::stages::config::{KINDS, default_json};

    /// The first place where `catalog` and `worker` differ, as a dotted path. A preset name in
    /// the catalog where the worker has the preset's table (`env.mapping = "office"`) agrees
    /// when the whole config reads back equal (checked separately).
    fn first_difference(path: &str, catalog: &Value, worker: &Value) -> Option<String> {
        match (catalog, worker) {
            (Value::Object(c), Value::Object(w)) => {
                for k in c.keys().chain(w.keys()) {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    match (c.get(k), w.get(k)) {
                        (Some(a), Some(b)) => {
                            if let Some(d) = first_difference(&p, a, b) {
                                return Some(d);
                            }
                        }
                        (None, _) => return Some(format!("{p}: missing from the catalog")),
                        (_, None) => return Some(format!("{p}: not a field of the worker's type")),
                    }
                }
                None
            }
            (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
            (a, b) if a == b => None,
            (a, b) => Some(format!("{path}: catalog says {a}, worker says {b}")),
        }
    }

    /// The catalog's defaults are the worker's, field by field, for every kind; and each reads
    /// back as the worker's default config.
    #[test]
    fn catalog_defaults_are_the_workers_defaults() {
        for (kind, version) in KINDS {
            let spec = wax_proto::catalog::find(kind)
                .unwrap_or_else(|| panic!("{kind} not in the catalog"));
            assert_eq!(spec.schema_version, *version, "{kind}");
            let catalog = wax_proto::catalog::defaults(kind);
            let worker = default_json(kind).unwrap();
            assert_eq!(first_difference("", &catalog, &worker), None, "{kind}");
            if *kind == "report" {
                continue;
            }
            let a = StageConfig::parse(kind, &catalog).unwrap_or_else(|e| panic!("{kind}: {e}"));
            let b = StageConfig::parse(kind, &worker).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(a, b, "{kind}");
        }
        for k in wax_proto::catalog::STAGE_KINDS {
            assert!(
                KINDS.iter().any(|(w, _)| *w == k.kind),
                "the worker does not run `{}`",
                k.kind
            );
        }
    }

    #[test]
    fn the_comparison_finds_differences() {
        let a = serde_json::json!({"rl": {"lr": 1e-3, "steps": 3}});
        let b = serde_json::json!({"rl": {"lr": 1e-3, "steps": 4}});
        assert_eq!(
            first_difference("", &a, &b).unwrap(),
            "rl.steps: catalog says 3, worker says 4"
        );
        let c = serde_json::json!({"rl": {"learning_rate": 1e-3, "steps": 3}});
        assert!(first_difference("", &c, &a).unwrap().contains("rl.learning_rate"));
    }
}
