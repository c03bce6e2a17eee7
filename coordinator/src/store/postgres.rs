//! Postgres store (cluster).
//!
//! A tokio task owns the writing connection and commits in groups, exactly like the SQLite
//! store: it takes one `apply` call plus every call already queued, sends all their statements
//! pipelined inside one transaction (one round trip for the lot, not one per statement), and
//! answers every caller after `COMMIT` returns. A second connection serves `load` and `events`,
//! so reads never queue behind commits.
//!
//! Durability is the server's: `apply` returns after `COMMIT` is acknowledged, which survives a
//! power loss when the server runs with `fsync=on` and `synchronous_commit=on` (its defaults).
//!
//! Connections are plain TCP ([`NoTls`]): run the coordinator next to its database or inside a
//! trusted network until TLS is wired in. A lost connection fails every later call with
//! [`StoreError::Backend`]; the coordinator then stops and its restart reconnects.

use super::sql::{
    self, ApplyRequest, Dialect, Op, SchemaAction, SqlRow, SqlValue, StatsCell, WriterStats,
};
use super::{Mutation, Snapshot, Store, StoreError, StoreFuture};
use crate::records::EventRecord;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Statement, Transaction};

/// Serialises schema creation between coordinators starting at once against one database
/// (`CREATE TABLE IF NOT EXISTS` is not safe against itself on Postgres). Any constant works;
/// this one spells "wax-schm".
const SCHEMA_LOCK: i64 = 0x7761_782d_7363_686d;

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("postgres: {e}"))
}

/// The Postgres implementation of [`Store`].
pub struct PostgresStore {
    queue: mpsc::Sender<ApplyRequest>,
    reader: Mutex<Reader>,
    stats: Arc<StatsCell>,
    description: String,
}

struct Reader {
    client: Client,
    events: Statement,
}

impl PostgresStore {
    /// Connects (two connections), creating or checking the schema.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let mut config: Config =
            url.parse().map_err(|e| StoreError::Backend(format!("invalid Postgres URL: {e}")))?;
        if config.get_application_name().is_none() {
            // Lets an operator tell wax's sessions apart in pg_stat_activity.
            config.application_name("wax-coordinator");
        }
        let description = describe(&config);
        let mut writer = connect_one(&config, "writer").await?;
        init_schema(&mut writer).await?;
        let mut statements = Vec::with_capacity(Op::ALL.len());
        for op in Op::ALL {
            statements.push(writer.prepare(&op.statement(Dialect::Postgres)).await.map_err(pg)?);
        }
        let reader = connect_one(&config, "reader").await?;
        let events = reader.prepare(&sql::Selects::events(Dialect::Postgres)).await.map_err(pg)?;
        let (queue, rx) = mpsc::channel(sql::QUEUE_DEPTH);
        let stats = Arc::new(StatsCell::default());
        tokio::spawn(run_writer(writer, statements, rx, stats.clone()));
        Ok(PostgresStore {
            queue,
            reader: Mutex::new(Reader { client: reader, events }),
            stats,
            description,
        })
    }

    /// What the writer has done so far (batches, calls, largest group).
    pub fn stats(&self) -> WriterStats {
        self.stats.get()
    }
}

/// `postgres://user@host:port/db`, never the password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

async fn connect_one(config: &Config, role: &'static str) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Backend(format!("postgres: cannot connect the {role}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(role, error = %e, "Postgres connection lost");
        }
    });
    Ok(client)
}

async fn init_schema(client: &mut Client) -> Result<(), StoreError> {
    let d = Dialect::Postgres;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(pg)?;
    tx.batch_execute(&sql::create_meta(d)).await.map_err(pg)?;
    let stored = match tx.query_opt(&sql::select_version(d), &[&sql::SCHEMA_VERSION_KEY]).await {
        Ok(Some(row)) => Some(
            row.try_get::<_, String>(0)
                .map_err(|e| StoreError::Corrupt { table: sql::META_TABLE, why: e.to_string() })?,
        ),
        Ok(None) => None,
        Err(e) => return Err(pg(e)),
    };
    match sql::schema_action(stored)? {
        SchemaAction::Ready => {}
        SchemaAction::Create => {
            for stmt in sql::create_schema(d) {
                tx.batch_execute(&stmt).await.map_err(pg)?;
            }
            let version = sql::SCHEMA_VERSION.to_string();
            tx.execute(&sql::insert_version(d), &[&sql::SCHEMA_VERSION_KEY, &version])
                .await
                .map_err(pg)?;
        }
    }
    tx.commit().await.map_err(pg)
}

