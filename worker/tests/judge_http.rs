//! The HTTP judge against a real OpenAI-style chat-completions server on 127.0.0.1.
//!
//! The server is written here: one thread running a non-blocking event loop over
//! `std::net::TcpListener`, HTTP/1.1 with `Content-Length` bodies, keep-alive or
//! `Connection: close`. It checks the bearer token, records every request, and answers with a
//! marker derived from the `ITEM-<n>` tag in the judged text, so each verdict can be checked
//! against its item. It holds requests back and answers the newest first (up to `gather`
//! waiting), so completions arrive out of order whenever the client has several in flight.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wax_worker::evals::judge::http::{HttpJudge, HttpSettings};
use wax_worker::evals::judge::{
    BacktrackClass, JudgeConfig, JudgeError, JudgeItem, Label, RefusalClass, Task, Verdict,
    VerdictSource, build, judge_all,
};

const TOKEN: &str = "sk-test-123";

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Record {
    authorized: bool,
    enable_thinking: Option<bool>,
    model: String,
    max_tokens: Option<u64>,
    user: String,
}

/// How the server behaves; shared with the test.
#[derive(Debug)]
struct State {
    token: String,
    /// Answer this many (authorized) requests with HTTP 500 first.
    fail_first: usize,
    /// Prefix every answer with a `<think>` block.
    think: bool,
    /// Send `Connection: close` and close after every answer.
    close: bool,
    /// Hold answers until this many requests wait (or 150 ms pass without a new one).
    gather: usize,
    records: Vec<Record>,
    /// Most requests waiting at once.
    max_waiting: usize,
    /// Connections accepted.
    accepted: usize,
}

struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(configure: impl FnOnce(&mut State)) -> Server {
        let mut st = State {
            token: TOKEN.into(),
            fail_first: 0,
            think: false,
            close: false,
            gather: 1,
            records: Vec::new(),
            max_waiting: 0,
            accepted: 0,
        };
        configure(&mut st);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(st));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || serve(listener, &state, &stop))
        };
        Server { port, state, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn records(&self) -> Vec<Record> {
        self.state.lock().unwrap().records.clone()
    }

    fn max_waiting(&self) -> usize {
        self.state.lock().unwrap().max_waiting
    }

    fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A parsed request.
struct Request {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Takes one complete request off the front of `buf`, if there is one.
fn parse_request(buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1).unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let total = head_end + 4 + len;
    if buf.len() < total {
        return None;
    }
    let body = buf[head_end + 4..total].to_vec();
    buf.drain(..total);
    Some(Request { path, headers, body })
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

fn serve(listener: TcpListener, state: &Mutex<State>, stop: &AtomicBool) {
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_id = 0u64;
    let mut waiting: Vec<(u64, Request)> = Vec::new();
    let mut last_arrival = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(true).unwrap();
            conns.insert(next_id, Conn { stream, buf: Vec::new(), eof: false });
            next_id += 1;
            state.lock().unwrap().accepted += 1;
            busy = true;
        }
        for (&id, c) in conns.iter_mut() {
            let mut chunk = [0u8; 16384];
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        c.eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.buf.extend_from_slice(&chunk[..n]);
                        busy = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.eof = true;
                        break;
                    }
                }
            }
            while let Some(r) = parse_request(&mut c.buf) {
                waiting.push((id, r));
                last_arrival = Instant::now();
            }
        }
        let gather = {
            let mut st = state.lock().unwrap();
            st.max_waiting = st.max_waiting.max(waiting.len());
            st.gather
        };
        let quiet = last_arrival.elapsed() > Duration::from_millis(150);
        if !waiting.is_empty() && (waiting.len() >= gather || quiet) {
            // Newest first: completions come back out of order.
            let (id, req) = waiting.pop().unwrap();
            let (status, body, close) = respond(&req, state);
            if let Some(c) = conns.get_mut(&id) {
                let close = close || req.headers.get("connection").is_some_and(|v| v == "close");
                let text = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n{}\r\n{body}",
                    if status == 200 { "OK" } else { "Error" },
                    body.len(),
                    if close { "Connection: close\r\n" } else { "" },
                );
                c.stream.set_nonblocking(false).unwrap();
                let ok = c.stream.write_all(text.as_bytes()).is_ok();
                c.stream.set_nonblocking(true).unwrap();
                if close || !ok {
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                    conns.remove(&id);
                }
            }
            busy = true;
        }
        conns.retain(|id, c| !c.eof || waiting.iter().any(|(w, _)| w == id));
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The item number tagged `ITEM-<n>` in the judged text.
fn item_number(user: &str) -> Option<usize> {
    let at = user.find("ITEM-")? + 5;
    let digits: String = user[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn expected_sentiment(n: usize) -> i32 {
    (n % 11) as i32 - 5
}

fn expected_backtracking(n: usize) -> BacktrackClass {
    BacktrackClass::ALL[n % 3]
}

fn expected_refusal(n: usize) -> RefusalClass {
    RefusalClass::ALL[n % 4]
}

/// The answer to one request: (status, body, close the connection).
fn respond(req: &Request, state: &Mutex<State>) -> (u16, String, bool) {
    let mut st = state.lock().unwrap();
    if req.path != "/v1/chat/completions" {
        return (404, json!({"error": "no such path"}).to_string(), st.close);
    }
    let authorized =
        req.headers.get("authorization").is_some_and(|v| *v == format!("Bearer {}", st.token));
    let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let user = v["messages"][1]["content"].as_str().unwrap_or("").to_string();
    assert_eq!(v["messages"][0]["role"], "system");
    assert_eq!(v["messages"][1]["role"], "user");
    st.records.push(Record {
        authorized,
        enable_thinking: v["chat_template_kwargs"]["enable_thinking"].as_bool(),
        model: v["model"].as_str().unwrap_or("").to_string(),
        max_tokens: v["max_tokens"].as_u64(),
        user: user.clone(),
    });
    if !authorized {
        let body = json!({"error": {"message": "Invalid API key", "type": "auth"}});
        return (401, body.to_string(), st.close);
    }
    if st.fail_first > 0 {
        st.fail_first -= 1;
        return (500, "{\"error\": \"overloaded, try again\"}".into(), st.close);
    }
    let n = item_number(&user);
    let answer = match n {
        _ if user.contains("GARBLE") => "I am not sure what to say.".to_string(),
        None => "no item tag".to_string(),
        Some(n) if user.contains("SENTIMENT_SCORE") => {
            format!("The response reads as item {n}.\nSENTIMENT_SCORE: {}", expected_sentiment(n))
        }
        Some(n) if user.contains("BACKTRACKING_CLASS") => {
            format!("Analysis.\n**BACKTRACKING_CLASS:** {}", expected_backtracking(n).name())
        }
        Some(n) if user.contains("REFUSAL_CLASS") => {
            format!("Analysis.\nREFUSAL_CLASS: `{}`", expected_refusal(n).name())
        }
        Some(_) => "unknown task".to_string(),
    };
    let content = if st.think {
        format!("<think>\nLet me weigh this. SENTIMENT_SCORE: 5?\n</think>\n\n{answer}")
    } else {
        answer
    };
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": v["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
    });
    (200, body.to_string(), st.close)
}

fn judge(server: &Server, token: Option<&str>, retries: u32) -> HttpJudge {
    let settings = HttpSettings {
        concurrency: 8,
        retries,
        timeout_s: 20,
        ..HttpSettings::new(server.url(), "judge-model")
    };
    HttpJudge::new(settings, token.map(str::to_string)).unwrap()
}

/// Items tagged `ITEM-<n>`, long enough (and digit-free enough) to escape the pre-labels.
fn tagged(n: usize) -> JudgeItem {
    JudgeItem {
        prompt: format!("Question for item {n}"),
        response: format!(
            "ITEM-{n} the model works through the problem step by step and then reports its result"
        ),
    }
}

fn labels(v: &[Verdict]) -> Vec<Option<Label>> {
    v.iter().map(|v| v.label).collect()
}

