//! The pipelines: how one trial becomes stages.

use super::Builder;
use crate::manifest::error::ManifestError;
use crate::manifest::model::Trial;
use crate::plan::TrialPlan;
use crate::records::StageId;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Top-level trial sections the paper pipeline understands.
const PAPER_SECTIONS: &[&str] = &[
    "seed",
    "model",
    "pretrain",
    "checkpoint",
    "maze",
    "env",
    "rl",
    "extract",
    "evaluate",
    "report",
];

fn section(config: &Map<String, Value>, key: &str) -> Value {
    config.get(key).cloned().unwrap_or_else(|| json!({}))
}

/// model → [pretrain] → rl → extract (trained); [pretrain|model] → extract (naive);
/// evaluate reads all of them.
pub(super) fn paper_trial(
    b: &mut Builder<'_>,
    trial: &Trial,
) -> Result<BTreeMap<String, StageId>, ManifestError> {
    let config = trial.config.as_object().cloned().unwrap_or_default();
    if let Some(unknown) = config.keys().find(|k| !PAPER_SECTIONS.contains(&k.as_str())) {
        return Err(b.error(
            trial,
            unknown,
            format!(
                "unknown section `{unknown}` for the paper pipeline (known: {})",
                PAPER_SECTIONS.join(", ")
            ),
        ));
    }
    for key in ["model", "pretrain", "maze", "env", "rl", "extract", "evaluate", "report"] {
        if let Some(v) = config.get(key).filter(|v| !v.is_object()) {
            return Err(b.error(trial, key, format!("`{key}` must be a table, got {v}")));
        }
    }
    let seed = config.get("seed").cloned().unwrap_or(json!(0));
    if !seed.is_u64() {
        return Err(b.error(
            trial,
            "seed",
            format!("`seed` must be a non-negative integer, got {seed}"),
        ));
    }
    let checkpoint = match config.get("checkpoint") {
        None => json!("final"),
        Some(Value::String(s)) => json!(s),
        Some(Value::Number(n)) if n.is_u64() => json!(n),
        Some(other) => {
            return Err(b.error(
                trial,
                "checkpoint",
                format!("`checkpoint` must be \"final\" or a pretraining step, got {other}"),
            ));
        }
    };
    let has_pretrain = config.contains_key("pretrain");
    if !has_pretrain && checkpoint != json!("final") {
        return Err(b.error(
            trial,
            "checkpoint",
            format!("checkpoint {checkpoint} is a pretraining step, but the trial has no `pretrain` section"),
        ));
    }
    // Each stage's config has its kind's shape; `Builder::add` merges the catalog's defaults
    // under what the trial says.
    let (maze, env) = (section(&config, "maze"), section(&config, "env"));

    let mut roles = BTreeMap::new();
    let model = b.add("model", section(&config, "model"), vec![], 0);
    roles.insert("model".to_string(), model.clone());
    let base = if has_pretrain {
        let pretrain = b.add("pretrain", section(&config, "pretrain"), vec![model], 1);
        roles.insert("pretrain".to_string(), pretrain.clone());
        pretrain
    } else {
        model
    };
    let rl_config = json!({
        "rl": section(&config, "rl"),
        "maze": maze, "env": env, "seed": seed, "checkpoint": checkpoint,
    });
    let rl = b.add("rl", rl_config, vec![base.clone()], 2);
    let extract = section(&config, "extract");
    let trained = b.add(
        "extract",
        json!({ "extract": extract, "maze": maze, "env": env, "model": "trained" }),
        vec![rl.clone()],
        3,
    );
    // The naive model's vectors depend on neither the algorithm nor the seed: every trial that
    // starts from the same checkpoint shares them.
    let naive = b.add(
        "extract",
        json!({ "extract": extract, "maze": maze, "env": env, "model": "naive", "checkpoint": checkpoint }),
        vec![base.clone()],
        3,
    );
    let evaluate = b.add(
        "evaluate",
        json!({ "evaluate": section(&config, "evaluate") }),
        vec![rl.clone(), trained.clone(), naive.clone(), base],
        4,
    );
    roles.insert("rl".to_string(), rl);
    roles.insert("extract-trained".to_string(), trained);
    roles.insert("extract-naive".to_string(), naive);
    roles.insert("evaluate".to_string(), evaluate);
    Ok(roles)
}

/// One report per sweep, reading every trial's evaluation.
pub(super) fn paper_report(b: &mut Builder<'_>, trials: &[TrialPlan]) {
    let mut inputs: Vec<StageId> =
        trials.iter().filter_map(|t| t.stages.get("evaluate").cloned()).collect();
    inputs.sort();
    inputs.dedup();
    // Rows in a canonical order (not the trial order, which follows how the axes were
    // written), so that the same sweep written differently has the same report stage.
    let mut rows: Vec<(String, Value)> = trials
        .iter()
        .map(|t| {
            let params =
                Value::Object(t.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            let key = super::canonical_json(&params);
            (key, json!({ "params": params, "evaluate": t.stages.get("evaluate") }))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Value> = rows.into_iter().map(|(_, row)| row).collect();
    let report = b.manifest.base.get("report").cloned().unwrap_or_else(|| json!({}));
    // The report is one stage per sweep: its settings must not vary between trials.
    let config = json!({ "report": report, "sweep": b.manifest.sweep.name, "trials": rows });
    b.add("report", config, inputs, 5);
}

/// One stage per trial, of kind `config.kind`.
pub(super) fn single_stage_trial(
    b: &mut Builder<'_>,
    trial: &Trial,
) -> Result<BTreeMap<String, StageId>, ManifestError> {
    let mut config = trial.config.as_object().cloned().unwrap_or_default();
    let kind = match config.remove("kind") {
        Some(Value::String(k)) => k,
        Some(other) => {
            return Err(b.error(trial, "kind", format!("`kind` must be a string, got {other}")));
        }
        None => {
            return Err(b.error(
                trial,
                "kind",
                "the single-stage pipeline needs `kind` in base or an axis".into(),
            ));
        }
    };
    if wax_proto::catalog::find(&kind).is_none() {
        let known: Vec<&str> = wax_proto::catalog::STAGE_KINDS.iter().map(|k| k.kind).collect();
        return Err(b.error(
            trial,
            "kind",
            format!("unknown stage kind `{kind}` (known: {})", known.join(", ")),
        ));
    }
    let id = b.add(&kind, Value::Object(config), vec![], 0);
    Ok(BTreeMap::from([("stage".to_string(), id)]))
}
