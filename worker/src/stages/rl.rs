//! The `rl` stage: maze RL (or the SFT control) from the input's weights — a model stage's
//! snapshot, or a pretraining checkpoint. Outputs: `metrics.jsonl`, `eval-before.json`,
//! `summary.json`, `config.toml`, the configured checkpoints and the final one
//! (`step-<steps>/`, whose `model/` is the trained snapshot).

use std::path::{Path, PathBuf};

use super::config::{Checkpoint, RlStage};
use super::ctx::{CheckpointRole, InputDir, StageCtx, StageError};
use super::model::{MODEL_INFO, ModelInfo};
use super::resume::Checkpointing;
use crate::rl::run::save_checkpoint_with_records;
use crate::rl::{Resume, RunHooks, StepMetrics, TrainError, Trainer, run_with};

fn classify(e: TrainError) -> StageError {
    match e {
        TrainError::Config(_) => StageError::Config(e.to_string()),
        TrainError::Diverged { .. } => StageError::Deterministic(e.to_string()),
        TrainError::Interrupted(why) => StageError::Stopped(why),
        TrainError::Io { .. } => StageError::Infrastructure(e.to_string()),
        other => StageError::from_message(other.to_string()),
    }
}

/// `cpu` or `cuda:N`, as the configs spell devices.
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// The snapshot a run starts from, fetched: a model stage's folder, or a pretrain stage's
/// `step-<N>` (`final`: its last step).
pub fn start_snapshot(input: &InputDir, checkpoint: Checkpoint) -> Result<PathBuf, StageError> {
    let step = match (input.kind.as_str(), checkpoint) {
        ("pretrain", Checkpoint::Step(n)) => n,
        ("pretrain", Checkpoint::Final) => input.last_step().ok_or_else(|| {
            StageError::Failed(format!("pretrain stage {}: no step-<N> checkpoint", input.stage_id))
        })?,
        (_, Checkpoint::Final) => return Ok(input.fetch_all()?.to_path_buf()),
        (kind, Checkpoint::Step(n)) => {
            return Err(StageError::Config(format!(
                "checkpoint {n} is a pretraining step, but the input is a {kind} stage"
            )));
        }
    };
    let rel = format!("step-{step}");
    let dir = input.fetch(&[&format!("{rel}/"), super::model::MODEL_INFO])?.join(&rel);
    if dir.join("config.json").is_file() {
        Ok(dir)
    } else {
        Err(StageError::Config(format!("pretrain stage {}: no checkpoint {rel}", input.stage_id)))
    }
}

/// The final checkpoint (`step-<last>/`) of an rl stage, fetched; returns its folder.
pub fn final_checkpoint(input: &InputDir) -> Result<PathBuf, StageError> {
    let step = input.last_step().ok_or_else(|| {
        StageError::Failed(format!("rl stage {}: no step-<N> checkpoint", input.stage_id))
    })?;
    let rel = format!("step-{step}");
    Ok(input.fetch(&[&format!("{rel}/")])?.join(rel))
}

struct Hooks<'c, 'a>(Checkpointing<'c, 'a>);

impl Hooks<'_, '_> {
    fn step(
        &mut self,
        t: &Trainer,
        m: &StepMetrics,
        saved: Option<&Path>,
    ) -> Result<(), StageError> {
        let ctx = self.0.ctx;
        ctx.reporter.progress(
            m.step as f64 / self.0.steps as f64,
            &format!("step {}/{} return {:+.2}", m.step, self.0.steps, m.return_mean),
            &[
                ("step", m.step as f64),
                ("return", m.return_mean),
                ("return_max", m.return_max),
                ("entropy", m.entropy),
                ("gold_rate", m.gold_rate),
                ("mold_rate", m.mold_rate),
                ("tokens_per_s", m.tokens_per_s),
            ],
        );
        ctx.log(format!(
            "step {}: return {:+.3} (max {:+.1}) entropy {:.3} loss {:.4} ({:.1} s)",
            m.step, m.return_mean, m.return_max, m.entropy, m.loss, m.step_s
        ));
        self.0.after_step(
            m.step,
            saved.is_some(),
            |dir| save_checkpoint_with_records(t, dir, true).map_err(classify),
            |dir| save_checkpoint_with_records(t, dir, false).map_err(classify),
        )
    }
}

impl RunHooks for Hooks<'_, '_> {
    fn after_step(
        &mut self,
        t: &Trainer,
        m: &StepMetrics,
        saved: Option<&Path>,
    ) -> Result<(), TrainError> {
        self.step(t, m, saved).map_err(|e| TrainError::Interrupted(self.0.keep(e)))
    }
}

/// Runs an `rl` stage on input 0 (a model or pretrain stage).
pub fn run(ctx: &StageCtx, st: &RlStage) -> Result<(), StageError> {
    let input = ctx.input(0, "the starting model")?;
    let start = start_snapshot(input, st.checkpoint)?;
    let mut cfg = st.train.clone();
    cfg.model = start.display().to_string();
    cfg.device = device_name(ctx.device);
    if let Some(info) = ModelInfo::read(input.fetch(&[MODEL_INFO])?)? {
        cfg.enable_thinking = cfg.enable_thinking.or(info.enable_thinking);
        cfg.reasoning_effort = cfg.reasoning_effort.or(info.reasoning_effort);
    }
    let resume = ctx.reporter.resume_point(
        &[CheckpointRole::Resume, CheckpointRole::Science],
        &ctx.scratch.join("resume"),
    )?;
    if let Some(r) = &resume {
        ctx.log(format!("resuming from step {} of attempt {}", r.step, r.attempt));
    }
    ctx.log(format!(
        "{} on {} ({}), {} steps of {} mazes x {} rollouts, {} turns",
        cfg.algorithm.name(),
        start.display(),
        cfg.device,
        cfg.steps,
        cfg.mazes_per_step,
        cfg.group_size,
        cfg.env.turns
    ));
    let steps = cfg.steps;
    let mut hooks = Hooks(Checkpointing::new(ctx, steps));
    let resume = resume.map(|r| Resume { dir: r.dir, relocated: true });
    let summary = match run_with(cfg, &ctx.out, resume.as_ref(), &mut hooks) {
        Ok(s) => s,
        Err(e) => return Err(hooks.0.error.take().unwrap_or_else(|| classify(e))),
    };
    hooks.0.finish()?;
    let c = &summary.comparison;
    ctx.log(format!(
        "held-out return {:+.2} -> {:+.2} (paired t = {:.2}, p = {:.2e}, {} mazes)",
        c.before_mean, c.after_mean, c.t, c.p_value, c.n
    ));
    Ok(())
}
