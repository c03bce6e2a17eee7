//! `wax bench coordinator`: lease + complete throughput and latency under many workers.
//!
//! Submits one single-stage sweep of no-op `sleep` stages (0 ms), then lets `workers`
//! simulated workers lease and complete them as fast as they can, each lease and completion
//! durable in the store before it is answered. Workers talk to the scheduler either directly
//! (what the coordinator itself costs) or through gRPC on loopback (what a cluster sees, with
//! the client and the server sharing this machine's cores).

use crate::auth::{Role, Tokens};
use crate::records::{Resources, WorkerRecord, now_ms};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::server::ServerConfig;
use crate::store;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub workers: usize,
    pub tasks: usize,
    /// Store URL; `None`: a fresh SQLite file in a temporary directory.
    pub store: Option<String>,
    /// Go through gRPC on 127.0.0.1 instead of calling the scheduler directly.
    pub grpc: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workers: usize,
    pub tasks: usize,
    pub store: String,
    pub transport: &'static str,
    pub submit_seconds: f64,
    pub run_seconds: f64,
    pub tasks_per_second: f64,
    pub lease: Latency,
    pub complete: Latency,
    pub journal_batches: u64,
    pub mutations_per_batch: f64,
}

fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

fn manifest(tasks: usize) -> String {
    let shards: Vec<String> = (0..tasks).map(|i| i.to_string()).collect();
    format!(
        "[sweep]\nname = \"bench\"\npipeline = \"single-stage\"\n[limits]\nmax_trials = {tasks}\n\
         [base]\nkind = \"sleep\"\nms = 0\n[axes]\nshard = [{}]\n",
        shards.join(",")
    )
}

struct Recorder {
    lease: Histogram<u64>,
    complete: Histogram<u64>,
}

/// Calls `f` until it succeeds, up to 50 times with a growing pause.
async fn with_retries<T, E: std::fmt::Display, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= 50 => return Err(e.to_string()),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
        }
    }
}

/// Counts one finished task and records its latencies.
async fn finished(
    done: &AtomicUsize,
    rec: &Mutex<Recorder>,
    progress: &(impl Fn(usize) + Send + Sync),
    leased: Duration,
    completed: Duration,
) {
    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut r = rec.lock().await;
        let _ = r.lease.record(micros(leased));
        let _ = r.complete.record(micros(completed));
    }
    if n.is_multiple_of(1000) {
        progress(n);
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, u128::from(u64::MAX)) as u64
}

