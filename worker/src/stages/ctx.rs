//! What a running stage sees: its identity, its materialized inputs, an output folder, the
//! device, and a [`Reporter`] back to the runtime (progress, log lines, cancellation,
//! checkpoints uploaded as they are written, the checkpoint to resume from).
//!
//! Executors are synchronous (libtorch); the runtime's reporter bridges to the async world.
//! [`LocalReporter`] runs a stage with no coordinator and no store (tests, dry runs).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Places the files of an input artifact in its folder on demand (through the machine cache).
pub trait FetchInput: Send + Sync {
    /// Makes `paths` (relative to the artifact) present under `dir`.
    fn fetch(&self, paths: &[&str], dir: &Path) -> Result<(), StageError>;
}

/// One input artifact: its files are listed at once and fetched when a stage asks for them, so
/// a stage that reads one checkpoint of an RL run does not download every checkpoint.
#[derive(Clone)]
pub struct InputDir {
    pub stage_id: String,
    pub kind: String,
    /// Where its files go (with their paths relative to the artifact).
    pub dir: PathBuf,
    /// Every file of the artifact, relative paths.
    pub files: Vec<String>,
    fetcher: Option<std::sync::Arc<dyn FetchInput>>,
}

impl std::fmt::Debug for InputDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputDir({} {} at {})", self.kind, self.stage_id, self.dir.display())
    }
}

impl InputDir {
    /// An input whose files `fetcher` places on demand.
    pub fn remote(
        stage_id: String,
        kind: String,
        dir: PathBuf,
        files: Vec<String>,
        fetcher: std::sync::Arc<dyn FetchInput>,
    ) -> InputDir {
        InputDir { stage_id, kind, dir, files, fetcher: Some(fetcher) }
    }

    /// An input already complete on disk in `dir`.
    pub fn local(stage_id: &str, kind: &str, dir: &Path) -> InputDir {
        let files = files_under(dir, "").unwrap_or_default();
        InputDir {
            stage_id: stage_id.into(),
            kind: kind.into(),
            dir: dir.to_path_buf(),
            files,
            fetcher: None,
        }
    }

    /// Fetches the files at or under each of `prefixes` (`"summary.json"`, `"step-40/"`;
    /// `""` is everything) and returns the folder.
    pub fn fetch(&self, prefixes: &[&str]) -> Result<&Path, StageError> {
        let wanted: Vec<&str> = self
            .files
            .iter()
            .map(String::as_str)
            .filter(|f| {
                prefixes
                    .iter()
                    .any(|p| p.is_empty() || f == p || (p.ends_with('/') && f.starts_with(p)))
            })
            .collect();
        if let Some(fetcher) = &self.fetcher {
            fetcher.fetch(&wanted, &self.dir)?;
        }
        Ok(&self.dir)
    }

    /// Fetches every file.
    pub fn fetch_all(&self) -> Result<&Path, StageError> {
        self.fetch(&[""])
    }

    /// The largest N of the artifact's `step-<N>/` folders.
    pub fn last_step(&self) -> Option<u64> {
        self.files
            .iter()
            .filter_map(|f| f.strip_prefix("step-")?.split('/').next()?.parse::<u64>().ok())
            .max()
    }
}

/// A checkpoint's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointRole {
    /// Asked for by the configuration: part of the stage's outputs.
    Science,
    /// Written only so that a later attempt can continue; removed when superseded and at the
    /// end.
    Resume,
}

impl CheckpointRole {
    pub fn name(self) -> &'static str {
        match self {
            CheckpointRole::Science => "science",
            CheckpointRole::Resume => "resume",
        }
    }
}

/// Where an earlier attempt got to.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    /// Steps done at the checkpoint.
    pub step: u64,
    /// The checkpoint, downloaded.
    pub dir: PathBuf,
    /// The attempt that wrote it.
    pub attempt: u64,
}

