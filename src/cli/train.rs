//! `wax train <config.toml>`: one maze RL (or SFT) run with a live progress bar.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;
use wax_worker::rl::{TrainConfig, run};

#[derive(Args)]
pub struct TrainArgs {
    /// The run's configuration (TOML; see examples/train-*.toml).
    config: PathBuf,
    /// Output directory: metrics.jsonl, eval-before.json, step-N/ checkpoints, summary.json.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue from a checkpoint directory (out/step-N) of the same configuration.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Override `steps`.
    #[arg(long)]
    steps: Option<usize>,
    /// Override `device` (cpu, cuda, cuda:N).
    #[arg(long)]
    device: Option<String>,
    /// Override `dtype` (f32, bf16).
    #[arg(long)]
    dtype: Option<String>,
    /// No progress bar (log lines only).
    #[arg(long)]
    quiet: bool,
}

pub fn run_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let mut cfg = TrainConfig::load(&a.config)?;
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(d) = a.device {
        cfg.device = d;
    }
    if let Some(d) = a.dtype {
        cfg.dtype = d;
    }
    cfg.validate().map_err(|e| anyhow::anyhow!("{}: {}", a.config.display(), e.0))?;
    let total = cfg.steps as u64;
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    eprintln!(
        "train: {} on {} ({}), {} steps, {} mazes × {} rollouts, {} turns → {}",
        cfg.algorithm.name(),
        cfg.model,
        cfg.device,
        cfg.steps,
        cfg.mazes_per_step,
        cfg.group_size,
        cfg.env.turns,
        a.out.display()
    );
    let mut first = true;
    let summary = run(cfg, &a.out, a.resume.as_deref(), |m| {
        if first {
            bar.set_position(m.step as u64 - 1);
            first = false;
        }
        bar.set_message(format!(
            "return {:+.1} (max {:+.1})  entropy {:.3}  gold {:.2}/turn  mold {:.2}/turn",
            m.return_mean, m.return_max, m.entropy, m.gold_rate, m.mold_rate
        ));
        bar.inc(1);
        if a.quiet {
            eprintln!(
                "step {}: return {:+.2} entropy {:.3} loss {:.4} ({:.1} s)",
                m.step, m.return_mean, m.entropy, m.loss, m.step_s
            );
        }
    })
    .with_context(|| format!("training {}", a.config.display()))?;
    bar.finish_and_clear();
    let c = &summary.comparison;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} · {} steps in {:.0} s · held-out mazes: {}",
        summary.algorithm, summary.steps, summary.seconds, c.n
    )?;
    writeln!(
        out,
        "mean return before {:+.2}, after {:+.2} (Δ {:+.2}; paired t = {:.2}, p = {:.2e})",
        c.before_mean, c.after_mean, c.mean_difference, c.t, c.p_value
    )?;
    writeln!(
        out,
        "Gold per turn {:.3} → {:.3}; Mold per turn {:.3} → {:.3}",
        summary.before.gold_rate,
        summary.after.gold_rate,
        summary.before.mold_rate,
        summary.after.mold_rate
    )?;
    for ck in &summary.checkpoints {
        writeln!(out, "checkpoint {}", ck.display())?;
    }
    writeln!(out, "metrics {}", a.out.join("metrics.jsonl").display())?;
    Ok(())
}
