//! A minimal OpenAI chat-completions server on 127.0.0.1 (port 0) for judge tests: it checks
//! the bearer token, answers each rubric with a well-formed verdict and counts requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct OpenAiStub {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    pub unauthorized: Arc<AtomicUsize>,
}

/// The verdict the stub gives for a request body (by the rubric's output marker).
fn verdict(body: &str) -> String {
    if body.contains("SENTIMENT_SCORE") {
        "The text is mildly positive.\nSENTIMENT_SCORE: 2".into()
    } else if body.contains("BACKTRACKING_CLASS") {
        "No self-doubt.\nBACKTRACKING_CLASS: normal".into()
    } else if body.contains("REFUSAL_CLASS") {
        "It answers.\nREFUSAL_CLASS: direct_answer".into()
    } else {
        "?".into()
    }
}

fn handle(stream: TcpStream, token: &str, requests: &AtomicUsize, unauthorized: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        let mut auth = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("authorization:") {
                auth = h["authorization:".len()..].trim().to_string();
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).to_string();
        let (status, payload) = if auth != format!("Bearer {token}") {
            unauthorized.fetch_add(1, Ordering::SeqCst);
            ("401 Unauthorized", r#"{"error":{"message":"bad token"}}"#.to_string())
        } else {
            requests.fetch_add(1, Ordering::SeqCst);
            let content = verdict(&body);
            let json = serde_json::json!({
                "id": "stub", "object": "chat.completion", "model": "stub",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
            });
            ("200 OK", json.to_string())
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

impl OpenAiStub {
    /// Starts the server; it lives as long as the test process.
    pub fn start(token: &str) -> OpenAiStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}/v1", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let (r, u, token) = (requests.clone(), unauthorized.clone(), token.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, u, token) = (r.clone(), u.clone(), token.clone());
                std::thread::spawn(move || handle(stream, &token, &r, &u));
            }
        });
        OpenAiStub { url, requests, unauthorized }
    }
}
