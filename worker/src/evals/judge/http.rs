//! A judge served over an OpenAI-compatible chat-completions API (vLLM, SGLang, hosted APIs).
//!
//! Each request is `POST {url}/chat/completions` with `{model, messages: [system, user],
//! temperature, max_tokens, chat_template_kwargs: {enable_thinking}}` and, when a key is set,
//! `Authorization: Bearer <key>`. Up to `concurrency` requests are in flight (worker threads
//! pulling the next index); outputs come back in request order. Connection errors, timeouts,
//! HTTP 429 and 5xx are retried with exponential backoff; 401/403 fail at once with a hint
//! about the key; any other status fails with the URL, the status and the start of the body.
//! A `<think>…</think>` block at the start of the content is removed.

use super::error::{JudgeError, body_excerpt};
use super::{Judge, JudgeRequest, Task};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// First retry delay; each further retry doubles it, up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How to reach and call the server.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Base URL up to the API version, e.g. `http://host:8000/v1`.
    pub url: String,
    /// The served model name.
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f64,
    /// Per-request timeout.
    pub timeout_s: u64,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
    /// Further attempts after a retryable failure.
    pub retries: u32,
    /// The variable the key was read from (named in authorization errors).
    pub api_key_env: String,
}

impl HttpSettings {
    /// Settings with the configuration defaults (1024 tokens, temperature 0, 120 s, 8 in
    /// flight, 3 retries, key from `WAX_JUDGE_API_KEY`).
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> HttpSettings {
        HttpSettings {
            url: url.into(),
            model: model.into(),
            max_tokens: super::config::default_max_tokens(),
            temperature: 0.0,
            timeout_s: super::config::default_timeout_s(),
            concurrency: super::config::default_concurrency(),
            retries: super::config::default_retries(),
            api_key_env: super::config::DEFAULT_API_KEY_ENV.to_string(),
        }
    }
}

