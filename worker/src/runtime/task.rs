//! One leased stage, from its inputs to a commit or a classified failure.
//!
//! 1. Heartbeats start at once (inputs may take a while) and carry the stage's progress; an
//!    answer `cancel`, or a refused heartbeat (the lease is gone), stops the stage.
//! 2. Inputs are listed in the task's folder; each file is fetched through the machine cache
//!    when the stage asks for it.
//! 3. The executor runs on a blocking thread with the task's share of CPU threads and its GPU.
//! 4. Outputs are uploaded under `cas/<stage>/<attempt>/` with the stage's log, the coordinator
//!    is told (`Complete`, with every file's size and SHA-256), and only then is
//!    `cas/<stage>/_COMMITTED` created; losing attempts' files are then deleted.
//! 5. A failure is reported with its class: bad configuration and deterministic failures are
//!    not retried; machine faults (out of memory, a lost GPU, storage) are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;
use wax_proto::client::Connection;
use wax_proto::v1;

use super::WorkerConfig;
use super::reporter::{RuntimeReporter, StopReason, TaskShared};
use super::rpc::retrying;
use crate::artifacts::{
    ArtifactStore, CHECKPOINT_MARKER, Cache, Committed, FileRecord, attempt_key, attempt_prefix,
    committed_key, stage_prefix,
};
use crate::stages::ctx::{files_under, short};
use crate::stages::{self, StageCtx, StageError};

/// What every task of a worker shares.
#[derive(Clone)]
pub struct TaskEnv {
    pub conn: Connection,
    pub worker_id: String,
    pub store: ArtifactStore,
    pub cache: Cache,
    pub cfg: Arc<WorkerConfig>,
    pub heartbeat_every: Duration,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The coordinator committed this attempt (`duplicate`: it already had).
    Committed { duplicate: bool },
    /// Reported as failed; the coordinator retries it or not.
    Failed { will_retry: bool, error: String },
    /// Handed back while draining.
    HandedBack,
    /// Stopped without reporting: cancelled, or the lease was lost (its output discarded).
    Abandoned(String),
}

/// Runs `task` to its end; `gpu` is the CUDA ordinal assigned to it, if it asked for one.
pub async fn run_task(
    env: Arc<TaskEnv>,
    task: v1::Task,
    shared: Arc<TaskShared>,
    gpu: Option<usize>,
) -> Outcome {
    let started = Instant::now();
    let id = task.stage_id.clone();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = env.cfg.work_dir.join(format!("{}-a{}-{nonce:08x}", short(&id), task.epoch));
    shared.log_line(&format!(
        "stage {id} ({}) attempt {} on worker {} ({})",
        task.kind, task.epoch, env.worker_id, env.cfg.name
    ));
    let heartbeats = tokio::spawn(heartbeat_loop(
        env.clone(),
        task.stage_id.clone(),
        task.epoch,
        shared.clone(),
    ));
    let outcome = run_leased(&env, &task, &shared, gpu, &dir).await;
    heartbeats.abort();
    let _ = std::fs::remove_dir_all(&dir);
    tracing::info!(stage = %short(&id), kind = %task.kind, attempt = task.epoch, ?outcome,
        seconds = started.elapsed().as_secs_f64(), "task ended");
    outcome
}

async fn heartbeat_loop(env: Arc<TaskEnv>, stage_id: String, epoch: u64, shared: Arc<TaskShared>) {
    let mut tick = tokio::time::interval(env.heartbeat_every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = shared.take_progress();
        let req = v1::HeartbeatRequest {
            worker_id: env.worker_id.clone(),
            stage_id: stage_id.clone(),
            epoch,
            progress: p.as_ref().map_or(-1.0, |p| p.fraction),
            metrics: p.as_ref().map(|p| p.metrics.iter().cloned().collect()).unwrap_or_default(),
            message: p.map(|p| p.message).unwrap_or_default(),
        };
        let mut client = env.conn.workers();
        match tokio::time::timeout(
            env.heartbeat_every.max(Duration::from_secs(5)),
            client.heartbeat(req),
        )
        .await
        {
            Ok(Ok(r)) if r.get_ref().cancel => shared.request_stop(StopReason::Cancelled),
            Ok(Ok(_)) => {}
            Ok(Err(s)) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => {
                shared.request_stop(StopReason::LeaseLost(s.message().to_string()));
                return;
            }
            // The coordinator may be restarting; the lease's TTL leaves room for a few misses.
            Ok(Err(s)) => {
                tracing::warn!(stage = %short(&stage_id), error = %s.message(), "heartbeat failed")
            }
            Err(_) => tracing::warn!(stage = %short(&stage_id), "heartbeat timed out"),
        }
    }
}

