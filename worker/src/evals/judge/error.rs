//! What can go wrong judging.

/// Errors of building or running a judge.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A judge configuration that cannot work.
    #[error("judge config: {0}")]
    Config(String),
    /// The server rejected the credentials.
    #[error("judge endpoint {url} refused authorization (HTTP {status}); {hint}; response: {body}")]
    Unauthorized { url: String, status: u16, hint: String, body: String },
    /// The server answered with an error status (after any retries).
    #[error("judge endpoint {url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// The request could not be sent or its answer not read (after any retries).
    #[error("judge endpoint {url}: {why}")]
    Transport { url: String, why: String },
    /// A 2xx answer that is not a chat completion.
    #[error("judge endpoint {url}: unexpected response ({why}): {body}")]
    BadResponse { url: String, why: String, body: String },
    /// Loading or running the local judge model.
    #[error("local judge {model}: {why}")]
    Local { model: String, why: String },
    /// A judge returned a different number of outputs than it was asked for.
    #[error("judge {judge} returned {got} outputs for {want} requests")]
    Count { judge: String, got: usize, want: usize },
}

/// The first 200 characters of a response body, for error messages.
pub(crate) fn body_excerpt(body: &str) -> String {
    let mut s: String = body.chars().take(200).collect();
    if body.chars().nth(200).is_some() {
        s.push('…');
    }
    s
}
