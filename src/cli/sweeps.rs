//! Client commands: submit, status, watch, cancel, retry.

use super::settings::{CommonFlags, Output, Settings};
use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use wax_proto::client::Connection;
use wax_proto::v1;

#[derive(Args)]
pub struct SubmitArgs {
    /// The sweep manifest (TOML, YAML or JSON, by extension).
    pub manifest: PathBuf,
    /// Plan only: print what would run.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the sweep's events after submitting.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// A sweep id; without it, the newest sweeps.
    pub sweep: Option<String>,
    /// How many sweeps to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Args)]
pub struct SweepArg {
    pub sweep: String,
}

#[derive(Args)]
pub struct WatchArgs {
    pub sweep: String,
    /// Also print every lease.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Args)]
pub struct RetryArgs {
    /// Requeue the sweep's failed stages (with fresh retry budgets).
    #[arg(long, required = true)]
    pub failed: bool,
    pub sweep: String,
}

pub async fn connect(s: &Settings) -> anyhow::Result<Connection> {
    let ca = match &s.ca_cert {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("reading CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    let token = s.bearer()?;
    if token.is_none() {
        bail!(
            "no token: set WAX_TOKEN, --token-file, or `token`/`token_file` in the settings file"
        );
    }
    Ok(Connection::connect(&s.coordinator, ca, token.as_deref()).await?)
}

/// One sweep as the coordinator reports it.
pub async fn get_sweep(conn: &Connection, sweep: &str) -> anyhow::Result<v1::Sweep> {
    let req = v1::GetSweepRequest { sweep_id: sweep.to_string() };
    Ok(conn.sweeps().get(req).await.map_err(rpc)?.into_inner())
}

/// Turns a gRPC status into a one-line error for people.
pub fn rpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

pub async fn submit(flags: &CommonFlags, a: SubmitArgs) -> anyhow::Result<()> {
    let s = Settings::load(flags, &[])?;
    let text = std::fs::read_to_string(&a.manifest)
        .with_context(|| format!("reading {}", a.manifest.display()))?;
    check_locally(&text, &a.manifest.display().to_string(), false)?;
    let conn = connect(&s).await?;
    let req = v1::SubmitRequest {
        manifest: text,
        format: String::new(),
        source_name: a.manifest.display().to_string(),
        dry_run: a.dry_run,
    };
    let r = conn.sweeps().submit(req).await.map_err(rpc)?.into_inner();
    if s.output == Output::Json {
        print_json(&serde_json::json!({
            "sweep_id": r.sweep_id, "trials": r.trials, "stages": r.stages,
            "cached": r.cached, "scheduled": r.scheduled, "shared": r.shared,
        }))?;
    } else if a.dry_run {
        writeln!(std::io::stdout(), "dry run: {} trials, {} stages", r.trials, r.stages)?;
    } else {
        writeln!(
            std::io::stdout(),
            "{}\n  {} trials, {} stages: {} cached, {} scheduled, {} shared with other sweeps",
            r.sweep_id,
            r.trials,
            r.stages,
            r.cached,
            r.scheduled,
            r.shared
        )?;
    }
    if a.watch && !a.dry_run {
        follow(&conn, &r.sweep_id, false, s.output).await?;
    }
    Ok(())
}

/// Plans the manifest here and reads every stage config with the worker's types, so that a
/// mistake is a located error now rather than a failed stage later; with `here`, model
/// references must also resolve on this machine (`wax run`). (The coordinator-only build has
/// no worker types; its coordinator still refuses what it cannot plan.)
pub fn check_locally(text: &str, source: &str, #[allow(unused)] here: bool) -> anyhow::Result<()> {
    use wax_coordinator::manifest::{self, ManifestFormat};
    let run = || -> Result<(), manifest::ManifestErrors> {
        let m = manifest::parse(text, ManifestFormat::guess(source), source)?;
        let trials = manifest::expand(&m)?;
        let _plan = wax_coordinator::plan::plan(&m, &trials, 0)?;
        #[cfg(feature = "worker")]
        super::check::check(&m, &_plan, here)?;
        Ok(())
    };
    run().map_err(|errors| anyhow::anyhow!("{} problem(s):\n{errors}", errors.0.len()))
}

fn sweep_json(sw: &v1::Sweep) -> serde_json::Value {
    let c = sw.counts.unwrap_or_default();
    serde_json::json!({
        "id": sw.id, "name": sw.name, "state": sw.state, "created_unix_ms": sw.created_unix_ms,
        "trials": sw.trials, "submitted_by": sw.submitted_by, "priority": sw.priority,
        "max_concurrent": sw.max_concurrent,
        "counts": { "total": c.total, "pending": c.pending, "ready": c.ready, "leased": c.leased,
                    "succeeded": c.succeeded, "failed": c.failed, "cancelled": c.cancelled, "cached": c.cached },
        "stalled_reasons": sw.stalled_reasons,
        "running": sw.running.iter().map(|r| serde_json::json!({"stage_id": r.stage_id, "kind": r.kind,
            "worker_id": r.worker_id, "attempt": r.attempt, "progress": (r.progress >= 0.0).then_some(r.progress),
            "message": r.message, "metrics": r.metrics})).collect::<Vec<_>>(),
        "failures": sw.failures.iter().map(|f| serde_json::json!({"stage_id": f.stage_id, "kind": f.kind, "error": f.error})).collect::<Vec<_>>(),
    })
}

fn sweep_line(sw: &v1::Sweep) -> String {
    let c = sw.counts.unwrap_or_default();
    format!(
        "{:<36} {:<10} {:>6} trials  {:>5}/{:<5} done  {} running  {} failed",
        sw.id, sw.state, sw.trials, c.succeeded, c.total, c.leased, c.failed
    )
}

pub async fn status(flags: &CommonFlags, a: StatusArgs) -> anyhow::Result<()> {
    let s = Settings::load(flags, &[])?;
    let conn = connect(&s).await?;
    let mut out = std::io::stdout().lock();
    match a.sweep {
        Some(id) => {
            let sw = get_sweep(&conn, &id).await?;
            if s.output == Output::Json {
                return print_json(&sweep_json(&sw));
            }
            writeln!(out, "{}", sweep_line(&sw))?;
            let c = sw.counts.unwrap_or_default();
            writeln!(
                out,
                "  stages: {} pending, {} ready, {} leased, {} succeeded ({} cached), {} failed, {} cancelled",
                c.pending, c.ready, c.leased, c.succeeded, c.cached, c.failed, c.cancelled
            )?;
            for r in &sw.running {
                let pct = if r.progress >= 0.0 {
                    format!("{:>5.1} %", 100.0 * r.progress)
                } else {
                    "    ? %".into()
                };
                writeln!(
                    out,
                    "  running {} {} attempt {} on {}: {pct} {}",
                    r.kind,
                    &r.stage_id[..12.min(r.stage_id.len())],
                    r.attempt,
                    r.worker_id,
                    r.message
                )?;
            }
            for r in &sw.stalled_reasons {
                writeln!(out, "  stalled: {r}")?;
            }
            for f in &sw.failures {
                writeln!(
                    out,
                    "  failed {} {}: {}",
                    f.kind,
                    &f.stage_id[..12.min(f.stage_id.len())],
                    f.error
                )?;
            }
        }
        None => {
            let list = conn
                .sweeps()
                .list(v1::ListSweepsRequest { limit: a.limit })
                .await
                .map_err(rpc)?
                .into_inner();
            if s.output == Output::Json {
                return print_json(&list.sweeps.iter().map(sweep_json).collect::<Vec<_>>());
            }
            for sw in &list.sweeps {
                writeln!(out, "{}", sweep_line(sw))?;
            }
        }
    }
    Ok(())
}

pub async fn watch(flags: &CommonFlags, a: WatchArgs) -> anyhow::Result<()> {
    let s = Settings::load(flags, &[])?;
    let conn = connect(&s).await?;
    follow(&conn, &a.sweep, a.verbose, s.output).await
}

/// Prints a sweep's events until it ends; fails (exit 1) if it ends failed or cancelled.
async fn follow(
    conn: &Connection,
    sweep: &str,
    verbose: bool,
    output: Output,
) -> anyhow::Result<()> {
    let mut stream = conn
        .sweeps()
        .watch(v1::WatchRequest { sweep_id: sweep.to_string(), after_seq: 0 })
        .await
        .map_err(rpc)?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(e) = stream.message().await.map_err(rpc)? {
        if e.kind == "leased" && !verbose && output == Output::Text {
            continue;
        }
        if output == Output::Json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"seq": e.seq, "unix_ms": e.unix_ms, "kind": e.kind, "stage_id": e.stage_id,
                    "stage_kind": e.stage_kind, "message": e.message, "state": e.state})
            )?;
        } else {
            let progress =
                e.counts.map(|c| format!(" [{}/{}]", c.succeeded, c.total)).unwrap_or_default();
            let stage = if e.stage_id.is_empty() {
                String::new()
            } else {
                format!(" {} {}", e.stage_kind, &e.stage_id[..12.min(e.stage_id.len())])
            };
            writeln!(out, "{:>6} {:<10}{stage}{progress} {}", e.seq, e.kind, e.message)?;
        }
        out.flush()?;
    }
    let sw = get_sweep(conn, sweep).await?;
    match sw.state.as_str() {
        "succeeded" => Ok(()),
        other => bail!("sweep {sweep} ended {other}"),
    }
}

