//! The scheduler's operations on [`State`]: each takes the clock value, changes memory, and
//! leaves the durable consequences in an [`Effects`].

use super::state::{Counts, Effects, Ix, Stall, State, Worker, covers, sub};
use crate::plan::Plan;
use crate::records::{
    ArtifactFile, Millis, Resources, StageSpec, StageState, StageStatus, SweepRecord, SweepStage,
    SweepState, WorkerRecord,
};
use crate::store::Mutation;
use std::collections::HashMap;
use std::sync::Arc;

/// Why an operation was refused. The service layer maps these to gRPC statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    /// A stale or foreign lease: the caller must drop its work.
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    Invalid(String),
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmitOutcome {
    pub stages: u32,
    pub cached: u32,
    pub scheduled: u32,
    pub shared: u32,
}

/// A granted lease.
#[derive(Debug, Clone)]
pub struct Granted {
    pub spec: Arc<StageSpec>,
    pub epoch: u64,
    pub expires_ms: Millis,
    /// Inputs: (spec, canonical attempt, files).
    pub inputs: Vec<(Arc<StageSpec>, u64, Vec<ArtifactFile>)>,
}

/// Which budget a failure is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Stage,
    Infrastructure,
    /// The holder gave the lease back unfinished (draining): requeued at once, not charged.
    Released,
}

impl State {
    /// Adds a planned sweep. Committed stages are cache hits; failed or cancelled ones are
    /// revived with fresh budgets; new ones become Ready or Pending.
    pub fn submit(
        &mut self,
        record: SweepRecord,
        plan: &Plan,
        now: Millis,
        fx: &mut Effects,
    ) -> SubmitOutcome {
        let s = self.sweeps.len() as u32;
        self.sweep_by_id.insert(record.id.clone(), s);
        self.sweeps.push(super::state::Sweep {
            record,
            stages: Vec::new(),
            counts: Counts::default(),
            stall: None,
        });
        let mut out =
            SubmitOutcome { stages: plan.stages.len() as u32, ..SubmitOutcome::default() };
        let mut links = Vec::with_capacity(plan.stages.len());
        for spec in &plan.stages {
            let ix = match self.by_id.get(&spec.id) {
                Some(&ix) => ix,
                None => {
                    fx.mutations.push(Mutation::InsertStage(spec.clone()));
                    let status = StageStatus::new(spec.id.clone(), StageState::Pending, now);
                    let ix = self.add_stage(Arc::new(spec.clone()), status);
                    fx_dirty_new(self, ix, now, fx);
                    ix
                }
            };
            links.push(SweepStage {
                sweep_id: self.sweeps[s as usize].record.id.clone(),
                stage_id: spec.id.clone(),
            });
            let stage = &mut self.stages[ix as usize];
            let state = stage.status.state;
            if !stage.sweeps.contains(&s) {
                stage.sweeps.push(s);
                self.sweeps[s as usize].stages.push(ix);
                self.sweeps[s as usize].counts = {
                    let mut c = self.sweeps[s as usize].counts;
                    bump(&mut c, state);
                    c
                };
            }
            match state {
                StageState::Succeeded => out.cached += 1,
                StageState::Failed | StageState::Cancelled => {
                    self.revive(ix, now, fx);
                    out.scheduled += 1;
                }
                _ if is_new(self, ix, fx) => out.scheduled += 1,
                _ => out.shared += 1,
            }
            self.reprioritise(ix, now);
        }
        self.sweeps[s as usize].record.cached = out.cached;
        // The sweep record (first) and the links must precede the status rows that mention it.
        let record = self.sweeps[s as usize].record.clone();
        fx.mutations.insert(0, Mutation::PutSweep(record));
        fx.mutations.push(Mutation::LinkStages(links));
        let msg = format!(
            "{} trials, {} stages: {} cached, {} scheduled, {} shared with other sweeps",
            plan.trials.len(),
            out.stages,
            out.cached,
            out.scheduled,
            out.shared
        );
        self.event(s, "submitted", None, msg, true, now, fx);
        fx.dirty_sweep(s);
        self.finish(now, fx);
        out
    }

