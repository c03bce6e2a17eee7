//! The schema and row (de)serialisation shared by the SQLite and Postgres stores, and the
//! bookkeeping of their group-commit writers.
//!
//! Both backends hold the same tables. Columns an operator filters or joins on (ids, states,
//! kinds, timestamps, counters) are real columns; nested values (configs, plans, file lists,
//! resources, kinds, labels) are TEXT holding JSON, written and read verbatim so they round-trip
//! exactly. Queries are written once with `$n` parameter markers; SQLite gets `?n`.
//!
//! Reading rows back is in `decode`, the group-commit bookkeeping both writers share in `group`.

use super::{Mutation, StoreError, ms_to_sql};
use crate::records::{
    EventRecord, StageSpec, StageState, StageStatus, SweepRecord, SweepState, WorkerRecord,
};

mod decode;
mod group;

pub(crate) use decode::{
    Selects, SqlRow, decode_event, decode_link, decode_max_seq, decode_spec, decode_status,
    decode_sweep, decode_worker,
};
pub use group::WriterStats;
pub(crate) use group::{ApplyRequest, QUEUE_DEPTH, StatsCell, answer, gather};

/// The schema this binary writes. Bump it with every schema change, and teach `open` to
/// migrate from the previous one.
pub const SCHEMA_VERSION: i64 = 1;
/// Key/value table holding [`SCHEMA_VERSION_KEY`].
pub const META_TABLE: &str = "wax_meta";
/// The key in [`META_TABLE`] whose value is the schema version, as decimal text.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Queries are written with `$n`; SQLite's numbered form is `?n`. No query text contains
    /// a `$` for any other reason.
    pub(crate) fn sql(self, text: &str) -> String {
        match self {
            Dialect::Postgres => text.to_string(),
            Dialect::Sqlite => text.replace('$', "?"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    /// Text identity: bytewise collation on Postgres, so both backends order rows alike.
    Key,
    Text,
    OptText,
    Int,
    OptInt,
    Bool,
    Json,
}

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Col)],
    key: &'static [&'static str],
}

const SWEEPS: Table = Table {
    name: "sweeps",
    cols: &[
        ("id", Col::Key),
        ("name", Col::Text),
        ("manifest", Col::Text),
        ("format", Col::Text),
        ("source_name", Col::Text),
        ("submitted_by", Col::Text),
        ("created_ms", Col::Int),
        ("state", Col::Text),
        ("priority", Col::Int),
        ("max_concurrent", Col::Int),
        ("trials", Col::Int),
        ("cached", Col::Int),
        ("plan", Col::Json),
    ],
    key: &["id"],
};

const SPECS: Table = Table {
    name: "stage_specs",
    cols: &[
        ("id", Col::Key),
        ("kind", Col::Text),
        ("schema_version", Col::Int),
        ("config", Col::Json),
        ("inputs", Col::Json),
        ("resources", Col::Json),
        ("priority", Col::Int),
        ("created_ms", Col::Int),
    ],
    key: &["id"],
};

const STATUSES: Table = Table {
    name: "stage_statuses",
    cols: &[
        ("id", Col::Key),
        ("state", Col::Text),
        ("epoch", Col::Int),
        ("lease_worker", Col::OptText),
        ("lease_expires_ms", Col::OptInt),
        ("stage_failures", Col::Int),
        ("infra_failures", Col::Int),
        ("not_before_ms", Col::Int),
        ("last_error", Col::OptText),
        ("committed_attempt", Col::OptInt),
        ("committed_files", Col::Json),
        ("cancel_requested", Col::Bool),
        ("updated_ms", Col::Int),
    ],
    key: &["id"],
};

const LINKS: Table = Table {
    name: "sweep_stages",
    cols: &[("sweep_id", Col::Key), ("stage_id", Col::Key)],
    key: &["sweep_id", "stage_id"],
};