#[test]
fn sentiment_verdicts_keep_item_order_under_concurrency() {
    let server = Server::start(|s| s.gather = 4);
    let mut j = judge(&server, Some(TOKEN), 0);
    let items: Vec<JudgeItem> = (0..40).map(tagged).collect();
    let mut progress = Vec::new();
    let v = judge_all(&mut j, Task::Sentiment, &items, &mut |d, t| progress.push((d, t))).unwrap();
    let want: Vec<Option<Label>> =
        (0..40).map(|n| Some(Label::Sentiment(expected_sentiment(n)))).collect();
    assert_eq!(labels(&v), want);
    assert!(v.iter().all(|v| v.source == VerdictSource::Judge));
    assert!(v[3].raw.ends_with("SENTIMENT_SCORE: -2"), "{}", v[3].raw);
    assert_eq!(progress.last(), Some(&(40, 40)));
    let recs = server.records();
    assert_eq!(recs.len(), 40);
    assert!(recs.iter().all(|r| r.authorized && r.enable_thinking == Some(false)));
    assert!(recs.iter().all(|r| r.model == "judge-model" && r.max_tokens == Some(1024)));
    // Several requests were in flight at once, and answered newest first.
    assert!(server.max_waiting() >= 2, "max waiting {}", server.max_waiting());
    // Keep-alive: connections were reused.
    assert!(server.accepted() < 40, "{} connections for 40 requests", server.accepted());
}

#[test]
fn backtracking_prelabels_are_not_sent_and_thinking_is_on() {
    let server = Server::start(|s| {
        s.close = true;
        s.gather = 3;
    });
    let mut j = judge(&server, Some(TOKEN), 0);
    let mut items: Vec<JudgeItem> = (0..12).map(tagged).collect();
    items.insert(
        4,
        JudgeItem { prompt: "p".into(), response: "Wait, no. Hmm. Wait? No! cannot".into() },
    );
    items.insert(9, JudgeItem { prompt: "p".into(), response: "The answer is 42.".into() });
    let v = judge_all(&mut j, Task::Backtracking, &items, &mut |_, _| {}).unwrap();
    assert_eq!(server.records().len(), 12, "pre-labelled items must not reach the server");
    // `Connection: close` after every answer: one connection per request.
    assert_eq!(server.accepted(), 12);
    assert!(server.records().iter().all(|r| r.enable_thinking == Some(true)));
    assert_eq!(v[4].label, Some(Label::Backtracking(BacktrackClass::Nonsensical)));
    assert_eq!(v[4].source, VerdictSource::PreLabel);
    assert_eq!(v[9].label, Some(Label::Backtracking(BacktrackClass::Normal)));
    assert_eq!(v[9].source, VerdictSource::PreLabel);
    for (verdict, item) in v.iter().zip(&items) {
        if let Some(n) = item_number(&item.response) {
            assert_eq!(verdict.label, Some(Label::Backtracking(expected_backtracking(n))));
            assert_eq!(verdict.source, VerdictSource::Judge);
        }
    }
}

#[test]
fn refusal_classes_parse_and_unparseable_outputs_keep_their_text() {
    let server = Server::start(|s| s.gather = 2);
    let mut j = judge(&server, Some(TOKEN), 0);
    let mut items: Vec<JudgeItem> = (0..8).map(tagged).collect();
    items.push(JudgeItem { prompt: "q".into(), response: "GARBLE output".into() });
    let v = judge_all(&mut j, Task::Refusal, &items, &mut |_, _| {}).unwrap();
    for (n, verdict) in v.iter().take(8).enumerate() {
        assert_eq!(verdict.label, Some(Label::Refusal(expected_refusal(n))));
    }
    assert_eq!(v[8].label, None);
    assert_eq!(v[8].raw, "I am not sure what to say.");
    assert!(server.records().iter().all(|r| r.enable_thinking == Some(false)));
    // The judge saw the user's request for context.
    assert!(server.records().iter().any(|r| r.user.contains("Question for item 5")));
}

