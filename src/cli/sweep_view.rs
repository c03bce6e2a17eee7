//! A sweep's plan and stages as the client commands read them (`wax run`, `wax pull`,
//! `wax logs`): trials with their parameters and stages by role, every stage's state and
//! committed files.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;
use wax_proto::client::Connection;
use wax_proto::v1;

use super::sweeps::rpc;

/// One trial of the plan.
#[derive(Debug, Clone)]
pub struct TrialView {
    pub index: u32,
    /// Canonical path → value, in axis order.
    pub params: Vec<(String, Value)>,
    /// Role (`model`, `rl`, `extract-trained`, …) → stage id.
    pub stages: BTreeMap<String, String>,
}

impl TrialView {
    /// `mapping=office algorithm=sft` (short names for the common axes).
    pub fn label(&self) -> String {
        let short = |k: &str| -> String {
            match k {
                "env.mapping" => "mapping".into(),
                "rl.algorithm" => "algorithm".into(),
                "model.ref" => "model".into(),
                other => other.to_string(),
            }
        };
        let parts: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{}={s}", short(k)),
                Value::Object(_) | Value::Array(_) => format!("{}=…", short(k)),
                other => format!("{}={other}", short(k)),
            })
            .collect();
        if parts.is_empty() { "base".into() } else { parts.join(" ") }
    }
}

/// A sweep's stages and plan.
#[derive(Debug, Clone)]
pub struct SweepView {
    pub trials: Vec<TrialView>,
    /// In plan order (inputs before the stages that read them).
    pub stages: Vec<v1::StageInfo>,
}

impl SweepView {
    pub async fn fetch(conn: &Connection, sweep: &str) -> anyhow::Result<SweepView> {
        let r = conn
            .sweeps()
            .stages(v1::StagesRequest { sweep_id: sweep.to_string() })
            .await
            .map_err(rpc)?
            .into_inner();
        let plan: Value = serde_json::from_str(&r.plan_json).context("the sweep's plan")?;
        let mut trials = Vec::new();
        for t in plan["trials"].as_array().into_iter().flatten() {
            let params = t["params"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let stages = t["stages"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|id| (k.clone(), id.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            trials.push(TrialView {
                index: t["index"].as_u64().unwrap_or(0) as u32,
                params,
                stages,
            });
        }
        Ok(SweepView { trials, stages: r.stages })
    }

    pub fn stage(&self, id: &str) -> Option<&v1::StageInfo> {
        self.stages.iter().find(|s| s.stage_id == id)
    }

    /// The first trial that uses stage `id`, and how many do.
    pub fn trials_of(&self, id: &str) -> (Option<&TrialView>, usize) {
        let mut hits = self.trials.iter().filter(|t| t.stages.values().any(|s| s == id));
        let first = hits.next();
        (first, first.map_or(0, |_| 1 + hits.count()))
    }

    /// Who a stage works for, for progress lines: `trial 1 (mapping=…)` or `3 trials`.
    pub fn describe(&self, id: &str) -> String {
        match self.trials_of(id) {
            (Some(t), 1) => format!("trial {} ({})", t.index, t.label()),
            (Some(t), n) => format!("trials {} and {} more", t.index, n - 1),
            (None, _) => "the sweep".into(),
        }
    }

    /// The stage whose id starts with `prefix` (unique), for commands that take short ids.
    pub fn find(&self, prefix: &str) -> anyhow::Result<&v1::StageInfo> {
        let hits: Vec<&v1::StageInfo> =
            self.stages.iter().filter(|s| s.stage_id.starts_with(prefix)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => anyhow::bail!("no stage of this sweep starts with `{prefix}`"),
            many => anyhow::bail!(
                "`{prefix}` matches {} stages ({}); give more characters",
                many.len(),
                many.iter()
                    .map(|s| &s.stage_id[..12.min(s.stage_id.len())])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