const WORKERS: Table = Table {
    name: "workers",
    cols: &[
        ("id", Col::Key),
        ("name", Col::Text),
        ("resources", Col::Json),
        ("kinds", Col::Json),
        ("labels", Col::Json),
        ("max_concurrent_tasks", Col::Int),
        ("registered_ms", Col::Int),
        ("last_seen_ms", Col::Int),
    ],
    key: &["id"],
};

const EVENTS: Table = Table {
    name: "events",
    cols: &[
        ("seq", Col::Int),
        ("sweep_id", Col::Key),
        ("ts_ms", Col::Int),
        ("kind", Col::Text),
        ("stage_id", Col::OptText),
        ("stage_kind", Col::OptText),
        ("message", Col::Text),
    ],
    key: &["seq"],
};

const STAGE_STATES: [StageState; 6] = [
    StageState::Pending,
    StageState::Ready,
    StageState::Leased,
    StageState::Succeeded,
    StageState::Failed,
    StageState::Cancelled,
];
const SWEEP_STATES: [SweepState; 4] =
    [SweepState::Running, SweepState::Succeeded, SweepState::Failed, SweepState::Cancelled];

fn column_type(d: Dialect, name: &str, col: Col) -> String {
    let (int, key) = match d {
        Dialect::Sqlite => ("INTEGER", "TEXT"),
        Dialect::Postgres => ("BIGINT", "TEXT COLLATE \"C\""),
    };
    match col {
        Col::Key => format!("{key} NOT NULL"),
        Col::Text | Col::Json => "TEXT NOT NULL".to_string(),
        Col::OptText => "TEXT".to_string(),
        Col::Int => format!("{int} NOT NULL"),
        Col::OptInt => int.to_string(),
        Col::Bool => match d {
            Dialect::Sqlite => format!("INTEGER NOT NULL CHECK ({name} IN (0, 1))"),
            Dialect::Postgres => "BOOLEAN NOT NULL".to_string(),
        },
    }
}

/// `state = 'a' OR state = 'b' …`. Not `state IN (…)`: SQLite evaluates a constant IN list of
/// more than two values by building a temporary b-tree on every execution, which made each
/// status write several times slower (malloc/free/madvise of its page cache).
fn state_check<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values.map(|v| format!("state = '{v}'")).collect::<Vec<_>>().join(" OR ")
}

fn create_table(d: Dialect, t: &Table) -> String {
    let mut parts: Vec<String> =
        t.cols.iter().map(|(name, col)| format!("{name} {}", column_type(d, name, *col))).collect();
    // A state the binary cannot parse back would make the store unloadable; refuse it at write.
    let states = match t.name {
        "sweeps" => Some(state_check(SWEEP_STATES.iter().map(|s| s.as_str()))),
        "stage_statuses" => Some(state_check(STAGE_STATES.iter().map(|s| s.as_str()))),
        _ => None,
    };
    if let Some(states) = states {
        parts.push(format!("CHECK ({states})"));
    }
    parts.push(format!("PRIMARY KEY ({})", t.key.join(", ")));
    let strict = if d == Dialect::Sqlite { " STRICT" } else { "" };
    format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n){strict}", t.name, parts.join(",\n  "))
}

/// `CREATE TABLE IF NOT EXISTS wax_meta`, run before the version check.
pub(crate) fn create_meta(d: Dialect) -> String {
    let key = column_type(d, "key", Col::Key);
    format!("CREATE TABLE IF NOT EXISTS {META_TABLE} (key {key} PRIMARY KEY, value TEXT NOT NULL)")
}

pub(crate) fn select_version(d: Dialect) -> String {
    d.sql(&format!("SELECT value FROM {META_TABLE} WHERE key = $1"))
}

pub(crate) fn insert_version(d: Dialect) -> String {
    d.sql(&format!("INSERT INTO {META_TABLE} (key, value) VALUES ($1, $2)"))
}

