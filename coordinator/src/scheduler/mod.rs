//! Scheduling: leases with fencing epochs, retries with backoff and separate budgets,
//! priorities, resource-aware placement, cancellation, stall detection — on durable state.
//!
//! [`Scheduler`] is the async shell around [`state::State`]: every operation takes the state
//! lock, decides, queues the resulting mutations in the [`journal::Journal`] before releasing
//! the lock, and returns only once they are durable. Background tasks expire leases, promote
//! stages whose backoff ended, and look for stalled sweeps.

pub mod config;
pub mod journal;
mod ops;
mod state;
#[cfg(test)]
mod tests;

pub use config::SchedulerConfig;
pub use journal::JournalStats;
pub use ops::{FailureKind, Granted, OpError, SubmitOutcome};
pub use state::{Counts, LiveEvent, Progress};

use crate::plan::Plan;
use crate::records::{
    ArtifactFile, EventRecord, Millis, StageSpec, StageState, StageStatus, SweepRecord,
    WorkerRecord, now_ms,
};
use crate::store::Store;
use journal::Journal;
use state::{Effects, State};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// A scheduler failure as its callers see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error(transparent)]
    Op(#[from] OpError),
    /// The store failed; the coordinator is stopping.
    #[error("store unavailable: {0}")]
    Store(String),
}

/// A sweep as reported to users.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepView {
    pub record: SweepRecord,
    pub counts: Counts,
    /// "running", "stalled", "succeeded", "failed", "cancelled".
    pub state: String,
    pub stalled_reasons: Vec<String>,
    /// (stage id, kind, last error) of failed stages.
    pub failures: Vec<(String, String, String)>,
    /// Stages leased now.
    pub running: Vec<RunningView>,
}

/// A leased stage and what its worker last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningView {
    pub stage_id: String,
    pub kind: String,
    pub worker: String,
    pub attempt: u64,
    pub lease_expires_ms: Millis,
    pub progress: Option<Progress>,
}

/// The scheduler. Cheap to share (`Arc`).
pub struct Scheduler {
    state: Mutex<State>,
    journal: Journal,
    store: Arc<dyn Store>,
    work_available: Notify,
    events: broadcast::Sender<LiveEvent>,
    config: SchedulerConfig,
}

