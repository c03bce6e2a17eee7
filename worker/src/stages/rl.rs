//! The `rl` stage: maze RL (or the SFT control) from the input's weights — a model stage's
//! snapshot, or a pretraining checkpoint. Outputs: `metrics.jsonl`, `eval-before.json`,
//! `summary.json`, `config.toml`, the configured checkpoints and the final one
//! (`step-<steps>/`, whose `model/` is the trained snapshot).

use std::path::{Path, PathBuf};

use super::config::{Checkpoint, RlStage};
use super::ctx::{CheckpointRole, InputDir, StageCtx, StageError};
use super::model::ModelInfo;
use super::resume::ResumeSchedule;
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

/// The snapshot a run starts from: a model stage's folder, or a pretrain stage's `step-<N>`
/// (`final`: its last step).
pub fn start_snapshot(input: &InputDir, checkpoint: Checkpoint) -> Result<PathBuf, StageError> {
    match (input.kind.as_str(), checkpoint) {
        ("pretrain", Checkpoint::Step(n)) => existing(input.dir.join(format!("step-{n}"))),
        ("pretrain", Checkpoint::Final) => existing(last_step_dir(&input.dir)?),
        (_, Checkpoint::Final) => Ok(input.dir.clone()),
        (kind, Checkpoint::Step(n)) => Err(StageError::Config(format!(
            "checkpoint {n} is a pretraining step, but the input is a {kind} stage"
        ))),
    }
}

fn existing(p: PathBuf) -> Result<PathBuf, StageError> {
    if p.join("config.json").is_file() {
        Ok(p)
    } else {
        Err(StageError::Config(format!("{}: no such checkpoint in the input", p.display())))
    }
}

/// The `step-<N>` folder with the largest N.
pub fn last_step_dir(dir: &Path) -> Result<PathBuf, StageError> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir)
        .map_err(|e| StageError::Infrastructure(format!("{}: {e}", dir.display())))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, e.path()));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| StageError::Failed(format!("{}: no step-<N> checkpoint", dir.display())))
}

struct Hooks<'c, 'a> {
    ctx: &'c StageCtx<'a>,
    resume: ResumeSchedule<'c, 'a>,
    steps: usize,
    error: Option<StageError>,
}

impl Hooks<'_, '_> {
    fn step(
        &mut self,
        t: &Trainer,
        m: &StepMetrics,
        saved: Option<&Path>,
    ) -> Result<(), StageError> {
        let ctx = self.ctx;
        ctx.reporter.progress(
            m.step as f64 / self.steps as f64,
            &format!("step {}/{} return {:+.2}", m.step, self.steps, m.return_mean),
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
        let last = m.step == self.steps;
        let rel = format!("step-{}", m.step);
        if saved.is_none() && last {
            save_checkpoint_with_records(t, &ctx.out.join(&rel), true).map_err(classify)?;
        }
        if saved.is_some() || last {
            ctx.reporter.publish_checkpoint(&rel, m.step as u64, CheckpointRole::Science)?;
        }
        if self.resume.due(m.step, self.steps) {
            let (rel, dir) = self.resume.dir_for(m.step);
            save_checkpoint_with_records(t, &dir, false).map_err(classify)?;
            self.resume.written(rel, m.step)?;
        }
        ctx.check_stop()
    }
}

impl RunHooks for Hooks<'_, '_> {
    fn after_step(
        &mut self,
        t: &Trainer,
        m: &StepMetrics,
        saved: Option<&Path>,
    ) -> Result<(), TrainError> {
        self.step(t, m, saved).map_err(|e| {
            let why = e.to_string();
            self.error = Some(e);
            TrainError::Interrupted(why)
        })
    }
}

/// Runs an `rl` stage on input 0 (a model or pretrain stage).
pub fn run(ctx: &StageCtx, st: &RlStage) -> Result<(), StageError> {
    let input = ctx.input(0, "the starting model")?;
    let start = start_snapshot(input, st.checkpoint)?;
    let mut cfg = st.train.clone();
    cfg.model = start.display().to_string();
    cfg.device = device_name(ctx.device);
    if cfg.enable_thinking.is_none() {
        cfg.enable_thinking = ModelInfo::read(&input.dir)?.and_then(|i| i.enable_thinking);
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
    let mut hooks = Hooks { ctx, resume: ResumeSchedule::new(ctx), steps, error: None };
    let resume = resume.map(|r| Resume { dir: r.dir, relocated: true });
    let summary = match run_with(cfg, &ctx.out, resume.as_ref(), &mut hooks) {
        Ok(s) => s,
        Err(e) => return Err(hooks.error.take().unwrap_or_else(|| classify(e))),
    };
    hooks.resume.finish()?;
    let c = &summary.comparison;
    ctx.log(format!(
        "held-out return {:+.2} -> {:+.2} (paired t = {:.2}, p = {:.2e}, {} mazes)",
        c.before_mean, c.after_mean, c.t, c.p_value, c.n
    ));
    Ok(())
}
