//! The table a finished sweep ends with: one row per trial, read from the report stage's
//! `trials.jsonl` (its flat per-trial records) in the artifact store.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;
use wax_worker::artifacts::{ArtifactStore, attempt_key, attempt_prefix};

use super::sweep_view::SweepView;

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "–".to_string(), |x| format!("{x:+.digits$}"))
}

/// Prints the per-trial table of a finished sweep and where its artifacts are.
/// `pull_hint`: what `wax pull` needs besides the sweep and a folder (` --state .wax` after a
/// `wax run`).
pub async fn print_results(
    out: &mut impl Write,
    store: &ArtifactStore,
    sweep: &str,
    view: &SweepView,
    pull_hint: &str,
) -> anyhow::Result<()> {
    let Some(report) = view.stages.iter().find(|s| s.kind == "report" && s.state == "succeeded")
    else {
        writeln!(
            out,
            "no report: the sweep's report stage did not run (see `wax status {sweep}`)"
        )?;
        return Ok(());
    };
    let prefix = attempt_prefix(&report.stage_id, report.committed_attempt);
    let key = attempt_key(&report.stage_id, report.committed_attempt, "trials.jsonl");
    let bytes = store
        .get_bytes(&key)
        .await?
        .with_context(|| format!("{}/{key} is missing", store.url()))?;
    let mut rows: Vec<Value> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("trials.jsonl")?;
    // In trial order (the report lists them in a canonical order of their parameters).
    let trial_of = |r: &Value| {
        view.trials.iter().find(|tr| {
            r["evaluate"]
                .as_str()
                .is_some_and(|e| tr.stages.get("evaluate").is_some_and(|x| x == e))
        })
    };
    rows.sort_by_key(|r| trial_of(r).map_or(u32::MAX, |t| t.index));
    let has_steering = rows.iter().any(|r| r.get("slope_sentiment_all_mold").is_some());
    writeln!(out)?;
    write!(
        out,
        "{:<5} {:<44} {:>17} {:>15} {:>15}",
        "trial", "condition", "return before→after", "cos min v / u", "tracking d M/G"
    )?;
    if has_steering {
        write!(out, " {:>17}", "sentiment slope M/G")?;
    }
    writeln!(out)?;
    for (i, r) in rows.iter().enumerate() {
        let ret = format!("{} → {}", num(&r["return_before"], 1), num(&r["return_after"], 1));
        let cos = format!("{} / {}", num(&r["cos_min_trained"], 2), num(&r["cos_min_naive"], 2));
        let d = format!("{} / {}", num(&r["tracking_d_mold"], 2), num(&r["tracking_d_gold"], 2));
        let (index, mut cond) = match trial_of(r) {
            Some(t) => (t.index, t.label()),
            None => (i as u32, "?".to_string()),
        };
        if cond.chars().count() > 44 {
            cond = cond.chars().take(43).collect::<String>() + "…";
        }
        write!(out, "{index:<5} {cond:<44} {ret:>17} {cos:>15} {d:>15}")?;
        if has_steering {
            let s = format!(
                "{} / {}",
                num(&r["slope_sentiment_all_mold"], 3),
                num(&r["slope_sentiment_all_gold"], 3)
            );
            write!(out, " {s:>17}")?;
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "return: mean held-out return of the policy before and after training; cos min: the smallest \
         per-layer cosine of v_Mold and v_Gold (v trained, u maze-naive); tracking d: Cohen's d of the \
         trained model's Mold/Gold projections on fresh trajectories."
    )?;
    writeln!(out, "report:    {}/{prefix}/report.md", store.url())?;
    for t in &view.trials {
        let loc = |role: &str| {
            t.stages
                .get(role)
                .and_then(|id| view.stage(id))
                .filter(|s| s.committed_attempt > 0)
                .map(|s| attempt_prefix(&s.stage_id, s.committed_attempt))
        };
        if let (Some(rl), Some(ev)) = (loc("rl"), loc("evaluate")) {
            writeln!(
                out,
                "trial {:<3} rl {}/{rl}  evaluate {}/{ev}",
                t.index,
                store.url(),
                store.url()
            )?;
        }
    }
    writeln!(
        out,
        "copy them out with `wax pull {sweep} DIR{}` (laid out by trial and stage)",
        pull_hint
    )?;
    Ok(())
}