/// Why a stage did not finish. The runtime reports each to the coordinator with its class.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The configuration cannot run (unknown field, bad value, missing input): a stage error,
    /// never retried.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The science failed in a way another attempt would repeat (NaN loss, diverged
    /// training): a stage error, never retried.
    #[error("{0}")]
    Deterministic(String),
    /// The stage's code failed otherwise: a stage error, retried within the stage-error budget.
    #[error("{0}")]
    Failed(String),
    /// The machine or the store failed (out of memory, lost GPU, disk, network): an
    /// infrastructure failure, retried.
    #[error("infrastructure: {0}")]
    Infrastructure(String),
    /// Stopped on request (cancelled sweep, draining worker).
    #[error("stopped: {0}")]
    Stopped(String),
}

impl StageError {
    /// Classifies an error message from the science code: out-of-memory and device faults
    /// are the machine's; anything else is the stage's own failure.
    pub fn from_message(message: String) -> StageError {
        if is_infrastructure(&message) {
            StageError::Infrastructure(message)
        } else {
            StageError::Failed(message)
        }
    }
}

/// Messages of faults that another machine (or the same one later) would not repeat.
pub fn is_infrastructure(message: &str) -> bool {
    const MARKS: &[&str] = &[
        "out of memory",
        "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDNN_STATUS_ALLOC_FAILED",
        "cudaErrorMemoryAllocation",
        "CUDA driver",
        "no CUDA-capable device",
        "CUDA-capable device(s) is/are busy or unavailable",
        "unspecified launch failure",
        "ECC error",
        "cudaErrorDevicesUnavailable",
        "device not ready",
        "GPU is lost",
        "No space left on device",
        "Cannot allocate memory",
        "Input/output error",
    ];
    MARKS.iter().any(|m| message.contains(m))
}

/// The runtime side of a running stage.
pub trait Reporter: Send + Sync {
    /// Progress in `0..=1` (negative: unknown), a short message and metrics, sent to the
    /// coordinator with the next heartbeat.
    fn progress(&self, fraction: f64, message: &str, metrics: &[(&str, f64)]);
    /// A line for the stage's log (uploaded with its outputs).
    fn log(&self, line: &str);
    /// `Some(reason)` once the stage must stop.
    fn stop_requested(&self) -> Option<String>;
    /// Whether the requested stop hands the stage to a later attempt (a draining worker), so
    /// that a resume checkpoint is worth writing before stopping.
    fn resumes_later(&self) -> bool {
        false
    }
    /// Uploads the checkpoint directory `rel` (relative to the output folder) now, closing it
    /// with a marker so that a later attempt can trust it.
    fn publish_checkpoint(
        &self,
        rel: &str,
        step: u64,
        role: CheckpointRole,
    ) -> Result<(), StageError>;
    /// Removes an uploaded checkpoint (a superseded resume checkpoint).
    fn retract_checkpoint(&self, rel: &str) -> Result<(), StageError>;
    /// The newest complete checkpoint of an earlier attempt whose role is in `roles`,
    /// downloaded under `dest`; the earlier attempt's science checkpoints up to its step are
    /// carried into this attempt's outputs.
    fn resume_point(
        &self,
        roles: &[CheckpointRole],
        dest: &Path,
    ) -> Result<Option<ResumePoint>, StageError>;
}

/// A stage run with no runtime: progress and log lines to memory, no store, no resume.
#[derive(Default)]
pub struct LocalReporter {
    pub lines: Mutex<Vec<String>>,
    pub published: Mutex<Vec<(String, u64, CheckpointRole)>>,
    pub stop: AtomicBool,
}

