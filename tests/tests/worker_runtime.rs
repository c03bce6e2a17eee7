//! `wax worker` as an operator sees it, with the testing stage kinds (no science): a cancelled
//! sweep stops the running stage at its next heartbeat; SIGTERM drains (the lease is handed
//! back, not charged, and another worker finishes the stage); failures are classified (a bad
//! configuration is never retried, an infrastructure fault is); testing kinds run only on
//! workers started with `--testing`; several stages run at once when resources allow.

use std::time::{Duration, Instant};

use wax_proto::client::Connection;
use wax_proto::v1;
use wax_tests::{ServeProcess, WorkerProcess, new_token, wax_timeout};

struct Cluster {
    dir: tempfile::TempDir,
    /// Held for its lifetime: dropping it stops the coordinator.
    _serve: ServeProcess,
    url: String,
    admin: String,
    worker_token: std::path::PathBuf,
    settings: std::path::PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tokens = d.join("tokens.toml");
        let t = tokens.to_str().unwrap();
        let admin = new_token(&tokens, "a", "admin");
        let worker = new_token(&tokens, "w", "worker");
        let worker_token = d.join("worker.tok");
        std::fs::write(&worker_token, worker).unwrap();
        let settings = d.join("wax.toml");
        std::fs::write(
            &settings,
            format!(
                "artifact_store = \"file://{}\"\n[worker]\ndrain_timeout_s = 1\nlease_wait_s = 1\n\
                 [serve.scheduler]\nlease_ttl = 3000\nheartbeat_interval = 300\nbackoff_base = 100\nstall_grace = 1000\n",
                d.join("store").display()
            ),
        )
        .unwrap();
        let db = format!("sqlite:{}", d.join("c.db").display());
        let serve = ServeProcess::start(
            &[
                "--config",
                settings.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--store",
                &db,
                "--tokens",
                t,
            ],
            &[],
        );
        let url = format!("http://{}", serve.addr);
        Cluster { dir, _serve: serve, url, admin, worker_token, settings }
    }

    fn worker(&self, name: &str, extra: &[&str]) -> WorkerProcess {
        let work = self.dir.path().join(format!("work-{name}"));
        let mut args = vec![
            "--config",
            self.settings.to_str().unwrap(),
            "--coordinator",
            &self.url,
            "--token-file",
            self.worker_token.to_str().unwrap(),
            "--name",
            name,
            "--work-dir",
            work.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        WorkerProcess::start(&args, &[], &self.dir.path().join(format!("{name}.log")))
    }

    /// Submits over gRPC directly (no client-side checks), returning the sweep id.
    fn submit(&self, manifest: &str) -> String {
        self.rt().block_on(async {
            let conn = Connection::connect(&self.url, None, Some(&self.admin)).await.unwrap();
            let req = v1::SubmitRequest {
                manifest: manifest.into(),
                format: "toml".into(),
                source_name: "t.toml".into(),
                dry_run: false,
            };
            conn.sweeps().submit(req).await.unwrap().into_inner().sweep_id
        })
    }

    fn sweep(&self, id: &str) -> v1::Sweep {
        self.rt().block_on(async {
            let conn = Connection::connect(&self.url, None, Some(&self.admin)).await.unwrap();
            conn.sweeps()
                .get(v1::GetSweepRequest { sweep_id: id.into() })
                .await
                .unwrap()
                .into_inner()
        })
    }

    fn stages(&self, id: &str) -> Vec<v1::StageInfo> {
        self.rt().block_on(async {
            let conn = Connection::connect(&self.url, None, Some(&self.admin)).await.unwrap();
            conn.sweeps()
                .stages(v1::StagesRequest { sweep_id: id.into() })
                .await
                .unwrap()
                .into_inner()
                .stages
        })
    }

    fn rt(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Waits until `pred` holds for the sweep (panics after `secs`).
    fn wait(
        &self,
        id: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&v1::Sweep) -> bool,
    ) -> v1::Sweep {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let sw = self.sweep(id);
            if pred(&sw) {
                return sw;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}: {sw:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn events(&self, id: &str) -> String {
        let out = wax_timeout(
            &["watch", id, "--coordinator", &self.url, "--verbose"],
            &[("WAX_TOKEN", self.admin.as_str())],
            Duration::from_secs(30),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const LONG_SLEEP: &str =
    "[sweep]\nname = \"long\"\npipeline = \"single-stage\"\n[base]\nkind = \"sleep\"\nms = 60000\n";

#[test]
fn cancel_stops_the_running_stage_and_the_worker_carries_on() {
    let c = Cluster::start();
    let w = c.worker("w", &["--testing"]);
    let id = c.submit(LONG_SLEEP);
    c.wait(&id, 60, "the stage to start", |s| s.running.len() == 1);
    let out = wax_timeout(
        &["cancel", &id, "--coordinator", &c.url],
        &[("WAX_TOKEN", c.admin.as_str())],
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let t = Instant::now();
    c.wait(&id, 30, "the sweep to be cancelled", |s| s.state == "cancelled");
    // The worker stops the stage at its next heartbeat, well before the 60 s sleep ends.
    let until = Instant::now() + Duration::from_secs(20);
    while !w.log_text().contains("Abandoned(\"cancelled by the coordinator\")") {
        assert!(Instant::now() < until, "{}", w.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    // …and takes the next sweep.
    let next = c.submit("[sweep]\nname = \"next\"\npipeline = \"single-stage\"\n[base]\nkind = \"sleep\"\nms = 10\n");
    c.wait(&next, 60, "the next sweep", |s| s.state == "succeeded");
}

#[test]
fn sigterm_drains_the_lease_back_and_another_worker_finishes() {
    let c = Cluster::start();
    let mut a = c.worker("a", &["--testing"]);
    let id = c.submit(&LONG_SLEEP.replace("60000", "8000"));
    c.wait(&id, 60, "the stage to start", |s| s.running.len() == 1);
    // drain_timeout_s = 1: the 8 s sleep cannot finish, so the lease is handed back.
    let status = a.terminate(Duration::from_secs(30)).expect("the worker exits after draining");
    assert!(status.success(), "{status:?}\n{}", a.log_text());
    assert!(
        a.log_text().contains("handed_back=1") || a.log_text().contains("HandedBack"),
        "{}",
        a.log_text()
    );
    let _b = c.worker("b", &["--testing"]);
    c.wait(&id, 60, "the sweep to finish", |s| s.state == "succeeded");
    let stage = &c.stages(&id)[0];
    assert_eq!(stage.committed_attempt, 2);
    let events = c.events(&id);
    assert!(events.contains("released"), "{events}");
    assert!(!events.contains("retrying"), "a drain is not a failure: {events}");
}

#[test]
fn failures_are_classified_and_testing_kinds_need_testing_workers() {
    let c = Cluster::start();
    // Without --testing the worker does not offer the testing kinds: the sweep stalls, saying why.
    let plain = c.worker("plain", &[]);
    let id = c.submit(
        "[sweep]\nname = \"t\"\npipeline = \"single-stage\"\n[base]\nkind = \"sleep\"\nms = 1\n",
    );
    let sw = c.wait(&id, 30, "a stall", |s| s.state == "stalled");
    assert!(sw.stalled_reasons.iter().any(|r| r.contains("sleep")), "{:?}", sw.stalled_reasons);
    drop(plain);
    let _w = c.worker("w", &["--testing", "--slots", "2"]);
    c.wait(&id, 60, "the testing worker to run it", |s| s.state == "succeeded");

    // A configuration the worker cannot read fails at once, never retried (the client-side
    // check is bypassed here by submitting over gRPC).
    let bad = c.submit(
        "[sweep]\nname = \"bad\"\npipeline = \"single-stage\"\n[base]\nkind = \"fail-n-times\"\nn = 1\nfailures = \"often\"\n",
    );
    let sw = c.wait(&bad, 60, "the bad stage to fail", |s| s.state == "failed");
    assert!(
        sw.failures[0].error.contains("bad configuration")
            && sw.failures[0].error.contains("failures"),
        "{:?}",
        sw.failures
    );
    assert_eq!(c.stages(&bad)[0].attempt, 1, "not retried");

    // An infrastructure fault and a stage error are retried (within their budgets).
    let flaky = c.submit(
        "[sweep]\nname = \"flaky\"\npipeline = \"single-stage\"\n[base]\nkind = \"fail-n-times\"\nn = 1\n[axes]\nfailure = [\"stage-error\", \"infrastructure\"]\n",
    );
    c.wait(&flaky, 60, "the flaky stages to succeed", |s| s.state == "succeeded");
    for s in c.stages(&flaky) {
        assert_eq!(s.committed_attempt, 2, "{s:?}");
    }
    let events = c.events(&flaky);
    assert!(
        events.contains("stage error 1/") && events.contains("infrastructure failure 1/"),
        "{events}"
    );
}

#[test]
fn a_worker_runs_several_stages_at_once() {
    let c = Cluster::start();
    let _w = c.worker("w", &["--testing", "--slots", "3", "--cpus", "3"]);
    let id = c.submit(
        "[sweep]\nname = \"par\"\npipeline = \"single-stage\"\n[base]\nkind = \"sleep\"\nms = 3000\n[axes]\nshard = [1, 2, 3]\n",
    );
    let sw = c.wait(&id, 60, "three stages running at once", |s| s.running.len() == 3);
    assert!(sw.running.iter().all(|r| r.worker_id == sw.running[0].worker_id));
    c.wait(&id, 60, "the sweep to finish", |s| s.state == "succeeded");
}
