//! The `evaluate` stage: the configured suites on one trial's vectors (v from the trained
//! model, u from the maze-naive one), then `trial.json`: the trial's headline numbers from its
//! inputs and the suites (held-out return before → after, the Mold/Gold cosines, maze tracking
//! d, steering slopes), which the report reads.

use std::path::Path;

use serde_json::{Value, json};

use super::config::EvaluateStage;
use super::ctx::{StageCtx, StageError};
use super::extract::SubjectInfo;
use super::rl::device_name;
use super::{read_json, write_json};
use crate::evals::EvalError;
use crate::evals::run::{EvalInputs, run_eval};

/// Rows of a JSONL file (missing file: none).
fn read_jsonl(path: &Path) -> Result<Vec<Value>, StageError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    crate::rl::metrics::read_jsonl(path).map_err(StageError::Failed)
}

fn classify(e: EvalError) -> StageError {
    match e {
        EvalError::Input(_) => StageError::Config(e.to_string()),
        other => StageError::from_message(other.to_string()),
    }
}

/// Runs an `evaluate` stage. Inputs: the rl stage, the trained and naive extractions, the base
/// (model or pretrain) stage.
pub fn run(ctx: &StageCtx, st: &EvaluateStage) -> Result<(), StageError> {
    let rl = ctx.input(0, "the rl stage")?;
    let trained = ctx.input(1, "the trained model's vectors")?;
    let naive = ctx.input(2, "the naive model's vectors")?;
    let base = ctx.input(3, "the starting model")?;
    let subject = |dir: &Path| -> Result<SubjectInfo, StageError> {
        serde_json::from_value(read_json(&dir.join("subject.json"))?)
            .map_err(|e| StageError::Failed(format!("{}: {e}", dir.join("subject.json").display())))
    };
    let (ts, ns) = (subject(trained.fetch_all()?)?, subject(naive.fetch_all()?)?);
    // The trained snapshot sits in a checkpoint folder whose state.json it needs too.
    let trained_ckpt = ts.model_path.strip_suffix("/model").unwrap_or(&ts.model_path);
    rl.fetch(&["summary.json", &format!("{trained_ckpt}/")])?;
    let naive_prefix =
        if ns.model_path.is_empty() { String::new() } else { format!("{}/", ns.model_path) };
    base.fetch(&[&naive_prefix, super::model::MODEL_INFO])?;
    let inputs = EvalInputs {
        trained: trained.dir.clone(),
        naive: Some(naive.dir.clone()),
        trained_model: Some(rl.dir.join(&ts.model_path)),
        naive_model: Some(base.dir.join(&ns.model_path)),
    };
    let mut cfg = st.eval.clone();
    cfg.device = Some(device_name(ctx.device));
    let names: Vec<&str> = st.suites.iter().map(|s| s.name()).collect();
    ctx.log(format!("suites: {}", names.join(", ")));
    ctx.check_stop()?;
    let mut progress = |what: &str, done: usize, total: usize| {
        let fraction = if total > 0 { done as f64 / total as f64 } else { -1.0 };
        ctx.reporter.progress(fraction, what, &[]);
    };
    let report = run_eval(&st.suites, &inputs, &cfg, &ctx.out, &mut progress).map_err(classify)?;
    ctx.log(format!("wrote {} tables", report.files.len()));
    let trial = trial_summary(&rl.dir, &trained.dir, &naive.dir, &ctx.out)?;
    write_json(&ctx.out, "trial.json", &trial)
}

/// The trial's headline numbers, gathered from the stage's inputs and outputs.
fn trial_summary(rl: &Path, trained: &Path, naive: &Path, out: &Path) -> Result<Value, StageError> {
    let train = read_json(&rl.join("summary.json"))?;
    let extraction = |dir: &Path| -> Result<Value, StageError> {
        let s = read_json(&dir.join("summary.json"))?;
        Ok(json!({
            "cos_min": s["cos_min"], "cos_avg": s["cos_avg"], "cos_argmin": s["cos_argmin"],
            "cos_min_ci": s["cos_min_ci"], "layer_mold": s["layer_mold"], "layer_gold": s["layer_gold"],
        }))
    };
    let tracking: Vec<Value> = read_jsonl(&out.join("tracking.jsonl"))?
        .into_iter()
        .filter(|r| r["analysis"] == "maze")
        .map(|r| {
            json!({
                "concept": r["concept"], "model": r["model"], "vectors": r["vectors"],
                "layer": r["layer"], "d": r["d"],
            })
        })
        .collect();
    let slopes: Vec<Value> = read_jsonl(&out.join("steering/slopes.jsonl"))?
        .into_iter()
        .map(|r| json!({
            "eval": r["eval"], "group": r["group"], "condition": r["condition"],
            "concept": r["concept"], "slope": r["slope"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"],
            "proxy_judge": r["proxy_judge"],
        }))
        .collect();
    Ok(json!({
        "rl": {
            "algorithm": train["algorithm"],
            "steps": train["steps"],
            "return_before": train["before"]["mean"],
            "return_after": train["after"]["mean"],
            "paired_t": train["comparison"]["t"],
            "p_value": train["comparison"]["p_value"],
            "heldout_mazes": train["comparison"]["n"],
        },
        "extract": { "trained": extraction(trained)?, "naive": extraction(naive)? },
        "tracking": tracking,
        "steering": slopes,
    }))
}