    /// Gives a failed or cancelled stage a fresh start.
    fn revive(&mut self, ix: Ix, now: Millis, fx: &mut Effects) {
        let status = &mut self.stages[ix as usize].status;
        status.stage_failures = 0;
        status.infra_failures = 0;
        status.not_before_ms = 0;
        status.cancel_requested = false;
        status.last_error = None;
        let to = if self.inputs_done(ix) { StageState::Ready } else { StageState::Pending };
        self.set_state(ix, to, now, fx);
    }

    /// Registers a worker (or refreshes one that registers again under the same id).
    pub fn register(&mut self, record: WorkerRecord, now: Millis, fx: &mut Effects) {
        let free = record.resources;
        fx.mutations.push(Mutation::PutWorker(record.clone()));
        let old = self
            .workers
            .insert(record.id.clone(), Worker { record, leased: Vec::new(), free, last_seen: now });
        if let Some(old) = old {
            // Re-registration means the worker restarted: its old leases are lost.
            for ix in old.leased {
                self.lose_lease(ix, "worker re-registered (restarted)", now, fx);
            }
        }
        fx.wake = true;
    }

    /// Notes that a worker is alive.
    pub fn touch(&mut self, worker: &str, now: Millis) -> Result<(), OpError> {
        let w = self.workers.get_mut(worker).ok_or_else(|| unknown_worker(worker))?;
        w.last_seen = now;
        Ok(())
    }

