//! `wax bench model`: prefill and decode throughput of models on CPU or GPU.

use super::settings::Output;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use tch::{Device, Kind};
use wax_worker::generate::{Decode, DecodeBench, DecodeBenchConfig, decode_bench};
use wax_worker::model::Model;

#[derive(Args)]
pub struct BenchModelArgs {
    /// Models: local Hugging Face snapshot directories or `builtin:<size>` (default: the
    /// builtin ladder).
    refs: Vec<String>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// `f32` or `bf16`.
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    #[command(flatten)]
    sampling: super::sampling_args::SamplingArgs,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Decode loop: `auto` (CUDA graphs where they apply), `eager` (op by op), `static` (the
    /// graph-ready step without capture) or `graph` (captured; an error where unavailable).
    #[arg(long, default_value = "auto", value_parser = parse_decode)]
    decode: Decode,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
}

/// Parses `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    wax_worker::device::parse_device(s)
        .ok_or_else(|| anyhow::anyhow!("--device: expected cpu, cuda or cuda:N, got `{s}`"))
}

/// Fails unless libtorch sees the CUDA device `device` (named `arg` on the command line).
pub fn ensure_device(device: Device, arg: &str) -> anyhow::Result<()> {
    if let Device::Cuda(i) = device {
        anyhow::ensure!(
            tch::Cuda::is_available() && i < tch::Cuda::device_count() as usize,
            "--device {arg}: libtorch sees {} CUDA device(s) (see `wax doctor`)",
            tch::Cuda::device_count()
        );
    }
    Ok(())
}

/// Parses a decode mode.
fn parse_decode(s: &str) -> Result<Decode, String> {
    match s {
        "auto" => Ok(Decode::Auto),
        "eager" => Ok(Decode::Eager),
        "static" => Ok(Decode::Static),
        "graph" => Ok(Decode::Graph),
        _ => Err(format!("expected auto, eager, static or graph, got `{s}`")),
    }
}

/// Parses `f32`/`fp32`/`float32` and `bf16`/`bfloat16`.
pub fn parse_dtype(s: &str) -> anyhow::Result<Kind> {
    match s {
        "f32" | "fp32" | "float32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        _ => anyhow::bail!("--dtype: expected f32 or bf16, got `{s}`"),
    }
}

pub fn run(a: BenchModelArgs) -> anyhow::Result<()> {
    let device = parse_device(&a.device)?;
    ensure_device(device, &a.device)?;
    let kind = parse_dtype(&a.dtype)?;
    let sampling = a.sampling.sampling()?;
    let cfg = DecodeBenchConfig {
        batch: a.batch,
        prompt_len: a.prompt_len,
        new_tokens: a.new_tokens,
        sampling,
        warmup: a.warmup,
        repeats: a.repeats,
        seed: a.seed,
        decode: a.decode,
    };
    let refs = if a.refs.is_empty() { wax_worker::builtin::ladder_refs() } else { a.refs };
    let mut results: Vec<(String, DecodeBench)> = Vec::new();
    for r in &refs {
        let dir = wax_worker::builtin::resolve_model_ref(r)
            .with_context(|| format!("model reference `{r}`"))?;
        eprintln!("bench: {r} on {device:?} as {kind:?} …");
        let model = Model::load(&dir, device, kind).with_context(|| format!("loading `{r}`"))?;
        let b = decode_bench(&model, &cfg).with_context(|| format!("benchmarking `{r}`"))?;
        results.push((r.clone(), b));
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Output::Json => {
            if let [(_, one)] = results.as_slice() {
                writeln!(out, "{}", serde_json::to_string_pretty(one)?)?;
            } else {
                let all: Vec<_> = results
                    .iter()
                    .map(|(r, b)| serde_json::json!({ "model": r, "result": b }))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            }
        }
        Output::Text => {
            writeln!(
                out,
                "batch {} × prompt {} + {} new tokens, {:?}, decode {}, {} timed run(s), medians",
                cfg.batch,
                cfg.prompt_len,
                cfg.new_tokens,
                cfg.sampling,
                cfg.decode.name(),
                cfg.repeats
            )?;
            writeln!(
                out,
                "{:<28} {:>12} {:>14} {:>14} {:>14} {:>10} {:>10} {:>9} {:>7} {:>10} {:>22}",
                "model",
                "params",
                "forward tok/s",
                "prefill tok/s",
                "decode tok/s",
                "ms/step",
                "sample ms",
                "sampler",
                "graphs",
                "capture ms",
                "attn/prep/norm/logits"
            )?;
            for (r, b) in &results {
                writeln!(
                    out,
                    "{:<28} {:>12} {:>14.0} {:>14.0} {:>14.1} {:>10.2} {:>10.2} {:>9} {:>7} {:>10.1} {:>22}",
                    r,
                    b.parameters,
                    b.forward_tokens_per_s,
                    b.prefill_tokens_per_s,
                    b.decode_tokens_per_s,
                    b.decode_ms_per_step,
                    b.sample_ms,
                    b.sampler,
                    if b.graphs { "yes" } else { "no" },
                    b.capture_ms,
                    format!(
                        "{}/{}/{}/{}",
                        b.step_attention,
                        b.step_prep,
                        b.step_norm,
                        if b.decode_logits == "bfloat16" { "bf16" } else { "f32" }
                    )
                )?;
            }
        }
    }
    Ok(())
}
