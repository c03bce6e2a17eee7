//! Subcommand implementations: argument structs and printing; the work is in the libraries.

pub mod bench;
#[cfg(feature = "worker")]
pub mod bench_attention;
#[cfg(feature = "worker")]
pub mod bench_model;
#[cfg(feature = "worker")]
pub mod check;
#[cfg(feature = "worker")]
pub mod doctor;
#[cfg(feature = "worker")]
pub mod eval;
#[cfg(feature = "worker")]
pub mod extract;
pub mod manifest;
#[cfg(feature = "worker")]
pub mod maze;
#[cfg(feature = "worker")]
pub mod model;
#[cfg(feature = "worker")]
pub mod model_forward;
#[cfg(feature = "worker")]
pub mod model_import;
#[cfg(feature = "worker")]
pub mod progress;
#[cfg(feature = "worker")]
pub mod pull;
#[cfg(feature = "worker")]
pub mod results;
#[cfg(feature = "worker")]
pub mod run;
#[cfg(feature = "worker")]
pub mod sampling_args;
pub mod serve;
pub mod settings;
#[cfg(feature = "worker")]
pub mod sweep_view;
pub mod sweeps;
pub mod token;
#[cfg(feature = "worker")]
pub mod train;
#[cfg(feature = "worker")]
pub mod worker;

/// Logs to standard error; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