async fn run_leased(
    env: &Arc<TaskEnv>,
    task: &v1::Task,
    shared: &Arc<TaskShared>,
    gpu: Option<usize>,
    dir: &Path,
) -> Outcome {
    let (out, scratch) = (dir.join("out"), dir.join("scratch"));
    let inputs = match prepare(env, task, shared, dir, &out, &scratch).await {
        Ok(i) => i,
        Err(e) => return report_failure(env, task, shared, StageError::Infrastructure(e)).await,
    };
    if let Some(why) = shared.stop_reason() {
        return stopped(env, task, shared, why).await;
    }
    let reporter = Arc::new(RuntimeReporter {
        shared: shared.clone(),
        store: env.store.clone(),
        stage_id: task.stage_id.clone(),
        attempt: task.epoch,
        out: out.clone(),
        handle: tokio::runtime::Handle::current(),
        published: Mutex::new(BTreeMap::new()),
        carried: Mutex::new(BTreeMap::new()),
    });
    let device = match gpu {
        Some(i) => tch::Device::Cuda(i),
        None => tch::Device::Cpu,
    };
    let threads = (task.resources.map_or(1000, |r| r.cpu_millis) / 1000).max(1) as i32;
    let config: serde_json::Value = match serde_json::from_str(&task.config_json) {
        Ok(c) => c,
        Err(e) => {
            return report_failure(
                env,
                task,
                shared,
                StageError::Config(format!("config is not JSON: {e}")),
            )
            .await;
        }
    };
    let (rep, cfg) = (reporter.clone(), env.cfg.clone());
    let (stage_id, kind, attempt) = (task.stage_id.clone(), task.kind.clone(), task.epoch);
    let (out_dir, scratch_dir) = (out.clone(), scratch.clone());
    let result = tokio::task::spawn_blocking(move || {
        tch::set_num_threads(threads);
        let ctx = StageCtx {
            stage_id,
            kind,
            attempt,
            out: out_dir,
            scratch: scratch_dir,
            inputs,
            device,
            resume_every: cfg.resume_every,
            s3: cfg.s3.clone(),
            external: Mutex::new(Vec::new()),
            reporter: rep.as_ref(),
        };
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stages::run(&ctx, &config)));
        let result = match run {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StageError::Failed(format!("the stage panicked: {what}")))
            }
        };
        let external = ctx.external.into_inner().unwrap_or_else(|p| p.into_inner());
        (result, external)
    })
    .await;
    let (result, external) = match result {
        Ok(r) => r,
        Err(e) => (Err(StageError::Failed(format!("the stage's thread failed: {e}"))), Vec::new()),
    };
    match (result, shared.stop_reason()) {
        (Ok(()), None | Some(StopReason::Draining)) => {}
        (Ok(()), Some(why)) | (Err(StageError::Stopped(_)), Some(why)) => {
            return stopped(env, task, shared, why).await;
        }
        (Err(e), _) => {
            shared.log_line(&format!("failed: {e}"));
            return report_failure(env, task, shared, e).await;
        }
    }
    match commit(env, task, shared, &reporter, &out, &external).await {
        Ok(o) => o,
        Err(e) => report_failure(env, task, shared, StageError::Infrastructure(e)).await,
    }
}

/// Work folders, and each input's file list; files are fetched (through the machine cache)
/// when the stage asks for them.
async fn prepare(
    env: &Arc<TaskEnv>,
    task: &v1::Task,
    shared: &Arc<TaskShared>,
    dir: &Path,
    out: &Path,
    scratch: &Path,
) -> Result<Vec<stages::InputDir>, String> {
    for d in [out, scratch] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut inputs = Vec::new();
    for (i, input) in task.inputs.iter().enumerate() {
        let into = dir.join("inputs").join(format!("{i}-{}", input.kind));
        std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
        heal_commit_marker(&env.store, input).await;
        let fetcher = Arc::new(CacheFetch {
            env: env.clone(),
            stage_id: input.stage_id.clone(),
            attempt: input.attempt,
            records: input.files.iter().map(|f| (f.path.clone(), FileRecord::from(f))).collect(),
            shared: shared.clone(),
            handle: tokio::runtime::Handle::current(),
        });
        let files = input.files.iter().map(|f| f.path.clone()).collect();
        inputs.push(stages::InputDir::remote(
            input.stage_id.clone(),
            input.kind.clone(),
            into,
            files,
            fetcher,
        ));
    }
    Ok(inputs)
}

/// Fetches an input's files from the store through the machine cache, on demand.
struct CacheFetch {
    env: Arc<TaskEnv>,
    stage_id: String,
    attempt: u64,
    records: BTreeMap<String, FileRecord>,
    shared: Arc<TaskShared>,
    handle: tokio::runtime::Handle,
}

