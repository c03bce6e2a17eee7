//! SQLite store (embedded default).
//!
//! One dedicated thread owns the writing connection and commits in groups: it takes one
//! `apply` call, then every call already queued behind it (up to 1,024 calls),
//! runs them all in one transaction and answers each caller once that transaction is on disk.
//! The expensive part of a commit is the fsync, so one fsync serves many callers.
//!
//! The database runs in WAL mode with `synchronous=FULL`: every commit is fsynced before
//! `apply` returns, so a power loss never loses a decision the scheduler already announced.
//! (`NORMAL` would skip that fsync and could lose the last commits on power loss — the very
//! thing the store exists to prevent; group commit already amortises the cost.)
//!
//! Reads of a file database use a second, read-only connection, so `load` and `events` never
//! wait behind a commit. An in-memory database has a single connection, so its reads are
//! queued on the writer thread.

use super::sql::{
    self, ApplyRequest, Dialect, Op, SchemaAction, SqlRow, SqlValue, StatsCell, WriterStats,
};
use super::{Mutation, Snapshot, Store, StoreError, StoreFuture};
use crate::records::EventRecord;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a connection waits for a lock held by another connection (another process on
/// the same file, or the reader during a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Command {
    Apply(ApplyRequest),
    /// Only for in-memory databases, which have no separate reader.
    Read(ReadJob),
}

enum Reader {
    Own(Arc<Mutex<Connection>>),
    ViaWriter,
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    /// `None` only while dropping: closing the queue is what stops the writer thread.
    queue: Option<mpsc::Sender<Command>>,
    reader: Reader,
    stats: Arc<StatsCell>,
    writer: Option<JoinHandle<()>>,
    description: String,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, creating or checking the
    /// schema. Blocks while doing so; call it from `spawn_blocking` in async code.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still correct (rollback journal), only slower and with readers blocking writers.
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
        init_schema(&mut conn)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let description = format!("sqlite:{}", path.display());
        Self::start(conn, Reader::Own(Arc::new(Mutex::new(reader))), description)
    }

    /// A private database in memory, lost on drop (tests, dry runs).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(backend)?;
        init_schema(&mut conn)?;
        Self::start(conn, Reader::ViaWriter, "sqlite::memory:".to_string())
    }

    fn start(conn: Connection, reader: Reader, description: String) -> Result<Self, StoreError> {
        let (queue, rx) = mpsc::channel(sql::QUEUE_DEPTH);
        let stats = Arc::new(StatsCell::default());
        let thread_stats = stats.clone();
        let writer = std::thread::Builder::new()
            .name("wax-sqlite-writer".into())
            .spawn(move || run_writer(conn, rx, &thread_stats))
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(SqliteStore { queue: Some(queue), reader, stats, writer: Some(writer), description })
    }

    /// What the writer has done so far (batches, calls, largest group).
    pub fn stats(&self) -> WriterStats {
        self.stats.get()
    }

    async fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.send(cmd).await.map_err(|_| StoreError::Closed)
    }

    async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.reader {
            Reader::Own(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let guard = conn
                        .lock()
                        .map_err(|_| StoreError::Backend("sqlite: reader lock poisoned".into()))?;
                    job(&guard)
                })
                .await
                .map_err(|e| StoreError::Backend(format!("sqlite: read task failed: {e}")))?
            }
            Reader::ViaWriter => {
                let (reply, rx) = oneshot::channel();
                self.send(Command::Read(Box::new(move |conn| {
                    let _ = reply.send(job(conn));
                })))
                .await?;
                rx.await.map_err(|_| StoreError::Closed)?
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // No `apply` can be in flight (each borrows the store), so the writer only has to
        // finish the group it holds; waiting for it means the file is closed on return and
        // can be reopened at once.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Store for SqliteStore {
    fn apply(&self, batch: Vec<Mutation>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            // Encoding here keeps the single writer thread busy with SQL only.
            let writes = sql::encode(&batch)?;
            let (reply, answer) = oneshot::channel();
            self.send(Command::Apply(ApplyRequest { writes, reply })).await?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn load(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(self.read(read_snapshot))
    }

    fn events(&self, sweep_id: &str, after: u64, limit: u32) -> StoreFuture<'_, Vec<EventRecord>> {
        let sweep_id = sweep_id.to_string();
        Box::pin(self.read(move |conn| read_events(conn, &sweep_id, after, limit)))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

fn init_schema(conn: &mut Connection) -> Result<(), StoreError> {
    let d = Dialect::Sqlite;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    tx.execute_batch(&sql::create_meta(d)).map_err(backend)?;
    let stored: Option<String> = tx
        .query_row(&sql::select_version(d), [sql::SCHEMA_VERSION_KEY], |row| row.get(0))
        .optional()
        .map_err(|e| StoreError::Corrupt { table: sql::META_TABLE, why: e.to_string() })?;
    match sql::schema_action(stored)? {
        SchemaAction::Ready => {}
        SchemaAction::Create => {
            for stmt in sql::create_schema(d) {
                tx.execute_batch(&stmt).map_err(backend)?;
            }
            let version = sql::SCHEMA_VERSION.to_string();
            tx.execute(&sql::insert_version(d), [sql::SCHEMA_VERSION_KEY, version.as_str()])
                .map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)
}

fn run_writer(mut conn: Connection, mut rx: mpsc::Receiver<Command>, stats: &StatsCell) {
    let statements: Vec<String> = Op::ALL.iter().map(|op| op.statement(Dialect::Sqlite)).collect();
    // A read found while gathering a group runs right after that group's commit.
    let mut deferred: Option<Command> = None;
    loop {
        let cmd = match deferred.take() {
            Some(cmd) => cmd,
            None => match rx.blocking_recv() {
                Some(cmd) => cmd,
                None => return,
            },
        };
        match cmd {
            Command::Read(job) => job(&conn),
            Command::Apply(first) => {
                let group = sql::gather(first, || match rx.try_recv() {
                    Ok(Command::Apply(req)) => Some(req),
                    Ok(other) => {
                        deferred = Some(other);
                        None
                    }
                    Err(_) => None,
                });
                let outcome = commit(&mut conn, &statements, &group);
                sql::answer(group, outcome, stats);
            }
        }
    }
}

fn commit(
    conn: &mut Connection,
    statements: &[String],
    group: &[ApplyRequest],
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so a concurrent writer in another process makes
    // us wait (busy timeout) at BEGIN rather than fail half-way through.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    for write in group.iter().flat_map(|req| &req.writes) {
        let text = statements
            .get(write.op.index())
            .ok_or_else(|| StoreError::Backend(format!("no statement for {:?}", write.op)))?;
        let mut stmt = tx.prepare_cached(text).map_err(backend)?;
        stmt.execute(rusqlite::params_from_iter(write.values.iter())).map_err(backend)?;
    }
    // Dropping `tx` on an error above rolls the whole group back.
    tx.commit().map_err(backend)
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Int(None) | SqlValue::Text(None) => ToSqlOutput::Owned(Value::Null),
            SqlValue::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            SqlValue::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        })
    }
}

