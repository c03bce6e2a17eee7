//! The scheduler's in-memory state: stages, sweeps, workers and the queues over them.
//!
//! Everything here is synchronous and deterministic given a clock value; the async shell in
//! `mod.rs` takes the lock, calls one operation, submits the resulting [`Effects`] to the
//! journal and answers after they are durable. Operations live in `ops.rs`; this file holds the
//! data structures, the bookkeeping every state change goes through, and the rebuild from a
//! store snapshot.

use super::config::SchedulerConfig;
use crate::records::{
    EventRecord, Millis, Resources, StageId, StageSpec, StageState, StageStatus, SweepRecord,
    SweepState, WorkerRecord,
};
use crate::store::{Mutation, Snapshot};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Index of a stage in [`State::stages`].
pub(crate) type Ix = u32;

/// Stage counts of one sweep by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u32,
    pub ready: u32,
    pub leased: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl Counts {
    fn slot(&mut self, s: StageState) -> &mut u32 {
        match s {
            StageState::Pending => &mut self.pending,
            StageState::Ready => &mut self.ready,
            StageState::Leased => &mut self.leased,
            StageState::Succeeded => &mut self.succeeded,
            StageState::Failed => &mut self.failed,
            StageState::Cancelled => &mut self.cancelled,
        }
    }

    pub fn total(&self) -> u32 {
        self.pending + self.ready + self.leased + self.succeeded + self.failed + self.cancelled
    }

    /// Stages that may still change without user action.
    pub fn active(&self) -> u32 {
        self.pending + self.ready + self.leased
    }
}

pub(crate) struct Stage {
    pub spec: Arc<StageSpec>,
    pub status: StageStatus,
    /// Sweeps that contain this stage.
    pub sweeps: Vec<u32>,
    pub inputs: Vec<Ix>,
    pub dependents: Vec<Ix>,
    /// Effective priority: the best of its running sweeps, then depth.
    pub priority: i64,
    /// Key in a ready queue while queued.
    pub queued: Option<(Reverse<i64>, u64)>,
}

/// Why a sweep cannot make progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub since: Millis,
    pub reasons: Vec<String>,
    /// Reported (after the grace period).
    pub reported: bool,
}

pub(crate) struct Sweep {
    pub record: SweepRecord,
    pub stages: Vec<Ix>,
    pub counts: Counts,
    pub stall: Option<Stall>,
}

pub(crate) struct Worker {
    pub record: WorkerRecord,
    pub leased: Vec<Ix>,
    pub free: Resources,
    pub last_seen: Millis,
}

/// An event for watchers: the stored record plus the sweep's situation after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub record: EventRecord,
    pub counts: Counts,
    pub state: String,
}

/// What one operation changed: mutations for the journal, events for watchers, and whether
/// waiting workers should look for work again.
#[derive(Default)]
pub(crate) struct Effects {
    pub mutations: Vec<Mutation>,
    pub events: Vec<LiveEvent>,
    pub wake: bool,
    dirty: BTreeSet<Ix>,
    dirty_sweeps: BTreeSet<u32>,
    new: BTreeSet<Ix>,
}

impl Effects {
    /// The stage's status must be written.
    pub fn mark_dirty(&mut self, ix: Ix) {
        self.dirty.insert(ix);
    }

    /// The sweep's state must be re-derived (and written if it changed).
    pub fn dirty_sweep(&mut self, s: u32) {
        self.dirty_sweeps.insert(s);
    }

    /// The stage was created by this operation.
    pub fn mark_new(&mut self, ix: Ix) {
        self.new.insert(ix);
        self.dirty.insert(ix);
    }

    pub fn is_new(&self, ix: Ix) -> bool {
        self.new.contains(&ix)
    }
}

pub(crate) struct State {
    pub cfg: SchedulerConfig,
    pub stages: Vec<Stage>,
    pub by_id: HashMap<StageId, Ix>,
    pub sweeps: Vec<Sweep>,
    pub sweep_by_id: HashMap<String, u32>,
    pub workers: HashMap<String, Worker>,
    /// Ready and eligible stages per kind, best first.
    pub ready: HashMap<String, BTreeSet<(Reverse<i64>, u64, Ix)>>,
    /// Ready stages waiting out a retry backoff.
    pub delayed: BTreeSet<(Millis, Ix)>,
    /// Leased stages by expiry.
    pub leases: BTreeSet<(Millis, Ix)>,
    pub queue_seq: u64,
    pub event_seq: u64,
    /// What the holders of leases last reported (memory only, like heartbeats).
    pub progress: HashMap<Ix, Progress>,
}

/// A running stage's last heartbeat report.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 0..1, negative if not reported.
    pub fraction: f64,
    pub message: String,
    pub metrics: Vec<(String, f64)>,
}