    /// The best Ready stage this worker can run now, leased to it.
    pub fn lease(
        &mut self,
        worker: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<Option<Granted>, OpError> {
        self.promote_delayed(now, fx);
        // Asking for work (even when none comes) proves the worker alive.
        self.touch(worker, now)?;
        let w = self.workers.get(worker).ok_or_else(|| unknown_worker(worker))?;
        if w.leased.len() as u32 >= w.record.max_concurrent_tasks.max(1) {
            return Ok(None);
        }
        let mut best: Option<(std::cmp::Reverse<i64>, u64, Ix)> = None;
        for (kind, version) in &w.record.kinds {
            let Some(queue) = self.ready.get(kind) else { continue };
            // Look past a few entries that do not fit (other GPU sizes, sweep limits).
            for &(p, seq, ix) in queue.iter().take(64) {
                let stage = &self.stages[ix as usize];
                if stage.spec.schema_version != *version || !covers(w.free, stage.spec.resources) {
                    continue;
                }
                if !self.within_sweep_limits(ix) {
                    continue;
                }
                if best.is_none_or(|b| (p, seq) < (b.0, b.1)) {
                    best = Some((p, seq, ix));
                }
                break;
            }
        }
        let Some((_, _, ix)) = best else { return Ok(None) };
        let expires = now + self.cfg.lease_ttl.as_millis() as u64;
        self.set_state(ix, StageState::Leased, now, fx);
        let need = self.stages[ix as usize].spec.resources;
        let stage = &mut self.stages[ix as usize];
        stage.status.epoch += 1;
        stage.status.lease_worker = Some(worker.to_string());
        stage.status.lease_expires_ms = Some(expires);
        stage.status.cancel_requested = false;
        let epoch = stage.status.epoch;
        self.leases.insert((expires, ix));
        let w = self.workers.get_mut(worker).expect("checked above");
        w.leased.push(ix);
        w.free = sub(w.free, need);
        w.last_seen = now;
        for s in self.stages[ix as usize].sweeps.clone() {
            if self.sweeps[s as usize].stall.take().is_some_and(|st| st.reported) {
                self.event(s, "unstalled", None, format!("{worker} took a stage"), true, now, fx);
            }
            self.event(
                s,
                "leased",
                Some(ix),
                format!("attempt {epoch} on {worker}"),
                false,
                now,
                fx,
            );
        }
        let inputs = self.stages[ix as usize]
            .inputs
            .iter()
            .map(|&i| {
                let st = &self.stages[i as usize];
                (
                    st.spec.clone(),
                    st.status.committed_attempt.unwrap_or(0),
                    st.status.committed_files.clone(),
                )
            })
            .collect();
        self.finish(now, fx);
        Ok(Some(Granted {
            spec: self.stages[ix as usize].spec.clone(),
            epoch,
            expires_ms: expires,
            inputs,
        }))
    }

    /// Every running sweep of the stage has room under its `max_concurrent`.
    fn within_sweep_limits(&self, ix: Ix) -> bool {
        self.stages[ix as usize].sweeps.iter().all(|&s| {
            let sw = &self.sweeps[s as usize];
            sw.record.state != SweepState::Running
                || sw.record.max_concurrent == 0
                || sw.counts.leased < sw.record.max_concurrent
        })
    }

    /// The stage held by `worker` under `epoch`, or why not.
    fn held(&self, worker: &str, stage_id: &str, epoch: u64) -> Result<Ix, OpError> {
        let &ix = self
            .by_id
            .get(stage_id)
            .ok_or_else(|| OpError::NotFound(format!("unknown stage {stage_id}")))?;
        let st = &self.stages[ix as usize].status;
        if st.state != StageState::Leased
            || st.epoch != epoch
            || st.lease_worker.as_deref() != Some(worker)
        {
            return Err(OpError::Stale(format!(
                "stale lease on stage {}: you hold epoch {epoch}; the stage is {} at epoch {}{}",
                short(stage_id),
                st.state.as_str(),
                st.epoch,
                st.lease_worker.as_ref().map_or(String::new(), |w| format!(" held by {w}")),
            )));
        }
        Ok(ix)
    }

    /// Extends a lease; answers whether the task should stop, and the new expiry.
    pub fn heartbeat(
        &mut self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        report: Option<super::state::Progress>,
        now: Millis,
    ) -> Result<(bool, Millis), OpError> {
        self.touch(worker, now)?;
        let ix = self.held(worker, stage_id, epoch)?;
        let expires = now + self.cfg.lease_ttl.as_millis() as u64;
        let st = &mut self.stages[ix as usize].status;
        if let Some(old) = st.lease_expires_ms.replace(expires) {
            self.leases.remove(&(old, ix));
        }
        self.leases.insert((expires, ix));
        if let Some(report) = report {
            self.progress.insert(ix, report);
        }
        // Heartbeats are not journaled: after a restart every lease gets a fresh TTL anyway.
        Ok((self.stages[ix as usize].status.cancel_requested, expires))
    }

    /// Commits a stage's output. Idempotent for the epoch that was committed.
    pub fn complete(
        &mut self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        files: Vec<ArtifactFile>,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<(bool, u64), OpError> {
        self.touch(worker, now)?;
        if let Some(&ix) = self.by_id.get(stage_id) {
            let st = &self.stages[ix as usize].status;
            if st.state == StageState::Succeeded && st.committed_attempt == Some(epoch) {
                return Ok((true, epoch));
            }
        }
        let ix = self.held(worker, stage_id, epoch)?;
        let status = &mut self.stages[ix as usize].status;
        status.committed_attempt = Some(epoch);
        status.committed_files = files;
        status.cancel_requested = false;
        self.set_state(ix, StageState::Succeeded, now, fx);
        for s in self.stages[ix as usize].sweeps.clone() {
            self.event(
                s,
                "succeeded",
                Some(ix),
                format!("attempt {epoch} committed"),
                // Live only: a stage's success is already durable in its status, and a
                // hundred-thousand-stage sweep should not also write a hundred thousand event
                // rows. Failures, retries, cancellations and sweep-level events are stored.
                false,
                now,
                fx,
            );
        }
        for d in self.stages[ix as usize].dependents.clone() {
            if self.stages[d as usize].status.state == StageState::Pending && self.inputs_done(d) {
                self.set_state(d, StageState::Ready, now, fx);
            }
        }
        self.finish(now, fx);
        Ok((false, epoch))
    }

    /// Records a failed attempt; retries within budget after a backoff, else fails the stage
    /// and everything downstream of it.
    pub fn fail(
        &mut self,
        worker: &str,
        stage_id: &str,
        epoch: u64,
        kind: FailureKind,
        retryable: bool,
        reason: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<Option<Millis>, OpError> {
        self.touch(worker, now)?;
        let ix = self.held(worker, stage_id, epoch)?;
        let retry_at = self.charge(
            ix,
            kind,
            retryable,
            &format!("attempt {epoch} on {worker}: {reason}"),
            now,
            fx,
        );
        self.finish(now, fx);
        Ok(retry_at)
    }

    /// Charges one failure to a stage; returns when it will be retried, if it will.
    fn charge(
        &mut self,
        ix: Ix,
        kind: FailureKind,
        retryable: bool,
        why: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Option<Millis> {
        let stage = &mut self.stages[ix as usize];
        let status = &mut stage.status;
        status.last_error = Some(why.to_string());
        if status.cancel_requested {
            self.set_state(ix, StageState::Cancelled, now, fx);
            for s in self.stages[ix as usize].sweeps.clone() {
                self.event(s, "cancelled", Some(ix), format!("stopped: {why}"), true, now, fx);
            }
            return None;
        }
        let (count, budget) = match kind {
            FailureKind::Released => {
                self.stages[ix as usize].status.not_before_ms = now;
                self.set_state(ix, StageState::Ready, now, fx);
                for s in self.stages[ix as usize].sweeps.clone() {
                    self.event(s, "released", Some(ix), why.to_string(), true, now, fx);
                }
                return Some(now);
            }
            FailureKind::Stage => {
                status.stage_failures += 1;
                (status.stage_failures, self.cfg.stage_error_budget)
            }
            FailureKind::Infrastructure => {
                status.infra_failures += 1;
                (status.infra_failures, self.cfg.infra_failure_budget)
            }
        };
        if retryable && count <= budget {
            let at = now + self.cfg.backoff(count).as_millis() as u64;
            self.stages[ix as usize].status.not_before_ms = at;
            self.set_state(ix, StageState::Ready, now, fx);
            let label =
                if kind == FailureKind::Stage { "stage error" } else { "infrastructure failure" };
            for s in self.stages[ix as usize].sweeps.clone() {
                let msg = format!("{label} {count}/{budget}, retry in {} ms: {why}", at - now);
                self.event(s, "retrying", Some(ix), msg, true, now, fx);
            }
            Some(at)
        } else {
            self.fail_for_good(ix, why, now, fx);
            None
        }
    }

    fn fail_for_good(&mut self, ix: Ix, why: &str, now: Millis, fx: &mut Effects) {
        self.set_state(ix, StageState::Failed, now, fx);
        for s in self.stages[ix as usize].sweeps.clone() {
            self.event(s, "failed", Some(ix), why.to_string(), true, now, fx);
        }
        // Whatever waits on it can never run: fail it too, naming the cause.
        let mut stack = self.stages[ix as usize].dependents.clone();
        let cause = format!(
            "input {} {} failed",
            self.stages[ix as usize].spec.kind,
            short(&self.stages[ix as usize].spec.id)
        );
        while let Some(d) = stack.pop() {
            if self.stages[d as usize].status.state == StageState::Pending {
                self.stages[d as usize].status.last_error = Some(cause.clone());
                self.set_state(d, StageState::Failed, now, fx);
                stack.extend(self.stages[d as usize].dependents.iter().copied());
            }
        }
    }

    /// A lease that ended without a result (expired, or its worker restarted).
    fn lose_lease(&mut self, ix: Ix, why: &str, now: Millis, fx: &mut Effects) {
        let holder = self.stages[ix as usize].status.lease_worker.clone().unwrap_or_default();
        let epoch = self.stages[ix as usize].status.epoch;
        self.charge(
            ix,
            FailureKind::Infrastructure,
            true,
            &format!("attempt {epoch} on {holder}: {why}"),
            now,
            fx,
        );
    }

    /// Re-queues every lease whose holder stopped heartbeating.
    pub fn expire_leases(&mut self, now: Millis, fx: &mut Effects) {
        while let Some(&(exp, ix)) = self.leases.first() {
            if exp > now {
                break;
            }
            self.leases.remove(&(exp, ix));
            self.lose_lease(ix, "lease expired: no heartbeat", now, fx);
        }
        self.promote_delayed(now, fx);
        self.finish(now, fx);
    }

    /// Cancels a sweep: its stages that no other running sweep needs stop (running ones are
    /// told at their next heartbeat).
    pub fn cancel(
        &mut self,
        sweep_id: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<u32, OpError> {
        let s = self.sweep_ix(sweep_id)?;
        if self.sweeps[s as usize].record.state != SweepState::Running {
            return Ok(0);
        }
        self.sweeps[s as usize].record.state = SweepState::Cancelled;
        let id = self.sweeps[s as usize].record.id.clone();
        fx.mutations.push(Mutation::SetSweepState { id, state: SweepState::Cancelled });
        let mut cancelled = 0;
        for ix in self.sweeps[s as usize].stages.clone() {
            let needed_elsewhere = self.stages[ix as usize]
                .sweeps
                .iter()
                .any(|&o| o != s && self.sweeps[o as usize].record.state == SweepState::Running);
            if needed_elsewhere {
                self.reprioritise(ix, now);
                continue;
            }
            match self.stages[ix as usize].status.state {
                StageState::Pending | StageState::Ready => {
                    self.set_state(ix, StageState::Cancelled, now, fx);
                    cancelled += 1;
                }
                StageState::Leased => {
                    self.stages[ix as usize].status.cancel_requested = true;
                    fx_dirty(fx, ix);
                    cancelled += 1;
                }
                _ => {}
            }
        }
        self.event(s, "cancelled", None, format!("{cancelled} stages cancelled"), true, now, fx);
        self.finish(now, fx);
        Ok(cancelled)
    }

    /// Requeues a sweep's failed stages with fresh budgets.
    pub fn retry_failed(
        &mut self,
        sweep_id: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<u32, OpError> {
        let s = self.sweep_ix(sweep_id)?;
        if self.sweeps[s as usize].record.state == SweepState::Cancelled {
            return Err(OpError::Invalid(format!(
                "sweep {sweep_id} was cancelled; submit it again instead"
            )));
        }
        let mut failed: Vec<Ix> = self.sweeps[s as usize]
            .stages
            .iter()
            .copied()
            .filter(|&ix| self.stages[ix as usize].status.state == StageState::Failed)
            .collect();
        // Inputs before dependents, so that dependents see their revived inputs.
        failed.sort_by_key(|&ix| self.stages[ix as usize].spec.priority);
        for &ix in &failed {
            self.revive(ix, now, fx);
        }
        if !failed.is_empty() {
            self.event(
                s,
                "retrying",
                None,
                format!("{} failed stages requeued", failed.len()),
                true,
                now,
                fx,
            );
        }
        fx.dirty_sweep(s);
        self.finish(now, fx);
        Ok(failed.len() as u32)
    }

    pub fn sweep_ix(&self, sweep_id: &str) -> Result<u32, OpError> {
        self.sweep_by_id
            .get(sweep_id)
            .copied()
            .ok_or_else(|| OpError::NotFound(format!("unknown sweep {sweep_id}")))
    }

    /// Finds running sweeps with Ready stages that no live worker could ever take, and reports
    /// them after the grace period (and when they recover).
    pub fn check_stalls(&mut self, now: Millis, fx: &mut Effects) {
        let live: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| {
                now.saturating_sub(w.last_seen) <= self.cfg.worker_timeout.as_millis() as u64
            })
            .collect();
        let mut verdicts: HashMap<(String, u32, Resources), Option<String>> = HashMap::new();
        let mut stuck: HashMap<u32, Vec<String>> = HashMap::new();
        let ready_ix = self.ready.values().flat_map(|q| q.iter().map(|&(_, _, ix)| ix));
        let delayed_ix = self.delayed.iter().map(|&(_, ix)| ix);
        for ix in ready_ix.chain(delayed_ix) {
            let spec = &self.stages[ix as usize].spec;
            let key = (spec.kind.clone(), spec.schema_version, spec.resources);
            let verdict =
                verdicts.entry(key).or_insert_with(|| why_unrunnable(&live, spec)).clone();
            if let Some(reason) = verdict {
                for &s in &self.stages[ix as usize].sweeps {
                    let reasons = stuck.entry(s).or_default();
                    if !reasons.contains(&reason) {
                        reasons.push(reason.clone());
                    }
                }
            }
        }
        let grace = self.cfg.stall_grace.as_millis() as u64;
        for s in 0..self.sweeps.len() as u32 {
            if self.sweeps[s as usize].record.state != SweepState::Running {
                self.sweeps[s as usize].stall = None;
                continue;
            }
            match (stuck.remove(&s), self.sweeps[s as usize].stall.take()) {
                (Some(reasons), None) => {
                    self.sweeps[s as usize].stall =
                        Some(Stall { since: now, reasons, reported: false });
                }
                (Some(reasons), Some(mut st)) => {
                    let report = !st.reported && now.saturating_sub(st.since) >= grace;
                    st.reported |= report;
                    st.reasons = reasons;
                    let msg = st.reasons.join("; ");
                    self.sweeps[s as usize].stall = Some(st);
                    if report {
                        self.event(s, "stalled", None, msg, true, now, fx);
                    }
                }
                (None, Some(st)) if st.reported => {
                    self.event(
                        s,
                        "unstalled",
                        None,
                        "a capable worker is available again".into(),
                        true,
                        now,
                        fx,
                    );
                }
                (None, _) => {}
            }
        }
    }
}

/// Why no live worker can run `spec`, or `None` if one can.
fn why_unrunnable(live: &[&Worker], spec: &StageSpec) -> Option<String> {
    if live.is_empty() {
        return Some(format!("no live workers to run `{}` stages", spec.kind));
    }
    let with_kind: Vec<&&Worker> =
        live.iter().filter(|w| w.record.kinds.iter().any(|(k, _)| *k == spec.kind)).collect();
    if with_kind.is_empty() {
        return Some(format!(
            "no live worker offers stage kind `{}` ({} live workers)",
            spec.kind,
            live.len()
        ));
    }
    let versioned: Vec<&&&Worker> = with_kind
        .iter()
        .filter(|w| {
            w.record.kinds.iter().any(|(k, v)| *k == spec.kind && *v == spec.schema_version)
        })
        .collect();
    if versioned.is_empty() {
        let theirs: Vec<String> = with_kind
            .iter()
            .flat_map(|w| {
                w.record.kinds.iter().filter(|(k, _)| *k == spec.kind).map(|(_, v)| v.to_string())
            })
            .collect();
        return Some(format!(
            "`{}` stages need schema version {}, live workers implement {}",
            spec.kind,
            spec.schema_version,
            theirs.join(", ")
        ));
    }
    if versioned.iter().any(|w| covers(w.record.resources, spec.resources)) {
        return None;
    }
    let r = spec.resources;
    Some(format!(
        "`{}` stages need {} GPU(s) with {} GiB, {} CPU cores and {} GiB RAM; no live worker that runs them is that large",
        spec.kind,
        r.gpus,
        r.gpu_memory_bytes >> 30,
        f64::from(r.cpu_millis) / 1000.0,
        r.memory_bytes >> 30
    ))
}

fn unknown_worker(worker: &str) -> OpError {
    OpError::NotFound(format!("unknown worker {worker}: register again"))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn bump(c: &mut Counts, s: StageState) {
    match s {
        StageState::Pending => c.pending += 1,
        StageState::Ready => c.ready += 1,
        StageState::Leased => c.leased += 1,
        StageState::Succeeded => c.succeeded += 1,
        StageState::Failed => c.failed += 1,
        StageState::Cancelled => c.cancelled += 1,
    }
}

/// A freshly added stage starts Pending; make it Ready if its inputs are done.
fn fx_dirty_new(st: &mut State, ix: Ix, now: Millis, fx: &mut Effects) {
    fx.mark_new(ix);
    if st.inputs_done(ix) {
        st.set_state(ix, StageState::Ready, now, fx);
    } else {
        fx_dirty(fx, ix);
    }
}

fn fx_dirty(fx: &mut Effects, ix: Ix) {
    fx.mark_dirty(ix);
}

fn is_new(_st: &State, ix: Ix, fx: &Effects) -> bool {
    fx.is_new(ix)
}
