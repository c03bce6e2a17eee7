//! `wax eval <suite>`: measurements on the folders `wax extract` wrote.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use wax_worker::evals::run::{EvalConfig, EvalInputs, Suite, run_eval};
use wax_worker::vectors::store::load_toml;

use super::extract::bar;

#[derive(Args)]
pub struct EvalArgs {
    /// geometry, lens, emotions, tracking, steering or all.
    suite: String,
    /// The `wax extract` output folder (with trained/ and, for controls, naive/).
    #[arg(long, default_value = "runs/extract")]
    vectors: PathBuf,
    /// Settings (TOML: [steering], [tracking], [emotions], [lens], [judge], device, …).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder (default: <vectors>/eval).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override the device (cpu, cuda, cuda:N).
    #[arg(long)]
    device: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let suite = Suite::parse(&a.suite).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown suite `{}`: expected geometry, lens, emotions, tracking, steering or all",
            a.suite
        )
    })?;
    let mut cfg: EvalConfig = match &a.config {
        Some(p) => load_toml(p)?,
        None => EvalConfig::default(),
    };
    if let Some(d) = a.device {
        cfg.device = Some(d);
    }
    let naive = a.vectors.join("naive");
    let inputs = EvalInputs {
        trained: a.vectors.join("trained"),
        naive: naive.join("extraction.json").is_file().then_some(naive),
        ..EvalInputs::default()
    };
    let out = a.out.clone().unwrap_or_else(|| a.vectors.join("eval"));
    let pb = bar(0, a.quiet);
    let report = run_eval(&[suite], &inputs, &cfg, &out, &mut |what, done, total| {
        pb.set_prefix("eval");
        pb.set_message(what.to_string());
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })
    .with_context(|| format!("wax eval {} on {}", a.suite, a.vectors.display()))?;
    pb.finish_and_clear();
    let mut o = std::io::stdout().lock();
    for f in &report.files {
        writeln!(o, "{f}")?;
    }
    Ok(())
}
