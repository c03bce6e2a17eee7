//! Checkpoints while a long stage runs: the configured (science) checkpoints are uploaded as
//! soon as they are written, and every `resume_every` a resume checkpoint replaces the last
//! one, so that an attempt lost with its machine costs at most that much work.

use std::path::PathBuf;
use std::time::Instant;

use super::ctx::{CheckpointRole, StageCtx, StageError};

/// The resume checkpoint schedule of one stage attempt.
pub struct ResumeSchedule<'c, 'a> {
    ctx: &'c StageCtx<'a>,
    last: Instant,
    /// The newest resume checkpoint written (relative to the output folder).
    current: Option<String>,
}

impl<'c, 'a> ResumeSchedule<'c, 'a> {
    pub fn new(ctx: &'c StageCtx<'a>) -> Self {
        ResumeSchedule { ctx, last: Instant::now(), current: None }
    }

    /// Whether a resume checkpoint is due after a step: every `resume_every`, and when the
    /// stage is about to stop for a later attempt to continue (never after the last step).
    pub fn due(&self, step: usize, steps: usize) -> bool {
        let r = self.ctx.reporter;
        let handing_over = r.stop_requested().is_some() && r.resumes_later();
        step < steps
            && (handing_over
                || self.ctx.resume_every.is_some_and(|every| self.last.elapsed() >= every))
    }

    /// `resume/step-<step>` in the output folder, for the caller to write into.
    pub fn dir_for(&self, step: usize) -> (String, PathBuf) {
        let rel = format!("resume/step-{step}");
        let path = self.ctx.out.join(&rel);
        (rel, path)
    }

    /// Uploads the resume checkpoint the caller wrote at `rel`, then removes the previous one
    /// (here and in the store).
    pub fn written(&mut self, rel: String, step: usize) -> Result<(), StageError> {
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
    pub fn finish(self) -> Result<(), StageError> {
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
