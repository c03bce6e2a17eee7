//! Reading rows back: the SELECTs and the decoders, which turn every surprise into
//! [`StoreError::Corrupt`] naming the table and column.

use super::{Dialect, EVENTS, LINKS, SPECS, STATUSES, SWEEPS, Table, WORKERS};
use crate::records::{
    EventRecord, StageSpec, StageState, StageStatus, SweepRecord, SweepStage, SweepState,
    WorkerRecord,
};
use crate::store::StoreError;
use serde::de::DeserializeOwned;

/// Typed access to one result row by column index; errors are plain descriptions.
pub(crate) trait SqlRow {
    fn int(&self, idx: usize) -> Result<Option<i64>, String>;
    fn text(&self, idx: usize) -> Result<Option<String>, String>;
    fn boolean(&self, idx: usize) -> Result<bool, String>;
}

/// The queries reading the store back. Rows come in primary-key order (bytewise for text).
pub(crate) struct Selects;

impl Selects {
    fn all(t: &Table) -> String {
        let names: Vec<&str> = t.cols.iter().map(|(n, _)| *n).collect();
        format!("SELECT {} FROM {} ORDER BY {}", names.join(", "), t.name, t.key.join(", "))
    }
    pub(crate) fn sweeps() -> String {
        Self::all(&SWEEPS)
    }
    pub(crate) fn specs() -> String {
        Self::all(&SPECS)
    }
    pub(crate) fn statuses() -> String {
        Self::all(&STATUSES)
    }
    pub(crate) fn links() -> String {
        Self::all(&LINKS)
    }
    pub(crate) fn workers() -> String {
        Self::all(&WORKERS)
    }
    pub(crate) fn max_seq() -> String {
        "SELECT COALESCE(MAX(seq), 0) FROM events".to_string()
    }
    /// Parameters: sweep id, `after` and the limit.
    pub(crate) fn events(d: Dialect) -> String {
        let names: Vec<&str> = EVENTS.cols.iter().map(|(n, _)| *n).collect();
        d.sql(&format!(
            "SELECT {} FROM events WHERE sweep_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            names.join(", ")
        ))
    }
}

/// Reads one row of `table` by column name, turning every surprise into `Corrupt`.
struct Fields<'r, R: SqlRow + ?Sized> {
    row: &'r R,
    table: &'static Table,
}

impl<R: SqlRow + ?Sized> Fields<'_, R> {
    fn corrupt(&self, col: &str, why: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { table: self.table.name, why: format!("column {col}: {why}") }
    }
    fn idx(&self, col: &str) -> Result<usize, StoreError> {
        self.table
            .cols
            .iter()
            .position(|(n, _)| *n == col)
            .ok_or_else(|| self.corrupt(col, "not in the table definition"))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.row.text(self.idx(col)?).map_err(|e| self.corrupt(col, e))
    }
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.opt_text(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.row.int(self.idx(col)?).map_err(|e| self.corrupt(col, e))
    }
    fn i64(&self, col: &str) -> Result<i64, StoreError> {
        self.opt_i64(col)?.ok_or_else(|| self.corrupt(col, "unexpected NULL"))
    }
    fn conv<T: TryFrom<i64>>(&self, col: &str, v: i64) -> Result<T, StoreError> {
        T::try_from(v).map_err(|_| self.corrupt(col, format!("{v} is out of range")))
    }
    fn num<T: TryFrom<i64>>(&self, col: &str) -> Result<T, StoreError> {
        let v = self.i64(col)?;
        self.conv(col, v)
    }
    fn opt_num<T: TryFrom<i64>>(&self, col: &str) -> Result<Option<T>, StoreError> {
        self.opt_i64(col)?.map(|v| self.conv(col, v)).transpose()
    }
    fn boolean(&self, col: &str) -> Result<bool, StoreError> {
        self.row.boolean(self.idx(col)?).map_err(|e| self.corrupt(col, e))
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(col)?).map_err(|e| self.corrupt(col, e))
    }
}

