//! `wax run <manifest>`: a whole sweep on this machine through the cluster's own code — the
//! coordinator embedded (SQLite under the state folder, gRPC on 127.0.0.1 with a throwaway
//! token), in-process workers that lease stages over that connection, artifacts on local disk.
//!
//! Ctrl-C stops cleanly: workers hand their leases back (long stages first write a resume
//! checkpoint), the coordinator closes its store. Running the same manifest again continues:
//! committed stages are cache hits and never run twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tokio::sync::watch;
use wax_coordinator::auth::{Role, Tokens, new_token};
use wax_coordinator::scheduler::SchedulerConfig;
use wax_coordinator::server::ServerConfig;
use wax_proto::client::Connection;
use wax_proto::v1;
use wax_worker::artifacts::ArtifactStore;
use wax_worker::runtime::{Offer, Worker};

use super::progress::{FollowEnd, follow};
use super::settings::{CommonFlags, Settings};
use super::sweeps::rpc;

#[derive(Args)]
pub struct RunArgs {
    /// The sweep manifest (TOML, YAML or JSON).
    manifest: PathBuf,
    /// In-process workers (default: one per GPU, else one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The state folder: the coordinator's database, the artifacts (unless --store), work files.
    #[arg(long, default_value = ".wax", value_name = "DIR")]
    state: PathBuf,
    /// Artifact store URL (default: <state>/store on local disk).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

/// Short leases and heartbeats: everything is on this machine.
fn embedded_scheduler() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl: Duration::from_secs(20),
        heartbeat_interval: Duration::from_secs(2),
        stall_grace: Duration::from_secs(10),
        worker_timeout: Duration::from_secs(30),
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
        ..SchedulerConfig::default()
    }
}

/// Starts the coordinator on the state folder's database, listening on 127.0.0.1 with a fresh
/// token; returns it with its URL and the token.
pub async fn embedded(
    state: &Path,
) -> anyhow::Result<(wax_coordinator::server::Running, String, String)> {
    let token = new_token()?;
    let mut tokens = Tokens::default();
    tokens.insert(&token, "wax-run", &[Role::Admin]);
    let server = ServerConfig {
        listen: "127.0.0.1:0".into(),
        store: format!("sqlite:{}", state.join("coordinator.db").display()),
        tokens: None,
        tls_cert: None,
        tls_key: None,
        scheduler: embedded_scheduler(),
    };
    let running = wax_coordinator::server::start(&server, tokens)
        .await
        .with_context(|| format!("starting the embedded coordinator on {}", state.display()))?;
    let url = format!("http://{}", running.addr);
    Ok((running, url, token))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))
}

pub async fn run(flags: &CommonFlags, a: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let s = Settings::load(flags, &[])?;
    let text = std::fs::read_to_string(&a.manifest)
        .with_context(|| format!("reading {}", a.manifest.display()))?;
    let source = a.manifest.display().to_string();
    super::sweeps::check_locally(&text, &source, true)?;
    let state = absolute(&a.state)?;
    let store_url = match a.store {
        Some(u) => u,
        None => format!("file://{}", absolute(&state.join("store"))?.display()),
    };
    let store = ArtifactStore::open(&store_url, &s.s3)?;

    // The coordinator, embedded: the same server a cluster runs, on 127.0.0.1.
    let (coordinator, url, token) = embedded(&state).await?;

    // Workers, in-process, each with its share of the machine.
    let offer = Offer::detect();
    let n = a.workers.unwrap_or(if offer.gpus.is_empty() {
        (offer.cpu_millis / 1000) as usize
    } else {
        offer.gpus.len()
    });
    anyhow::ensure!(n >= 1, "--workers must be at least 1");
    let mut base = super::worker::worker_config(&s, token.clone())?;
    base.coordinator = url.clone();
    base.store = store_url.clone();
    base.testing = true;
    base.lease_wait = Duration::from_secs(2);
    base.drain_timeout = Duration::ZERO;
    base.reconnect_for = Duration::from_secs(30);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for (i, part) in offer.split(n).into_iter().enumerate() {
        let mut cfg = base.clone();
        cfg.name = format!("local-{i}");
        cfg.offer = part;
        cfg.work_dir = state.join("work").join(format!("w{i}"));
        let mut rx = drain_rx.clone();
        workers.spawn(Worker::new(cfg).run(async move {
            let _ = rx.wait_for(|d| *d).await;
        }));
    }

    let conn = Connection::connect(&url, None, Some(&token)).await?;
    let submitted = conn
        .sweeps()
        .submit(v1::SubmitRequest {
            manifest: text,
            format: String::new(),
            source_name: source,
            dry_run: false,
        })
        .await
        .map_err(rpc)?
        .into_inner();
    let sweep = submitted.sweep_id.clone();
    eprintln!(
        "wax run: sweep {sweep}: {} trials, {} stages ({} committed before, {} to run) on {n} local worker(s); state in {}",
        submitted.trials,
        submitted.stages,
        submitted.cached,
        submitted.scheduled + submitted.shared,
        state.display()
    );
    let end = follow(&conn, &sweep, true, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;

    // Stop the workers: running stages hand their leases back (after a resume checkpoint).
    if matches!(end, Ok(FollowEnd::Interrupted)) {
        eprintln!(
            "\ninterrupted: stopping the workers (Ctrl-C again to quit at once); run the same command to continue"
        );
    }
    let _ = drain_tx.send(true);
    let stop_workers = async {
        while let Some(r) = workers.join_next().await {
            if let Ok(Err(e)) = r {
                eprintln!("worker: {e:#}");
            }
        }
    };
    tokio::select! {
        _ = stop_workers => {}
        _ = tokio::signal::ctrl_c() => {
            eprintln!("quitting without waiting for the workers");
            std::process::exit(130);
        }
    }
    let outcome = match end? {
        FollowEnd::Finished(state) if state == "succeeded" => {
            let view = super::sweep_view::SweepView::fetch(&conn, &sweep).await?;
            let mut out = std::io::stdout().lock();
            let hint = format!(" --state {}", a.state.display());
            super::results::print_results(&mut out, &store, &sweep, &view, &hint).await?;
            writeln!(out, "sweep {sweep} finished in {:.0} s", started.elapsed().as_secs_f64())?;
            Ok(())
        }
        FollowEnd::Finished(state) => {
            let view = super::sweep_view::SweepView::fetch(&conn, &sweep).await?;
            for f in view.stages.iter().filter(|f| f.state == "failed" && f.attempt > 0) {
                eprintln!(
                    "failed {} {} ({}): {}\n  log: {}/cas/{}/{}/log.txt",
                    f.kind,
                    &f.stage_id[..12.min(f.stage_id.len())],
                    view.describe(&f.stage_id),
                    f.last_error,
                    store_url,
                    f.stage_id,
                    f.attempt
                );
            }
            Err(anyhow::anyhow!("sweep {sweep} ended {state}"))
        }
        FollowEnd::Interrupted => Err(anyhow::anyhow!("interrupted")),
        FollowEnd::Stalled(reasons) => Err(anyhow::anyhow!(
            "sweep {sweep} cannot finish on this machine: {}; lower the stages' `[resources]` in \
             the manifest or run it on a cluster",
            reasons.join("; ")
        )),
    };
    coordinator.shutdown().await.context("stopping the embedded coordinator")?;
    if let Err(e) = outcome {
        bail!(e);
    }
    Ok(())
}