/// The statements creating schema version [`SCHEMA_VERSION`] from nothing.
pub(crate) fn create_schema(d: Dialect) -> Vec<String> {
    let mut out: Vec<String> = [&SWEEPS, &SPECS, &STATUSES, &LINKS, &WORKERS, &EVENTS]
        .iter()
        .map(|t| create_table(d, t))
        .collect();
    out.extend(
        [
            "CREATE INDEX IF NOT EXISTS stage_specs_kind ON stage_specs (kind)",
            "CREATE INDEX IF NOT EXISTS stage_statuses_state ON stage_statuses (state)",
            "CREATE INDEX IF NOT EXISTS sweep_stages_stage ON sweep_stages (stage_id)",
            "CREATE INDEX IF NOT EXISTS events_sweep_seq ON events (sweep_id, seq)",
        ]
        .map(String::from),
    );
    out
}

/// What opening a store must do, given the stored schema version (if any).
pub(crate) enum SchemaAction {
    Create,
    Ready,
}

pub(crate) fn schema_action(stored: Option<String>) -> Result<SchemaAction, StoreError> {
    let Some(text) = stored else { return Ok(SchemaAction::Create) };
    let found: i64 = text.trim().parse().map_err(|_| StoreError::Corrupt {
        table: META_TABLE,
        why: format!("{SCHEMA_VERSION_KEY} is not an integer: {text:?}"),
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found < SCHEMA_VERSION {
        // Version 1 is the first; anything lower was never written by wax.
        return Err(StoreError::Corrupt {
            table: META_TABLE,
            why: format!("unknown {SCHEMA_VERSION_KEY} {found}"),
        });
    }
    Ok(SchemaAction::Ready)
}

/// The statement kinds a mutation turns into; each backend prepares one statement per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    PutSweep,
    SetSweepState,
    InsertStage,
    PutStatus,
    Link,
    PutWorker,
    AppendEvent,
}

impl Op {
    pub(crate) const ALL: [Op; 7] = [
        Op::PutSweep,
        Op::SetSweepState,
        Op::InsertStage,
        Op::PutStatus,
        Op::Link,
        Op::PutWorker,
        Op::AppendEvent,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The statement text, with `$n` parameter markers in the table's column order.
    pub(crate) fn statement(self, d: Dialect) -> String {
        let (table, on_conflict) = match self {
            Op::SetSweepState => return d.sql("UPDATE sweeps SET state = $1 WHERE id = $2"),
            Op::PutSweep => (&SWEEPS, Conflict::Replace),
            Op::InsertStage => (&SPECS, Conflict::Ignore),
            Op::PutStatus => (&STATUSES, Conflict::Replace),
            Op::Link => (&LINKS, Conflict::Ignore),
            Op::PutWorker => (&WORKERS, Conflict::Replace),
            // Sequence numbers are unique: a duplicate is a scheduler bug and fails the batch.
            Op::AppendEvent => (&EVENTS, Conflict::Fail),
        };
        let names: Vec<&str> = table.cols.iter().map(|(n, _)| *n).collect();
        let params: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let mut text = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            params.join(", ")
        );
        let key = table.key.join(", ");
        match on_conflict {
            Conflict::Fail => {}
            Conflict::Ignore => text.push_str(&format!(" ON CONFLICT ({key}) DO NOTHING")),
            Conflict::Replace => {
                let sets: Vec<String> = names
                    .iter()
                    .filter(|n| !table.key.contains(n))
                    .map(|n| format!("{n} = excluded.{n}"))
                    .collect();
                text.push_str(&format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", ")));
            }
        }
        d.sql(&text)
    }
}

enum Conflict {
    Fail,
    Ignore,
    Replace,
}

/// One bound parameter. Nulls carry their type because Postgres checks parameter types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlValue {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
}

/// One statement execution: a mutation becomes one or more of these.
#[derive(Debug)]
pub(crate) struct Write {
    pub op: Op,
    pub values: Vec<SqlValue>,
}

fn int(v: i64) -> SqlValue {
    SqlValue::Int(Some(v))
}

fn text(v: &str) -> SqlValue {
    SqlValue::Text(Some(v.to_string()))
}

fn ms(v: u64) -> SqlValue {
    int(ms_to_sql(v))
}

