//! The `extract` stage: concept vectors of one model — the RL stage's final checkpoint (v) or
//! the maze-naive starting point (u) — with layer selection and geometry. Outputs:
//! `vectors.safetensors`, `layers.jsonl`, `extraction.json`, `geometry.json`, `summary.json`
//! and `subject.json` (which model, as a path inside the input artifact).

use serde::{Deserialize, Serialize};

use super::config::{ExtractStage, Subject};
use super::ctx::{StageCtx, StageError};
use super::model::{MODEL_INFO, ModelInfo};
use super::rl::{final_checkpoint, start_snapshot};
use super::write_json;
use crate::tokenizer::TemplateOptions;
use crate::vectors::VectorError;
use crate::vectors::extract::ExtractProgress;
use crate::vectors::geometry::Uncertainty;
use crate::vectors::run::{Role, extract_to};

/// `subject.json`: what was measured, so that later stages find the same model in their own
/// copy of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectInfo {
    /// `trained` or `naive`.
    pub role: String,
    /// The input stage the model came from.
    pub input_stage: String,
    /// The snapshot's folder inside that stage's artifact (`step-40/model`; empty: its root).
    pub model_path: String,
}

fn classify(e: VectorError) -> StageError {
    match e {
        VectorError::Input(_) => StageError::Config(e.to_string()),
        VectorError::Io { .. } => StageError::Infrastructure(e.to_string()),
        other => StageError::from_message(other.to_string()),
    }
}

/// Runs an `extract` stage on input 0 (an rl stage for `trained`, the model or pretrain stage
/// for `naive`).
pub fn run(ctx: &StageCtx, st: &ExtractStage) -> Result<(), StageError> {
    let input = ctx.input(0, "the model to measure")?;
    let (role, snapshot, thinking) = match st.subject {
        Subject::Trained => {
            if input.kind != "rl" {
                return Err(StageError::Config(format!(
                    "trained vectors read an rl stage, got {}",
                    input.kind
                )));
            }
            // The trainer's state.json next to the snapshot carries the template switches.
            (Role::Trained, final_checkpoint(input)?.join("model"), TemplateOptions::default())
        }
        Subject::Naive => (
            Role::Naive,
            start_snapshot(input, st.checkpoint)?,
            ModelInfo::read(input.fetch(&[MODEL_INFO])?)?
                .map(|i| i.template_options())
                .unwrap_or_default(),
        ),
    };
    let model_path =
        snapshot.strip_prefix(&input.dir).map(|p| p.display().to_string()).unwrap_or_default();
    let kind = crate::device::parse_kind(&st.dtype)
        .ok_or_else(|| StageError::Config(format!("extract.dtype `{}`", st.dtype)))?;
    let uncertainty = Uncertainty { resamples: st.resamples, ..Uncertainty::default() };
    ctx.log(format!(
        "{} vectors of {} ({} trajectories per class)",
        role.name(),
        if model_path.is_empty() {
            input.kind.clone()
        } else {
            format!("{}/{model_path}", input.kind)
        },
        st.extract.synthetic.per_class
    ));
    ctx.check_stop()?;
    let mut progress = |_: Role, p: ExtractProgress| match p {
        ExtractProgress::Forwarded { done, total } => ctx.reporter.progress(
            done as f64 / total.max(1) as f64,
            &format!("forwarded {done}/{total} trajectories"),
            &[("trajectories", done as f64)],
        ),
    };
    let (_, summary) = extract_to(
        &snapshot.display().to_string(),
        role,
        &st.extract,
        ctx.device,
        kind,
        thinking,
        uncertainty,
        &ctx.out,
        &mut progress,
    )
    .map_err(classify)?;
    write_json(&ctx.out, "summary.json", &summary)?;
    let subject =
        SubjectInfo { role: role.name().into(), input_stage: input.stage_id.clone(), model_path };
    write_json(&ctx.out, "subject.json", &subject)?;
    ctx.log(format!(
        "cos(v_Mold, v_Gold): min {:+.3} at layer {}, mean {:+.3}; selected layers Mold {:?}, Gold {:?}",
        summary.cos_min, summary.cos_argmin, summary.cos_avg, summary.layer_mold, summary.layer_gold
    ));
    Ok(())
}
