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
#[cfg(feature = "worker")]
use wax_worker::artifacts::S3Settings;

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
    /// Where artifacts live: `file:///dir` (or a path), `s3://bucket/prefix`. Workers write
    /// there; `wax pull` and `wax logs` read from there.
    #[cfg(feature = "worker")]
    pub artifact_store: String,
    /// S3 endpoint, region and credentials (else the standard `AWS_*` variables).
    #[cfg(feature = "worker")]
    pub s3: S3Settings,
    #[cfg(feature = "worker")]
    pub worker: WorkerSettings,
    pub serve: ServerConfig,
}

/// Fills what the settings leave unset from the standard AWS variables (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …), which come last: the settings file, `WAX_S3__*` and
/// flags win.
#[cfg(feature = "worker")]
pub fn aws_defaults(s3: &mut S3Settings, var: impl Fn(&str) -> Option<String>) {
    let first = |names: &[&str]| names.iter().find_map(|n| var(n).filter(|v| !v.is_empty()));
    if s3.endpoint.is_none() {
        s3.endpoint = first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]);
    }
    if s3.region.is_none() {
        s3.region = first(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
    }
    if s3.access_key_id.is_none() && s3.secret_access_key.is_none() {
        s3.access_key_id = first(&["AWS_ACCESS_KEY_ID"]);
        s3.secret_access_key = first(&["AWS_SECRET_ACCESS_KEY"]);
        if s3.session_token.is_none() {
            s3.session_token = first(&["AWS_SESSION_TOKEN"]);
        }
    }
    if !s3.allow_http {
        s3.allow_http = first(&["AWS_ALLOW_HTTP"]).is_some_and(|v| v == "true" || v == "1");
    }
}

/// `[worker]`: how `wax worker` (and the in-process workers of `wax run`) run.
#[cfg(feature = "worker")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// A human name (default: the host name).
    pub name: Option<String>,
    /// Per-task work folders (default: `<cache>/work`).
    pub work_dir: Option<PathBuf>,
    /// The machine's input-artifact cache (default: `<cache>/artifacts`).
    pub cache_dir: Option<PathBuf>,
    /// Stages run at once (default: one per core).
    pub slots: Option<u32>,
    /// Cores offered (default: all).
    pub cpus: Option<u32>,
    /// Memory offered, in GiB (default: all).
    pub memory_gib: Option<f64>,
    /// CUDA devices offered: `all` (default), `none`, or ordinals like `0,1`.
    pub gpus: String,
    /// Also run the testing kinds (`sleep`, `fail-n-times`).
    pub testing: bool,
    /// Seconds between resume checkpoints of long stages (0: none).
    pub resume_every_s: u64,
    /// Seconds a lease call waits for work.
    pub lease_wait_s: u64,
    /// Seconds running stages get to finish on a drain before they are handed back.
    pub drain_timeout_s: u64,
    /// Seconds to keep retrying an unreachable coordinator.
    pub reconnect_for_s: u64,
}

#[cfg(feature = "worker")]
impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            name: None,
            work_dir: None,
            cache_dir: None,
            slots: None,
            cpus: None,
            memory_gib: None,
            gpus: "all".into(),
            testing: false,
            resume_every_s: 600,
            lease_wait_s: 10,
            drain_timeout_s: 60,
            reconnect_for_s: 300,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            coordinator: "http://127.0.0.1:7070".into(),
            token: None,
            token_file: None,
            ca_cert: None,
            output: Output::Text,
            #[cfg(feature = "worker")]
            artifact_store: "file://.wax/store".into(),
            #[cfg(feature = "worker")]
            s3: S3Settings::default(),
            #[cfg(feature = "worker")]
            worker: WorkerSettings::default(),
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
        #[allow(unused_mut)]
        let mut settings: Settings = b.build()?.try_deserialize().context("settings")?;
        #[cfg(feature = "worker")]
        aws_defaults(&mut settings.s3, |k| std::env::var(k).ok());
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

#[cfg(all(test, feature = "worker"))]
mod tests {
    use super::*;

    /// The standard AWS variables fill only what the settings leave unset.
    #[test]
    fn aws_variables_come_last() {
        let env = |k: &str| -> Option<String> {
            match k {
                "AWS_ENDPOINT_URL" => Some("http://minio:9000".into()),
                "AWS_DEFAULT_REGION" => Some("eu-west-1".into()),
                "AWS_ACCESS_KEY_ID" => Some("AKIA".into()),
                "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
                "AWS_ALLOW_HTTP" => Some("true".into()),
                _ => None,
            }
        };
        let mut s3 = S3Settings::default();
        aws_defaults(&mut s3, env);
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            (s3.access_key_id.as_deref(), s3.secret_access_key.as_deref()),
            (Some("AKIA"), Some("secret"))
        );
        assert!(s3.allow_http);
        let mut set = S3Settings {
            region: Some("us-east-2".into()),
            access_key_id: Some("mine".into()),
            secret_access_key: Some("own".into()),
            ..S3Settings::default()
        };
        aws_defaults(&mut set, env);
        assert_eq!(set.region.as_deref(), Some("us-east-2"));
        assert_eq!(set.access_key_id.as_deref(), Some("mine"));
        assert_eq!(set.endpoint.as_deref(), Some("http://minio:9000"));
    }

    #[test]
    fn worker_settings_refuse_unknown_keys() {
        let e = serde_json::from_value::<WorkerSettings>(serde_json::json!({"slotz": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("slotz"), "{e}");
    }
}
