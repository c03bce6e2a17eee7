//! A store in memory: for unit tests and dry runs. Not durable — a process exit loses it.

use super::{Mutation, Snapshot, Store, StoreError, StoreFuture};
use crate::records::EventRecord;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Everything in maps, applied atomically under one lock.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sweeps: BTreeMap<String, crate::records::SweepRecord>,
    specs: BTreeMap<String, crate::records::StageSpec>,
    statuses: BTreeMap<String, crate::records::StageStatus>,
    links: std::collections::BTreeSet<(String, String)>,
    workers: BTreeMap<String, crate::records::WorkerRecord>,
    events: Vec<EventRecord>,
    applies: u64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of `apply` calls so far.
    pub fn applies(&self) -> u64 {
        self.inner.lock().expect("memory store lock").applies
    }
}

impl Store for MemoryStore {
    fn apply(&self, batch: Vec<Mutation>) -> StoreFuture<'_, ()> {
        let mut inner = self.inner.lock().expect("memory store lock");
        inner.applies += 1;
        for m in batch {
            match m {
                Mutation::PutSweep(s) => {
                    inner.sweeps.insert(s.id.clone(), s);
                }
                Mutation::SetSweepState { id, state } => {
                    if let Some(s) = inner.sweeps.get_mut(&id) {
                        s.state = state;
                    }
                }
                Mutation::InsertStage(s) => {
                    inner.specs.entry(s.id.clone()).or_insert(s);
                }
                Mutation::PutStatus(s) => {
                    inner.statuses.insert(s.id.clone(), s);
                }
                Mutation::LinkStages(links) => {
                    for l in links {
                        inner.links.insert((l.sweep_id, l.stage_id));
                    }
                }
                Mutation::PutWorker(w) => {
                    inner.workers.insert(w.id.clone(), w);
                }
                Mutation::AppendEvents(events) => inner.events.extend(events),
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn load(&self) -> StoreFuture<'_, Snapshot> {
        let inner = self.inner.lock().expect("memory store lock");
        let snap = Snapshot {
            sweeps: inner.sweeps.values().cloned().collect(),
            specs: inner.specs.values().cloned().collect(),
            statuses: inner.statuses.values().cloned().collect(),
            links: inner
                .links
                .iter()
                .map(|(s, t)| crate::records::SweepStage {
                    sweep_id: s.clone(),
                    stage_id: t.clone(),
                })
                .collect(),
            workers: inner.workers.values().cloned().collect(),
            last_event_seq: inner.events.iter().map(|e| e.seq).max().unwrap_or(0),
        };
        Box::pin(async move { Ok(snap) })
    }

    fn events(&self, sweep_id: &str, after: u64, limit: u32) -> StoreFuture<'_, Vec<EventRecord>> {
        let inner = self.inner.lock().expect("memory store lock");
        let mut out: Vec<EventRecord> = inner
            .events
            .iter()
            .filter(|e| e.sweep_id == sweep_id && e.seq > after)
            .cloned()
            .collect();
        out.sort_by_key(|e| e.seq);
        out.truncate(limit as usize);
        Box::pin(async move { Ok::<_, StoreError>(out) })
    }

    fn describe(&self) -> String {
        "memory (not durable)".into()
    }
}