impl SqlRow for rusqlite::Row<'_> {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        self.get(idx).map_err(|e| e.to_string())
    }
    fn text(&self, idx: usize) -> Result<Option<String>, String> {
        self.get(idx).map_err(|e| e.to_string())
    }
    fn boolean(&self, idx: usize) -> Result<bool, String> {
        match self.get::<_, i64>(idx).map_err(|e| e.to_string())? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("{v} is not a boolean")),
        }
    }
}

fn query<T>(
    conn: &Connection,
    text: &str,
    params: impl rusqlite::Params,
    decode: fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(text).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn read_snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    // One read transaction: the snapshot is consistent even while the writer commits.
    let tx = conn.unchecked_transaction().map_err(backend)?;
    let max_seq: Option<i64> =
        tx.query_row(&sql::Selects::max_seq(), (), |row| row.get(0)).map_err(backend)?;
    let snapshot = Snapshot {
        sweeps: query(&tx, &sql::Selects::sweeps(), (), |r| sql::decode_sweep(r))?,
        specs: query(&tx, &sql::Selects::specs(), (), |r| sql::decode_spec(r))?,
        statuses: query(&tx, &sql::Selects::statuses(), (), |r| sql::decode_status(r))?,
        links: query(&tx, &sql::Selects::links(), (), |r| sql::decode_link(r))?,
        workers: query(&tx, &sql::Selects::workers(), (), |r| sql::decode_worker(r))?,
        last_event_seq: sql::decode_max_seq(max_seq)?,
    };
    tx.finish().map_err(backend)?;
    Ok(snapshot)
}

fn read_events(
    conn: &Connection,
    sweep_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    // No stored seq exceeds i64::MAX, so clamping `after` loses nothing.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    query(
        conn,
        &sql::Selects::events(Dialect::Sqlite),
        rusqlite::params![sweep_id, after, i64::from(limit)],
        |r| sql::decode_event(r),
    )
}
