//! The table a finished sweep ends with: one row per trial, read from the report stage's
//! `report.json` in the artifact store.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;
use wax_worker::artifacts::{ArtifactStore, attempt_prefix};

use super::sweep_view::SweepView;

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "–".to_string(), |x| format!("{x:+.digits$}"))
}

/// The trained model's maze tracking d (activations of the trained model on its own v).
fn tracking(trial: &Value, concept: &str) -> String {
    trial["tracking"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["model"] == "trained" && r["vectors"] == "v" && r["concept"] == concept)
        .map_or_else(|| "–".into(), |r| num(&r["d"], 2))
}

/// The steering slope of the trained model's own vector on the first group of `eval`.
fn slope(trial: &Value, eval: &str, concept: &str) -> Option<String> {
    trial["steering"]
        .as_array()?
        .iter()
        .find(|r| r["eval"] == eval && r["condition"] == "trained-v" && r["concept"] == concept)
        .map(|r| num(&r["slope"], 3))
}

fn param_text(params: &Value) -> String {
    params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let k = k.rsplit('.').next().unwrap_or(k);
                    match v {
                        Value::String(s) => format!("{k}={s}"),
                        Value::Object(_) | Value::Array(_) => format!("{k}=…"),
                        other => format!("{k}={other}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
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
    let bytes = store
        .get_bytes(&format!("{prefix}/report.json"))
        .await?
        .with_context(|| format!("{}/{prefix}/report.json is missing", store.url()))?;
    let doc: Value = serde_json::from_slice(&bytes).context("report.json")?;
    // In trial order (the report lists them in a canonical order of their parameters).
    let index_of = |r: &Value| {
        view.trials
            .iter()
            .find(|tr| {
                r["evaluate"]
                    .as_str()
                    .is_some_and(|e| tr.stages.get("evaluate").is_some_and(|x| x == e))
            })
            .map_or(u32::MAX, |tr| tr.index)
    };
    let mut rows = doc["trials"].as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| index_of(r));
    let has_steering = rows.iter().any(|r| slope(&r["trial"], "sentiment", "mold").is_some());
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
        let t = &r["trial"];
        let ret =
            format!("{} → {}", num(&t["rl"]["return_before"], 1), num(&t["rl"]["return_after"], 1));
        let cos = format!(
            "{} / {}",
            num(&t["extract"]["trained"]["cos_min"], 2),
            num(&t["extract"]["naive"]["cos_min"], 2)
        );
        let d = format!("{} / {}", tracking(t, "mold"), tracking(t, "gold"));
        let index = match index_of(r) {
            u32::MAX => i as u32,
            i => i,
        };
        let mut cond = param_text(&r["params"]);
        if cond.chars().count() > 44 {
            cond = cond.chars().take(43).collect::<String>() + "…";
        }
        write!(out, "{index:<5} {cond:<44} {ret:>17} {cos:>15} {d:>15}")?;
        if has_steering {
            let s = format!(
                "{} / {}",
                slope(t, "sentiment", "mold").unwrap_or_else(|| "–".into()),
                slope(t, "sentiment", "gold").unwrap_or_else(|| "–".into())
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