impl stages::ctx::FetchInput for CacheFetch {
    fn fetch(&self, paths: &[&str], dir: &Path) -> Result<(), StageError> {
        let infra = |e: crate::artifacts::ArtifactError| StageError::Infrastructure(e.to_string());
        let (mut bytes, mut fetched, mut n) = (0u64, 0u64, 0usize);
        for path in paths {
            let dest = dir.join(path);
            let Some(record) = self.records.get(*path) else { continue };
            if std::fs::metadata(&dest).is_ok_and(|m| m.len() == record.size) {
                continue;
            }
            let key = attempt_key(&self.stage_id, self.attempt, path);
            let (cached, downloaded) = self
                .handle
                .block_on(self.env.cache.fetch(&self.env.store, &key, record))
                .map_err(infra)?;
            Cache::place(&cached, &dest).map_err(infra)?;
            (bytes, n) = (bytes + record.size, n + 1);
            if downloaded {
                fetched += record.size;
            }
        }
        if n > 0 {
            self.shared.log_line(&format!(
                "input {}: {n} files, {:.1} MB ({:.1} MB downloaded, the rest from this machine's cache)",
                short(&self.stage_id),
                bytes as f64 / 1e6,
                fetched as f64 / 1e6
            ));
        }
        Ok(())
    }
}

/// A worker that died between the coordinator's commit and the marker left no
/// `_COMMITTED`; the first reader writes it (the coordinator's record is the truth).
async fn heal_commit_marker(store: &ArtifactStore, input: &v1::InputArtifact) {
    let key = committed_key(&input.stage_id);
    if matches!(store.get_bytes(&key).await, Ok(Some(_))) {
        return;
    }
    let c = Committed {
        stage_id: input.stage_id.clone(),
        kind: input.kind.clone(),
        attempt: input.attempt,
        files: input.files.iter().map(FileRecord::from).collect(),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&c) {
        let _ = store.create_bytes(&key, bytes).await;
    }
}

/// Uploads the outputs and the log, completes, marks the commit, collects losing attempts.
async fn commit(
    env: &Arc<TaskEnv>,
    task: &v1::Task,
    shared: &TaskShared,
    reporter: &RuntimeReporter,
    out: &Path,
    external: &[(String, PathBuf)],
) -> Result<Outcome, String> {
    let (id, attempt) = (&task.stage_id, task.epoch);
    let mut files: BTreeMap<String, FileRecord> =
        reporter.carried.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let published = reporter.published.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let local = files_under(out, "").map_err(|e| e.to_string())?;
    let mut uploaded = 0u64;
    // Uploads `local` as `rel` of this attempt; the record names `rel`.
    let upload = |local: PathBuf, rel: String| async move {
        let mut r = env
            .store
            .upload_file(&local, &attempt_key(id, attempt, &rel))
            .await
            .map_err(|e| e.to_string())?;
        r.path = rel;
        Ok::<FileRecord, String>(r)
    };
    for f in local.iter().filter(|f| !f.starts_with("resume/") && !f.ends_with(CHECKPOINT_MARKER)) {
        let size = std::fs::metadata(out.join(f)).map_err(|e| format!("{f}: {e}"))?.len();
        let record = match published.get(f) {
            Some(r) if r.size == size => r.clone(),
            _ => {
                let r = upload(out.join(f), f.clone()).await?;
                uploaded += r.size;
                r
            }
        };
        files.insert(f.clone(), record);
    }
    for (rel, src) in external {
        let r = upload(src.clone(), rel.clone()).await?;
        uploaded += r.size;
        files.insert(rel.clone(), r);
    }
    shared.log_line(&format!(
        "outputs: {} files ({:.1} MB uploaded now); completing",
        files.len() + 1,
        uploaded as f64 / 1e6
    ));
    let log = out.join("log.txt");
    std::fs::write(&log, shared.log_text()).map_err(|e| format!("{}: {e}", log.display()))?;
    let r = upload(log, "log.txt".into()).await?;
    files.insert(r.path.clone(), r);
    let wire: Vec<v1::ArtifactFile> = files.values().map(v1::ArtifactFile::from).collect();
    let req = v1::CompleteRequest {
        worker_id: env.worker_id.clone(),
        stage_id: id.clone(),
        epoch: attempt,
        files: wire,
    };
    let answer = retrying("complete", Duration::from_secs(30), env.cfg.reconnect_for, || {
        let mut c = env.conn.workers();
        let r = req.clone();
        async move { c.complete(r).await }
    })
    .await;
    match answer {
        Ok(resp) => {
            let resp = resp.into_inner();
            let committed = Committed {
                stage_id: id.clone(),
                kind: task.kind.clone(),
                attempt: resp.canonical_attempt,
                files: files.into_values().collect(),
            };
            let bytes = serde_json::to_vec_pretty(&committed).map_err(|e| e.to_string())?;
            if !env
                .store
                .create_bytes(&committed_key(id), bytes)
                .await
                .map_err(|e| e.to_string())?
            {
                tracing::debug!(stage = %short(id), "_COMMITTED was already written");
            }
            collect_losers(&env.store, id, resp.canonical_attempt).await;
            Ok(Outcome::Committed { duplicate: resp.duplicate })
        }
        Err(s) if s.code() == Code::FailedPrecondition => {
            // A stale epoch: another attempt owns the stage now; this output is discarded.
            let _ = env.store.delete_prefix(&attempt_prefix(id, attempt)).await;
            Ok(Outcome::Abandoned(format!("completion refused: {}", s.message())))
        }
        Err(s) => Err(format!("completing: {} ({:?})", s.message(), s.code())),
    }
}