impl Scheduler {
    /// Restores the state from the store and starts the background tasks.
    pub async fn start(
        store: Arc<dyn Store>,
        config: SchedulerConfig,
    ) -> Result<Arc<Scheduler>, SchedError> {
        config.validate().map_err(|e| SchedError::Op(OpError::Invalid(e)))?;
        let snapshot = store.load().await.map_err(|e| SchedError::Store(e.to_string()))?;
        let (state, repairs) = State::restore(config.clone(), snapshot, now_ms());
        let journal = Journal::start(store.clone());
        let (events, _) = broadcast::channel(4096);
        let sched = Arc::new(Scheduler {
            state: Mutex::new(state),
            journal,
            store,
            work_available: Notify::new(),
            events,
            config,
        });
        sched.journal.submit(repairs).durable().await.map_err(SchedError::Store)?;
        let ticker = Arc::downgrade(&sched);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_stall_check = 0;
            loop {
                tick.tick().await;
                let Some(s) = ticker.upgrade() else { break };
                let now = now_ms();
                let check_stalls = now.saturating_sub(last_stall_check) >= 1000;
                if check_stalls {
                    last_stall_check = now;
                }
                let _ = s
                    .run(|st, fx| {
                        st.expire_leases(now, fx);
                        if check_stalls {
                            st.check_stalls(now, fx);
                        }
                        Ok(())
                    })
                    .await;
            }
        });
        Ok(sched)
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Becomes `Some(reason)` if the store failed (the coordinator must stop).
    pub fn fatal(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.journal.fatal()
    }

    pub fn journal_stats(&self) -> JournalStats {
        self.journal.stats()
    }

    /// Live events of every sweep.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Stored events of one sweep after `after`.
    pub async fn stored_events(
        &self,
        sweep_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, SchedError> {
        self.store
            .events(sweep_id, after, limit)
            .await
            .map_err(|e| SchedError::Store(e.to_string()))
    }

    /// Runs one operation: decide under the lock, journal, wait for durability, publish.
    async fn run<T>(
        &self,
        op: impl FnOnce(&mut State, &mut Effects) -> Result<T, OpError>,
    ) -> Result<T, SchedError> {
        let (result, pending, events, wake) = {
            let mut st = self.state.lock().expect("scheduler lock");
            let mut fx = Effects::default();
            let result = op(&mut st, &mut fx);
            let pending = self.journal.submit(std::mem::take(&mut fx.mutations));
            (result, pending, std::mem::take(&mut fx.events), fx.wake)
        };
        pending.durable().await.map_err(SchedError::Store)?;
        for e in events {
            let _ = self.events.send(e);
        }
        if wake {
            self.work_available.notify_waiters();
        }
        Ok(result?)
    }

    /// Adds a planned sweep.
    pub async fn submit(
        &self,
        record: SweepRecord,
        plan: Plan,
    ) -> Result<SubmitOutcome, SchedError> {
        let now = now_ms();
        self.run(|st, fx| {
            if st.sweep_by_id.contains_key(&record.id) {
                return Err(OpError::Invalid(format!("sweep id {} already exists", record.id)));
            }
            Ok(st.submit(record, &plan, now, fx))
        })
        .await
    }

    pub async fn register(&self, record: WorkerRecord) -> Result<(), SchedError> {
        let now = now_ms();
        self.run(|st, fx| {
            st.register(record, now, fx);
            Ok(())
        })
        .await
    }

    /// Leases the best fitting stage, waiting up to `wait` for one to appear.
    pub async fn lease(&self, worker: &str, wait: Duration) -> Result<Option<Granted>, SchedError> {
        let wait = wait.min(self.config.max_lease_wait);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a wake-up between the look and the wait is
            // not lost.
            let notified = self.work_available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_ms();
            if let Some(granted) = self.run(|st, fx| st.lease(worker, now, fx)).await? {
                return Ok(Some(granted));
            }
            let next_backoff = self.next_delayed_ms();
            let mut until = deadline;
            if let Some(at) = next_backoff {
                let in_ms = at.saturating_sub(now_ms());
                until = until.min(tokio::time::Instant::now() + Duration::from_millis(in_ms + 1));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout_at(until, notified).await;
            if tokio::time::Instant::now() >= deadline {
                // One last look: something may have arrived exactly at the deadline.
                let now = now_ms();
                return self.run(|st, fx| st.lease(worker, now, fx)).await;
            }
        }
    }

    fn next_delayed_ms(&self) -> Option<Millis> {
        self.state.lock().expect("scheduler lock").delayed.first().map(|&(t, _)| t)
    }

    /// Extends a lease (or, with an empty stage id, just says the worker is alive) and keeps
    /// the worker's progress report for `status`; answers whether to stop, and the new expiry.
    pub async fn heartbeat(
        &self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        report: Option<Progress>,
    ) -> Result<(bool, Millis), SchedError> {
        let now = now_ms();
        let mut st = self.state.lock().expect("scheduler lock");
        if stage_id.is_empty() {
            st.touch(worker, now)?;
            return Ok((false, 0));
        }
        Ok(st.heartbeat(worker, stage_id, epoch, report, now)?)
    }

    /// Commits a stage's output; `(duplicate, canonical attempt)`.
    pub async fn complete(
        &self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        files: Vec<ArtifactFile>,
    ) -> Result<(bool, u64), SchedError> {
        let now = now_ms();
        self.run(|st, fx| st.complete(worker, stage_id, epoch, files, now, fx)).await
    }

    /// Records a failed attempt; returns when it will be retried, if it will.
    pub async fn fail(
        &self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        kind: FailureKind,
        retryable: bool,
        reason: &str,
    ) -> Result<Option<Millis>, SchedError> {
        let now = now_ms();
        self.run(|st, fx| st.fail(worker, stage_id, epoch, kind, retryable, reason, now, fx)).await
    }

    pub async fn cancel(&self, sweep_id: &str) -> Result<u32, SchedError> {
        let now = now_ms();
        self.run(|st, fx| st.cancel(sweep_id, now, fx)).await
    }

    pub async fn retry_failed(&self, sweep_id: &str) -> Result<u32, SchedError> {
        let now = now_ms();
        self.run(|st, fx| st.retry_failed(sweep_id, now, fx)).await
    }

    /// Whether a worker id is registered.
    pub fn knows_worker(&self, worker: &str) -> bool {
        self.state.lock().expect("scheduler lock").workers.contains_key(worker)
    }

    /// One sweep as users see it.
    pub fn sweep(&self, sweep_id: &str) -> Result<SweepView, SchedError> {
        let st = self.state.lock().expect("scheduler lock");
        let s = st.sweep_ix(sweep_id)?;
        Ok(view(&st, s))
    }

    /// The newest sweeps first.
    pub fn sweeps(&self, limit: usize) -> Vec<SweepView> {
        let st = self.state.lock().expect("scheduler lock");
        let mut ids: Vec<u32> = (0..st.sweeps.len() as u32).collect();
        ids.sort_by_key(|&s| std::cmp::Reverse((st.sweeps[s as usize].record.created_ms, s)));
        ids.into_iter().take(limit).map(|s| view(&st, s)).collect()
    }

    /// Every stage of a sweep (in plan order: inputs first) with its status, and the plan.
    pub fn sweep_stages(
        &self,
        sweep_id: &str,
    ) -> Result<(serde_json::Value, Vec<(StageSpec, StageStatus)>), SchedError> {
        let st = self.state.lock().expect("scheduler lock");
        let s = st.sweep_ix(sweep_id)?;
        let sw = &st.sweeps[s as usize];
        let stages = sw
            .stages
            .iter()
            .map(|&ix| {
                let stage = &st.stages[ix as usize];
                ((*stage.spec).clone(), stage.status.clone())
            })
            .collect();
        Ok((sw.record.plan.clone(), stages))
    }

    /// A stage's spec and state (for tests and inspection).
    pub fn stage(&self, stage_id: &str) -> Option<(StageSpec, StageState, u64)> {
        let st = self.state.lock().expect("scheduler lock");
        st.by_id.get(stage_id).map(|&ix| {
            let s = &st.stages[ix as usize];
            ((*s.spec).clone(), s.status.state, s.status.epoch)
        })
    }

    /// Number of Ready stages (queued or in backoff) — the queue depth an autoscaler watches.
    pub fn queue_depth(&self) -> usize {
        let st = self.state.lock().expect("scheduler lock");
        st.ready.values().map(|q| q.len()).sum::<usize>() + st.delayed.len()
    }
}

