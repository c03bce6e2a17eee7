//! Bookkeeping shared by the SQLite and Postgres group-commit writers.

use super::Write;
use crate::store::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// What a group-commit writer has done so far; for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions attempted (committed or failed), each holding one or more `apply` calls.
    pub batches: u64,
    /// `apply` calls answered.
    pub calls: u64,
    /// Most calls seen in one transaction.
    pub largest_batch: u64,
    /// Batches that failed (each failing all of its calls).
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    batches: AtomicU64,
    calls: AtomicU64,
    largest_batch: AtomicU64,
    failed_batches: AtomicU64,
}

impl StatsCell {
    pub(crate) fn get(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// One `apply` call waiting for its group's commit.
pub(crate) struct ApplyRequest {
    pub writes: Vec<Write>,
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Most calls one transaction takes, so one commit's latency stays bounded under a flood.
pub(crate) const MAX_GROUP_CALLS: usize = 1024;
/// Most statement executions one transaction takes (a single larger call still goes alone).
pub(crate) const MAX_GROUP_WRITES: usize = 32_768;
/// Calls that may wait for the writer before `apply` itself waits (back-pressure).
pub(crate) const QUEUE_DEPTH: usize = 4096;

/// Starts a group with `first`, then takes whatever `next` yields without waiting, within the
/// caps. `next` returns `None` when nothing more is queued (or it must stop for another reason).
pub(crate) fn gather(
    first: ApplyRequest,
    mut next: impl FnMut() -> Option<ApplyRequest>,
) -> Vec<ApplyRequest> {
    let mut writes = first.writes.len();
    let mut group = vec![first];
    while group.len() < MAX_GROUP_CALLS && writes < MAX_GROUP_WRITES {
        let Some(req) = next() else { break };
        writes += req.writes.len();
        group.push(req);
    }
    group
}

/// Answers every call of a group with the group's outcome, and counts it.
pub(crate) fn answer(group: Vec<ApplyRequest>, outcome: Result<(), StoreError>, stats: &StatsCell) {
    let n = group.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.calls.fetch_add(n, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    if outcome.is_err() {
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    for req in group {
        let reply = match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(duplicate(e)),
        };
        // A caller that stopped waiting (its future was dropped) needs no answer.
        let _ = req.reply.send(reply);
    }
}

/// `StoreError` is not `Clone` (it is part of the shared interface); every caller of a failed
/// group gets its own copy.
fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend(s) => StoreError::Backend(s.clone()),
        StoreError::Corrupt { table, why } => StoreError::Corrupt { table, why: why.clone() },
        StoreError::SchemaTooNew { found, supported } => {
            StoreError::SchemaTooNew { found: *found, supported: *supported }
        }
        StoreError::Closed => StoreError::Closed,
    }
}