impl State {
    pub fn new(cfg: SchedulerConfig) -> State {
        State {
            cfg,
            stages: Vec::new(),
            by_id: HashMap::new(),
            sweeps: Vec::new(),
            sweep_by_id: HashMap::new(),
            workers: HashMap::new(),
            ready: HashMap::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            queue_seq: 0,
            event_seq: 0,
            progress: HashMap::new(),
        }
    }

    /// Moves stage `ix` to `to`, keeping counts, queues and lease indexes consistent.
    pub fn set_state(&mut self, ix: Ix, to: StageState, now: Millis, fx: &mut Effects) {
        let from = self.stages[ix as usize].status.state;
        if from == to {
            fx.dirty.insert(ix);
            return;
        }
        self.unqueue(ix);
        if from == StageState::Leased {
            self.release_lease(ix);
            self.progress.remove(&ix);
        }
        let stage = &mut self.stages[ix as usize];
        stage.status.state = to;
        stage.status.updated_ms = now;
        if to != StageState::Leased {
            stage.status.lease_worker = None;
            stage.status.lease_expires_ms = None;
        }
        for &s in &stage.sweeps {
            let counts = &mut self.sweeps[s as usize].counts;
            *counts.slot(from) -= 1;
            *counts.slot(to) += 1;
            fx.dirty_sweeps.insert(s);
        }
        if to == StageState::Ready {
            self.enqueue(ix, now);
            fx.wake = true;
        }
        fx.dirty.insert(ix);
    }

    /// Puts a Ready stage in its kind's queue, or in the backoff set if not yet eligible.
    fn enqueue(&mut self, ix: Ix, now: Millis) {
        let stage = &self.stages[ix as usize];
        if stage.status.not_before_ms > now {
            self.delayed.insert((stage.status.not_before_ms, ix));
            return;
        }
        self.queue_seq += 1;
        let key = (Reverse(stage.priority), self.queue_seq);
        let kind = stage.spec.kind.clone();
        self.ready.entry(kind).or_default().insert((key.0, key.1, ix));
        self.stages[ix as usize].queued = Some(key);
    }

    fn unqueue(&mut self, ix: Ix) {
        let stage = &mut self.stages[ix as usize];
        if let Some((p, seq)) = stage.queued.take()
            && let Some(q) = self.ready.get_mut(&stage.spec.kind)
        {
            q.remove(&(p, seq, ix));
        }
        let nb = stage.status.not_before_ms;
        self.delayed.remove(&(nb, ix));
    }

    /// Returns a leased stage's resources to its worker and drops it from the expiry index.
    fn release_lease(&mut self, ix: Ix) {
        let status = &self.stages[ix as usize].status;
        if let Some(exp) = status.lease_expires_ms {
            self.leases.remove(&(exp, ix));
        }
        let need = self.stages[ix as usize].spec.resources;
        if let Some(w) = status.lease_worker.as_ref().and_then(|id| self.workers.get_mut(id)) {
            w.leased.retain(|&l| l != ix);
            w.free = add(w.free, need);
        }
    }

    /// Moves backoff-delayed stages whose time has come into the ready queues.
    pub fn promote_delayed(&mut self, now: Millis, fx: &mut Effects) {
        while let Some(&(t, ix)) = self.delayed.first() {
            if t > now {
                break;
            }
            self.delayed.remove(&(t, ix));
            self.enqueue(ix, now);
            fx.wake = true;
        }
    }

    /// Recomputes a stage's effective priority from its running sweeps and requeues it.
    pub fn reprioritise(&mut self, ix: Ix, now: Millis) {
        let stage = &self.stages[ix as usize];
        let best = stage
            .sweeps
            .iter()
            .map(|&s| &self.sweeps[s as usize].record)
            .filter(|r| r.state == SweepState::Running)
            .map(|r| i64::from(r.priority))
            .max()
            .unwrap_or(0);
        let priority = best * 1000 + stage.spec.priority;
        if priority != stage.priority {
            let queued = stage.queued.is_some();
            if queued {
                self.unqueue(ix);
            }
            self.stages[ix as usize].priority = priority;
            if queued {
                self.enqueue(ix, now);
            }
        }
    }

    /// The state a sweep reports.
    pub fn sweep_state(&self, s: u32) -> SweepState {
        let sw = &self.sweeps[s as usize];
        if sw.record.state == SweepState::Cancelled {
            return SweepState::Cancelled;
        }
        let c = sw.counts;
        if c.active() > 0 {
            SweepState::Running
        } else if c.failed > 0 || c.cancelled > 0 {
            SweepState::Failed
        } else {
            SweepState::Succeeded
        }
    }

