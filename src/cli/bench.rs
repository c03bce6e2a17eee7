//! `wax bench …`: performance measurements (never timed tests).

use super::settings::Output;
use clap::{Args, Subcommand};
use std::io::Write;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Lease+complete throughput and latency of the coordinator with many simulated workers.
    Coordinator {
        #[arg(long, default_value_t = 1000)]
        workers: usize,
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// Store URL (default: a temporary SQLite file, durable: WAL + synchronous=FULL).
        #[arg(long)]
        store: Option<String>,
        /// Go through gRPC on 127.0.0.1 (client and server share this machine).
        #[arg(long)]
        grpc: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Forward (prefill) and decode tokens/s of models, through the product's generation path.
    #[cfg(feature = "worker")]
    Model(super::bench_model::BenchModelArgs),
    /// The decode step's attention alone: libtorch's SDPA over the window against the split-K
    /// CUDA kernel (`WAX_DECODE_ATTENTION=kernel`), per window and fill level.
    #[cfg(feature = "worker")]
    Attention(super::bench_attention::BenchAttentionArgs),
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.command {
        BenchCommand::Coordinator { workers, tasks, store, grpc, format } => {
            anyhow::ensure!(workers > 0 && tasks > 0, "--workers and --tasks must be positive");
            let cfg = wax_coordinator::bench::BenchConfig { workers, tasks, store, grpc };
            let bar = indicatif_bar(tasks as u64);
            let b = bar.clone();
            let report = wax_coordinator::bench::run(&cfg, move |n| b.set_position(n as u64))
                .await
                .map_err(anyhow::Error::msg)?;
            bar.finish_and_clear();
            let mut out = std::io::stdout().lock();
            match format {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                Output::Text => writeln!(out, "{report}")?,
            }
            Ok(())
        }
        #[cfg(feature = "worker")]
        BenchCommand::Model(args) => super::bench_model::run(args),
        #[cfg(feature = "worker")]
        BenchCommand::Attention(args) => super::bench_attention::run(args),
    }
}

fn indicatif_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("tasks [{bar:30}] {pos}/{len} ({per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
