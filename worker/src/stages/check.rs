//! Checks a planned stage before it runs: its config read with the worker's types, its model
//! reference, and what it needs from its inputs (a pretraining step that the pretrain stage
//! saves). `wax manifest check`, `wax submit` and `wax run` call this for every stage.

use serde_json::Value;

use super::config::{Checkpoint, FieldError, KINDS, StageConfig};
use crate::pretrain::PretrainConfig;

/// A stage as the checks see it.
pub struct PlannedStage<'a> {
    pub kind: &'a str,
    pub schema_version: u32,
    pub config: &'a Value,
}

/// Every problem found with `stage` (empty: it can run). With `local`, model references must
/// also resolve on this machine (`wax run`).
pub fn check_stage(stage: &PlannedStage, inputs: &[PlannedStage], local: bool) -> Vec<FieldError> {
    let mut out = Vec::new();
    match KINDS.iter().find(|(k, _)| *k == stage.kind) {
        Some((_, v)) if *v != stage.schema_version => out.push(FieldError::new(
            "",
            format!(
                "the coordinator plans {} schema version {}, this worker implements {v}",
                stage.kind, stage.schema_version
            ),
        )),
        _ => {}
    }
    let parsed = match StageConfig::parse(stage.kind, stage.config) {
        Ok(p) => p,
        Err(e) => {
            out.push(e);
            return out;
        }
    };
    match &parsed {
        StageConfig::Model(m) if local => {
            if let Err(e) = super::model::check_local(&m.reference) {
                out.push(FieldError::new("ref", e));
            }
        }
        StageConfig::Rl(rl) => {
            if let Some(e) = checkpoint_problem(rl.checkpoint, inputs.first()) {
                out.push(e);
            }
        }
        StageConfig::Extract(ex) => {
            if let Some(e) = checkpoint_problem(ex.checkpoint, inputs.first()) {
                out.push(e);
            }
        }
        _ => {}
    }
    out
}

/// A pretraining step must be one the pretrain stage saves.
fn checkpoint_problem(checkpoint: Checkpoint, input: Option<&PlannedStage>) -> Option<FieldError> {
    let Checkpoint::Step(step) = checkpoint else { return None };
    let Some(input) = input.filter(|i| i.kind == "pretrain") else {
        return Some(FieldError::new(
            "checkpoint",
            format!(
                "checkpoint {step} is a pretraining step, but the trial has no `pretrain` stage"
            ),
        ));
    };
    let cfg: PretrainConfig = serde_json::from_value(input.config.clone()).ok()?;
    let step = step as usize;
    if step == cfg.steps || cfg.save_at.contains(&step) {
        return None;
    }
    Some(FieldError::new(
        "checkpoint",
        format!(
            "pretraining saves steps {:?} and the last ({}), not {step}: add it to `pretrain.save_at`",
            cfg.save_at, cfg.steps
        ),
    ))
}