pub async fn cancel(flags: &CommonFlags, a: SweepArg) -> anyhow::Result<()> {
    let s = Settings::load(flags, &[])?;
    let conn = connect(&s).await?;
    let r = conn
        .sweeps()
        .cancel(v1::CancelRequest { sweep_id: a.sweep.clone() })
        .await
        .map_err(rpc)?
        .into_inner();
    if s.output == Output::Json {
        return print_json(&serde_json::json!({"sweep_id": a.sweep, "cancelled": r.cancelled}));
    }
    writeln!(
        std::io::stdout(),
        "{}: {} stages cancelled (running ones stop at their next heartbeat)",
        a.sweep,
        r.cancelled
    )?;
    Ok(())
}

pub async fn retry(flags: &CommonFlags, a: RetryArgs) -> anyhow::Result<()> {
    debug_assert!(a.failed);
    let s = Settings::load(flags, &[])?;
    let conn = connect(&s).await?;
    let r = conn
        .sweeps()
        .retry_failed(v1::RetryFailedRequest { sweep_id: a.sweep.clone() })
        .await
        .map_err(rpc)?
        .into_inner();
    if s.output == Output::Json {
        return print_json(&serde_json::json!({"sweep_id": a.sweep, "requeued": r.requeued}));
    }
    writeln!(std::io::stdout(), "{}: {} failed stages requeued", a.sweep, r.requeued)?;
    Ok(())
}
