//! `wax worker`: lease and run stages for a coordinator until SIGTERM or Ctrl-C (then drain).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wax_worker::runtime::{Offer, Worker, WorkerConfig};

use super::settings::{CommonFlags, Settings, WorkerSettings};

#[derive(Args)]
pub struct WorkerArgs {
    /// Artifact store URL: `file:///dir` or `s3://bucket/prefix` (settings: `artifact_store`).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// A name for this worker in the coordinator's records (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Stages run at once (default: one per core; the coordinator also checks resources).
    #[arg(long)]
    slots: Option<u32>,
    /// Cores offered (default: all).
    #[arg(long)]
    cpus: Option<u32>,
    /// CUDA devices offered: all, none, or ordinals (0,1).
    #[arg(long)]
    gpus: Option<String>,
    /// Also run the testing stage kinds (sleep, fail-n-times).
    #[arg(long)]
    testing: bool,
    /// Per-task work folders (default: <cache>/work).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds between resume checkpoints of long stages (0: none).
    #[arg(long, value_name = "SECONDS")]
    resume_every: Option<u64>,
}

/// The worker's configuration from settings (the flags already applied).
pub fn worker_config(s: &Settings, token: String) -> anyhow::Result<WorkerConfig> {
    let w: &WorkerSettings = &s.worker;
    let mut offer = Offer::detect();
    if let Some(c) = w.cpus {
        anyhow::ensure!(c >= 1, "worker.cpus: must be at least 1");
        offer.cpu_millis = c * 1000;
        offer.slots = c;
    }
    if let Some(m) = w.memory_gib {
        anyhow::ensure!(m > 0.0, "worker.memory_gib: must be positive, got {m}");
        offer.memory_bytes = (m * (1u64 << 30) as f64) as u64;
    }
    offer.gpus = match w.gpus.trim() {
        "all" => offer.gpus,
        "none" | "" => Vec::new(),
        list => {
            let wanted: Vec<usize> = list
                .split(',')
                .map(|p| p.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "worker.gpus: expected all, none or ordinals like 0,1; got `{list}`"
                    )
                })?;
            if let Some(missing) = wanted.iter().find(|g| !offer.gpus.contains(g)) {
                anyhow::bail!(
                    "worker.gpus: cuda:{missing} is not on this machine (it has {:?})",
                    offer.gpus
                );
            }
            wanted
        }
    };
    if offer.gpus.is_empty() {
        offer.gpu_memory_bytes = 0;
    }
    if let Some(n) = w.slots {
        anyhow::ensure!(n >= 1, "worker.slots: must be at least 1");
        offer.slots = n;
    }
    let cache = wax_worker::builtin::cache_root()?;
    let ca_pem = match &s.ca_cert {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("reading CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    let name = w.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into())
    });
    Ok(WorkerConfig {
        name,
        coordinator: s.coordinator.clone(),
        token,
        ca_pem,
        store: s.artifact_store.clone(),
        s3: s.s3.clone(),
        work_dir: w.work_dir.clone().unwrap_or_else(|| cache.join("work")),
        cache_dir: w.cache_dir.clone().unwrap_or_else(|| cache.join("artifacts")),
        offer,
        testing: w.testing,
        resume_every: (w.resume_every_s > 0).then(|| Duration::from_secs(w.resume_every_s)),
        lease_wait: Duration::from_secs(w.lease_wait_s.max(1)),
        drain_timeout: Duration::from_secs(w.drain_timeout_s),
        reconnect_for: Duration::from_secs(w.reconnect_for_s),
        labels: Vec::new(),
    })
}

/// Resolves when the process gets SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

pub async fn run(flags: &CommonFlags, a: WorkerArgs) -> anyhow::Result<()> {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let s = Settings::load(
        flags,
        &[
            ("artifact_store", a.store.clone()),
            ("worker.name", a.name.clone()),
            ("worker.slots", a.slots.map(|n| n.to_string())),
            ("worker.cpus", a.cpus.map(|n| n.to_string())),
            ("worker.gpus", a.gpus.clone()),
            ("worker.testing", a.testing.then(|| "true".to_string())),
            ("worker.work_dir", path(&a.work_dir)),
            ("worker.resume_every_s", a.resume_every.map(|n| n.to_string())),
        ],
    )?;
    let token = s.bearer()?.ok_or_else(|| {
        anyhow::anyhow!("no token: a worker needs one with the `worker` role (--token-file, WAX_TOKEN or `token_file`)")
    })?;
    let cfg = worker_config(&s, token)?;
    eprintln!(
        "wax worker {}: coordinator {}, store {}, {} slot(s), {} core(s), {} GPU(s){}; SIGTERM or Ctrl-C drains",
        cfg.name,
        cfg.coordinator,
        cfg.store,
        cfg.offer.slots,
        cfg.offer.cpu_millis / 1000,
        cfg.offer.gpus.len(),
        if cfg.testing { ", testing kinds on" } else { "" }
    );
    let summary = Worker::new(cfg).run(terminate_signal()).await.context("worker")?;
    eprintln!(
        "worker {} stopped: {} committed, {} failed, {} handed back",
        summary.worker_id, summary.committed, summary.failed, summary.handed_back
    );
    Ok(())
}
