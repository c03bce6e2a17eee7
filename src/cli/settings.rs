//! Layered settings: defaults < file < `WAX_*` environment < command-line flags.
//!
//! The file is `--config FILE`, else `$WAX_CONFIG`, else `~/.config/wax/config.toml` if it
//! exists. Client keys sit at the top level (`coordinator`, `token`, `ca_cert`, `output`); the
//! coordinator's under `[serve]` (and `[serve.scheduler]`). Environment variables use `WAX_`
//! and `__` for nesting: `WAX_COORDINATOR`, `WAX_TOKEN`, `WAX_SERVE__STORE`,
//! `WAX_SERVE__SCHEDULER__LEASE_TTL`.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wax_coordinator::server::ServerConfig;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Coordinator URL for client commands.
    pub coordinator: String,
    /// Bearer token (prefer `token_file` or `WAX_TOKEN` over writing it in a shared file).
    pub token: Option<String>,
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// PEM of the CA that signed the coordinator's certificate (for https).
    pub ca_cert: Option<PathBuf>,
    pub output: Output,
    pub serve: ServerConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            coordinator: "http://127.0.0.1:7070".into(),
            token: None,
            token_file: None,
            ca_cert: None,
            output: Output::Text,
            serve: ServerConfig::default(),
        }
    }
}

/// Flags common to every command that reads settings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonFlags {
    /// Settings file (TOML).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Coordinator URL (http:// or https://).
    #[arg(long, global = true, value_name = "URL")]
    pub coordinator: Option<String>,
    /// File holding the bearer token (else WAX_TOKEN / the settings' `token`).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) for an https coordinator.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum)]
    pub output: Option<Output>,
}

impl Settings {
    /// Loads the layers; `overrides` are (key, value) pairs from flags, applied last.
    pub fn load(
        flags: &CommonFlags,
        overrides: &[(&str, Option<String>)],
    ) -> anyhow::Result<Settings> {
        let defaults =
            config::Config::try_from(&Settings::default()).context("default settings")?;
        let mut b = config::Config::builder().add_source(defaults);
        if let Some(file) = settings_file(flags.config.as_deref()) {
            b = b.add_source(
                config::File::from(file.as_path()).format(config::FileFormat::Toml).required(true),
            );
        }
        b = b.add_source(
            config::Environment::with_prefix("WAX")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .ignore_empty(true),
        );
        let flag_pairs = [
            ("coordinator", flags.coordinator.clone()),
            ("token_file", flags.token_file.as_ref().map(|p| p.display().to_string())),
            ("ca_cert", flags.ca_cert.as_ref().map(|p| p.display().to_string())),
            (
                "output",
                flags.output.map(|o| if o == Output::Json { "json".into() } else { "text".into() }),
            ),
        ];
        for (key, value) in
            flag_pairs.iter().cloned().chain(overrides.iter().map(|(k, v)| (*k, v.clone())))
        {
            b = b.set_override_option(key, value)?;
        }
        let settings: Settings = b.build()?.try_deserialize().context("settings")?;
        Ok(settings)
    }

    /// The bearer token from `token_file` or `token`.
    pub fn bearer(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            return Ok(Some(t.trim().to_string()));
        }
        Ok(self.token.clone())
    }
}

fn settings_file(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("WAX_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = home.join("wax/config.toml");
    p.exists().then_some(p)
}