impl Reporter for LocalReporter {
    fn progress(&self, _: f64, _: &str, _: &[(&str, f64)]) {}
    fn log(&self, line: &str) {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).push(line.to_string());
    }
    fn stop_requested(&self) -> Option<String> {
        self.stop.load(Ordering::Relaxed).then(|| "requested".to_string())
    }
    fn publish_checkpoint(
        &self,
        rel: &str,
        step: u64,
        role: CheckpointRole,
    ) -> Result<(), StageError> {
        self.published.lock().unwrap_or_else(|p| p.into_inner()).push((
            rel.to_string(),
            step,
            role,
        ));
        Ok(())
    }
    fn retract_checkpoint(&self, _: &str) -> Result<(), StageError> {
        Ok(())
    }
    fn resume_point(
        &self,
        _: &[CheckpointRole],
        _: &Path,
    ) -> Result<Option<ResumePoint>, StageError> {
        Ok(None)
    }
}

/// Everything a stage executor gets.
pub struct StageCtx<'a> {
    pub stage_id: String,
    pub kind: String,
    pub attempt: u64,
    /// The stage's outputs go here; every file in it is uploaded when it succeeds.
    pub out: PathBuf,
    /// Scratch space that is not uploaded (downloaded resume checkpoints, temporary files).
    pub scratch: PathBuf,
    /// Inputs in the order the stage lists them.
    pub inputs: Vec<InputDir>,
    pub device: tch::Device,
    /// How often a long stage writes a resume checkpoint (`None`: never).
    pub resume_every: Option<Duration>,
    /// Where `s3://` model references are read from.
    pub s3: crate::artifacts::S3Settings,
    /// Files uploaded from elsewhere than `out` (a snapshot left where it is): relative path
    /// in the attempt → local file.
    pub external: Mutex<Vec<(String, PathBuf)>>,
    pub reporter: &'a dyn Reporter,
}

impl StageCtx<'_> {
    /// A log line (also mirrored to `tracing`).
    pub fn log(&self, line: impl AsRef<str>) {
        tracing::info!(stage = %short(&self.stage_id), kind = %self.kind, "{}", line.as_ref());
        self.reporter.log(line.as_ref());
    }

    /// Fails with [`StageError::Stopped`] once a stop was requested.
    pub fn check_stop(&self) -> Result<(), StageError> {
        match self.reporter.stop_requested() {
            Some(why) => Err(StageError::Stopped(why)),
            None => Ok(()),
        }
    }

    /// The input at `i`, or a configuration error naming what was expected.
    pub fn input(&self, i: usize, what: &str) -> Result<&InputDir, StageError> {
        self.inputs.get(i).ok_or_else(|| {
            StageError::Config(format!(
                "the stage needs input {} ({what}); it has {}",
                i + 1,
                self.inputs.len()
            ))
        })
    }

    /// Uploads `local` as `rel` of this attempt instead of copying it into `out`.
    pub fn add_external(&self, rel: &str, local: &Path) {
        self.external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rel.to_string(), local.to_path_buf()));
    }
}

/// Every file at or under `root/rel` (recursively), as paths relative to `root`, sorted.
pub fn files_under(root: &Path, rel: &str) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(rel)];
    while let Some(dir) = stack.pop() {
        if dir.is_file() {
            if let Ok(r) = dir.strip_prefix(root) {
                out.push(r.to_string_lossy().into_owned());
            }
            continue;
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        for e in entries {
            let e = e?;
            let path = e.path();
            if e.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(r) = path.strip_prefix(root) {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The first 12 characters of an id, for logs.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_machine_faults() {
        for m in [
            "CUDA out of memory. Tried to allocate 2.00 GiB",
            "CUDA error: unspecified launch failure",
            "write: No space left on device (os error 28)",
        ] {
            assert!(
                matches!(StageError::from_message(m.into()), StageError::Infrastructure(_)),
                "{m}"
            );
        }
        for m in ["the loss is NaN", "shape mismatch: [2, 3] vs [3, 2]", "unknown field `x`"] {
            assert!(matches!(StageError::from_message(m.into()), StageError::Failed(_)), "{m}");
        }
    }
}
