//! Shared harness for the gRPC integration tests: an in-process coordinator on 127.0.0.1:0
//! and simulated workers speaking the real protocol.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wax_coordinator::auth::{Role, Tokens};
use wax_coordinator::scheduler::SchedulerConfig;
use wax_coordinator::server::{Running, ServerConfig};
use wax_proto::client::{Connection, WorkerClient};
use wax_proto::v1;

pub const ADMIN: &str = "admin-token";
pub const SUBMIT: &str = "submit-token";
pub const WORKER: &str = "worker-token";
pub const READ: &str = "read-token";

pub fn tokens() -> Tokens {
    let mut t = Tokens::default();
    t.insert(ADMIN, "admin", &[Role::Admin]);
    t.insert(SUBMIT, "alice", &[Role::Submit]);
    t.insert(WORKER, "worker", &[Role::Worker]);
    t.insert(READ, "bob", &[Role::Read]);
    t
}

/// Short timings so that expiry, backoff and stalls happen within a test.
pub fn fast_scheduler() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl: Duration::from_millis(600),
        heartbeat_interval: Duration::from_millis(100),
        stall_grace: Duration::from_millis(500),
        worker_timeout: Duration::from_secs(30),
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(1000),
        max_lease_wait: Duration::from_secs(5),
        ..SchedulerConfig::default()
    }
}

pub async fn start(store: &str, scheduler: SchedulerConfig) -> Running {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".into(),
        store: store.into(),
        scheduler,
        ..ServerConfig::default()
    };
    wax_coordinator::server::start(&cfg, tokens()).await.expect("coordinator starts")
}

pub async fn connect(running: &Running, token: &str) -> Connection {
    Connection::connect(&format!("http://{}", running.addr), None, Some(token))
        .await
        .expect("connects")
}

pub async fn submit(conn: &Connection, manifest: &str) -> v1::SubmitResponse {
    conn.sweeps()
        .submit(v1::SubmitRequest {
            manifest: manifest.into(),
            format: "toml".into(),
            source_name: "test.toml".into(),
            dry_run: false,
        })
        .await
        .expect("submit accepted")
        .into_inner()
}

pub async fn sweep(conn: &Connection, id: &str) -> v1::Sweep {
    conn.sweeps().get(v1::GetSweepRequest { sweep_id: id.into() }).await.expect("get").into_inner()
}

/// Waits until the sweep reaches one of `states` (or panics after `secs`).
pub async fn wait_for(conn: &Connection, id: &str, states: &[&str], secs: u64) -> v1::Sweep {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = sweep(conn, id).await;
        if states.contains(&s.state.as_str()) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweep {id} stuck in {} ({:?})",
            s.state,
            s.counts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn all_kinds() -> Vec<v1::StageKind> {
    wax_proto::catalog::STAGE_KINDS
        .iter()
        .map(|k| v1::StageKind { kind: k.kind.into(), schema_version: k.schema_version })
        .collect()
}

pub async fn register(
    conn: &Connection,
    name: &str,
    gpus: u32,
    slots: u32,
) -> (WorkerClient, String) {
    let mut client = conn.workers();
    let r = client
        .register(v1::RegisterRequest {
            protocol_version: wax_proto::PROTOCOL_VERSION,
            worker_name: name.into(),
            capabilities: Some(v1::Capabilities {
                resources: Some(v1::Resources {
                    gpus,
                    gpu_memory_bytes: 80 << 30,
                    cpu_millis: 16_000,
                    memory_bytes: 64 << 30,
                }),
                stage_kinds: all_kinds(),
                labels: Default::default(),
                max_concurrent_tasks: slots,
            }),
        })
        .await
        .expect("register")
        .into_inner();
    (client, r.worker_id)
}

/// Accepted (non-duplicate) completions per stage, across all simulated workers.
pub type Ledger = Arc<Mutex<HashMap<String, u32>>>;

/// A worker that completes whatever it leases (with one fake file), until told to stop.
pub async fn run_worker(
    conn: Connection,
    name: String,
    ledger: Ledger,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut client, id) = register(&conn, &name, 8, 1).await;
    while !*stop.borrow() {
        let task =
            match client.lease(v1::LeaseRequest { worker_id: id.clone(), wait_ms: 200 }).await {
                Ok(r) => r.into_inner().task,
                Err(e) => panic!("{name}: lease failed: {e}"),
            };
        let Some(task) = task else { continue };
        let file =
            v1::ArtifactFile { path: "result.json".into(), size: 2, sha256: "00".repeat(32) };
        let r = client
            .complete(v1::CompleteRequest {
                worker_id: id.clone(),
                stage_id: task.stage_id.clone(),
                epoch: task.epoch,
                files: vec![file],
            })
            .await
            .expect("complete")
            .into_inner();
        if !r.duplicate {
            *ledger.lock().unwrap().entry(task.stage_id).or_default() += 1;
        }
    }
}

/// Starts `n` simulated workers; drop or send `true` on the returned sender to stop them.
pub fn spawn_workers(
    conn: &Connection,
    n: usize,
    ledger: &Ledger,
) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles = (0..n)
        .map(|i| {
            tokio::spawn(run_worker(conn.clone(), format!("sim-{i}"), ledger.clone(), rx.clone()))
        })
        .collect();
    (tx, handles)
}
