//! The `report` stage (one per sweep): every trial's headline numbers side by side, as
//! `report.json` (machine-readable), `trials.jsonl` (one row per trial, for pandas) and
//! `report.md` (a table for people).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::config::ReportStage;
use super::ctx::{StageCtx, StageError};
use super::{read_json, write_json};

/// Reads `trial.json` of each trial's evaluate stage (an input of this stage).
pub fn run(ctx: &StageCtx, st: &ReportStage) -> Result<(), StageError> {
    let mut rows = Vec::new();
    for t in &st.trials {
        let trial = match &t.evaluate {
            Some(id) => {
                let input = ctx.inputs.iter().find(|i| &i.stage_id == id).ok_or_else(|| {
                    StageError::Config(format!("evaluate stage {id} is not an input of the report"))
                })?;
                read_json(&input.fetch(&["trial.json"])?.join("trial.json"))?
            }
            None => Value::Null,
        };
        rows.push(json!({ "params": t.params, "evaluate": t.evaluate, "trial": trial }));
    }
    let flat: Vec<Value> = rows.iter().map(flatten).collect();
    write_json(&ctx.out, "report.json", &json!({ "sweep": st.sweep, "trials": rows }))?;
    crate::vectors::store::write_jsonl(&ctx.out.join("trials.jsonl"), &flat)
        .map_err(|e| StageError::Infrastructure(e.to_string()))?;
    let md = markdown(&st.sweep, &flat);
    std::fs::write(ctx.out.join("report.md"), &md)
        .map_err(|e| StageError::Infrastructure(format!("report.md: {e}")))?;
    ctx.log(format!("{} trials reported", rows.len()));
    Ok(())
}

/// One flat record per trial: the parameters, then the headline numbers.
pub fn flatten(row: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(p) = row["params"].as_object() {
        for (k, v) in p {
            out.insert(k.clone(), v.clone());
        }
    }
    let t = &row["trial"];
    out.insert("return_before".into(), t["rl"]["return_before"].clone());
    out.insert("return_after".into(), t["rl"]["return_after"].clone());
    out.insert("p_value".into(), t["rl"]["p_value"].clone());
    out.insert("cos_min_trained".into(), t["extract"]["trained"]["cos_min"].clone());
    out.insert("cos_min_naive".into(), t["extract"]["naive"]["cos_min"].clone());
    for r in t["tracking"].as_array().into_iter().flatten() {
        // The paper's headline: the trained model's activations on its own vectors.
        if r["model"] == "trained" && r["vectors"] == "v" {
            let c = r["concept"].as_str().unwrap_or("?");
            out.insert(format!("tracking_d_{c}"), r["d"].clone());
        }
    }
    for r in t["steering"].as_array().into_iter().flatten() {
        if r["condition"] == "trained-v" {
            let key = format!(
                "slope_{}_{}_{}",
                r["eval"].as_str().unwrap_or("?"),
                r["group"].as_str().unwrap_or("?"),
                r["concept"].as_str().unwrap_or("?")
            );
            out.insert(key, r["slope"].clone());
        }
    }
    out.insert("evaluate".into(), row["evaluate"].clone());
    Value::Object(out)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:+.3}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Markdown table of the flat records (columns in first-seen order).
pub fn markdown(sweep: &str, flat: &[Value]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for r in flat {
        for k in r.as_object().into_iter().flat_map(|m| m.keys()) {
            if k != "evaluate" && !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let mut md = format!("# Sweep `{sweep}`\n\n{} trials.\n\n", flat.len());
    let _ = writeln!(md, "| {} |", cols.join(" | "));
    let _ = writeln!(md, "|{}|", cols.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in flat {
        let cells: Vec<String> = cols.iter().map(|c| cell(&r[c.as_str()])).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push_str(
        "\nreturn_*: mean held-out return before and after training; cos_min_*: the smallest \
         per-layer cosine between the Mold and Gold vectors (trained v, naive u); tracking_d_*: \
         Cohen's d of the trained model's activations on fresh trajectories projected on v; \
         slope_*: steering slopes of the trained v per unit α.\n",
    );
    md
}
