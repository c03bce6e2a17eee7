//! `wax run` interrupted with Ctrl-C (SIGINT) in the middle of an RL stage: the in-process
//! worker writes a resume checkpoint and hands the stage back, the process exits; the same
//! command then continues — committed stages are not run again, the RL stage resumes from its
//! checkpoint — and ends with the per-trial table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wax_tests::{builtin_cache_dir, wax_bin, wax_timeout};

const MANIFEST: &str = r#"
[sweep]
name = "interrupt"

[base]
model = { ref = "builtin:1m" }
env = { turns = 4, shuffle_directions = false }
rl = { steps = 40, mazes_per_step = 4, group_size = 4, entropy_coef = 0.5, eval = { mazes = 8 } }
extract = { synthetic = { per_class = 12, max_len = 4 }, resamples = 20 }
evaluate = { suites = ["geometry"], resamples = 20, null_draws = 20 }
"#;

#[test]
fn an_interrupted_run_continues_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let state = dir.path().join("state");
    let (m, s) = (manifest.to_str().unwrap(), state.to_str().unwrap());

    let mut child = Command::new(wax_bin())
        .args(["run", m, "--state", s, "--workers", "1"])
        .env_remove("LD_LIBRARY_PATH")
        .env("WAX_CACHE_DIR", builtin_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("started") && line.contains(" rl ") {
                let _ = tx.send(());
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(300)).expect("the rl stage starts");
    std::thread::sleep(Duration::from_secs(4));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "wax run did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let first = reader.join().unwrap();
    assert!(!status.success(), "an interrupted run exits non-zero:\n{first}");
    assert!(first.contains("interrupted"), "{first}");

    let out = wax_timeout(&["run", m, "--state", s], &[], Duration::from_secs(600));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("already committed (cached): not run again"), "{stderr}");
    assert!(stdout.contains("return before→after"), "{stdout}");
    // The RL stage's committed attempt resumed from the checkpoint written at the interrupt.
    let cas = state.join("store/cas");
    let logs: Vec<String> = std::fs::read_dir(&cas)
        .unwrap()
        .flatten()
        .flat_map(|stage| std::fs::read_dir(stage.path()).into_iter().flatten().flatten())
        .filter_map(|attempt| std::fs::read_to_string(attempt.path().join("log.txt")).ok())
        .collect();
    let rl = logs
        .iter()
        .find(|l| l.contains("resuming from step"))
        .unwrap_or_else(|| panic!("no attempt resumed; logs:\n{}", logs.join("\n---\n")));
    assert!(rl.contains("of attempt 1") && rl.contains("step 40:"), "{rl}");
    // The interrupted attempt handed the stage back (not a failure).
    assert!(logs.iter().any(|l| l.contains("handing the lease back")), "{}", logs.join("\n---\n"));
}

/// A sweep whose stages need more than this machine offers is reported, not waited on forever.
#[test]
fn a_sweep_this_machine_cannot_run_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("big.toml");
    std::fs::write(
        &manifest,
        "[sweep]\nname = \"big\"\n[resources.model]\nmemory = \"100000GiB\"\n[base]\nmodel = { ref = \"builtin:1m\" }\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = wax_timeout(
        &["run", manifest.to_str().unwrap(), "--state", state.to_str().unwrap()],
        &[],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot finish on this machine") && stderr.contains("GiB RAM"),
        "{stderr}"
    );
}
