//! `wax` — welfare-axis sweeps. This binary only parses the command line and hands over to the
//! libraries; see ARCHITECTURE.md for where the work happens.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

use cli::settings::CommonFlags;

#[derive(Parser)]
#[command(
    name = "wax",
    version,
    about = "Run the welfare-axis protocol (maze RL, concept vectors, evaluations) as declarative sweeps"
)]
struct Cli {
    #[command(flatten)]
    common: CommonFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sweep on this machine: embedded coordinator, local workers, artifacts on disk.
    #[cfg(feature = "worker")]
    Run(cli::run::RunArgs),
    /// Run the coordinator (gRPC; SQLite or Postgres).
    Serve(cli::serve::ServeArgs),
    /// Lease and run stages for a coordinator (drains on SIGTERM / Ctrl-C).
    #[cfg(feature = "worker")]
    Worker(cli::worker::WorkerArgs),
    /// Submit a sweep manifest to a coordinator.
    Submit(cli::sweeps::SubmitArgs),
    /// Show one sweep, or list the newest.
    Status(cli::sweeps::StatusArgs),
    /// Follow a sweep's events until it ends.
    Watch(cli::sweeps::WatchArgs),
    /// Cancel a sweep (running stages stop at their next heartbeat).
    Cancel(cli::sweeps::SweepArg),
    /// Requeue a sweep's failed stages.
    Retry(cli::sweeps::RetryArgs),
    /// Download a sweep's committed artifacts, laid out by trial and stage (verified, resumable).
    #[cfg(feature = "worker")]
    Pull(cli::pull::PullArgs),
    /// Print one stage's log from the artifact store.
    #[cfg(feature = "worker")]
    Logs(cli::pull::LogsArgs),
    /// Check a manifest locally, or print the manifest JSON Schema.
    Manifest(cli::manifest::ManifestArgs),
    /// Create a bearer token for the coordinator.
    Token(cli::token::TokenArgs),
    /// Benchmarks.
    Bench(cli::bench::BenchArgs),
    /// The maze environment: sample episodes, generation statistics, synthetic trajectories.
    #[cfg(feature = "worker")]
    Maze(cli::maze::MazeArgs),
    /// Models: inspect, generate, pretrain builtin models.
    #[cfg(feature = "worker")]
    Model(cli::model::ModelArgs),
    /// Train a model in the maze: Dr. GRPO, GRPO, REINFORCE, PPO or the SFT control.
    #[cfg(feature = "worker")]
    Train(cli::train::TrainArgs),
    /// Concept vectors (v, and u of the maze-naive model), layer selection and geometry.
    #[cfg(feature = "worker")]
    Extract(cli::extract::ExtractArgs),
    /// Measurements on extracted vectors: geometry, lens, emotions, tracking, steering.
    #[cfg(feature = "worker")]
    Eval(cli::eval::EvalArgs),
    /// What this machine offers: libtorch, CUDA driver and devices.
    #[cfg(feature = "worker")]
    Doctor(cli::doctor::DoctorArgs),
    /// Versions of the binary and of the coordinator–worker protocol.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.common;
    let result: anyhow::Result<()> = match cli.command {
        Command::Serve(a) => async_main(|| async move {
            cli::init_tracing();
            cli::serve::run(&common, a).await
        }),
        Command::Submit(a) => async_main(|| async move { cli::sweeps::submit(&common, a).await }),
        Command::Status(a) => async_main(|| async move { cli::sweeps::status(&common, a).await }),
        Command::Watch(a) => async_main(|| async move { cli::sweeps::watch(&common, a).await }),
        Command::Cancel(a) => async_main(|| async move { cli::sweeps::cancel(&common, a).await }),
        Command::Retry(a) => async_main(|| async move { cli::sweeps::retry(&common, a).await }),
        #[cfg(feature = "worker")]
        Command::Pull(a) => async_main(|| async move { cli::pull::pull(&common, a).await }),
        #[cfg(feature = "worker")]
        Command::Logs(a) => async_main(|| async move { cli::pull::logs(&common, a).await }),
        #[cfg(feature = "worker")]
        Command::Run(a) => async_main(|| async move { cli::run::run(&common, a).await }),
        #[cfg(feature = "worker")]
        Command::Worker(a) => async_main(|| async move {
            cli::init_tracing();
            cli::worker::run(&common, a).await
        }),
        Command::Manifest(a) => cli::manifest::run(a),
        Command::Token(a) => cli::token::run(a),
        Command::Bench(a) => async_main(|| async move { cli::bench::run(a).await }),
        #[cfg(feature = "worker")]
        Command::Maze(args) => cli::maze::run(args),
        #[cfg(feature = "worker")]
        Command::Model(args) => cli::model::run(&common, args),
        #[cfg(feature = "worker")]
        Command::Train(args) => cli::train::run_cmd(args),
        #[cfg(feature = "worker")]
        Command::Extract(args) => cli::extract::run(args),
        #[cfg(feature = "worker")]
        Command::Eval(args) => cli::eval::run(args),
        #[cfg(feature = "worker")]
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Version => {
            println!(
                "wax {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                wax_proto::PROTOCOL_VERSION
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`wax … | head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command on a multi-threaded runtime.
fn async_main<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
