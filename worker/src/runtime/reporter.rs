//! A running stage's link back to the runtime: progress for the next heartbeat, log lines,
//! the stop flag, and checkpoints — uploaded as they are written and closed with a
//! `_CHECKPOINT` marker, found again by a later attempt of the same stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::artifacts::{
    ArtifactStore, CHECKPOINT_MARKER, CheckpointMarker, FileRecord, attempt_key, stage_prefix,
};
use crate::stages::ctx::files_under;
use crate::stages::{CheckpointRole, Reporter, ResumePoint, StageError};

/// Why a task must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The coordinator said `cancel` (its sweep was cancelled): abandon, report nothing.
    Cancelled,
    /// The worker is draining: hand the lease back.
    Draining,
    /// The lease is gone (expired, re-leased elsewhere): abandon, report nothing.
    LeaseLost(String),
}

impl StopReason {
    pub fn describe(&self) -> String {
        match self {
            StopReason::Cancelled => "cancelled by the coordinator".into(),
            StopReason::Draining => "the worker is draining".into(),
            StopReason::LeaseLost(why) => format!("lease lost: {why}"),
        }
    }
}

/// Progress as last reported.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub fraction: f64,
    pub message: String,
    pub metrics: Vec<(String, f64)>,
}

/// State a task shares between its executor thread, its heartbeats and the node.
#[derive(Default)]
pub struct TaskShared {
    pub progress: Mutex<Option<Progress>>,
    pub stop: Mutex<Option<StopReason>>,
    pub log: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TaskShared {
    /// Asks the task to stop (the first reason wins).
    pub fn request_stop(&self, why: StopReason) {
        lock(&self.stop).get_or_insert(why);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        lock(&self.stop).clone()
    }

    pub fn log_line(&self, line: &str) {
        let stamp = humantime_utc(SystemTime::now());
        lock(&self.log).push(format!("{stamp} {line}"));
    }

    pub fn take_progress(&self) -> Option<Progress> {
        lock(&self.progress).clone()
    }

    pub fn log_text(&self) -> String {
        let mut s = lock(&self.log).join("\n");
        s.push('\n');
        s
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn humantime_utc(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::tokenizer::jinja::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The runtime's [`Reporter`] for one task.
pub struct RuntimeReporter {
    pub shared: std::sync::Arc<TaskShared>,
    pub store: ArtifactStore,
    pub stage_id: String,
    pub attempt: u64,
    pub out: PathBuf,
    pub handle: tokio::runtime::Handle,
    /// Files already uploaded during the run (checkpoints), by path relative to the attempt.
    pub published: Mutex<BTreeMap<String, FileRecord>>,
    /// Files copied into this attempt from an earlier one (its checkpoints before the resume
    /// point).
    pub carried: Mutex<BTreeMap<String, FileRecord>>,
}

fn infra(e: impl std::fmt::Display) -> StageError {
    StageError::Infrastructure(e.to_string())
}

impl RuntimeReporter {
    fn key(&self, rel: &str) -> String {
        attempt_key(&self.stage_id, self.attempt, rel)
    }

    async fn resume_from(
        &self,
        roles: &[CheckpointRole],
        dest: &Path,
    ) -> Result<Option<ResumePoint>, StageError> {
        let prefix = stage_prefix(&self.stage_id);
        let mut markers = Vec::new();
        for (key, _) in self.store.list(&prefix).await.map_err(infra)? {
            let Some(rest) = key.strip_prefix(&format!("{prefix}/")) else { continue };
            let Some((attempt, tail)) = rest.split_once('/') else { continue };
            let Ok(attempt) = attempt.parse::<u64>() else { continue };
            if attempt == self.attempt || !tail.ends_with(&format!("/{CHECKPOINT_MARKER}")) {
                continue;
            }
            let rel = tail.trim_end_matches(&format!("/{CHECKPOINT_MARKER}")).to_string();
            let Some(bytes) = self.store.get_bytes(&key).await.map_err(infra)? else { continue };
            match serde_json::from_slice::<CheckpointMarker>(&bytes) {
                Ok(m) => markers.push((attempt, rel, m)),
                Err(e) => {
                    tracing::warn!(marker = %key, error = %e, "unreadable checkpoint marker skipped")
                }
            }
        }
        let usable = |m: &CheckpointMarker| roles.iter().any(|r| r.name() == m.role);
        let Some((attempt, rel, best)) = markers
            .iter()
            .filter(|(_, _, m)| usable(m))
            .max_by_key(|(a, _, m)| (m.step, *a))
            .cloned()
        else {
            return Ok(None);
        };
        for f in &best.files {
            let key = attempt_key(&self.stage_id, attempt, &f.path);
            self.store.download_verified(&key, &dest.join(&f.path), f).await.map_err(infra)?;
        }
        // The earlier attempt's configured checkpoints up to the resume point are this
        // attempt's outputs too: copy them (inside the store) with their markers.
        for (a, r, m) in &markers {
            if *a != attempt || m.role != CheckpointRole::Science.name() || m.step > best.step {
                continue;
            }
            for f in &m.files {
                let from = attempt_key(&self.stage_id, *a, &f.path);
                self.store.copy(&from, &self.key(&f.path)).await.map_err(infra)?;
                lock(&self.carried).insert(f.path.clone(), f.clone());
            }
            let marker = serde_json::to_vec(m).map_err(infra)?;
            self.store
                .put_bytes(&self.key(&format!("{r}/{CHECKPOINT_MARKER}")), marker)
                .await
                .map_err(infra)?;
        }
        Ok(Some(ResumePoint { step: best.step, dir: dest.join(&rel), attempt }))
    }
}

impl Reporter for RuntimeReporter {
    fn progress(&self, fraction: f64, message: &str, metrics: &[(&str, f64)]) {
        *lock(&self.shared.progress) = Some(Progress {
            fraction,
            message: message.to_string(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        });
    }

    fn log(&self, line: &str) {
        self.shared.log_line(line);
    }

    fn stop_requested(&self) -> Option<String> {
        self.shared.stop_reason().map(|r| r.describe())
    }

    fn resumes_later(&self) -> bool {
        self.shared.stop_reason() == Some(StopReason::Draining)
    }

    fn publish_checkpoint(
        &self,
        rel: &str,
        step: u64,
        role: CheckpointRole,
    ) -> Result<(), StageError> {
        let files = files_under(&self.out, rel).map_err(infra)?;
        self.handle.block_on(async {
            let mut records = Vec::with_capacity(files.len());
            for f in &files {
                let mut r =
                    self.store.upload_file(&self.out.join(f), &self.key(f)).await.map_err(infra)?;
                r.path = f.clone();
                records.push(r);
            }
            let marker =
                CheckpointMarker { step, role: role.name().into(), files: records.clone() };
            let bytes = serde_json::to_vec_pretty(&marker).map_err(infra)?;
            self.store
                .put_bytes(&self.key(&format!("{rel}/{CHECKPOINT_MARKER}")), bytes)
                .await
                .map_err(infra)?;
            let mut published = lock(&self.published);
            for r in records {
                published.insert(r.path.clone(), r);
            }
            Ok(())
        })
    }

    fn retract_checkpoint(&self, rel: &str) -> Result<(), StageError> {
        self.handle.block_on(self.store.delete_prefix(&self.key(rel))).map_err(infra)?;
        lock(&self.published).retain(|p, _| !p.starts_with(&format!("{rel}/")));
        Ok(())
    }

    fn resume_point(
        &self,
        roles: &[CheckpointRole],
        dest: &Path,
    ) -> Result<Option<ResumePoint>, StageError> {
        self.handle.block_on(self.resume_from(roles, dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_400_000);
        assert_eq!(humantime_utc(t), "2026-12-04T16:00:00Z");
        assert_eq!(humantime_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
