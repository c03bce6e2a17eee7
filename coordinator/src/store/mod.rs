//! Durable state behind one trait, with two implementations: SQLite (embedded default) and
//! Postgres (cluster).
//!
//! The store is a write-ahead log of the scheduler's decisions: the scheduler decides in
//! memory, hands the resulting [`Mutation`]s to [`Store::apply`], and answers its caller only
//! after that batch is durable. Implementations apply one call's mutations atomically (one
//! transaction) and may group concurrent calls into one transaction (group commit) — that is
//! what makes thousands of durable lease/complete operations per second possible.
//!
//! On start the coordinator reads everything back with [`Store::load`] and rebuilds its state.

use crate::records::{
    EventRecord, Millis, StageSpec, StageStatus, SweepRecord, SweepStage, SweepState, WorkerRecord,
};
use std::future::Future;
use std::pin::Pin;

pub mod memory;
pub mod postgres;
pub mod sql;
pub mod sqlite;
pub mod testing;

/// One durable change.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert a sweep, or replace it.
    PutSweep(SweepRecord),
    /// Change only a sweep's state (its manifest and plan can be large: never rewritten).
    SetSweepState { id: String, state: SweepState },
    /// Insert a stage's immutable spec; a no-op if the id exists (stages are content-addressed,
    /// so the same id always has the same spec).
    InsertStage(StageSpec),
    /// Insert or replace a stage's mutable status.
    PutStatus(StageStatus),
    /// Record that stages belong to a sweep (duplicates ignored).
    LinkStages(Vec<SweepStage>),
    /// Insert or replace a worker.
    PutWorker(WorkerRecord),
    /// Append events; their `seq` values are unique and increasing.
    AppendEvents(Vec<EventRecord>),
}

/// Everything the store holds, for a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub sweeps: Vec<SweepRecord>,
    pub specs: Vec<StageSpec>,
    pub statuses: Vec<StageStatus>,
    pub links: Vec<SweepStage>,
    pub workers: Vec<WorkerRecord>,
    /// Largest event sequence number stored (0 if none).
    pub last_event_seq: u64,
}

/// A store failure. The coordinator treats any failure of `apply` as fatal for the process
/// (memory may be ahead of disk): it stops and a restart reconciles from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("store: corrupt row in {table}: {why}")]
    Corrupt { table: &'static str, why: String },
    #[error("store schema version {found} is newer than this binary's {supported}: upgrade wax")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("store closed")]
    Closed,
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable state.
pub trait Store: Send + Sync + 'static {
    /// Applies the mutations atomically and durably, in order.
    fn apply(&self, batch: Vec<Mutation>) -> StoreFuture<'_, ()>;
    /// Reads everything back.
    fn load(&self) -> StoreFuture<'_, Snapshot>;
    /// Events of one sweep with `seq > after`, oldest first, at most `limit`.
    fn events(&self, sweep_id: &str, after: u64, limit: u32) -> StoreFuture<'_, Vec<EventRecord>>;
    /// A short description for logs ("sqlite:/path/db", "postgres://host/db").
    fn describe(&self) -> String;
}

/// Turns a `Millis` into the signed integer SQL stores use.
pub(crate) fn ms_to_sql(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The store URL forms [`open`] accepts, for error messages and help texts.
pub const STORE_URL_FORMS: &str =
    "sqlite:PATH, sqlite:///ABSOLUTE/PATH, sqlite::memory:, postgres://… or postgresql://…";

/// Opens the store a URL names: `sqlite:PATH` (relative or absolute), `sqlite:///ABSOLUTE/PATH`,
/// `sqlite::memory:` (private, lost on drop), or `postgres://…` / `postgresql://…` (any
/// libpq-style URL). Creates the schema on first use.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url == "sqlite::memory:" {
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::in_memory()?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(postgres::PostgresStore::connect(url).await?));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        if !rest.starts_with('/') {
            return Err(StoreError::Backend(format!(
                "store URL `{url}`: after sqlite:// comes an absolute path (sqlite:///var/lib/wax.db); \
                 write sqlite:{rest} for a relative one"
            )));
        }
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else {
        // Only the scheme is echoed: the rest may hold a password.
        let scheme = url.split(':').next().unwrap_or_default();
        return Err(StoreError::Backend(format!(
            "unsupported store URL (scheme `{scheme}`); expected one of: {STORE_URL_FORMS}"
        )));
    };
    if path.is_empty() {
        return Err(StoreError::Backend(format!(
            "store URL `{url}` names no file; expected one of: {STORE_URL_FORMS}"
        )));
    }
    let path = std::path::PathBuf::from(path);
    tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path))
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite: open task failed: {e}")))?
        .map(|store| std::sync::Arc::new(store) as std::sync::Arc<dyn Store>)
}
