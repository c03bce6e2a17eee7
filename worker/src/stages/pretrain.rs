//! The `pretrain` stage: next-token pretraining of the input model; its `save_at` steps and its
//! last step are the sweep's pretrain-only checkpoints (`step-<N>/`, Hugging Face snapshots).

use std::path::Path;

use super::ctx::{CheckpointRole, StageCtx, StageError};
use super::model::MODEL_INFO;
use super::resume::Checkpointing;
use crate::pretrain::run::StepOutcome;
use crate::pretrain::{PretrainConfig, PretrainError, PretrainHooks, Pretrainer, pretrain_with};

fn classify(e: PretrainError) -> StageError {
    match e {
        PretrainError::Config { .. } => StageError::Config(e.to_string()),
        PretrainError::Diverged { .. } => StageError::Deterministic(e.to_string()),
        PretrainError::Interrupted(why) => StageError::Stopped(why),
        PretrainError::Io { .. } => StageError::Infrastructure(e.to_string()),
        other => StageError::from_message(other.to_string()),
    }
}

struct Hooks<'c, 'a>(Checkpointing<'c, 'a>);

impl Hooks<'_, '_> {
    fn step(&mut self, run: &Pretrainer, o: &StepOutcome) -> Result<(), StageError> {
        let ctx = self.0.ctx;
        let tokens_per_s = run.tokens_per_second(o.step);
        ctx.reporter.progress(
            o.step as f64 / self.0.steps as f64,
            &format!("step {}/{} loss {:.3}", o.step, self.0.steps, o.loss),
            &[("step", o.step as f64), ("loss", o.loss), ("tokens_per_s", tokens_per_s)],
        );
        if let Some(p) = &o.eval {
            ctx.log(p.to_string());
        }
        self.0.after_step(
            o.step,
            o.saved.is_some(),
            |dir| run.save_snapshot(dir).map_err(classify),
            |dir| run.save_resume(dir).map_err(classify),
        )
    }
}

impl PretrainHooks for Hooks<'_, '_> {
    fn after_step(&mut self, run: &Pretrainer, o: &StepOutcome) -> Result<(), PretrainError> {
        self.step(run, o).map_err(|e| PretrainError::Interrupted(self.0.keep(e)))
    }
}

/// Runs a `pretrain` stage on input 0 (a model stage's snapshot).
pub fn run(ctx: &StageCtx, cfg: &PretrainConfig) -> Result<(), StageError> {
    let input = ctx.input(0, "the model to pretrain")?;
    let resume =
        ctx.reporter.resume_point(&[CheckpointRole::Resume], &ctx.scratch.join("resume"))?;
    if let Some(r) = &resume {
        ctx.log(format!("resuming from step {} of attempt {}", r.step, r.attempt));
    }
    let mut hooks = Hooks(Checkpointing::new(ctx, cfg.steps));
    let model_dir = input.fetch_all()?;
    let result = pretrain_with(
        model_dir,
        cfg,
        &ctx.out,
        ctx.device,
        resume.as_ref().map(|r| r.dir.as_path()),
        &mut hooks,
    );
    let report = match result {
        Ok(r) => r,
        Err(e) => return Err(hooks.0.error.take().unwrap_or_else(|| classify(e))),
    };
    hooks.0.finish()?;
    copy_model_info(model_dir, &ctx.out)?;
    let text =
        serde_json::to_string_pretty(&report).map_err(|e| StageError::Failed(e.to_string()))?;
    std::fs::write(ctx.out.join("summary.json"), text)
        .map_err(|e| StageError::Infrastructure(format!("summary.json: {e}")))?;
    ctx.log(format!(
        "{} steps: held-out loss {:.4} -> {:.4}",
        report.steps, report.initial_val_loss, report.final_val_loss
    ));
    Ok(())
}

/// Carries the model stage's `wax-model.json` (reference, template switches) forward.
pub fn copy_model_info(from: &Path, to: &Path) -> Result<(), StageError> {
    let src = from.join(MODEL_INFO);
    if src.is_file() {
        std::fs::copy(&src, to.join(MODEL_INFO))
            .map_err(|e| StageError::Infrastructure(format!("{MODEL_INFO}: {e}")))?;
    }
    Ok(())
}
