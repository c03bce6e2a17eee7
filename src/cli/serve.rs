//! `wax serve`: the coordinator.

use super::settings::{CommonFlags, Settings};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use wax_coordinator::auth::Tokens;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port, printed at start).
    #[arg(long)]
    listen: Option<String>,
    /// Store URL: `sqlite:PATH` or `postgres://user@host:port/db`.
    #[arg(long)]
    store: Option<String>,
    /// Tokens file (see `wax token new`).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, serve https.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

pub async fn run(flags: &CommonFlags, a: ServeArgs) -> anyhow::Result<()> {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let s = Settings::load(
        flags,
        &[
            ("serve.listen", a.listen.clone()),
            ("serve.store", a.store.clone()),
            ("serve.tokens", path(&a.tokens)),
            ("serve.tls_cert", path(&a.tls_cert)),
            ("serve.tls_key", path(&a.tls_key)),
        ],
    )?;
    let cfg = s.serve;
    let tokens = match &cfg.tokens {
        Some(p) => Tokens::load(p)?,
        None => anyhow::bail!(
            "no tokens file: every call must be authenticated. Create one with \
             `wax token new --name me --role admin --append tokens.toml` and pass --tokens tokens.toml"
        ),
    };
    let n_tokens = tokens.len();
    let running =
        wax_coordinator::server::start(&cfg, tokens).await.context("starting the coordinator")?;
    // Scripts and tests read the bound address from this line.
    println!("listening on {}", running.addr);
    eprintln!("wax coordinator: store {}, {} token(s); Ctrl-C to stop", cfg.store, n_tokens);
    running
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping");
        })
        .await?;
    Ok(())
}
