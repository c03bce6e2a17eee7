//! A coordinator on 127.0.0.1:0 with simulated workers over real gRPC, on SQLite and on a real
//! PostgreSQL server: whole sweeps, caching, lease expiry and fencing, retries, cancellation.

mod support;

use std::time::{Duration, Instant};
use support::*;
use wax_coordinator::store::testing::TestPostgres;
use wax_proto::v1;

/// 2 models × 2 mappings × 3 algorithms × 6 seeds = 72 trials of the paper pipeline.
fn grid(seeds: u32) -> String {
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    format!(
        r#"
[sweep]
name = "grid"

[base]
rl = {{ steps = 3 }}

[axes]
model = ["builtin:tiny", "builtin:small"]
mapping = ["office", "office-swapped"]
algorithm = ["dr-grpo", "grpo", "reinforce"]
seed = [{}]
"#,
        seeds.join(", ")
    )
}

/// The whole life of a sweep on one store.
async fn sweep_lifecycle(store: &str) {
    let server = start(store, fast_scheduler()).await;
    let conn = connect(&server, ADMIN).await;
    let first = submit(&conn, &grid(6)).await;
    assert_eq!(first.trials, 72);
    // Per trial: rl, extract-trained, evaluate; per (model, mapping): extract-naive; per
    // model: model; plus the report.
    assert_eq!(first.stages, 72 * 3 + 4 + 2 + 1);
    assert_eq!((first.scheduled, first.cached), (first.stages, 0));

    let ledger: Ledger = Default::default();
    let (stop, workers) = spawn_workers(&conn, 8, &ledger);
    let done = wait_for(&conn, &first.sweep_id, &["succeeded", "failed"], 120).await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(done.counts.unwrap().succeeded, first.stages);
    // The last completion's answer may still be on its way to its worker: stop them first.
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    {
        let l = ledger.lock().unwrap();
        assert_eq!(l.len() as u32, first.stages, "every stage completed");
        assert!(l.values().all(|&n| n == 1), "a stage completed twice");
    }

    // Submitting it again schedules nothing.
    let again = submit(&conn, &grid(6)).await;
    assert_eq!((again.scheduled, again.cached), (0, first.stages));
    assert_eq!(sweep(&conn, &again.sweep_id).await.state, "succeeded");

    // One more seed: 12 new trials; only their rl/extract/evaluate stages and the report run.
    let (stop, workers) = spawn_workers(&conn, 8, &ledger);
    let more = submit(&conn, &grid(7)).await;
    assert_eq!(more.trials, 84);
    assert_eq!(more.scheduled, 12 * 3 + 1, "{more:?}");
    assert_eq!(more.cached, more.stages - more.scheduled);
    let done = wait_for(&conn, &more.sweep_id, &["succeeded", "failed"], 60).await;
    assert_eq!(done.state, "succeeded");
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    {
        let l = ledger.lock().unwrap();
        assert_eq!(l.len() as u32, first.stages + more.scheduled);
        assert!(l.values().all(|&n| n == 1), "a stage completed twice");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_72_trial_sweep_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sweep_lifecycle(&format!("sqlite:{}", dir.path().join("c.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_72_trial_sweep_on_postgres() {
    let Some(pg) = TestPostgres::start() else { return };
    sweep_lifecycle(pg.url()).await;
}

const ONE_SLEEP: &str = r#"
[sweep]
name = "one"
pipeline = "single-stage"
[base]
kind = "sleep"
ms = 10
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_loses_its_lease_and_its_late_completion_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(&format!("sqlite:{}", dir.path().join("c.db").display()), fast_scheduler()).await;
    let conn = connect(&server, ADMIN).await;
    let s = submit(&conn, ONE_SLEEP).await;
    let (mut silent, silent_id) = register(&conn, "silent", 0, 1).await;
    let (mut healthy, healthy_id) = register(&conn, "healthy", 0, 1).await;
    let t1 = silent
        .lease(v1::LeaseRequest { worker_id: silent_id.clone(), wait_ms: 0 })
        .await
        .unwrap()
        .into_inner();
    let t1 = t1.task.expect("a task");
    assert_eq!(t1.epoch, 1);
    // No heartbeat: after the 600 ms TTL the stage is handed to the healthy worker.
    let started = Instant::now();
    let t2 = healthy
        .lease(v1::LeaseRequest { worker_id: healthy_id.clone(), wait_ms: 5000 })
        .await
        .unwrap()
        .into_inner();
    let t2 = t2.task.expect("re-leased after expiry");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "re-leased too early: {:?}",
        started.elapsed()
    );
    assert_eq!((t2.stage_id.as_str(), t2.epoch), (t1.stage_id.as_str(), 2));
    // The silent worker wakes up and tries to finish: fenced off.
    let late = silent
        .complete(v1::CompleteRequest {
            worker_id: silent_id.clone(),
            stage_id: t1.stage_id.clone(),
            epoch: 1,
            files: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late}");
    assert!(late.message().contains("stale lease"), "{late}");
    let hb = silent
        .heartbeat(v1::HeartbeatRequest {
            worker_id: silent_id,
            stage_id: t1.stage_id.clone(),
            epoch: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(hb.code(), tonic::Code::FailedPrecondition);
    let ok = healthy
        .complete(v1::CompleteRequest {
            worker_id: healthy_id.clone(),
            stage_id: t2.stage_id.clone(),
            epoch: 2,
            files: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.duplicate, ok.canonical_attempt), (false, 2));
    // A retried completion (lost response) is acknowledged as a duplicate, not applied twice.
    let dup = healthy
        .complete(v1::CompleteRequest {
            worker_id: healthy_id,
            stage_id: t2.stage_id,
            epoch: 2,
            files: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dup.duplicate);
    let done = sweep(&conn, &s.sweep_id).await;
    assert_eq!(done.state, "succeeded");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_respect_budgets_and_back_off_exponentially() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = wax_coordinator::scheduler::SchedulerConfig {
        stage_error_budget: 2,
        infra_failure_budget: 1,
        ..fast_scheduler()
    };
    let server = start(&format!("sqlite:{}", dir.path().join("c.db").display()), cfg).await;
    let conn = connect(&server, ADMIN).await;
    let s = submit(&conn, ONE_SLEEP).await;
    let (mut w, id) = register(&conn, "flaky", 0, 1).await;
    let mut lease_times = Vec::new();
    let mut outcomes = Vec::new();
    // Attempt 1: infrastructure failure (budget 1: retried); attempts 2–4: stage errors
    // (budget 2: retried twice, the third fails the stage).
    for (attempt, kind) in [
        (1, v1::FailureKind::Infrastructure),
        (2, v1::FailureKind::StageError),
        (3, v1::FailureKind::StageError),
        (4, v1::FailureKind::StageError),
    ] {
        let t = w
            .lease(v1::LeaseRequest { worker_id: id.clone(), wait_ms: 5000 })
            .await
            .unwrap()
            .into_inner();
        let t = t.task.expect("leased");
        lease_times.push(Instant::now());
        assert_eq!(t.epoch, attempt);
        let r = w
            .fail(v1::FailRequest {
                worker_id: id.clone(),
                stage_id: t.stage_id,
                epoch: t.epoch,
                kind: kind as i32,
                retryable: true,
                reason: format!("attempt {attempt} broke"),
            })
            .await
            .unwrap()
            .into_inner();
        outcomes.push(r.will_retry);
    }
    assert_eq!(outcomes, [true, true, true, false]);
    // Backoffs: infra 1st → 200 ms; stage 1st → 200 ms; stage 2nd → 400 ms.
    let gaps: Vec<u128> = lease_times.windows(2).map(|p| (p[1] - p[0]).as_millis()).collect();
    assert!(gaps[0] >= 190 && gaps[1] >= 190 && gaps[2] >= 390, "gaps {gaps:?}");
    assert!(gaps[2] > gaps[1] + 150, "backoff did not grow: {gaps:?}");
    let failed = sweep(&conn, &s.sweep_id).await;
    assert_eq!(failed.state, "failed");
    assert!(failed.failures[0].error.contains("attempt 4 broke"), "{failed:?}");
    // `retry --failed` gives it fresh budgets.
    let r = conn
        .sweeps()
        .retry_failed(v1::RetryFailedRequest { sweep_id: s.sweep_id.clone() })
        .await
        .unwrap();
    assert_eq!(r.into_inner().requeued, 1);
    let t = w
        .lease(v1::LeaseRequest { worker_id: id.clone(), wait_ms: 2000 })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    w.complete(v1::CompleteRequest {
        worker_id: id,
        stage_id: t.stage_id,
        epoch: t.epoch,
        files: vec![],
    })
    .await
    .unwrap();
    assert_eq!(sweep(&conn, &s.sweep_id).await.state, "succeeded");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_worker_through_its_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(&format!("sqlite:{}", dir.path().join("c.db").display()), fast_scheduler()).await;
    let conn = connect(&server, SUBMIT).await;
    let s = submit(&conn, ONE_SLEEP).await;
    let wconn = support::connect(&server, WORKER).await;
    let (mut w, id) = register(&wconn, "busy", 0, 1).await;
    let t = w
        .lease(v1::LeaseRequest { worker_id: id.clone(), wait_ms: 1000 })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let beat = |w: &mut wax_proto::client::WorkerClient| {
        let req = v1::HeartbeatRequest {
            worker_id: id.clone(),
            stage_id: t.stage_id.clone(),
            epoch: t.epoch,
            progress: 0.5,
            message: "step 3/6".into(),
            metrics: [("return".to_string(), 42.5)].into(),
        };
        let mut w = w.clone();
        async move { w.heartbeat(req).await.unwrap().into_inner() }
    };
    assert!(!beat(&mut w).await.cancel);
    // Status shows the running stage with what its worker last said.
    let running = sweep(&conn, &s.sweep_id).await.running;
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].progress, running[0].message.as_str()), (0.5, "step 3/6"));
    assert_eq!((running[0].worker_id.as_str(), running[0].attempt), (id.as_str(), 1));
    assert_eq!(running[0].metrics.get("return"), Some(&42.5));
    let c = conn
        .sweeps()
        .cancel(v1::CancelRequest { sweep_id: s.sweep_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.cancelled, 1);
    assert!(beat(&mut w).await.cancel, "the running worker is told to stop");
    w.fail(v1::FailRequest {
        worker_id: id,
        stage_id: t.stage_id,
        epoch: t.epoch,
        kind: v1::FailureKind::StageError as i32,
        retryable: false,
        reason: "cancelled by the coordinator".into(),
    })
    .await
    .unwrap();
    let v = sweep(&conn, &s.sweep_id).await;
    assert_eq!((v.state.as_str(), v.counts.unwrap().cancelled), ("cancelled", 1));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_nobody_can_run_is_reported_stalled_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(&format!("sqlite:{}", dir.path().join("c.db").display()), fast_scheduler()).await;
    let conn = connect(&server, ADMIN).await;
    let manifest = format!("{ONE_SLEEP}\n[resources.sleep]\ngpus = 2\ngpu_memory = \"80GiB\"\n");
    let s = submit(&conn, &manifest).await;
    let _cpu = register(&conn, "cpu-only", 0, 1).await;
    let stalled = wait_for(&conn, &s.sweep_id, &["stalled"], 10).await;
    assert!(
        stalled.stalled_reasons.iter().any(|r| r.contains("need 2 GPU(s) with 80 GiB")),
        "{:?}",
        stalled.stalled_reasons
    );
    // The watch stream carries the stall event too.
    let mut events = conn
        .sweeps()
        .watch(v1::WatchRequest { sweep_id: s.sweep_id.clone(), after_seq: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        kinds.push(events.message().await.unwrap().unwrap().kind);
    }
    assert_eq!(kinds, ["submitted", "stalled"]);
    // A big worker arrives and the sweep finishes; the stream ends with it.
    let ledger: Ledger = Default::default();
    let (stop, workers) = spawn_workers(&conn, 1, &ledger);
    let mut rest = Vec::new();
    while let Some(e) = events.message().await.unwrap() {
        rest.push((e.kind, e.state));
    }
    assert_eq!(
        rest.last().unwrap(),
        &("finished".to_string(), "succeeded".to_string()),
        "{rest:?}"
    );
    assert!(rest.iter().any(|(k, _)| k == "unstalled"), "{rest:?}");
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    server.shutdown().await.unwrap();
}
