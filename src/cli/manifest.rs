//! `wax manifest check|schema`: validate a sweep manifest locally.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use wax_coordinator::manifest::{self, ManifestFormat};

#[derive(Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Parse, expand and plan a manifest; print located errors or a summary.
    Check {
        file: PathBuf,
        /// Also list every trial with its parameters.
        #[arg(long)]
        trials: bool,
    },
    /// Print the JSON Schema of sweep manifests.
    Schema,
}

pub fn run(a: ManifestArgs) -> anyhow::Result<()> {
    match a.command {
        ManifestCommand::Schema => {
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&manifest::json_schema())?
            )?;
            Ok(())
        }
        ManifestCommand::Check { file, trials } => check(&file, trials),
    }
}

fn check(file: &PathBuf, list: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let source = file.display().to_string();
    let run = || -> Result<_, manifest::ManifestErrors> {
        let m = manifest::parse(&text, ManifestFormat::guess(&source), &source)?;
        let trials = manifest::expand(&m)?;
        let plan = wax_coordinator::plan::plan(&m, &trials, 0)?;
        // Every stage config read as a worker will (unknown fields, bad values, model
        // references), located in the manifest.
        #[cfg(feature = "worker")]
        super::check::check(&m, &plan, false)?;
        Ok((m, plan))
    };
    let (m, plan) = match run() {
        Ok(x) => x,
        Err(errors) => {
            // Located errors, one per line, as `file:line:column: path: message`.
            anyhow::bail!("{} problem(s):\n{errors}", errors.0.len());
        }
    };
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &plan.stages {
        *by_kind.entry(s.kind.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok — sweep `{}`", source, m.sweep.name)?;
    writeln!(
        out,
        "  {} trials, {} distinct stages ({})",
        plan.trials.len(),
        plan.stages.len(),
        kinds.join(", ")
    )?;
    if list {
        for t in &plan.trials {
            let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "  trial {:>4}: {}", t.index, params.join(" "))?;
        }
    }
    Ok(())
}