/// Deletes the files of every attempt but the canonical one (their logs stay, for `wax logs`).
async fn collect_losers(store: &ArtifactStore, stage: &str, canonical: u64) {
    let prefix = stage_prefix(stage);
    let Ok(keys) = store.list(&prefix).await else { return };
    for (key, _) in keys {
        let Some(rest) = key.strip_prefix(&format!("{prefix}/")) else { continue };
        let Some((attempt, tail)) = rest.split_once('/') else { continue };
        if attempt.parse::<u64>().is_ok_and(|a| a != canonical) && tail != "log.txt" {
            let _ = store.delete(&key).await;
        }
    }
}

async fn upload_log(env: &TaskEnv, task: &v1::Task, shared: &TaskShared) {
    let key = attempt_key(&task.stage_id, task.epoch, "log.txt");
    if let Err(e) = env.store.put_bytes(&key, shared.log_text().into_bytes()).await {
        tracing::warn!(stage = %short(&task.stage_id), error = %e, "could not upload the stage log");
    }
}

async fn stopped(
    env: &Arc<TaskEnv>,
    task: &v1::Task,
    shared: &TaskShared,
    why: StopReason,
) -> Outcome {
    shared.log_line(&format!("stopped: {}", why.describe()));
    let outcome = match why {
        StopReason::Draining => {
            let why = format!("worker {} is draining", env.cfg.name);
            hand_back(env, task, shared, &why).await
        }
        other => Outcome::Abandoned(other.describe()),
    };
    upload_log(env, task, shared).await;
    outcome
}

/// Gives a lease back unfinished, for another worker (not a failure: nothing is charged).
pub async fn hand_back(env: &TaskEnv, task: &v1::Task, shared: &TaskShared, why: &str) -> Outcome {
    shared.log_line(&format!("handing the lease back: {why}"));
    let req = v1::FailRequest {
        worker_id: env.worker_id.clone(),
        stage_id: task.stage_id.clone(),
        epoch: task.epoch,
        kind: v1::FailureKind::Released as i32,
        retryable: true,
        reason: format!("handed back: {why}"),
    };
    let _ = retrying("fail", Duration::from_secs(10), env.cfg.reconnect_for, || {
        let mut c = env.conn.workers();
        let r = req.clone();
        async move { c.fail(r).await }
    })
    .await;
    Outcome::HandedBack
}

async fn report_failure(
    env: &Arc<TaskEnv>,
    task: &v1::Task,
    shared: &TaskShared,
    e: StageError,
) -> Outcome {
    let (kind, retryable) = match &e {
        StageError::Config(_) | StageError::Deterministic(_) => {
            (v1::FailureKind::StageError, false)
        }
        StageError::Failed(_) => (v1::FailureKind::StageError, true),
        StageError::Infrastructure(_) | StageError::Stopped(_) => {
            (v1::FailureKind::Infrastructure, true)
        }
    };
    tracing::warn!(stage = %short(&task.stage_id), kind = %task.kind, error = %e, ?kind, retryable, "stage failed");
    upload_log(env, task, shared).await;
    let req = v1::FailRequest {
        worker_id: env.worker_id.clone(),
        stage_id: task.stage_id.clone(),
        epoch: task.epoch,
        kind: kind as i32,
        retryable,
        reason: e.to_string(),
    };
    match retrying("fail", Duration::from_secs(10), env.cfg.reconnect_for, || {
        let mut c = env.conn.workers();
        let r = req.clone();
        async move { c.fail(r).await }
    })
    .await
    {
        Ok(r) => Outcome::Failed { will_retry: r.get_ref().will_retry, error: e.to_string() },
        Err(s) => {
            Outcome::Abandoned(format!("could not report the failure ({e}): {}", s.message()))
        }
    }
}
