//! `wax` — welfare-axis sweeps. This binary only parses the command line and hands over to the
//! libraries; see ARCHITECTURE.md for where the work happens.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "wax",
    version,
    about = "Run the welfare-axis protocol (maze RL, concept vectors, evaluations) as declarative sweeps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The maze environment: sample episodes, generation statistics, synthetic trajectories.
    #[cfg(feature = "worker")]
    Maze(cli::maze::MazeArgs),
    /// What this machine offers: libtorch, CUDA driver and devices.
    #[cfg(feature = "worker")]
    Doctor(cli::doctor::DoctorArgs),
    /// Versions of the binary and of the coordinator–worker protocol.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        #[cfg(feature = "worker")]
        Command::Maze(args) => cli::maze::run(args),
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
