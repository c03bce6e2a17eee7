//! Which judge to use, as written in an evaluation's configuration.

use super::Judge;
use super::error::JudgeError;
use super::http::{HttpJudge, HttpSettings};
use super::lexicon::LexiconJudge;
use super::local::LocalJudge;
use serde::{Deserialize, Serialize};

/// The environment variable holding the HTTP judge's API key unless `api_key_env` names another.
pub const DEFAULT_API_KEY_ENV: &str = "WAX_JUDGE_API_KEY";

/// A judge configuration (`kind = "http" | "local" | "offline"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JudgeConfig {
    /// An OpenAI-compatible chat-completions server (vLLM, SGLang, a hosted API).
    Http {
        /// Base URL up to the API version, e.g. `http://host:8000/v1`.
        url: String,
        /// The served model name, e.g. `Qwen/Qwen3-8B`.
        model: String,
        /// Environment variable with the bearer token; `None`: [`DEFAULT_API_KEY_ENV`]. No
        /// `Authorization` header is sent when the variable is unset.
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default = "default_max_tokens")]
        max_tokens: u32,
        #[serde(default)]
        temperature: f64,
        /// Per-request timeout in seconds.
        #[serde(default = "default_timeout_s")]
        timeout_s: u64,
        /// Requests in flight at once.
        #[serde(default = "default_concurrency")]
        concurrency: usize,
        /// Further attempts after a connection error, HTTP 429 or 5xx.
        #[serde(default = "default_retries")]
        retries: u32,
    },
    /// A model loaded by wax itself, decoded greedily.
    Local {
        /// A Hugging Face snapshot directory (config, safetensors, tokenizer, chat template).
        model: String,
        /// `cpu`, `cuda` or `cuda:N`; `None`: CUDA when available.
        #[serde(default)]
        device: Option<String>,
        /// Generation budget per judgement (thinking included).
        #[serde(default = "default_max_new_tokens")]
        max_new_tokens: usize,
    },
    /// The offline lexicon/rule proxy: no model, no network; not the paper's judge. (A unit
    /// variant: serde does not reject extra keys next to `kind = "offline"`.)
    Offline,
}

pub(crate) fn default_max_tokens() -> u32 {
    1024
}
pub(crate) fn default_timeout_s() -> u64 {
    120
}
pub(crate) fn default_concurrency() -> usize {
    8
}
pub(crate) fn default_retries() -> u32 {
    3
}
pub(crate) fn default_max_new_tokens() -> usize {
    512
}

/// Builds the judge `cfg` describes (the HTTP judge reads its API key from the environment
/// now; the local judge loads its model now).
pub fn build(cfg: &JudgeConfig) -> Result<Box<dyn Judge>, JudgeError> {
    Ok(match cfg {
        JudgeConfig::Http {
            url,
            model,
            api_key_env,
            max_tokens,
            temperature,
            timeout_s,
            concurrency,
            retries,
        } => {
            let var = api_key_env.as_deref().unwrap_or(DEFAULT_API_KEY_ENV);
            let key = std::env::var(var).ok().filter(|k| !k.is_empty());
            let settings = HttpSettings {
                url: url.clone(),
                model: model.clone(),
                max_tokens: *max_tokens,
                temperature: *temperature,
                timeout_s: *timeout_s,
                concurrency: *concurrency,
                retries: *retries,
                api_key_env: var.to_string(),
            };
            Box::new(HttpJudge::new(settings, key)?)
        }
        JudgeConfig::Local { model, device, max_new_tokens } => Box::new(LocalJudge::load(
            std::path::Path::new(model),
            device.as_deref(),
            *max_new_tokens,
        )?),
        JudgeConfig::Offline => Box::new(LexiconJudge::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_defaults_fill_in() {
        let c: JudgeConfig = toml::from_str(
            "kind = \"http\"\nurl = \"http://h:8000/v1\"\nmodel = \"Qwen/Qwen3-8B\"",
        )
        .unwrap();
        assert_eq!(
            c,
            JudgeConfig::Http {
                url: "http://h:8000/v1".into(),
                model: "Qwen/Qwen3-8B".into(),
                api_key_env: None,
                max_tokens: 1024,
                temperature: 0.0,
                timeout_s: 120,
                concurrency: 8,
                retries: 3,
            }
        );
    }

    #[test]
    fn local_and_offline_parse_and_unknown_fields_are_rejected() {
        let c: JudgeConfig = toml::from_str("kind = \"local\"\nmodel = \"/m\"").unwrap();
        assert_eq!(c, JudgeConfig::Local { model: "/m".into(), device: None, max_new_tokens: 512 });
        let c: JudgeConfig = toml::from_str("kind = \"offline\"").unwrap();
        assert_eq!(c, JudgeConfig::Offline);
        let e = toml::from_str::<JudgeConfig>("kind = \"local\"\nmodel = \"/m\"\nurl = \"x\"")
            .unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
        let e = toml::from_str::<JudgeConfig>(
            "kind = \"http\"\nurl = \"http://h/v1\"\nmodel = \"m\"\nthreads = 4",
        )
        .unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        assert!(toml::from_str::<JudgeConfig>("kind = \"gemini\"").is_err());
    }

    #[test]
    fn offline_builds_a_labelled_proxy() {
        let j = build(&JudgeConfig::Offline).unwrap();
        assert!(j.is_proxy());
        assert_eq!(j.name(), "offline-proxy");
    }
}
