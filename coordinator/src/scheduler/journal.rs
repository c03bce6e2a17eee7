//! The ordered, group-committing write path to the store.
//!
//! The scheduler decides under its state lock and, still under the lock, appends the decision's
//! mutations here; a single task drains everything queued into one `Store::apply` call at a
//! time. So (1) the store sees decisions in exactly the order they were made — a lease of a
//! stage can never become durable before the completion of its input that made it ready — and
//! (2) concurrent decisions share one transaction (group commit). Each caller awaits its own
//! receipt before answering its client, so nothing is acknowledged before it is durable.
//!
//! A failed `apply` poisons the journal: every pending and later receipt fails, and the
//! coordinator stops (memory may now be ahead of disk; a restart reconciles from the store).

use crate::store::{Mutation, Store};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot, watch};

type Receipt = oneshot::Sender<Result<(), String>>;

/// Counters for benchmarks and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    pub batches: u64,
    pub mutations: u64,
    pub receipts: u64,
}

#[derive(Default)]
struct Queue {
    mutations: Vec<Mutation>,
    receipts: Vec<Receipt>,
    stats: JournalStats,
    poisoned: Option<String>,
}

/// The write path. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    fatal: watch::Sender<Option<String>>,
}

/// Waits for one submission to become durable.
pub struct Pending(Option<oneshot::Receiver<Result<(), String>>>);

impl Pending {
    /// Resolves when the mutations are durable; `Err` carries the store's failure.
    pub async fn durable(self) -> Result<(), String> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| Err("journal stopped".into())),
        }
    }
}

impl Journal {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Journal {
        let (fatal, _) = watch::channel(None);
        let journal = Journal {
            queue: Arc::new(Mutex::new(Queue::default())),
            wake: Arc::new(Notify::new()),
            fatal,
        };
        let writer = journal.clone();
        tokio::spawn(async move { writer.run(store).await });
        journal
    }

    /// Queues `mutations` (nothing to wait for if empty). Call it while holding the lock under
    /// which the mutations were decided.
    pub fn submit(&self, mutations: Vec<Mutation>) -> Pending {
        if mutations.is_empty() {
            return Pending(None);
        }
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock().expect("journal lock");
        if let Some(why) = &q.poisoned {
            let _ = tx.send(Err(why.clone()));
        } else {
            q.mutations.extend(mutations);
            q.receipts.push(tx);
            self.wake.notify_one();
        }
        Pending(Some(rx))
    }

    /// Becomes `Some(reason)` once a write has failed.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    pub fn stats(&self) -> JournalStats {
        self.queue.lock().expect("journal lock").stats
    }

    async fn run(self, store: Arc<dyn Store>) {
        loop {
            self.wake.notified().await;
            loop {
                let (mutations, receipts) = {
                    let mut q = self.queue.lock().expect("journal lock");
                    if q.receipts.is_empty() {
                        break;
                    }
                    q.stats.batches += 1;
                    q.stats.mutations += q.mutations.len() as u64;
                    q.stats.receipts += q.receipts.len() as u64;
                    (std::mem::take(&mut q.mutations), std::mem::take(&mut q.receipts))
                };
                let result = store.apply(mutations).await.map_err(|e| e.to_string());
                if let Err(why) = &result {
                    tracing::error!(error = %why, "store write failed; the coordinator must restart");
                    let mut q = self.queue.lock().expect("journal lock");
                    q.poisoned = Some(why.clone());
                    for r in q.receipts.drain(..) {
                        let _ = r.send(Err(why.clone()));
                    }
                    q.mutations.clear();
                    let _ = self.fatal.send(Some(why.clone()));
                }
                for r in receipts {
                    let _ = r.send(result.clone());
                }
            }
        }
    }
}