    /// The state reported to users: the recorded state (kept in step with the stage counts
    /// by [`State::finish`]), or "stalled" for a running sweep with a reported stall.
    pub fn state_label(&self, s: u32) -> String {
        let sw = &self.sweeps[s as usize];
        match sw.record.state {
            SweepState::Running if sw.stall.as_ref().is_some_and(|st| st.reported) => {
                "stalled".into()
            }
            st => st.as_str().into(),
        }
    }

    /// Records an event for sweep `s`. `persist = false` events reach live watchers only.
    pub fn event(
        &mut self,
        s: u32,
        kind: &str,
        stage: Option<Ix>,
        message: String,
        persist: bool,
        now: Millis,
        fx: &mut Effects,
    ) {
        self.event_seq += 1;
        let (stage_id, stage_kind) = match stage {
            Some(ix) => {
                let st = &self.stages[ix as usize];
                (Some(st.spec.id.clone()), Some(st.spec.kind.clone()))
            }
            None => (None, None),
        };
        let record = EventRecord {
            seq: self.event_seq,
            sweep_id: self.sweeps[s as usize].record.id.clone(),
            ts_ms: now,
            kind: kind.to_string(),
            stage_id,
            stage_kind,
            message,
        };
        if persist {
            match fx.mutations.last_mut() {
                Some(Mutation::AppendEvents(list)) => list.push(record.clone()),
                _ => fx.mutations.push(Mutation::AppendEvents(vec![record.clone()])),
            }
        }
        let counts = self.sweeps[s as usize].counts;
        fx.events.push(LiveEvent { record, counts, state: self.state_label(s) });
    }

    /// Turns the touched stages and sweeps into mutations; closes sweeps that just ended.
    pub fn finish(&mut self, now: Millis, fx: &mut Effects) {
        for s in std::mem::take(&mut fx.dirty_sweeps) {
            let state = self.sweep_state(s);
            let record = &self.sweeps[s as usize].record;
            if record.state != state && record.state != SweepState::Cancelled {
                let old = record.state;
                self.sweeps[s as usize].record.state = state;
                let id = self.sweeps[s as usize].record.id.clone();
                fx.mutations.push(Mutation::SetSweepState { id, state });
                if state != SweepState::Running {
                    let c = self.sweeps[s as usize].counts;
                    let msg = format!(
                        "{}: {} succeeded, {} failed",
                        state.as_str(),
                        c.succeeded,
                        c.failed
                    );
                    self.event(s, "finished", None, msg, true, now, fx);
                } else if old != SweepState::Running {
                    self.event(s, "reopened", None, "running again".into(), true, now, fx);
                }
            }
        }
        let dirty = std::mem::take(&mut fx.dirty);
        let statuses = dirty
            .into_iter()
            .map(|ix| Mutation::PutStatus(self.stages[ix as usize].status.clone()));
        // Statuses go before the events appended during the operation: a reader of the store
        // never sees an event about a change that is not there.
        let events_at = fx.mutations.iter().position(|m| matches!(m, Mutation::AppendEvents(_)));
        match events_at {
            Some(i) => {
                let tail = fx.mutations.split_off(i);
                fx.mutations.extend(statuses);
                fx.mutations.extend(tail);
            }
            None => fx.mutations.extend(statuses),
        }
    }

    /// Adds a stage that is not yet known (its status decides the initial state).
    pub fn add_stage(&mut self, spec: Arc<StageSpec>, status: StageStatus) -> Ix {
        let ix = self.stages.len() as Ix;
        let inputs: Vec<Ix> =
            spec.inputs.iter().filter_map(|i| self.by_id.get(i).copied()).collect();
        for &i in &inputs {
            self.stages[i as usize].dependents.push(ix);
        }
        self.by_id.insert(spec.id.clone(), ix);
        let priority = spec.priority;
        self.stages.push(Stage {
            spec,
            status,
            sweeps: Vec::new(),
            inputs,
            dependents: Vec::new(),
            priority,
            queued: None,
        });
        ix
    }

    /// Whether every input of `ix` has succeeded.
    pub fn inputs_done(&self, ix: Ix) -> bool {
        self.stages[ix as usize]
            .inputs
            .iter()
            .all(|&i| self.stages[i as usize].status.state == StageState::Succeeded)
    }

