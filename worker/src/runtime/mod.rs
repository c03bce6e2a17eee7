//! The node runtime: a worker process (or an in-process worker of `wax run`) registers with a
//! coordinator, leases stages it can run, runs several at once when its resources allow,
//! heartbeats progress, uploads each stage's outputs and completes it, and drains on request.
//!
//! - [`resources`]: what this machine offers (cores, memory, GPUs from the driver);
//! - [`node`]: registration, the lease loop, draining;
//! - [`task`]: one leased stage from inputs to commit (or to a classified failure);
//! - [`reporter`]: the running stage's link back (progress, log, checkpoints, resume);
//! - [`rpc`]: retrying calls across coordinator restarts.
//!
//! Invariant: the runtime knows nothing of scheduling policy; it does what the coordinator's
//! answers say (a stale epoch means the output is discarded, `cancel` means stop).

pub mod node;
pub mod reporter;
pub mod resources;
pub mod rpc;
pub mod task;

pub use node::{Worker, WorkerSummary};
pub use resources::Offer;

use std::path::PathBuf;
use std::time::Duration;

use crate::artifacts::S3Settings;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// A human name (host, pod); the coordinator assigns the id.
    pub name: String,
    /// `http(s)://host:port` of the coordinator.
    pub coordinator: String,
    /// Bearer token with the `worker` role.
    pub token: String,
    /// PEM of the CA that signed the coordinator's certificate (https).
    pub ca_pem: Option<Vec<u8>>,
    /// Artifact store URL (`file://…`, `s3://bucket/prefix`, `memory://…`).
    pub store: String,
    pub s3: S3Settings,
    /// Per-task work folders go here (deleted when a task ends).
    pub work_dir: PathBuf,
    /// The machine's content-addressed cache of input artifacts.
    pub cache_dir: PathBuf,
    /// What this worker offers the scheduler.
    pub offer: Offer,
    /// Also run the testing kinds (`sleep`, `fail-n-times`).
    pub testing: bool,
    /// How often long stages write a resume checkpoint (`None`: never).
    pub resume_every: Option<Duration>,
    /// The longest a lease call waits for work.
    pub lease_wait: Duration,
    /// On a drain, how long running stages may take to finish before they are handed back.
    pub drain_timeout: Duration,
    /// How long to keep retrying when the coordinator is unreachable before giving up.
    pub reconnect_for: Duration,
    pub labels: Vec<(String, String)>,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Config(String),
    #[error("coordinator {url}: {why}")]
    Coordinator { url: String, why: String },
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
}
