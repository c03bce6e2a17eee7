//! The product end to end, as on a cluster: `wax serve` on PostgreSQL, two `wax worker`
//! processes, an S3-protocol server (moto) for the artifacts. A small science sweep (two tile
//! mappings on builtin:1m: model → rl → extract → evaluate → report) runs to completion; `wax
//! pull` fetches every artifact with its checksum verified; Python reads the vectors with
//! `safetensors` and the tables with `pandas`. Then the same manifest through `wax run`
//! (embedded coordinator on SQLite, local disk) gives the same stage ids and, on CPU, the same
//! numbers bit for bit.

use std::time::Duration;

use wax_coordinator::store::testing::TestPostgres;
use wax_tests::s3::TestS3;
use wax_tests::{
    ServeProcess, WorkerProcess, new_token, python, succeeded as ok, wax_timeout, workspace_root,
};

const MANIFEST: &str = r#"
[sweep]
name = "e2e"

[base]
model = { ref = "builtin:1m" }
env = { turns = 3, shuffle_directions = false }
rl = { steps = 3, mazes_per_step = 2, group_size = 4, entropy_coef = 0.5, eval = { mazes = 4 } }
extract = { synthetic = { per_class = 12, max_len = 3 }, resamples = 20 }
evaluate = { suites = ["geometry", "tracking"], resamples = 20, null_draws = 20, tracking_questions = 4, tracking = { per_class = 8, resamples = 20, null_draws = 20 }, steering = { phase0_max_new_tokens = 4, batch = 8 } }

[axes]
mapping = ["office", "office-swapped"]
"#;

fn py(args: &[&str]) -> String {
    let script = workspace_root().join("tests/python/sweep_artifacts.py");
    let out =
        std::process::Command::new(python()).arg(script).args(args).output().expect("python runs");
    ok(&out, &format!("python {args:?}"))
}

