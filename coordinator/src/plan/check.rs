//! Checking a plan's stage configs before anything runs.
//!
//! The coordinator never interprets a stage config; the workers' own types do. The `wax`
//! binary (which links both) passes a [`StageCheck`] that reads each planned config the way a
//! worker will, and [`check_plan`] turns every problem into a located manifest error, so a
//! typo in `rl.lr` is refused at `wax manifest check` time instead of failing a stage an hour
//! into a sweep.

use super::{Plan, locate};
use crate::manifest::error::{ManifestError, ManifestErrors};
use crate::manifest::model::Manifest;
use crate::records::StageSpec;
use std::collections::{HashMap, HashSet};

/// A problem with one field of a stage config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageProblem {
    /// Dotted path within the stage config (`rl.lr`), empty for the whole stage.
    pub path: String,
    pub message: String,
}

/// Reads stage configs with the workers' types.
pub trait StageCheck {
    /// The problems of `stage`; `inputs` are the stages it reads, in order.
    fn check(&self, stage: &StageSpec, inputs: &[&StageSpec]) -> Vec<StageProblem>;
}

/// The trial-level path of a stage-config path: the `model` and `pretrain` stages' configs are
/// the trial's sections of those names; every other kind nests its sections by name already.
fn trial_path(kind: &str, path: &str) -> String {
    match kind {
        "model" | "pretrain" if path.is_empty() => kind.to_string(),
        "model" | "pretrain" => format!("{kind}.{path}"),
        _ => path.to_string(),
    }
}

/// Checks every stage of `plan` with `checker`; problems are located in the manifest (at the
/// first trial that uses the stage) and reported once per distinct field and message.
pub fn check_plan(
    manifest: &Manifest,
    plan: &Plan,
    checker: &dyn StageCheck,
) -> Result<(), ManifestErrors> {
    let by_id: HashMap<&str, &StageSpec> = plan.stages.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut first_trial: HashMap<&str, u32> = HashMap::new();
    for t in &plan.trials {
        for id in t.stages.values() {
            first_trial.entry(id.as_str()).or_insert(t.index);
        }
    }
    let mut errors: Vec<ManifestError> = Vec::new();
    let mut seen = HashSet::new();
    for stage in &plan.stages {
        let inputs: Vec<&StageSpec> =
            stage.inputs.iter().filter_map(|i| by_id.get(i.as_str()).copied()).collect();
        for p in checker.check(stage, &inputs) {
            let path = trial_path(&stage.kind, &p.path);
            if !seen.insert((path.clone(), p.message.clone())) {
                continue;
            }
            let trial = first_trial.get(stage.id.as_str()).copied();
            let message = format!("{} stage: {}", stage.kind, p.message);
            errors.push(locate(manifest, trial, &path, message));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ManifestErrors(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, ManifestFormat};

    /// Refuses `rl.lr` above 1 and any `model.ref` but `builtin:1m`.
    struct Picky;

    impl StageCheck for Picky {
        fn check(&self, stage: &StageSpec, _: &[&StageSpec]) -> Vec<StageProblem> {
            let mut out = Vec::new();
            if stage.kind == "rl" && stage.config["rl"]["lr"].as_f64().is_some_and(|lr| lr > 1.0) {
                out.push(StageProblem { path: "rl.lr".into(), message: "too large".into() });
            }
            if stage.kind == "model" && stage.config["ref"] != "builtin:1m" {
                out.push(StageProblem { path: "ref".into(), message: "unknown model".into() });
            }
            out
        }
    }

    #[test]
    fn problems_are_located_at_the_line_that_set_the_field() {
        let text = "[sweep]\nname = \"x\"\n[base]\nmodel = { ref = \"builtin:tiny\" }\n[axes]\n\"rl.lr\" = [0.1, 3.0]\n";
        let m = manifest::parse(text, ManifestFormat::Toml, "s.toml").unwrap();
        let trials = manifest::expand(&m).unwrap();
        let plan = crate::plan::plan(&m, &trials, 0).unwrap();
        let e = check_plan(&m, &plan, &Picky).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines.iter().any(|l| l.starts_with("s.toml:4:")
                && l.contains("model.ref")
                && l.contains("unknown model")),
            "{e}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("s.toml:6:")
                && l.contains("axes.rl.lr")
                && l.contains("trial 1")
                && l.contains("too large")),
            "{e}"
        );
    }
}
