//! `wax bench attention`: the decode step's attention alone, SDPA against the split-K kernel.

use super::bench_model::{ensure_device, parse_device, parse_dtype};
use super::settings::Output;
use clap::Args;
use std::io::Write;
use wax_worker::model::{AttnBenchConfig, attention_bench};

#[derive(Args)]
pub struct BenchAttentionArgs {
    /// `cpu`, `cuda` or `cuda:N` (the kernel needs CUDA; on the CPU only SDPA is measured).
    #[arg(long, default_value = "cuda")]
    device: String,
    /// `f32` or `bf16`.
    #[arg(long, default_value = "bf16")]
    dtype: String,
    #[arg(long, default_value_t = 512)]
    batch: i64,
    /// Query heads (default: Qwen3-0.6B's shape).
    #[arg(long, default_value_t = 16)]
    heads: i64,
    #[arg(long, default_value_t = 8)]
    kv_heads: i64,
    #[arg(long, default_value_t = 128)]
    head_dim: i64,
    /// Attention windows, comma-separated; each at a full and a half-full window.
    #[arg(long, value_delimiter = ',', default_values_t = [128i64, 256, 1024])]
    views: Vec<i64>,
    #[arg(long, default_value_t = 50)]
    iters: usize,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
}

pub fn run(a: BenchAttentionArgs) -> anyhow::Result<()> {
    let device = parse_device(&a.device)?;
    ensure_device(device, &a.device)?;
    let cfg = AttnBenchConfig {
        device,
        kind: parse_dtype(&a.dtype)?,
        batch: a.batch,
        heads: a.heads,
        kv_heads: a.kv_heads,
        head_dim: a.head_dim,
        views: a.views,
        iters: a.iters,
    };
    let rows = attention_bench(&cfg)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        Output::Text => {
            writeln!(
                out,
                "decode attention, batch {} × {} heads ({} kv) × {} on {device:?} as {:?}; median \
                 of {} calls",
                cfg.batch, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.kind, cfg.iters
            )?;
            writeln!(
                out,
                "{:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
                "view",
                "slot",
                "SDPA µs",
                "SDPA GB/s",
                "kernel µs",
                "kernel GB/s",
                "speedup",
                "max |Δ|"
            )?;
            for r in &rows {
                let gbs = |bytes: f64, us: f64| bytes / us / 1e3;
                let (k_us, k_gbs, speedup, diff) = match (r.kernel_us, r.max_abs_diff) {
                    (Some(us), Some(d)) => (
                        format!("{us:.1}"),
                        format!("{:.0}", gbs(r.attended_bytes, us)),
                        format!("{:.2}×", r.sdpa_us / us),
                        format!("{d:.1e}"),
                    ),
                    _ => ("-".into(), "-".into(), "-".into(), "-".into()),
                };
                writeln!(
                    out,
                    "{:>6} {:>6} {:>10.1} {:>10.0} {:>10} {:>10} {:>8} {:>10}",
                    r.view,
                    r.slot,
                    r.sdpa_us,
                    gbs(r.window_bytes, r.sdpa_us),
                    k_us,
                    k_gbs,
                    speedup,
                    diff
                )?;
            }
            writeln!(
                out,
                "(GB/s: key and value bytes each reads per second: SDPA the whole window, the \
                 kernel the attended slots)"
            )?;
            if rows.iter().all(|r| r.kernel_us.is_none()) {
                writeln!(
                    out,
                    "(the kernel needs a CUDA device and NVRTC; only SDPA was measured)"
                )?;
            }
        }
    }
    Ok(())
}
