//! The coordinator CLI as a user runs it: tokens, serve, submit, status, watch, cancel, retry,
//! manifest check/schema, and layered settings (file < WAX_* environment < flags).

use wax_tests::{ServeProcess, wax, wax_env, workspace_root};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn err(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_user_session_against_a_real_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let t = tokens.to_str().unwrap();
    let admin = ok(&wax(&["token", "new", "--name", "alice", "--role", "submit", "--append", t]))
        .trim()
        .to_string();
    let worker = ok(&wax(&["token", "new", "--name", "w", "--role", "worker", "--append", t]))
        .trim()
        .to_string();
    let file = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        file.contains("name = \"alice\"") && file.contains("sha256 = ") && !file.contains(&admin),
        "{file}"
    );

    let store = format!("sqlite:{}", dir.path().join("c.db").display());
    let serve =
        ServeProcess::start(&["--listen", "127.0.0.1:0", "--store", &store, "--tokens", t], &[]);
    let url = format!("http://{}", serve.addr);
    let manifest = workspace_root().join("examples/scheduler-test.toml");
    let m = manifest.to_str().unwrap();

    // Submit with the token from the environment and the URL from a flag.
    let env = [("WAX_TOKEN", admin.as_str())];
    let out = ok(&wax_env(&["submit", m, "--coordinator", &url, "--output", "json"], &env));
    let sub: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((sub["trials"].as_u64(), sub["scheduled"].as_u64()), (Some(26), Some(26)));
    let id = sub["sweep_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("scheduler-test-"), "{id}");

    // A worker token cannot submit or cancel.
    let denied =
        err(&wax_env(&["submit", m, "--coordinator", &url], &[("WAX_TOKEN", worker.as_str())]));
    assert!(denied.contains("needs `submit`") && denied.contains("PermissionDenied"), "{denied}");
    let denied =
        err(&wax_env(&["cancel", &id, "--coordinator", &url], &[("WAX_TOKEN", worker.as_str())]));
    assert!(denied.contains("PermissionDenied"), "{denied}");

    // Layered settings: file < WAX_* < flags.
    let settings = dir.path().join("wax.toml");
    let c = settings.to_str().unwrap();
    std::fs::write(&settings, format!("coordinator = \"{url}\"\ntoken = \"{admin}\"\n")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&ok(&wax_env(
        &["status", &id, "--config", c, "--output", "json"],
        &[],
    )))
    .unwrap();
    assert_eq!(s["state"], "running");
    assert_eq!(s["counts"]["total"], 26);
    let dead = "http://127.0.0.1:1";
    let e = err(&wax_env(&["status", "--config", c], &[("WAX_COORDINATOR", dead)]));
    assert!(e.contains("127.0.0.1:1"), "environment beats file: {e}");
    ok(&wax_env(&["status", "--config", c, "--coordinator", &url], &[("WAX_COORDINATOR", dead)]));
    let e = err(&wax_env(&["status", "--config", c, "--coordinator", dead], &[]));
    assert!(e.contains("127.0.0.1:1"), "flag beats file: {e}");
    let text = ok(&wax_env(&["status", "--config", c], &[]));
    assert!(text.contains(&id) && text.contains("running"), "{text}");

    // Cancel, then watch: the stream ends and the exit status says how the sweep ended.
    let out = ok(&wax_env(&["cancel", &id, "--config", c, "--output", "json"], &[]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["cancelled"], 26);
    let watched = wax_env(&["watch", &id, "--config", c], &[]);
    let events = String::from_utf8_lossy(&watched.stdout).to_string();
    assert!(events.contains("submitted") && events.contains("cancelled"), "{events}");
    assert!(err(&watched).contains("ended cancelled"));
    let e = err(&wax_env(&["retry", "--failed", &id, "--config", c], &[]));
    assert!(e.contains("was cancelled"), "{e}");
    let e = err(&wax_env(&["status", "no-such-sweep", "--config", c], &[]));
    assert!(e.contains("unknown sweep no-such-sweep") && e.contains("NotFound"), "{e}");
    drop(serve);
}

#[test]
fn serve_refuses_to_run_without_tokens() {
    let e = err(&wax(&["serve", "--listen", "127.0.0.1:0", "--store", "sqlite::memory:"]));
    assert!(e.contains("no tokens file"), "{e}");
}

#[test]
fn manifest_check_locates_errors_and_schema_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "sweep:\n  name: x\naxes:\n  seed: []\n").unwrap();
    let e = err(&wax(&["manifest", "check", bad.to_str().unwrap()]));
    assert!(e.contains(&format!("{}:4:", bad.display())) && e.contains("axes.seed"), "{e}");
    let good = workspace_root().join("examples/paper-grid.toml");
    let out = ok(&wax(&["manifest", "check", good.to_str().unwrap(), "--trials"]));
    assert!(out.contains("10 trials"), "{out}");
    let schema: serde_json::Value =
        serde_json::from_str(&ok(&wax(&["manifest", "schema"]))).unwrap();
    assert!(schema["properties"]["sweep"].is_object(), "{schema}");
}