    /// Rebuilds the state from a store snapshot, granting every open lease a fresh TTL (its
    /// holder gets one full lease period to reach the restarted coordinator) and repairing
    /// anything a crash between decisions could have left (pending stages whose inputs are
    /// done, sweeps whose stages all ended).
    pub fn restore(cfg: SchedulerConfig, snap: Snapshot, now: Millis) -> (State, Vec<Mutation>) {
        let mut st = State::new(cfg);
        st.event_seq = snap.last_event_seq;
        let mut statuses: HashMap<StageId, StageStatus> =
            snap.statuses.into_iter().map(|s| (s.id.clone(), s)).collect();
        // Specs arrive in any order; inputs must be added first.
        let mut specs: HashMap<StageId, StageSpec> =
            snap.specs.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut order: Vec<StageId> = Vec::with_capacity(specs.len());
        let mut visiting: Vec<(StageId, bool)> = specs.keys().map(|k| (k.clone(), false)).collect();
        let mut placed = std::collections::HashSet::new();
        while let Some((id, expanded)) = visiting.pop() {
            if placed.contains(&id) {
                continue;
            }
            if expanded {
                placed.insert(id.clone());
                order.push(id);
                continue;
            }
            visiting.push((id.clone(), true));
            if let Some(spec) = specs.get(&id) {
                for i in &spec.inputs {
                    if !placed.contains(i) && specs.contains_key(i) {
                        visiting.push((i.clone(), false));
                    }
                }
            }
        }
        for id in order {
            let spec = specs.remove(&id).expect("ordered from the same map");
            let status = statuses
                .remove(&id)
                .unwrap_or_else(|| StageStatus::new(id.clone(), StageState::Pending, now));
            st.add_stage(Arc::new(spec), status);
        }
        for w in snap.workers {
            let free = w.resources;
            st.workers.insert(
                w.id.clone(),
                Worker { record: w, leased: Vec::new(), free, last_seen: now },
            );
        }
        for sweep in snap.sweeps {
            let s = st.sweeps.len() as u32;
            st.sweep_by_id.insert(sweep.id.clone(), s);
            st.sweeps.push(Sweep {
                record: sweep,
                stages: Vec::new(),
                counts: Counts::default(),
                stall: None,
            });
        }
        for link in snap.links {
            let (Some(&s), Some(&ix)) =
                (st.sweep_by_id.get(&link.sweep_id), st.by_id.get(&link.stage_id))
            else {
                continue;
            };
            if !st.stages[ix as usize].sweeps.contains(&s) {
                st.stages[ix as usize].sweeps.push(s);
                st.sweeps[s as usize].stages.push(ix);
                let state = st.stages[ix as usize].status.state;
                *st.sweeps[s as usize].counts.slot(state) += 1;
            }
        }
        let mut fx = Effects::default();
        for ix in 0..st.stages.len() as Ix {
            st.reprioritise(ix, now);
            let status = st.stages[ix as usize].status.clone();
            match status.state {
                StageState::Ready => st.enqueue(ix, now),
                StageState::Pending if st.inputs_done(ix) => {
                    st.set_state(ix, StageState::Ready, now, &mut fx)
                }
                StageState::Leased => {
                    let expires = status
                        .lease_expires_ms
                        .unwrap_or(0)
                        .max(now + st.cfg.lease_ttl.as_millis() as u64);
                    let need = st.stages[ix as usize].spec.resources;
                    st.stages[ix as usize].status.lease_expires_ms = Some(expires);
                    st.leases.insert((expires, ix));
                    if let Some(w) =
                        status.lease_worker.as_ref().and_then(|id| st.workers.get_mut(id))
                    {
                        w.leased.push(ix);
                        w.free = sub(w.free, need);
                    }
                }
                _ => {}
            }
        }
        for s in 0..st.sweeps.len() as u32 {
            fx.dirty_sweeps.insert(s);
        }
        st.finish(now, &mut fx);
        (st, fx.mutations)
    }
}

pub(crate) fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        gpus: a.gpus.saturating_add(b.gpus),
        gpu_memory_bytes: a.gpu_memory_bytes,
        cpu_millis: a.cpu_millis.saturating_add(b.cpu_millis),
        memory_bytes: a.memory_bytes.saturating_add(b.memory_bytes),
    }
}

pub(crate) fn sub(a: Resources, b: Resources) -> Resources {
    Resources {
        gpus: a.gpus.saturating_sub(b.gpus),
        gpu_memory_bytes: a.gpu_memory_bytes,
        cpu_millis: a.cpu_millis.saturating_sub(b.cpu_millis),
        memory_bytes: a.memory_bytes.saturating_sub(b.memory_bytes),
    }
}

/// Whether free resources `have` cover `need` (GPU memory is per GPU, compared only when GPUs
/// are needed).
pub(crate) fn covers(have: Resources, need: Resources) -> bool {
    have.gpus >= need.gpus
        && (need.gpus == 0 || have.gpu_memory_bytes >= need.gpu_memory_bytes)
        && have.cpu_millis >= need.cpu_millis
        && have.memory_bytes >= need.memory_bytes
}
