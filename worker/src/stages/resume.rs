//! Checkpoints while a long stage runs: the configured (science) checkpoints are uploaded as
//! soon as they are written, and every `resume_every` a resume checkpoint replaces the last
//! one, so that an attempt lost with its machine costs at most that much work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::ctx::{CheckpointRole, StageCtx, StageError};

/// What the RL and pretraining stages do after every step: upload the checkpoint the
/// configuration asked for (and the final one, which the next stages read), write a resume
/// checkpoint when due, and stop when asked.
pub struct Checkpointing<'c, 'a> {
    pub ctx: &'c StageCtx<'a>,
    schedule: ResumeSchedule<'c, 'a>,
    pub steps: usize,
    /// The stage's own error behind an interruption of the science code.
    pub error: Option<StageError>,
}

impl<'c, 'a> Checkpointing<'c, 'a> {
    pub fn new(ctx: &'c StageCtx<'a>, steps: usize) -> Self {
        Checkpointing { ctx, schedule: ResumeSchedule::new(ctx), steps, error: None }
    }

    /// After step `step`; `saved`: the science code already wrote `step-<step>`. `save_final`
    /// writes it otherwise (for the last step), `save_resume` writes a resume checkpoint.
    pub fn after_step(
        &mut self,
        step: usize,
        saved: bool,
        save_final: impl FnOnce(&Path) -> Result<(), StageError>,
        save_resume: impl FnOnce(&Path) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        let last = step == self.steps;
        let rel = format!("step-{step}");
        if !saved && last {
            save_final(&self.ctx.out.join(&rel))?;
        }
        if saved || last {
            self.ctx.reporter.publish_checkpoint(&rel, step as u64, CheckpointRole::Science)?;
        }
        if self.schedule.due(step, self.steps) {
            let (rel, dir) = self.schedule.dir_for(step);
            save_resume(&dir)?;
            self.schedule.written(rel, step)?;
        }
        self.ctx.check_stop()
    }

    /// Keeps `e` as the stage's error; returns its text for the science code's interruption.
    pub fn keep(&mut self, e: StageError) -> String {
        let why = e.to_string();
        self.error = Some(e);
        why
    }

    /// At the end: removes the resume checkpoints (they are not outputs).
    pub fn finish(self) -> Result<(), StageError> {
        self.schedule.finish()
    }
}

/// The resume checkpoint schedule of one stage attempt.
struct ResumeSchedule<'c, 'a> {
    ctx: &'c StageCtx<'a>,
    last: Instant,
    /// The newest resume checkpoint written (relative to the output folder).
    current: Option<String>,
}

impl<'c, 'a> ResumeSchedule<'c, 'a> {
    fn new(ctx: &'c StageCtx<'a>) -> Self {
        ResumeSchedule { ctx, last: Instant::now(), current: None }
    }

    /// Whether a resume checkpoint is due after a step: every `resume_every`, and when the
    /// stage is about to stop for a later attempt to continue (never after the last step).
    fn due(&self, step: usize, steps: usize) -> bool {
        let r = self.ctx.reporter;
        let handing_over = r.stop_requested().is_some() && r.resumes_later();
        step < steps
            && (handing_over
                || self.ctx.resume_every.is_some_and(|every| self.last.elapsed() >= every))
    }

    /// `resume/step-<step>` in the output folder, for the caller to write into.
    fn dir_for(&self, step: usize) -> (String, PathBuf) {
        let rel = format!("resume/step-{step}");
        let path = self.ctx.out.join(&rel);
        (rel, path)
    }

    /// Uploads the resume checkpoint the caller wrote at `rel`, then removes the previous one
    /// (here and in the store).
    fn written(&mut self, rel: String, step: usize) -> Result<(), StageError> {
        self.ctx.reporter.publish_checkpoint(&rel, step as u64, CheckpointRole::Resume)?;
        self.ctx.log(format!("resume checkpoint at step {step} uploaded"));
        if let Some(old) = self.current.replace(rel) {
            self.ctx.reporter.retract_checkpoint(&old)?;
            let _ = std::fs::remove_dir_all(self.ctx.out.join(&old));
        }
        self.last = Instant::now();
        Ok(())
    }

    /// At the end: resume checkpoints are not outputs; remove them.
    fn finish(self) -> Result<(), StageError> {
        if let Some(old) = &self.current {
            self.ctx.reporter.retract_checkpoint(old)?;
        }
        let dir = self.ctx.out.join("resume");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StageError::Infrastructure(format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }
}