/// The chat-completions judge.
pub struct HttpJudge {
    settings: HttpSettings,
    endpoint: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

/// One failed attempt: whether trying again may help, and the error to report if not.
struct Failure {
    retry: bool,
    error: JudgeError,
}

impl HttpJudge {
    /// A judge for `settings`, sending `api_key` as a bearer token when given.
    pub fn new(settings: HttpSettings, api_key: Option<String>) -> Result<HttpJudge, JudgeError> {
        let base = settings.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(JudgeError::Config(format!(
                "http judge url {:?} must start with http:// or https://",
                settings.url
            )));
        }
        if settings.concurrency == 0 || settings.timeout_s == 0 || settings.max_tokens == 0 {
            return Err(JudgeError::Config(
                "http judge: concurrency, timeout_s and max_tokens must be at least 1".into(),
            ));
        }
        if !(settings.temperature >= 0.0 && settings.temperature.is_finite()) {
            return Err(JudgeError::Config(format!(
                "http judge: temperature must be ≥ 0, got {}",
                settings.temperature
            )));
        }
        let endpoint = format!("{base}/chat/completions");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(settings.timeout_s)))
            .build()
            .new_agent();
        Ok(HttpJudge { settings, endpoint, api_key, agent })
    }

    /// The full endpoint URL (`{url}/chat/completions`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn body(&self, r: &JudgeRequest) -> Value {
        json!({
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": r.system},
                {"role": "user", "content": r.user},
            ],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "chat_template_kwargs": {"enable_thinking": r.thinking},
        })
    }

    /// One request with retries.
    fn send(&self, r: &JudgeRequest) -> Result<String, JudgeError> {
        let body = self.body(r);
        let mut attempt = 0;
        loop {
            match self.attempt(&body) {
                Ok(content) => return Ok(content),
                Err(f) if f.retry && attempt < self.settings.retries => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    fn attempt(&self, body: &Value) -> Result<String, Failure> {
        let url = &self.endpoint;
        let mut req = self.agent.post(url).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let transport = |e: ureq::Error| {
            let retry = matches!(
                e,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::HostNotFound
                    | ureq::Error::Protocol(_)
            );
            Failure { retry, error: JudgeError::Transport { url: url.clone(), why: e.to_string() } }
        };
        let mut resp = req.send_json(body).map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(transport)?;
        let excerpt = body_excerpt(&text);
        match status {
            200..=299 => {
                content_of(&text).map(|c| strip_think(&c).to_string()).map_err(|why| Failure {
                    retry: false,
                    error: JudgeError::BadResponse { url: url.clone(), why, body: excerpt },
                })
            }
            401 | 403 => {
                let var = &self.settings.api_key_env;
                let hint = if self.api_key.is_some() {
                    format!("check the key in ${var}")
                } else {
                    format!("no key was sent: ${var} is not set")
                };
                Err(Failure {
                    retry: false,
                    error: JudgeError::Unauthorized {
                        url: url.clone(),
                        status,
                        hint,
                        body: excerpt,
                    },
                })
            }
            _ => Err(Failure {
                retry: status == 429 || status >= 500,
                error: JudgeError::Status { url: url.clone(), status, body: excerpt },
            }),
        }
    }
}

/// The wait before retry number `attempt + 1`.
fn backoff(attempt: u32) -> Duration {
    BASE_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF)
}

/// `choices[0].message.content` of a chat completion (an empty string when it is null, as when
/// the token budget ran out during reasoning).
fn content_of(text: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let message = v
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .ok_or("no choices[0].message")?;
    match message.get("content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(other) => Err(format!("content is not a string: {other}")),
    }
}

/// `content` without a leading `<think>…</think>` block. A lone `</think>` (the opening tag was
/// part of the prompt) also ends the reasoning; an unclosed `<think>` means the judge never got
/// to its answer, which leaves nothing.
pub fn strip_think(content: &str) -> &str {
    let t = content.trim_start();
    if let Some(rest) = t.strip_prefix("<think>") {
        return rest.split_once("</think>").map_or("", |(_, a)| a.trim_start());
    }
    match content.split_once("</think>") {
        Some((_, after)) if !content.contains("<think>") => after.trim_start(),
        _ => content,
    }
}

impl Judge for HttpJudge {
    fn name(&self) -> String {
        format!("{} @ {}", self.settings.model, self.settings.url)
    }

    fn is_proxy(&self) -> bool {
        false
    }

    fn complete(&mut self, _: Task, requests: &[JudgeRequest]) -> Result<Vec<String>, JudgeError> {
        let results: Mutex<Vec<Option<Result<String, JudgeError>>>> =
            Mutex::new((0..requests.len()).map(|_| None).collect());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = self.settings.concurrency.min(requests.len());
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(r) = requests.get(i) else { break };
                        let res = this.send(r);
                        if res.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(res);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        // The first failure in request order, else every output.
        let mut out = Vec::with_capacity(requests.len());
        for r in results {
            match r {
                Some(Ok(s)) => out.push(s),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_blocks_are_stripped() {
        assert_eq!(
            strip_think("<think>\nhmm\n</think>\n\nSENTIMENT_SCORE: 1"),
            "SENTIMENT_SCORE: 1"
        );
        assert_eq!(strip_think("  <think></think>answer"), "answer");
        assert_eq!(strip_think("reasoning...</think>\nanswer"), "answer");
        assert_eq!(strip_think("<think>never closed"), "");
        assert_eq!(strip_think("plain answer"), "plain answer");
        // A tag later in the text is left alone.
        assert_eq!(strip_think("a <think>b</think> c"), "a <think>b</think> c");
    }

    #[test]
    fn content_is_read_from_the_first_choice() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(content_of(ok).unwrap(), "hi");
        let null = r#"{"choices":[{"message":{"content":null}}]}"#;
        assert_eq!(content_of(null).unwrap(), "");
        assert!(content_of(r#"{"error":"x"}"#).is_err());
        assert!(content_of("<html>").is_err());
    }

    #[test]
    fn settings_are_checked_and_backoff_grows_to_a_cap() {
        assert!(HttpJudge::new(HttpSettings::new("host:8000/v1", "m"), None).is_err());
        let s = HttpSettings { concurrency: 0, ..HttpSettings::new("http://h/v1", "m") };
        assert!(HttpJudge::new(s, None).is_err());
        let j = HttpJudge::new(HttpSettings::new("http://h:1/v1/", "m"), None).unwrap();
        assert_eq!(j.endpoint(), "http://h:1/v1/chat/completions");
        assert_eq!(backoff(0), BASE_BACKOFF);
        assert_eq!(backoff(1), 2 * BASE_BACKOFF);
        assert_eq!(backoff(20), MAX_BACKOFF);
    }
}