pub(crate) fn decode_sweep(row: &(impl SqlRow + ?Sized)) -> Result<SweepRecord, StoreError> {
    let f = Fields { row, table: &SWEEPS };
    let state = f.text("state")?;
    Ok(SweepRecord {
        id: f.text("id")?,
        name: f.text("name")?,
        manifest: f.text("manifest")?,
        format: f.text("format")?,
        source_name: f.text("source_name")?,
        submitted_by: f.text("submitted_by")?,
        created_ms: f.num("created_ms")?,
        state: SweepState::parse(&state)
            .ok_or_else(|| f.corrupt("state", format!("unknown sweep state {state:?}")))?,
        priority: f.num("priority")?,
        max_concurrent: f.num("max_concurrent")?,
        trials: f.num("trials")?,
        cached: f.num("cached")?,
        plan: f.json("plan")?,
    })
}

pub(crate) fn decode_spec(row: &(impl SqlRow + ?Sized)) -> Result<StageSpec, StoreError> {
    let f = Fields { row, table: &SPECS };
    Ok(StageSpec {
        id: f.text("id")?,
        kind: f.text("kind")?,
        schema_version: f.num("schema_version")?,
        config: f.json("config")?,
        inputs: f.json("inputs")?,
        resources: f.json("resources")?,
        priority: f.i64("priority")?,
        created_ms: f.num("created_ms")?,
    })
}

pub(crate) fn decode_status(row: &(impl SqlRow + ?Sized)) -> Result<StageStatus, StoreError> {
    let f = Fields { row, table: &STATUSES };
    let state = f.text("state")?;
    Ok(StageStatus {
        id: f.text("id")?,
        state: StageState::parse(&state)
            .ok_or_else(|| f.corrupt("state", format!("unknown stage state {state:?}")))?,
        epoch: f.num("epoch")?,
        lease_worker: f.opt_text("lease_worker")?,
        lease_expires_ms: f.opt_num("lease_expires_ms")?,
        stage_failures: f.num("stage_failures")?,
        infra_failures: f.num("infra_failures")?,
        not_before_ms: f.num("not_before_ms")?,
        last_error: f.opt_text("last_error")?,
        committed_attempt: f.opt_num("committed_attempt")?,
        committed_files: f.json("committed_files")?,
        cancel_requested: f.boolean("cancel_requested")?,
        updated_ms: f.num("updated_ms")?,
    })
}

pub(crate) fn decode_link(row: &(impl SqlRow + ?Sized)) -> Result<SweepStage, StoreError> {
    let f = Fields { row, table: &LINKS };
    Ok(SweepStage { sweep_id: f.text("sweep_id")?, stage_id: f.text("stage_id")? })
}

pub(crate) fn decode_worker(row: &(impl SqlRow + ?Sized)) -> Result<WorkerRecord, StoreError> {
    let f = Fields { row, table: &WORKERS };
    Ok(WorkerRecord {
        id: f.text("id")?,
        name: f.text("name")?,
        resources: f.json("resources")?,
        kinds: f.json("kinds")?,
        labels: f.json("labels")?,
        max_concurrent_tasks: f.num("max_concurrent_tasks")?,
        registered_ms: f.num("registered_ms")?,
        last_seen_ms: f.num("last_seen_ms")?,
    })
}

pub(crate) fn decode_event(row: &(impl SqlRow + ?Sized)) -> Result<EventRecord, StoreError> {
    let f = Fields { row, table: &EVENTS };
    Ok(EventRecord {
        seq: f.num("seq")?,
        sweep_id: f.text("sweep_id")?,
        ts_ms: f.num("ts_ms")?,
        kind: f.text("kind")?,
        stage_id: f.opt_text("stage_id")?,
        stage_kind: f.opt_text("stage_kind")?,
        message: f.text("message")?,
    })
}

/// Decodes `MAX(seq)`.
pub(crate) fn decode_max_seq(v: Option<i64>) -> Result<u64, StoreError> {
    let v = v.unwrap_or(0);
    u64::try_from(v)
        .map_err(|_| StoreError::Corrupt { table: EVENTS.name, why: format!("negative seq {v}") })
}