/// Runs the benchmark; `progress` is called with the number of completed tasks now and then.
pub async fn run(
    cfg: &BenchConfig,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Result<BenchReport, String> {
    let dir = tempfile_dir()?;
    let store_url =
        cfg.store.clone().unwrap_or_else(|| format!("sqlite:{}", dir.join("bench.db").display()));
    let scheduler_cfg =
        SchedulerConfig { max_lease_wait: Duration::from_secs(2), ..SchedulerConfig::default() };
    let done = Arc::new(AtomicUsize::new(0));
    let rec = Arc::new(Mutex::new(Recorder {
        lease: Histogram::new(3).map_err(|e| e.to_string())?,
        complete: Histogram::new(3).map_err(|e| e.to_string())?,
    }));
    let progress = Arc::new(progress);
    let text = manifest(cfg.tasks);

    let (sched, running, submit_seconds) = if cfg.grpc {
        let mut tokens = Tokens::default();
        tokens.insert("bench", "bench", &[Role::Admin]);
        let server_cfg = ServerConfig {
            listen: "127.0.0.1:0".into(),
            store: store_url.clone(),
            scheduler: scheduler_cfg,
            ..ServerConfig::default()
        };
        let running = crate::server::start(&server_cfg, tokens).await.map_err(|e| e.to_string())?;
        let url = format!("http://{}", running.addr);
        let conn = wax_proto::client::Connection::connect(&url, None, Some("bench"))
            .await
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        conn.sweeps()
            .submit(wax_proto::v1::SubmitRequest {
                manifest: text,
                format: "toml".into(),
                source_name: "bench.toml".into(),
                dry_run: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        (running.scheduler.clone(), Some((running, url)), t.elapsed().as_secs_f64())
    } else {
        let st = store::open(&store_url).await.map_err(|e| e.to_string())?;
        let sched = Scheduler::start(st, scheduler_cfg).await.map_err(|e| e.to_string())?;
        let t = Instant::now();
        let prepared = crate::submit::prepare(&text, "toml", "bench.toml", "bench", now_ms())
            .map_err(|e| e.to_string())?;
        sched.submit(prepared.record, prepared.plan).await.map_err(|e| e.to_string())?;
        (sched, None, t.elapsed().as_secs_f64())
    };

    // Every worker connects and registers first; the clock starts when all are ready, so the
    // numbers are steady-state lease/complete, not a connection storm.
    let barrier = Arc::new(tokio::sync::Barrier::new(cfg.workers + 1));
    let mut handles = Vec::with_capacity(cfg.workers);
    for i in 0..cfg.workers {
        let (done, rec, progress, tasks, barrier) =
            (done.clone(), rec.clone(), progress.clone(), cfg.tasks, barrier.clone());
        let name = format!("bench-{i}");
        match &running {
            None => {
                let sched = sched.clone();
                handles.push(tokio::spawn(async move {
                    direct_worker(sched, name, tasks, done, rec, progress, barrier).await
                }));
            }
            Some((_, url)) => {
                let url = url.clone();
                handles.push(tokio::spawn(async move {
                    grpc_worker(url, name, tasks, done, rec, progress, barrier).await
                }));
            }
        }
    }
    barrier.wait().await;
    let journal_before = sched.journal_stats();
    let started = Instant::now();
    for h in handles {
        h.await.map_err(|e| e.to_string())??;
    }
    let run_seconds = started.elapsed().as_secs_f64();
    let journal = sched.journal_stats();
    if let Some((running, _)) = running {
        running.shutdown().await.map_err(|e| e.to_string())?;
    }
    let rec = rec.lock().await;
    let batches = journal.batches - journal_before.batches;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(BenchReport {
        workers: cfg.workers,
        tasks: cfg.tasks,
        store: if cfg.store.is_some() {
            store_url
        } else {
            "sqlite (temporary file, WAL, synchronous=FULL)".into()
        },
        transport: if cfg.grpc { "gRPC over 127.0.0.1" } else { "in-process" },
        submit_seconds,
        run_seconds,
        tasks_per_second: cfg.tasks as f64 / run_seconds,
        lease: latency(&rec.lease),
        complete: latency(&rec.complete),
        journal_batches: batches,
        mutations_per_batch: (journal.mutations - journal_before.mutations) as f64
            / batches.max(1) as f64,
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("wax-bench-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn bench_worker(name: &str) -> WorkerRecord {
    WorkerRecord {
        id: name.to_string(),
        name: name.to_string(),
        resources: Resources {
            gpus: 0,
            gpu_memory_bytes: 0,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        },
        kinds: vec![("sleep".into(), 1)],
        labels: Vec::new(),
        max_concurrent_tasks: 1,
        registered_ms: now_ms(),
        last_seen_ms: now_ms(),
    }
}

async fn direct_worker(
    sched: Arc<Scheduler>,
    name: String,
    tasks: usize,
    done: Arc<AtomicUsize>,
    rec: Arc<Mutex<Recorder>>,
    progress: Arc<impl Fn(usize) + Send + Sync>,
    barrier: Arc<tokio::sync::Barrier>,
) -> Result<(), String> {
    let ready = sched.register(bench_worker(&name)).await.map_err(|e| e.to_string());
    barrier.wait().await;
    ready?;
    while done.load(Ordering::Relaxed) < tasks {
        let t = Instant::now();
        let Some(g) =
            sched.lease(&name, Duration::from_millis(200)).await.map_err(|e| e.to_string())?
        else {
            continue;
        };
        let leased = t.elapsed();
        let t = Instant::now();
        sched.complete(&name, &g.spec.id, g.epoch, vec![]).await.map_err(|e| e.to_string())?;
        let completed = t.elapsed();
        finished(&done, &rec, progress.as_ref(), leased, completed).await;
    }
    Ok(())
}

async fn grpc_worker(
    url: String,
    name: String,
    tasks: usize,
    done: Arc<AtomicUsize>,
    rec: Arc<Mutex<Recorder>>,
    progress: Arc<impl Fn(usize) + Send + Sync>,
    barrier: Arc<tokio::sync::Barrier>,
) -> Result<(), String> {
    use wax_proto::v1;
    let setup = async {
        // A thousand simultaneous connects can be refused or reset: retry like a real worker.
        let conn =
            with_retries(|| wax_proto::client::Connection::connect(&url, None, Some("bench")))
                .await?;
        let request = v1::RegisterRequest {
            protocol_version: wax_proto::PROTOCOL_VERSION,
            worker_name: name.clone(),
            capabilities: Some(v1::Capabilities {
                resources: Some(v1::Resources {
                    gpus: 0,
                    gpu_memory_bytes: 0,
                    cpu_millis: 1000,
                    memory_bytes: 1 << 30,
                }),
                stage_kinds: vec![v1::StageKind { kind: "sleep".into(), schema_version: 1 }],
                labels: Default::default(),
                max_concurrent_tasks: 1,
            }),
        };
        let registered = with_retries(|| {
            let (mut w, request) = (conn.workers(), request.clone());
            async move { w.register(request).await }
        })
        .await?;
        Ok::<_, String>((conn.workers(), registered.into_inner().worker_id))
    };
    let ready = setup.await;
    // Reach the barrier even after a failure, or every other worker would wait for ever.
    barrier.wait().await;
    let (mut w, id) = ready?;
    while done.load(Ordering::Relaxed) < tasks {
        let t = Instant::now();
        let r = w
            .lease(v1::LeaseRequest { worker_id: id.clone(), wait_ms: 200 })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let Some(task) = r.task else { continue };
        let leased = t.elapsed();
        let t = Instant::now();
        w.complete(v1::CompleteRequest {
            worker_id: id.clone(),
            stage_id: task.stage_id,
            epoch: task.epoch,
            files: vec![],
        })
        .await
        .map_err(|e| e.to_string())?;
        let completed = t.elapsed();
        finished(&done, &rec, progress.as_ref(), leased, completed).await;
    }
    Ok(())
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "coordinator benchmark: {} workers, {} no-op tasks, {}",
            self.workers, self.tasks, self.transport
        )?;
        writeln!(f, "  store: {}", self.store)?;
        writeln!(
            f,
            "  submit (plan + durable insert of {} stages): {:.2} s",
            self.tasks, self.submit_seconds
        )?;
        writeln!(
            f,
            "  lease+complete: {:.2} s → {:.0} tasks/s",
            self.run_seconds, self.tasks_per_second
        )?;
        for (name, l) in [("lease", &self.lease), ("complete", &self.complete)] {
            writeln!(
                f,
                "  {name:<8} latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            )?;
        }
        write!(
            f,
            "  durable batches: {} ({:.1} mutations each)",
            self.journal_batches, self.mutations_per_batch
        )
    }
}
