//! The durable records of the coordinator: sweeps, stages, workers and events. The store
//! persists exactly these; the scheduler keeps an in-memory index of them.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Current time in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stage id: lower-case hex SHA-256 of the stage's canonical identity (see `plan`).
pub type StageId = String;

/// What a stage needs or a worker offers (mirrors `wax.v1.Resources`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub gpus: u32,
    pub gpu_memory_bytes: u64,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
}

/// The immutable part of a stage: its identity and what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub id: StageId,
    pub kind: String,
    pub schema_version: u32,
    /// The resolved configuration (a JSON object the coordinator never interprets).
    pub config: serde_json::Value,
    /// Upstream stages whose committed artifacts this stage reads, in order.
    pub inputs: Vec<StageId>,
    pub resources: Resources,
    /// Higher runs first.
    pub priority: i64,
    pub created_ms: Millis,
}

/// Where a stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// Waiting for inputs to succeed.
    Pending,
    /// Inputs done; waiting for a worker (possibly until a backoff expires).
    Ready,
    /// Held by a worker under a lease.
    Leased,
    /// Committed; artifacts are canonical. Final.
    Succeeded,
    /// Out of retries or failed for good (until a `retry --failed`).
    Failed,
    /// No sweep needs it any more.
    Cancelled,
}

impl StageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Pending => "pending",
            StageState::Ready => "ready",
            StageState::Leased => "leased",
            StageState::Succeeded => "succeeded",
            StageState::Failed => "failed",
            StageState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<StageState> {
        [
            StageState::Pending,
            StageState::Ready,
            StageState::Leased,
            StageState::Succeeded,
            StageState::Failed,
            StageState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// No further transitions without user action.
    pub fn is_terminal(self) -> bool {
        matches!(self, StageState::Succeeded | StageState::Failed | StageState::Cancelled)
    }
}

/// One output file of an attempt (mirrors `wax.v1.ArtifactFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The mutable part of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStatus {
    pub id: StageId,
    pub state: StageState,
    /// Fencing epoch of the current or last lease; also its attempt number. 0: never leased.
    pub epoch: u64,
    /// Holder of the current lease (state `Leased`).
    pub lease_worker: Option<String>,
    pub lease_expires_ms: Option<Millis>,
    /// Failures charged to the stage's own code, and to infrastructure (lost leases…).
    pub stage_failures: u32,
    pub infra_failures: u32,
    /// Not leasable before this time (retry backoff).
    pub not_before_ms: Millis,
    pub last_error: Option<String>,
    /// The canonical attempt once succeeded, with its files.
    pub committed_attempt: Option<u64>,
    pub committed_files: Vec<ArtifactFile>,
    /// A running lease was asked to stop (answered `cancel` at the next heartbeat).
    pub cancel_requested: bool,
    pub updated_ms: Millis,
}

impl StageStatus {
    /// A stage that has never run.
    pub fn new(id: StageId, state: StageState, now: Millis) -> StageStatus {
        StageStatus {
            id,
            state,
            epoch: 0,
            lease_worker: None,
            lease_expires_ms: None,
            stage_failures: 0,
            infra_failures: 0,
            not_before_ms: 0,
            last_error: None,
            committed_attempt: None,
            committed_files: Vec::new(),
            cancel_requested: false,
            updated_ms: now,
        }
    }
}

/// Lifecycle of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl SweepState {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Succeeded => "succeeded",
            SweepState::Failed => "failed",
            SweepState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<SweepState> {
        [SweepState::Running, SweepState::Succeeded, SweepState::Failed, SweepState::Cancelled]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// A submitted sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub id: String,
    pub name: String,
    /// The manifest exactly as submitted, its format and where it came from.
    pub manifest: String,
    pub format: String,
    pub source_name: String,
    pub submitted_by: String,
    pub created_ms: Millis,
    pub state: SweepState,
    pub priority: i32,
    /// Most stages of this sweep leased at once (0: unlimited).
    pub max_concurrent: u32,
    pub trials: u32,
    /// Stages already committed at submission.
    pub cached: u32,
    /// The resolved plan as JSON (trials with their parameters and stage ids), for reports.
    pub plan: serde_json::Value,
}

/// A stage's membership in a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepStage {
    pub sweep_id: String,
    pub stage_id: StageId,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: String,
    pub name: String,
    pub resources: Resources,
    /// Stage kinds with the schema version implemented.
    pub kinds: Vec<(String, u32)>,
    pub labels: Vec<(String, String)>,
    pub max_concurrent_tasks: u32,
    pub registered_ms: Millis,
    pub last_seen_ms: Millis,
}

/// Something that happened to a sweep, in order (`seq` increases across all sweeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub sweep_id: String,
    pub ts_ms: Millis,
    pub kind: String,
    pub stage_id: Option<StageId>,
    pub stage_kind: Option<String>,
    pub message: String,
}
