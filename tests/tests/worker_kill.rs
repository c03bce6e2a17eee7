//! A worker SIGKILLed in the middle of an RL stage: its lease expires, the stage is leased
//! again to another worker, which resumes from the last checkpoint the dead one uploaded; the
//! final metrics equal those of an uninterrupted run (`wax run` of the same manifest), and no
//! stage of the trial runs twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wax_proto::client::Connection;
use wax_proto::v1;
use wax_tests::{ServeProcess, WorkerProcess, new_token, succeeded as ok, wax_timeout};

const MANIFEST: &str = r#"
[sweep]
name = "kill"

[base]
model = { ref = "builtin:1m" }
env = { turns = 4, shuffle_directions = false }
rl = { steps = 24, mazes_per_step = 4, group_size = 4, entropy_coef = 0.5, eval = { mazes = 8 } }
extract = { synthetic = { per_class = 12, max_len = 4 }, resamples = 20 }
evaluate = { suites = ["geometry"], resamples = 20, null_draws = 20 }
"#;

const TIMING: [&str; 4] = ["rollout_s", "update_s", "step_s", "tokens_per_s"];

/// `store/cas/<stage>/<attempt>/resume/step-<N>/_CHECKPOINT` files: (stage, attempt, N).
fn resume_markers(store: &Path) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for stage in std::fs::read_dir(store.join("cas")).into_iter().flatten().flatten() {
        for attempt in std::fs::read_dir(stage.path()).into_iter().flatten().flatten() {
            let Ok(a) = attempt.file_name().to_string_lossy().parse::<u64>() else { continue };
            for step in
                std::fs::read_dir(attempt.path().join("resume")).into_iter().flatten().flatten()
            {
                let name = step.file_name().to_string_lossy().into_owned();
                if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse().ok())
                    && step.path().join("_CHECKPOINT").is_file()
                {
                    out.push((stage.file_name().to_string_lossy().into_owned(), a, n));
                }
            }
        }
    }
    out
}

/// Metrics lines without their wall-clock fields.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in TIMING {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    serde_json::json!({ "before": v["before"], "after": v["after"], "comparison": v["comparison"], "steps": v["steps"] })
}

#[test]
fn a_killed_worker_s_rl_stage_resumes_elsewhere_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = d.join("tokens.toml");
    let t = tokens.to_str().unwrap();
    let admin = new_token(&tokens, "a", "admin");
    let worker = new_token(&tokens, "w", "worker");
    let tok = d.join("worker.tok");
    std::fs::write(&tok, &worker).unwrap();
    let store = d.join("store");
    // Short leases, so that the dead worker's lease expires quickly.
    let cfg = d.join("wax.toml");
    std::fs::write(
        &cfg,
        format!(
            "artifact_store = \"file://{}\"\n[serve.scheduler]\nlease_ttl = 3000\nheartbeat_interval = 500\nbackoff_base = 200\n",
            store.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let db = format!("sqlite:{}", d.join("c.db").display());
    let serve = ServeProcess::start(
        &["--config", c, "--listen", "127.0.0.1:0", "--store", &db, "--tokens", t],
        &[],
    );
    let url = format!("http://{}", serve.addr);
    let manifest = d.join("kill.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let worker_args = |name: &'static str| -> Vec<String> {
        vec![
            "--config".into(),
            c.into(),
            "--coordinator".into(),
            url.clone(),
            "--token-file".into(),
            tok.display().to_string(),
            "--name".into(),
            name.into(),
            "--cpus".into(),
            "1".into(),
            "--resume-every".into(),
            "1".into(),
            "--work-dir".into(),
            d.join(name).display().to_string(),
        ]
    };
    let args_a = worker_args("a");
    let mut a = WorkerProcess::start(
        &args_a.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        &d.join("a.log"),
    );
    let env = [("WAX_TOKEN", admin.as_str())];
    let out = ok(
        &wax_timeout(
            &["submit", manifest.to_str().unwrap(), "--coordinator", &url, "--output", "json"],
            &env,
            Duration::from_secs(60),
        ),
        "submit",
    );
    let sweep = serde_json::from_str::<serde_json::Value>(&out).unwrap()["sweep_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Kill worker a as soon as it has uploaded a resume checkpoint of the RL stage.
    let started = Instant::now();
    let (rl, killed_after) = loop {
        if let Some((stage, 1, step)) = resume_markers(&store).into_iter().max_by_key(|m| m.2) {
            a.kill9();
            break (stage, step);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no resume checkpoint; worker log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(killed_after < 24, "killed at step {killed_after}: too late to test a resume");

    let args_b = worker_args("b");
    let b = WorkerProcess::start(
        &args_b.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        &d.join("b.log"),
    );
    ok(
        &wax_timeout(&["watch", &sweep, "--coordinator", &url], &env, Duration::from_secs(300)),
        "watch",
    );

    // The stage was committed by attempt 2, which resumed from the dead attempt's checkpoint.
    let attempt2 = store.join("cas").join(&rl).join("2");
    let log = std::fs::read_to_string(attempt2.join("log.txt")).unwrap();
    let resumed: u64 = log
        .split("resuming from step ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("attempt 2 did not resume:\n{log}"));
    assert!(
        resumed >= 1 && resumed >= killed_after,
        "resumed from {resumed}, killed after {killed_after}"
    );
    assert!(log.contains("of attempt 1"), "{log}");
    assert!(
        !log.contains(&format!(" step {resumed}: ")) && !log.contains(" step 1: "),
        "steps before the resume point ran again:\n{log}"
    );
    // The dead attempt's files are gone; nothing of it is part of the result.
    let leftovers: Vec<PathBuf> = walk(&store.join("cas").join(&rl).join("1"));
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // No stage ran twice: every stage committed once, at attempt 1 except the RL stage.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stages = rt.block_on(async {
        let conn = Connection::connect(&url, None, Some(&admin)).await.unwrap();
        conn.sweeps()
            .stages(v1::StagesRequest { sweep_id: sweep.clone() })
            .await
            .unwrap()
            .into_inner()
            .stages
    });
    assert_eq!(stages.len(), 6);
    for s in &stages {
        assert_eq!(s.state, "succeeded", "{s:?}");
        let want = if s.stage_id == rl { 2 } else { 1 };
        assert_eq!(
            (s.kind.as_str(), s.committed_attempt, s.attempt),
            (s.kind.as_str(), want, want),
            "{s:?}"
        );
    }
    drop(b);
    drop(serve);

    // The uninterrupted run of the same stage (same id) gives the same metrics.
    let state = d.join("local");
    ok(
        &wax_timeout(
            &["run", manifest.to_str().unwrap(), "--state", state.to_str().unwrap()],
            &[],
            Duration::from_secs(600),
        ),
        "wax run",
    );
    let reference = state.join("store/cas").join(&rl).join("1");
    assert!(reference.is_dir(), "wax run committed the same rl stage id");
    let (got, want) = (metrics(&attempt2), metrics(&reference));
    assert_eq!(got.len(), 24);
    assert_eq!(got, want, "metrics after a resume differ from the uninterrupted run");
    assert_eq!(summary(&attempt2), summary(&reference));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
