//! A worker: registration, the lease loop (one long poll at a time, only while a slot is
//! free), GPU assignment, and draining.
//!
//! Draining (SIGTERM, Ctrl-C, the end of `wax run`): no new leases; running stages get
//! `drain_timeout` to finish and commit, then are asked to stop and hand their leases back
//! (a long stage resumes elsewhere from its last checkpoint).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::Code;
use wax_proto::client::Connection;
use wax_proto::v1;

use super::reporter::{StopReason, TaskShared};
use super::rpc::retrying;
use super::task::{Outcome, TaskEnv, hand_back, run_task};
use super::{RuntimeError, WorkerConfig};
use crate::artifacts::{ArtifactStore, Cache};
use crate::stages::config::KINDS;
use crate::stages::is_testing_kind;

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSummary {
    pub worker_id: String,
    pub committed: u64,
    pub failed: u64,
    pub handed_back: u64,
    pub abandoned: u64,
}

/// A worker process (or an in-process worker of `wax run`).
pub struct Worker {
    cfg: Arc<WorkerConfig>,
}

struct Registration {
    worker_id: String,
    heartbeat_every: Duration,
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> Worker {
        Worker { cfg: Arc::new(cfg) }
    }

    /// The stage kinds this worker offers, with their schema versions.
    pub fn kinds(&self) -> Vec<v1::StageKind> {
        KINDS
            .iter()
            .filter(|(k, _)| self.cfg.testing || !is_testing_kind(k))
            .map(|(k, v)| v1::StageKind { kind: k.to_string(), schema_version: *v })
            .collect()
    }