async fn run_writer(
    mut client: Client,
    statements: Vec<Statement>,
    mut rx: mpsc::Receiver<ApplyRequest>,
    stats: Arc<StatsCell>,
) {
    while let Some(first) = rx.recv().await {
        let group = sql::gather(first, || rx.try_recv().ok());
        let outcome = commit(&mut client, &statements, &group).await;
        sql::answer(group, outcome, &stats);
    }
}

fn param(v: &SqlValue) -> &(dyn ToSql + Sync) {
    match v {
        SqlValue::Int(i) => i,
        SqlValue::Text(s) => s,
        SqlValue::Bool(b) => b,
    }
}

async fn commit(
    client: &mut Client,
    statements: &[Statement],
    group: &[ApplyRequest],
) -> Result<(), StoreError> {
    let writes: Vec<_> = group.iter().flat_map(|req| &req.writes).collect();
    let params: Vec<Vec<&(dyn ToSql + Sync)>> =
        writes.iter().map(|w| w.values.iter().map(param).collect()).collect();
    let tx = client.transaction().await.map_err(pg)?;
    // tokio-postgres sends a request when its future is first polled and runs requests in
    // that order; polling each once, in order, pipelines the whole group while keeping the
    // callers' order (a later PutStatus of the same stage must win).
    let mut in_flight = Vec::with_capacity(writes.len());
    for (write, params) in writes.iter().zip(&params) {
        let stmt = statements
            .get(write.op.index())
            .ok_or_else(|| StoreError::Backend(format!("no statement for {:?}", write.op)))?;
        let mut fut = Box::pin(tx.execute(stmt, params));
        match futures::poll!(fut.as_mut()) {
            Poll::Ready(result) => {
                result.map_err(pg)?;
            }
            Poll::Pending => in_flight.push(fut),
        }
    }
    for fut in in_flight {
        fut.await.map_err(pg)?;
    }
    // On any error above, dropping `tx` rolls the whole group back.
    tx.commit().await.map_err(pg)
}

impl SqlRow for tokio_postgres::Row {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }
    fn text(&self, idx: usize) -> Result<Option<String>, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }
    fn boolean(&self, idx: usize) -> Result<bool, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }
}

async fn query<T>(
    tx: &Transaction<'_>,
    text: &str,
    decode: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = tx.query(text, &[]).await.map_err(pg)?;
    rows.iter().map(decode).collect()
}

impl Store for PostgresStore {
    fn apply(&self, batch: Vec<Mutation>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            let writes = sql::encode(&batch)?;
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(ApplyRequest { writes, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn load(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(async move {
            let mut reader = self.reader.lock().await;
            // One repeatable-read transaction: a consistent snapshot while the writer commits.
            let tx = reader
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let max_seq: Option<i64> = tx
                .query_one(&sql::Selects::max_seq(), &[])
                .await
                .map_err(pg)?
                .try_get(0)
                .map_err(|e| StoreError::Corrupt { table: "events", why: e.to_string() })?;
            let snapshot = Snapshot {
                sweeps: query(&tx, &sql::Selects::sweeps(), sql::decode_sweep).await?,
                specs: query(&tx, &sql::Selects::specs(), sql::decode_spec).await?,
                statuses: query(&tx, &sql::Selects::statuses(), sql::decode_status).await?,
                links: query(&tx, &sql::Selects::links(), sql::decode_link).await?,
                workers: query(&tx, &sql::Selects::workers(), sql::decode_worker).await?,
                last_event_seq: sql::decode_max_seq(max_seq)?,
            };
            tx.commit().await.map_err(pg)?;
            Ok(snapshot)
        })
    }

    fn events(&self, sweep_id: &str, after: u64, limit: u32) -> StoreFuture<'_, Vec<EventRecord>> {
        let sweep_id = sweep_id.to_string();
        Box::pin(async move {
            // No stored seq exceeds i64::MAX, so clamping `after` loses nothing.
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let limit = i64::from(limit);
            let reader = self.reader.lock().await;
            let rows = reader
                .client
                .query(&reader.events, &[&sweep_id, &after, &limit])
                .await
                .map_err(pg)?;
            rows.iter().map(sql::decode_event).collect()
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
