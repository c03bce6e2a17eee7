//! A whole training run: the evaluation before, the steps with their metrics and checkpoints,
//! the evaluation after, and resuming from a checkpoint.
//!
//! Every checkpoint carries what a resumed run needs besides tensors: the untrained policy's
//! evaluation (`eval-before.json`) and the metrics of the steps so far (`metrics.jsonl`), so a
//! run resumed into an empty directory — another machine, another attempt of a stage — ends
//! with the same files as the run it continues.

use super::config::TrainConfig;
use super::metrics::{JsonlSink, StepMetrics, paired_t, read_jsonl};
use super::trainer::{Evaluation, Resume, TrainError, TrainSummary, Trainer};
use std::path::Path;
use std::time::Instant;

/// What a caller may do between steps.
pub trait RunHooks {
    /// Called after every step, once its metrics are written and its checkpoint (when the
    /// configuration asks for one at this step) is saved in `saved`. An error ends the run
    /// (use [`TrainError::Interrupted`] to stop on request).
    fn after_step(
        &mut self,
        trainer: &Trainer,
        metrics: &StepMetrics,
        saved: Option<&Path>,
    ) -> Result<(), TrainError>;
}

/// Hooks that only watch the metrics (a progress bar).
struct Watch<F>(F);

impl<F: FnMut(&StepMetrics)> RunHooks for Watch<F> {
    fn after_step(
        &mut self,
        _: &Trainer,
        metrics: &StepMetrics,
        _: Option<&Path>,
    ) -> Result<(), TrainError> {
        (self.0)(metrics);
        Ok(())
    }
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io { what: what.display().to_string(), why: e.to_string() }
}

/// Runs a whole training: evaluation before, the steps with metrics and checkpoints, evaluation
/// after; `on_step` sees every step's metrics (for a progress bar). With `resume`, continues from
/// that checkpoint directory (the same configuration required).
pub fn run(
    cfg: TrainConfig,
    out: &Path,
    resume: Option<&Path>,
    on_step: impl FnMut(&StepMetrics),
) -> Result<TrainSummary, TrainError> {
    run_with(cfg, out, resume.map(Resume::from_dir).as_ref(), &mut Watch(on_step))
}

/// Whether the configuration asks for a checkpoint after `step`.
pub fn wants_checkpoint(cfg: &TrainConfig, step: usize) -> bool {
    cfg.checkpoint_at.contains(&step)
        || (cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every))
}

/// Saves the trainer's state into `dir` with the run's records (`eval-before.json`, the
/// metrics so far), so that a run resumed from it in an empty directory repeats this one.
/// `with_model`: include the merged model (a usable snapshot), not only what a resume needs.
pub fn save_checkpoint_with_records(
    trainer: &Trainer,
    dir: &Path,
    with_model: bool,
) -> Result<(), TrainError> {
    trainer.save_checkpoint_to(dir, with_model)?;
    for name in ["eval-before.json", "metrics.jsonl"] {
        let from = trainer.out().join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

/// Keeps the metrics of steps up to `step`: from `out/metrics.jsonl` when it exists (the same
/// directory resumed), else from the checkpoint's copy.
fn carry_metrics(out_file: &Path, checkpoint: &Path, step: usize) -> Result<(), TrainError> {
    let source =
        if out_file.is_file() { out_file.to_path_buf() } else { checkpoint.join("metrics.jsonl") };
    if !source.is_file() {
        return Ok(());
    }
    let kept: Vec<StepMetrics> = read_jsonl::<StepMetrics>(&source)
        .map_err(TrainError::Run)?
        .into_iter()
        .filter(|m| m.step <= step)
        .collect();
    let mut text = String::new();
    for m in &kept {
        text += &serde_json::to_string(m).map_err(|e| TrainError::Run(e.to_string()))?;
        text.push('\n');
    }
    std::fs::write(out_file, text).map_err(io(out_file))
}

/// [`run`] with full control between steps (see [`RunHooks`]) and a [`Resume`] that may accept
/// a relocated base model.
pub fn run_with(
    cfg: TrainConfig,
    out: &Path,
    resume: Option<&Resume>,
    hooks: &mut dyn RunHooks,
) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    let mut trainer = Trainer::new(cfg, out, resume)?;
    let metrics_path = out.join("metrics.jsonl");
    match resume {
        Some(r) => carry_metrics(&metrics_path, &r.dir, trainer.step)?,
        None if metrics_path.exists() => {
            std::fs::remove_file(&metrics_path).map_err(io(&metrics_path))?
        }
        None => {}
    }
    let config_text = toml::to_string(&trainer.cfg).map_err(|e| TrainError::Run(e.to_string()))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, config_text).map_err(io(&config_path))?;
    let mut sink = JsonlSink::append(&metrics_path).map_err(io(&metrics_path))?;
    // The untrained policy's evaluation: measured now, or (when resuming) the one the original
    // run measured, which every checkpoint carries.
    let before_path = out.join("eval-before.json");
    let carried = resume.map(|r| r.dir.join("eval-before.json")).filter(|p| p.is_file());
    let before: Evaluation = match carried {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(io(&p))?;
            serde_json::from_str(&text)
                .map_err(|e| TrainError::Run(format!("{}: {e}", p.display())))?
        }
        None => trainer.evaluate()?,
    };
    let before_text =
        serde_json::to_string_pretty(&before).map_err(|e| TrainError::Run(e.to_string()))?;
    std::fs::write(&before_path, &before_text).map_err(io(&before_path))?;
    let mut checkpoints = Vec::new();
    while trainer.step < trainer.cfg.steps {
        let m = trainer.train_step()?;
        if !m.loss.is_finite() {
            return Err(TrainError::Diverged { step: m.step, loss: m.loss });
        }
        sink.write(&m).map_err(io(&metrics_path))?;
        let saved = if wants_checkpoint(&trainer.cfg, trainer.step) {
            let dir = out.join(format!("step-{}", trainer.step));
            save_checkpoint_with_records(&trainer, &dir, true)?;
            checkpoints.push(dir);
            checkpoints.last()
        } else {
            None
        };
        hooks.after_step(&trainer, &m, saved.map(|p| p.as_path()))?;
    }
    let after = trainer.evaluate()?;
    let comparison = paired_t(&before.returns, &after.returns);
    let summary = TrainSummary {
        algorithm: trainer.cfg.algorithm.name().into(),
        model: trainer.cfg.model.clone(),
        steps: trainer.step,
        before,
        after,
        comparison,
        checkpoints,
        seconds: started.elapsed().as_secs_f64(),
    };
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| TrainError::Run(e.to_string()))?;
    let summary_path = out.join("summary.json");
    std::fs::write(&summary_path, text).map_err(io(&summary_path))?;
    Ok(summary)
}