#[test]
fn a_server_error_is_retried() {
    let server = Server::start(|s| s.fail_first = 1);
    let mut j = judge(&server, Some(TOKEN), 2);
    let v = judge_all(&mut j, Task::Sentiment, &[tagged(7)], &mut |_, _| {}).unwrap();
    assert_eq!(v[0].label, Some(Label::Sentiment(expected_sentiment(7))));
    assert_eq!(server.records().len(), 2);
}

#[test]
fn a_server_error_without_retries_names_url_status_and_body() {
    let server = Server::start(|s| s.fail_first = 5);
    let mut j = judge(&server, Some(TOKEN), 0);
    let e = judge_all(&mut j, Task::Sentiment, &[tagged(1)], &mut |_, _| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, JudgeError::Status { status: 500, .. }), "{msg}");
    assert!(msg.contains(&server.url()) && msg.contains("500") && msg.contains("overloaded"));
    assert_eq!(server.records().len(), 1);
}

#[test]
fn a_wrong_token_fails_at_once_with_401() {
    let server = Server::start(|_| {});
    let mut j = judge(&server, Some("sk-wrong"), 3);
    let e = judge_all(&mut j, Task::Refusal, &[tagged(1), tagged(2)], &mut |_, _| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, JudgeError::Unauthorized { status: 401, .. }), "{msg}");
    assert!(msg.contains("401") && msg.contains(&server.url()), "{msg}");
    assert!(msg.contains("Invalid API key"), "{msg}");
    // Not retried (two items may both have been in flight).
    assert!(server.records().len() <= 2);
}

#[test]
fn the_key_comes_from_the_configured_environment_variable() {
    // PATH is set in any test environment: use its value as the server's token.
    let Ok(path) = std::env::var("PATH") else { return };
    let server = Server::start(|s| s.token = path.clone());
    let cfg: JudgeConfig = serde_json::from_value(json!({
        "kind": "http", "url": server.url(), "model": "m", "api_key_env": "PATH", "retries": 0,
    }))
    .unwrap();
    let mut j = build(&cfg).unwrap();
    assert!(!j.is_proxy());
    let v = judge_all(j.as_mut(), Task::Sentiment, &[tagged(2)], &mut |_, _| {}).unwrap();
    assert_eq!(v[0].label, Some(Label::Sentiment(expected_sentiment(2))));
    // An unset variable sends no key; the 401 says so.
    let cfg: JudgeConfig = serde_json::from_value(json!({
        "kind": "http", "url": server.url(), "model": "m",
        "api_key_env": "WAX_TEST_UNSET_JUDGE_KEY_VARIABLE",
    }))
    .unwrap();
    let mut j = build(&cfg).unwrap();
    let e = judge_all(j.as_mut(), Task::Sentiment, &[tagged(2)], &mut |_, _| {}).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("401") && msg.contains("WAX_TEST_UNSET_JUDGE_KEY_VARIABLE"), "{msg}");
    assert!(!server.records().last().unwrap().authorized);
}

#[test]
fn think_blocks_are_stripped_from_answers() {
    let server = Server::start(|s| s.think = true);
    let mut j = judge(&server, Some(TOKEN), 0);
    let v = judge_all(&mut j, Task::Sentiment, &[tagged(9)], &mut |_, _| {}).unwrap();
    assert_eq!(v[0].label, Some(Label::Sentiment(expected_sentiment(9))));
    assert!(!v[0].raw.contains("think"), "{}", v[0].raw);
    assert!(v[0].raw.starts_with("The response reads as item 9."));
}

#[test]
fn an_unreachable_server_is_a_transport_error_naming_the_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = HttpSettings {
        retries: 1,
        timeout_s: 5,
        ..HttpSettings::new(format!("http://127.0.0.1:{port}/v1"), "m")
    };
    let mut j = HttpJudge::new(settings, None).unwrap();
    let e = judge_all(&mut j, Task::Sentiment, &[tagged(0)], &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, JudgeError::Transport { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}/v1/chat/completions")), "{e}");
}