fn view(st: &State, s: u32) -> SweepView {
    let sw = &st.sweeps[s as usize];
    let failures = sw
        .stages
        .iter()
        .map(|&ix| &st.stages[ix as usize])
        .filter(|stage| stage.status.state == StageState::Failed)
        .map(|stage| {
            (
                stage.spec.id.clone(),
                stage.spec.kind.clone(),
                stage.status.last_error.clone().unwrap_or_default(),
            )
        })
        .collect();
    let running = sw
        .stages
        .iter()
        .filter(|&&ix| st.stages[ix as usize].status.state == StageState::Leased)
        .map(|&ix| {
            let stage = &st.stages[ix as usize];
            RunningView {
                stage_id: stage.spec.id.clone(),
                kind: stage.spec.kind.clone(),
                worker: stage.status.lease_worker.clone().unwrap_or_default(),
                attempt: stage.status.epoch,
                lease_expires_ms: stage.status.lease_expires_ms.unwrap_or(0),
                progress: st.progress.get(&ix).cloned(),
            }
        })
        .collect();
    SweepView {
        running,
        record: sw.record.clone(),
        counts: sw.counts,
        state: st.state_label(s),
        stalled_reasons: sw
            .stall
            .as_ref()
            .filter(|x| x.reported)
            .map(|x| x.reasons.clone())
            .unwrap_or_default(),
        failures,
    }
}
