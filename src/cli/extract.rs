//! `wax extract`: concept vectors of a trained model and its maze-naive counterpart.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tch::Kind;
use wax_worker::device::{parse_device, parse_kind};
use wax_worker::tokenizer::{ReasoningEffort, TemplateOptions};
use wax_worker::vectors::ExtractConfig;
use wax_worker::vectors::extract::ExtractProgress;
use wax_worker::vectors::geometry::Uncertainty;
use wax_worker::vectors::run::{ExtractJob, run_extract};
use wax_worker::vectors::store::load_toml;

#[derive(Args)]
pub struct ExtractArgs {
    /// The model to read (a trained checkpoint's `step-N/model`, `builtin:<size>`, a snapshot).
    #[arg(long)]
    model: String,
    /// The maze-naive model for the control vectors u: a reference, `auto` (the checkpoint's
    /// base model, from its state.json) or `none`.
    #[arg(long, default_value = "auto")]
    naive: String,
    /// Extraction settings (TOML: per_class, heldout_fraction, [synthetic], [maze], [env], …).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override trajectories per class (paper: 5000).
    #[arg(long)]
    per_class: Option<usize>,
    /// Override the held-out share used for layer selection.
    #[arg(long)]
    heldout: Option<f64>,
    /// Output folder: trained/, naive/ (vectors.safetensors, layers.jsonl, extraction.json,
    /// geometry.json) and summary.json.
    #[arg(long, default_value = "runs/extract")]
    out: PathBuf,
    /// cpu, cuda, cuda:N (default: cuda when available).
    #[arg(long)]
    device: Option<String>,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 500)]
    resamples: usize,
    /// Qwen3's `enable_thinking` for the chat template (default: the trained run's, else the
    /// template's).
    #[arg(long)]
    enable_thinking: Option<bool>,
    /// GPT-OSS's `reasoning_effort` for the chat template: low, medium or high (default: the
    /// trained run's, else the template's, medium).
    #[arg(long, value_parser = parse_effort)]
    reasoning_effort: Option<ReasoningEffort>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_effort(s: &str) -> Result<ReasoningEffort, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}`: expected low, medium or high"))
}

pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<ExtractConfig> {
    match path {
        None => Ok(ExtractConfig::default()),
        Some(p) => Ok(load_toml(p)?),
    }
}

pub fn kind_of(dtype: &str) -> anyhow::Result<Kind> {
    parse_kind(dtype).ok_or_else(|| anyhow::anyhow!("--dtype {dtype}: expected f32 or bf16"))
}

pub fn device_of(device: Option<&str>) -> anyhow::Result<tch::Device> {
    match device {
        None => Ok(tch::Device::cuda_if_available()),
        Some(d) => parse_device(d)
            .ok_or_else(|| anyhow::anyhow!("--device {d}: expected cpu, cuda or cuda:N")),
    }
}

pub fn bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(a: ExtractArgs) -> anyhow::Result<()> {
    let mut config = load_config(a.config.as_ref())?;
    if let Some(n) = a.per_class {
        config.synthetic.per_class = n;
    }
    if let Some(h) = a.heldout {
        config.heldout_fraction = h;
    }
    let job = ExtractJob {
        model: a.model.clone(),
        naive: (a.naive != "none").then(|| a.naive.clone()),
        config,
        device: device_of(a.device.as_deref())?,
        kind: kind_of(&a.dtype)?,
        template_options: TemplateOptions {
            enable_thinking: a.enable_thinking,
            reasoning_effort: a.reasoning_effort,
        },
        uncertainty: Uncertainty { resamples: a.resamples, ..Uncertainty::default() },
        out: a.out.clone(),
    };
    let pb = bar(0, a.quiet);
    let report = run_extract(&job, |role, p| match p {
        ExtractProgress::Forwarded { done, total } => {
            pb.set_prefix(role.name());
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    })
    .with_context(|| format!("extracting from {}", a.model))?;
    pb.finish_and_clear();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<8} {:>9} {:>9} {:>7} {:>17} {:>8} {:>8} {:>9}",
        "model", "cos avg", "cos min", "argmin", "95% CI of min", "ℓ*Mold", "ℓ*Gold", "centred"
    )?;
    for m in &report.models {
        let l = |x: Option<usize>| x.map_or("-".to_string(), |l| l.to_string());
        writeln!(
            out,
            "{:<8} {:>+9.3} {:>+9.3} {:>7} {:>+8.3}…{:<+8.3} {:>8} {:>8} {:>+9.3}",
            m.role,
            m.cos_avg,
            m.cos_min,
            m.cos_argmin,
            m.cos_min_ci.0,
            m.cos_min_ci.1,
            l(m.layer_mold),
            l(m.layer_gold),
            m.centred_mold_gold
        )?;
    }
    writeln!(out, "vectors and tables in {}", a.out.display())?;
    Ok(())
}