#[test]
fn a_sweep_on_postgres_s3_and_two_workers_equals_wax_run() {
    let Some(pg) = TestPostgres::start() else { return };
    let Some(s3) = TestS3::start(&python()) else { return };
    s3.create_bucket("wax-e2e");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = d.join("tokens.toml");
    let admin = new_token(&tokens, "alice", "submit");
    let worker = new_token(&tokens, "w", "worker");
    std::fs::write(d.join("worker.tok"), &worker).unwrap();
    std::fs::write(d.join("sweep.toml"), MANIFEST).unwrap();

    let serve = ServeProcess::start(
        &["--listen", "127.0.0.1:0", "--store", pg.url(), "--tokens", tokens.to_str().unwrap()],
        &[],
    );
    // One settings file for everyone: coordinator, artifact store, S3 endpoint and credentials.
    let mut settings = format!(
        "coordinator = \"http://{}\"\nartifact_store = \"s3://wax-e2e/sweeps\"\n[s3]\n",
        serve.addr
    );
    for (k, v) in s3.settings() {
        let v = if v == "true" { v } else { format!("\"{v}\"") };
        settings += &format!("{k} = {v}\n");
    }
    let cfg = d.join("wax.toml");
    std::fs::write(&cfg, settings).unwrap();
    let c = cfg.to_str().unwrap();
    let tok = d.join("worker.tok");
    let mut workers: Vec<WorkerProcess> = (1..=2)
        .map(|i| {
            let name = format!("w{i}");
            let work = d.join(format!("work-{i}"));
            WorkerProcess::start(
                &[
                    "--config",
                    c,
                    "--token-file",
                    tok.to_str().unwrap(),
                    "--name",
                    &name,
                    "--cpus",
                    "1",
                    "--work-dir",
                    work.to_str().unwrap(),
                ],
                &[],
                &d.join(format!("worker-{i}.log")),
            )
        })
        .collect();

    let admin_env = [("WAX_TOKEN", admin.as_str())];
    let sweep_file = d.join("sweep.toml");
    let out = ok(
        &wax_timeout(
            &["submit", sweep_file.to_str().unwrap(), "--config", c, "--watch"],
            &admin_env,
            Duration::from_secs(600),
        ),
        "submit --watch",
    );
    let sweep = out.lines().next().unwrap().trim().to_string();
    assert!(sweep.starts_with("e2e-"), "{out}");
    assert!(out.contains("finished"), "{out}");
    // Both workers took stages.
    for w in &workers {
        assert!(
            w.log_text().contains("task ended"),
            "{} ran nothing:\n{}",
            w.log.display(),
            w.log_text()
        );
    }
    // Submitting again runs nothing: every stage is committed.
    let again = ok(
        &wax_timeout(
            &["submit", sweep_file.to_str().unwrap(), "--config", c, "--output", "json"],
            &admin_env,
            Duration::from_secs(60),
        ),
        "resubmit",
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["scheduled"], 0, "{again}");
    assert_eq!(again["cached"], again["stages"], "{again}");

    // Pull everything (checksums verified), then again: nothing to download.
    let pulled = d.join("pulled");
    let out = ok(
        &wax_timeout(
            &["pull", &sweep, pulled.to_str().unwrap(), "--config", c],
            &admin_env,
            Duration::from_secs(120),
        ),
        "pull",
    );
    assert!(out.contains("10 stages"), "{out}");
    let out = ok(
        &wax_timeout(
            &["pull", &sweep, pulled.to_str().unwrap(), "--config", c],
            &admin_env,
            Duration::from_secs(120),
        ),
        "pull again",
    );
    assert!(out.contains("0.0 MB downloaded now"), "{out}");
    for role in ["model", "rl", "extract-trained", "extract-naive", "evaluate"] {
        assert!(pulled.join("trials/000").join(role).join("log.txt").is_file(), "{role}");
    }
    assert!(pulled.join("trials/001/rl/step-3/model/model.safetensors").is_file());
    assert!(pulled.join("report/report.md").is_file());
    // A stage's log through `wax logs`.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("plan.json")).unwrap()).unwrap();
    let rl = plan["trials"][0]["stages"]["rl"].as_str().unwrap().to_string();
    let log = ok(
        &wax_timeout(
            &["logs", &sweep, &rl[..10], "--config", c],
            &admin_env,
            Duration::from_secs(60),
        ),
        "logs",
    );
    assert!(log.contains("step 3:") && log.contains("held-out return"), "{log}");

    // Filters: one kind of one trial.
    let some = d.join("some");
    let out = ok(
        &wax_timeout(
            &[
                "pull",
                &sweep,
                some.to_str().unwrap(),
                "--config",
                c,
                "--kind",
                "rl",
                "--trial",
                "1",
            ],
            &admin_env,
            Duration::from_secs(120),
        ),
        "pull --kind --trial",
    );
    assert!(out.contains("1 stages"), "{out}");
    assert!(some.join("trials/001/rl/summary.json").is_file());
    assert!(!some.join("trials/000").exists() && !some.join("trials/001/evaluate").exists());
    assert!(!some.join("report").exists());

    let summary = py(&["check", pulled.to_str().unwrap()]);
    let counts: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(counts["trials"], 2, "{summary}");
    assert!(counts["tensors"].as_u64().unwrap() > 20, "{summary}");

    for w in &mut workers {
        assert!(
            w.terminate(Duration::from_secs(30)).is_some_and(|s| s.success()),
            "worker drains and exits"
        );
    }
    drop(serve);

    // The same manifest, embedded: same stage ids, same numbers.
    let state = d.join("local");
    let out = ok(
        &wax_timeout(
            &["run", sweep_file.to_str().unwrap(), "--state", state.to_str().unwrap()],
            &[],
            Duration::from_secs(600),
        ),
        "wax run",
    );
    assert!(out.contains("return before→after") && out.contains("finished"), "{out}");
    let local_id = out
        .lines()
        .find_map(|l| l.strip_prefix("sweep "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let local = d.join("local-pulled");
    ok(
        &wax_timeout(
            &["pull", &local_id, local.to_str().unwrap(), "--state", state.to_str().unwrap()],
            &[],
            Duration::from_secs(120),
        ),
        "pull --state",
    );
    let same = py(&["compare", pulled.to_str().unwrap(), local.to_str().unwrap()]);
    assert!(same.contains("\"trials\": 2"), "{same}");
}