/// Counters that must survive exactly: refuse rather than wrap or saturate.
fn big(what: &'static str, v: u64) -> Result<SqlValue, StoreError> {
    i64::try_from(v).map(int).map_err(|_| {
        StoreError::Backend(format!("{what} = {v} does not fit a signed 64-bit column"))
    })
}

fn json<T: serde::Serialize + ?Sized>(what: &'static str, v: &T) -> Result<SqlValue, StoreError> {
    serde_json::to_string(v)
        .map(|s| SqlValue::Text(Some(s)))
        .map_err(|e| StoreError::Backend(format!("cannot encode {what} as JSON: {e}")))
}

/// Turns a call's mutations into statement executions, in order.
pub(crate) fn encode(batch: &[Mutation]) -> Result<Vec<Write>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        match m {
            Mutation::PutSweep(s) => out.push(Write { op: Op::PutSweep, values: sweep_values(s)? }),
            Mutation::SetSweepState { id, state } => out.push(Write {
                op: Op::SetSweepState,
                values: vec![text(state.as_str()), text(id)],
            }),
            Mutation::InsertStage(s) => {
                out.push(Write { op: Op::InsertStage, values: spec_values(s)? })
            }
            Mutation::PutStatus(s) => {
                out.push(Write { op: Op::PutStatus, values: status_values(s)? })
            }
            Mutation::LinkStages(links) => out.extend(links.iter().map(|l| Write {
                op: Op::Link,
                values: vec![text(&l.sweep_id), text(&l.stage_id)],
            })),
            Mutation::PutWorker(w) => {
                out.push(Write { op: Op::PutWorker, values: worker_values(w)? })
            }
            Mutation::AppendEvents(events) => {
                for e in events {
                    out.push(Write { op: Op::AppendEvent, values: event_values(e)? });
                }
            }
        }
    }
    Ok(out)
}

// The value lists below follow the column order of the table definitions above; decoding reads
// by column name, so a mismatch shows up as a failed round trip in the contract tests.

fn sweep_values(s: &SweepRecord) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&s.id),
        text(&s.name),
        text(&s.manifest),
        text(&s.format),
        text(&s.source_name),
        text(&s.submitted_by),
        ms(s.created_ms),
        text(s.state.as_str()),
        int(i64::from(s.priority)),
        int(i64::from(s.max_concurrent)),
        int(i64::from(s.trials)),
        int(i64::from(s.cached)),
        json("sweep plan", &s.plan)?,
    ])
}

fn spec_values(s: &StageSpec) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&s.id),
        text(&s.kind),
        int(i64::from(s.schema_version)),
        json("stage config", &s.config)?,
        json("stage inputs", &s.inputs)?,
        json("stage resources", &s.resources)?,
        int(s.priority),
        ms(s.created_ms),
    ])
}

fn status_values(s: &StageStatus) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&s.id),
        text(s.state.as_str()),
        big("stage epoch", s.epoch)?,
        SqlValue::Text(s.lease_worker.clone()),
        SqlValue::Int(s.lease_expires_ms.map(ms_to_sql)),
        int(i64::from(s.stage_failures)),
        int(i64::from(s.infra_failures)),
        ms(s.not_before_ms),
        SqlValue::Text(s.last_error.clone()),
        match s.committed_attempt {
            Some(a) => big("committed attempt", a)?,
            None => SqlValue::Int(None),
        },
        json("committed files", &s.committed_files)?,
        SqlValue::Bool(s.cancel_requested),
        ms(s.updated_ms),
    ])
}

fn worker_values(w: &WorkerRecord) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&w.id),
        text(&w.name),
        json("worker resources", &w.resources)?,
        json("worker kinds", &w.kinds)?,
        json("worker labels", &w.labels)?,
        int(i64::from(w.max_concurrent_tasks)),
        ms(w.registered_ms),
        ms(w.last_seen_ms),
    ])
}

fn event_values(e: &EventRecord) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        big("event seq", e.seq)?,
        text(&e.sweep_id),
        ms(e.ts_ms),
        text(&e.kind),
        SqlValue::Text(e.stage_id.clone()),
        SqlValue::Text(e.stage_kind.clone()),
        text(&e.message),
    ])
}