    async fn connect(&self) -> Result<Connection, RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.cfg.reconnect_for;
        loop {
            match Connection::connect(
                &self.cfg.coordinator,
                self.cfg.ca_pem.clone(),
                Some(&self.cfg.token),
            )
            .await
            {
                Ok(c) => return Ok(c),
                Err(e @ wax_proto::client::ConnectError::Transport { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "coordinator unreachable; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(RuntimeError::Coordinator {
                        url: self.cfg.coordinator.clone(),
                        why: e.to_string(),
                    });
                }
            }
        }
    }

    async fn register(&self, conn: &Connection) -> Result<Registration, RuntimeError> {
        let req = v1::RegisterRequest {
            protocol_version: wax_proto::PROTOCOL_VERSION,
            worker_name: self.cfg.name.clone(),
            capabilities: Some(v1::Capabilities {
                resources: Some(self.cfg.offer.to_wire()),
                stage_kinds: self.kinds(),
                labels: self.cfg.labels.iter().cloned().collect(),
                max_concurrent_tasks: self.cfg.offer.slots,
            }),
        };
        let r = retrying("register", Duration::from_secs(10), self.cfg.reconnect_for, || {
            let mut c = conn.workers();
            let r = req.clone();
            async move { c.register(r).await }
        })
        .await
        .map_err(|s| RuntimeError::Coordinator {
            url: self.cfg.coordinator.clone(),
            why: s.message().to_string(),
        })?
        .into_inner();
        Ok(Registration {
            worker_id: r.worker_id,
            heartbeat_every: Duration::from_millis(r.heartbeat_interval_ms.max(100)),
        })
    }

    /// Leases and runs stages until `drain` resolves, then drains. Returns what it did.
    pub async fn run(self, drain: impl Future<Output = ()>) -> Result<WorkerSummary, RuntimeError> {
        let cfg = self.cfg.clone();
        let store = ArtifactStore::open(&cfg.store, &cfg.s3)?;
        std::fs::create_dir_all(&cfg.work_dir).map_err(|e| {
            RuntimeError::Config(format!("work dir {}: {e}", cfg.work_dir.display()))
        })?;
        let conn = self.connect().await?;
        let mut reg = self.register(&conn).await?;
        tracing::info!(worker = %reg.worker_id, name = %cfg.name, slots = cfg.offer.slots,
            cpu_millis = cfg.offer.cpu_millis, gpus = cfg.offer.gpus.len(), store = %cfg.store, "worker registered");
        let mut env = Arc::new(TaskEnv {
            conn: conn.clone(),
            worker_id: reg.worker_id.clone(),
            store,
            cache: Cache::new(cfg.cache_dir.clone()),
            cfg: cfg.clone(),
            heartbeat_every: reg.heartbeat_every,
        });
        let slots = Arc::new(Semaphore::new(cfg.offer.slots.max(1) as usize));
        let free_gpus = Arc::new(Mutex::new(cfg.offer.gpus.clone()));
        let running: Arc<Mutex<Vec<Arc<TaskShared>>>> = Arc::default();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut summary = WorkerSummary { worker_id: reg.worker_id.clone(), ..Default::default() };
        tokio::pin!(drain);
        let mut draining = false;
        while !draining {
            // Wait for a free slot, counting finished tasks meanwhile.
            let permit = tokio::select! {
                biased;
                _ = &mut drain => { draining = true; continue; }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => { count(&mut summary, done); continue; }
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            // One long poll; it is not cancelled by a drain (a grant lost in flight would wait
            // out its lease), so its wait is bounded by `lease_wait`.
            let wait_ms = cfg.lease_wait.as_millis() as u64;
            let worker_id = env.worker_id.clone();
            let lease = retrying(
                "lease",
                cfg.lease_wait + Duration::from_secs(15),
                cfg.reconnect_for,
                || {
                    let mut c = conn.workers();
                    let worker_id = worker_id.clone();
                    async move { c.lease(v1::LeaseRequest { worker_id, wait_ms }).await }
                },
            );
            let task = match lease.await {
                Ok(r) => r.into_inner().task,
                Err(s) if s.code() == Code::NotFound => {
                    tracing::warn!(error = %s.message(), "the coordinator does not know this worker; registering again");
                    reg = self.register(&conn).await?;
                    env = Arc::new(TaskEnv { worker_id: reg.worker_id.clone(), ..(*env).clone() });
                    summary.worker_id = reg.worker_id.clone();
                    continue;
                }
                Err(s) => {
                    return Err(RuntimeError::Coordinator {
                        url: cfg.coordinator.clone(),
                        why: s.message().to_string(),
                    });
                }
            };
            let Some(task) = task else { continue };
            let need = task.resources.map_or(0, |r| r.gpus) as usize;
            let gpus: Vec<usize> = {
                let mut free = free_gpus.lock().unwrap_or_else(|p| p.into_inner());
                if free.len() >= need { free.drain(..need).collect() } else { Vec::new() }
            };
            let shared = Arc::new(TaskShared::default());
            running.lock().unwrap_or_else(|p| p.into_inner()).push(shared.clone());
            let (env2, free2, running2) = (env.clone(), free_gpus.clone(), running.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let outcome = if gpus.len() < need {
                    let why = format!("needs {need} GPU(s) and this worker has none free");
                    hand_back(&env2, &task, &shared, &why).await
                } else {
                    run_task(env2, task, shared.clone(), gpus.first().copied()).await
                };
                free2.lock().unwrap_or_else(|p| p.into_inner()).extend(gpus);
                running2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|s| !Arc::ptr_eq(s, &shared));
                outcome
            });
        }
        // Drain: let running stages finish for a while, then ask them to hand back.
        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), timeout = ?cfg.drain_timeout, "draining");
        }
        let deadline = tokio::time::Instant::now() + cfg.drain_timeout;
        let mut asked = false;
        while !tasks.is_empty() {
            tokio::select! {
                Some(done) = tasks.join_next() => count(&mut summary, done),
                _ = tokio::time::sleep_until(deadline), if !asked => {
                    asked = true;
                    for s in running.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        s.request_stop(StopReason::Draining);
                    }
                }
            }
        }
        tracing::info!(worker = %summary.worker_id, committed = summary.committed, failed = summary.failed,
            handed_back = summary.handed_back, "worker stopped");
        Ok(summary)
    }
}

fn count(summary: &mut WorkerSummary, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Committed { .. }) => summary.committed += 1,
        Ok(Outcome::Failed { .. }) => summary.failed += 1,
        Ok(Outcome::HandedBack) => summary.handed_back += 1,
        Ok(Outcome::Abandoned(_)) | Err(_) => summary.abandoned += 1,
    }
}
