//! The live view of a running sweep: one bar for the sweep, one per running stage (with the
//! RL step and return its worker reports), and a line for every stage that starts, finishes or
//! fails. Without a terminal (CI, `make demo | tee`), the lines alone, plus a status line
//! every 30 s.

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wax_proto::client::Connection;
use wax_proto::v1;

use super::sweep_view::SweepView;
use super::sweeps::get_sweep;

/// How following a sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    /// The sweep ended in this state (`succeeded`, `failed`, `cancelled`).
    Finished(String),
    /// The caller's interrupt fired first.
    Interrupted,
    /// Stages wait that no worker can take (the reasons), and nothing else is running: with a
    /// fixed set of workers, the sweep cannot finish.
    Stalled(Vec<String>),
}

struct View {
    multi: MultiProgress,
    tty: bool,
    started: Instant,
}

impl View {
    fn say(&self, line: &str) {
        let line = format!("[{:>5.0}s] {line}", self.started.elapsed().as_secs_f64());
        if self.tty {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

/// What, in a sweep's report, shows that a stage may have changed state: its counts and the
/// running attempts.
type Snapshot = (Option<v1::StageCounts>, Vec<(String, u64)>);

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn stage_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix:<9} [{bar:24}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Follows `sweep` until it ends or `interrupt` resolves; with `stall_ends`, also when it
/// stalls with nothing running (a fixed set of workers cannot unstall it).
pub async fn follow(
    conn: &Connection,
    sweep: &str,
    stall_ends: bool,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<FollowEnd> {
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let view = View { multi, tty, started: Instant::now() };
    let mut plan = SweepView::fetch(conn, sweep).await?;
    let top = view.multi.add(ProgressBar::new(plan.stages.len() as u64));
    top.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} stages {msg} [{elapsed_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    top.set_prefix(sweep.to_string());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut seen: HashMap<String, (String, u64)> =
        plan.stages.iter().map(|s| (s.stage_id.clone(), (s.state.clone(), s.attempt))).collect();
    let cached = plan.stages.iter().filter(|s| s.state == "succeeded").count();
    if cached > 0 {
        view.say(&format!(
            "{cached} of {} stages already committed (cached): not run again",
            plan.stages.len()
        ));
    }
    let mut last_status = Instant::now();
    // Stage states change only when the sweep's counts or its running attempts do: the stage
    // list is fetched again only then.
    let mut last_seen: Option<Snapshot> = None;
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = &mut interrupt => {
                top.abandon_with_message("interrupted");
                for b in bars.values() { b.finish_and_clear(); }
                return Ok(FollowEnd::Interrupted);
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let sw = get_sweep(conn, sweep).await?;
        let now_seen =
            (sw.counts, sw.running.iter().map(|r| (r.stage_id.clone(), r.attempt)).collect());
        if last_seen.as_ref() != Some(&now_seen) {
            plan = SweepView::fetch(conn, sweep).await?;
            last_seen = Some(now_seen);
        }
        for s in &plan.stages {
            let before = seen.insert(s.stage_id.clone(), (s.state.clone(), s.attempt));
            let changed = before.as_ref().is_none_or(|(st, a)| st != &s.state || *a != s.attempt);
            if !changed {
                continue;
            }
            let who = plan.describe(&s.stage_id);
            match s.state.as_str() {
                "leased" => view.say(&format!(
                    "started   {:<8} {} {who} (attempt {})",
                    s.kind,
                    short(&s.stage_id),
                    s.attempt
                )),
                "succeeded" => {
                    view.say(&format!("committed {:<8} {} {who}", s.kind, short(&s.stage_id)))
                }
                "failed" => view.say(&format!(
                    "FAILED    {:<8} {} {who}: {}",
                    s.kind,
                    short(&s.stage_id),
                    s.last_error
                )),
                "ready"
                    if !s.last_error.is_empty() && before.is_some_and(|(st, _)| st == "leased") =>
                {
                    view.say(&format!(
                        "retrying  {:<8} {} {who}: {}",
                        s.kind,
                        short(&s.stage_id),
                        s.last_error
                    ))
                }
                _ => {}
            }
        }
        let c = sw.counts.unwrap_or_default();
        top.set_position(u64::from(c.succeeded));
        top.set_message(format!("({} running, {} failed)", c.leased, c.failed));
        let running: HashMap<&str, &v1::RunningStage> =
            sw.running.iter().map(|r| (r.stage_id.as_str(), r)).collect();
        bars.retain(|id, bar| {
            let keep = running.contains_key(id.as_str());
            if !keep {
                bar.finish_and_clear();
                view.multi.remove(bar);
            }
            keep
        });
        for r in &sw.running {
            let bar = bars.entry(r.stage_id.clone()).or_insert_with(|| {
                let b = view.multi.add(ProgressBar::new(1000));
                b.set_style(stage_style());
                b.set_prefix(r.kind.clone());
                b
            });
            if r.progress >= 0.0 {
                bar.set_position((r.progress * 1000.0) as u64);
            }
            bar.set_message(format!("{} {}", plan.describe(&r.stage_id), r.message));
        }
        if !view.tty && last_status.elapsed() >= Duration::from_secs(30) && !sw.running.is_empty() {
            last_status = Instant::now();
            let parts: Vec<String> = sw
                .running
                .iter()
                .map(|r| format!("{} {} {}", r.kind, short(&r.stage_id), r.message))
                .collect();
            view.say(&format!("{}/{} stages; running: {}", c.succeeded, c.total, parts.join("; ")));
        }
        if sw.state == "stalled" && sw.running.is_empty() && stall_ends {
            for b in bars.values() {
                b.finish_and_clear();
            }
            top.abandon_with_message("stalled");
            for r in &sw.stalled_reasons {
                view.say(&format!("stalled: {r}"));
            }
            return Ok(FollowEnd::Stalled(sw.stalled_reasons));
        }
        if matches!(sw.state.as_str(), "succeeded" | "failed" | "cancelled") {
            for b in bars.values() {
                b.finish_and_clear();
            }
            top.finish_with_message(sw.state.clone());
            view.say(&format!(
                "sweep {sweep} {}: {} of {} stages succeeded, {} failed",
                sw.state, c.succeeded, c.total, c.failed
            ));
            return Ok(FollowEnd::Finished(sw.state));
        }
    }
}
