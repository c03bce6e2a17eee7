//! Killing the coordinator process with SIGKILL in the middle of a sweep, twice, loses nothing:
//! after each restart on the same store it reconciles, the workers carry on (their leases
//! survive), and every stage completes exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wax_proto::client::Connection;
use wax_proto::v1;
use wax_tests::ServeProcess;

const ADMIN: &str = "crash-test-admin";
const WORKER: &str = "crash-test-worker";

const MANIFEST: &str = r#"
[sweep]
name = "crash"
[base]
rl = { steps = 1 }
[axes]
mapping = ["office", "office-swapped"]
algorithm = ["dr-grpo", "sft", "reinforce"]
seed = [0, 1, 2, 3]
"#;

/// Per stage, the epochs whose completion the coordinator acknowledged to the worker that held
/// them. Exactly once means one acknowledged epoch per stage. A worker whose completion was
/// committed but whose reply was lost in the crash retries and is answered "duplicate" for its own
/// epoch: that is the same completion, acknowledged late, and is recorded once.
type Ledger = Arc<Mutex<HashMap<String, Vec<u64>>>>;

/// How long one call may take before it counts as lost (the coordinator died under it).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker keeps retrying one call while the coordinator is down.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Retries a call while the coordinator is down (connection refused or reset, unavailable, or no
/// answer within [`CALL_TIMEOUT`]); gives up after [`RETRY_FOR`] so that a bug fails the test
/// instead of hanging it.
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let give_up = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        let result = match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!("{what}: no answer"))),
        };
        match result {
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                        | tonic::Code::Internal
                        | tonic::Code::DeadlineExceeded
                ) && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Leases, "works" 80 ms while heartbeating, completes; survives coordinator restarts.
async fn worker(
    url: String,
    name: String,
    ledger: Ledger,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let conn = loop {
        match Connection::connect(&url, None, Some(WORKER)).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let kinds = wax_proto::catalog::STAGE_KINDS
        .iter()
        .map(|k| v1::StageKind { kind: k.kind.into(), schema_version: k.schema_version })
        .collect::<Vec<_>>();
    let reg = v1::RegisterRequest {
        protocol_version: wax_proto::PROTOCOL_VERSION,
        worker_name: name.clone(),
        capabilities: Some(v1::Capabilities {
            resources: Some(v1::Resources {
                gpus: 0,
                gpu_memory_bytes: 0,
                cpu_millis: 4000,
                memory_bytes: 16 << 30,
            }),
            stage_kinds: kinds,
            max_concurrent_tasks: 1,
            ..Default::default()
        }),
    };
    let id = retrying("register", || {
        let mut c = conn.workers();
        let r = reg.clone();
        async move { c.register(r).await }
    })
    .await
    .expect("register")
    .into_inner()
    .worker_id;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let lease = retrying("lease", || {
            let mut c = conn.workers();
            let id = id.clone();
            async move { c.lease(v1::LeaseRequest { worker_id: id, wait_ms: 300 }).await }
        })
        .await
        .expect("lease");
        let Some(task) = lease.into_inner().task else { continue };
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let hb = v1::HeartbeatRequest {
                worker_id: id.clone(),
                stage_id: task.stage_id.clone(),
                epoch: task.epoch,
                ..Default::default()
            };
            let _ = retrying("heartbeat", || {
                let mut c = conn.workers();
                let hb = hb.clone();
                async move { c.heartbeat(hb).await }
            })
            .await;
        }
        let done = v1::CompleteRequest {
            worker_id: id.clone(),
            stage_id: task.stage_id.clone(),
            epoch: task.epoch,
            files: vec![],
        };
        let r = retrying("complete", || {
            let mut c = conn.workers();
            let d = done.clone();
            async move { c.complete(d).await }
        })
        .await;
        match r {
            // Accepted now, or accepted before the crash and acknowledged on this retry.
            Ok(r) if r.get_ref().canonical_attempt == task.epoch => {
                ledger.lock().unwrap().entry(task.stage_id).or_default().push(task.epoch)
            }
            Ok(r) => panic!(
                "{name}: completion of epoch {} answered with epoch {}",
                task.epoch,
                r.get_ref().canonical_attempt
            ),
            // The lease was lost (a restart took longer than a lease): someone else will do it.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
            Err(s) => panic!("{name}: complete failed: {s}"),
        }
    }
}

async fn sweep_state(url: &str, id: &str) -> Option<v1::Sweep> {
    let get = async {
        let conn = Connection::connect(url, None, Some(ADMIN)).await.ok()?;
        conn.sweeps()
            .get(v1::GetSweepRequest { sweep_id: id.into() })
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    tokio::time::timeout(CALL_TIMEOUT, get).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_sweep_loses_nothing_and_completes_every_stage_once() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nroles = [\"admin\"]\n\
             [[token]]\nname = \"workers\"\ntoken = \"{WORKER}\"\nroles = [\"worker\"]\n"
        ),
    )
    .unwrap();
    let store = format!("sqlite:{}", dir.path().join("coordinator.db").display());
    let env = [
        ("WAX_SERVE__SCHEDULER__LEASE_TTL", "3000"),
        ("WAX_SERVE__SCHEDULER__HEARTBEAT_INTERVAL", "500"),
    ];
    let tokens = tokens.display().to_string();
    let serve = ServeProcess::start(
        &["--listen", "127.0.0.1:0", "--store", &store, "--tokens", &tokens],
        &env,
    );
    let addr = serve.addr.clone();
    let url = format!("http://{addr}");

    let admin = Connection::connect(&url, None, Some(ADMIN)).await.unwrap();
    let sub = admin
        .sweeps()
        .submit(v1::SubmitRequest {
            manifest: MANIFEST.into(),
            format: "toml".into(),
            source_name: "crash.toml".into(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    let total = sub.stages;
    assert_eq!(sub.trials, 24);

    let ledger: Ledger = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(worker(url.clone(), format!("crash-w{i}"), ledger.clone(), stop.clone()))
        })
        .collect();

    // Kill it when about a quarter, then when about two thirds, of the stages are done.
    let mut serve = Some(serve);
    for fraction in [0.25, 0.66] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let done = ledger.lock().unwrap().len();
            if done as f64 >= fraction * f64::from(total) {
                break;
            }
            let dead = workers.iter().filter(|w| w.is_finished()).count();
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {done} of {total} stages done after 60 s ({dead} workers exited)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        serve.take().unwrap().kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        serve = Some(ServeProcess::start(
            &["--listen", &addr, "--store", &store, "--tokens", &tokens],
            &env,
        ));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let finished = loop {
        if let Some(s) = sweep_state(&url, &sub.sweep_id).await
            && (s.state == "succeeded" || s.state == "failed")
        {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "sweep did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("a worker did not stop")
            .unwrap();
    }
    assert_eq!(finished.state, "succeeded", "{finished:?}");
    assert_eq!(finished.counts.unwrap().succeeded, total);
    let ledger = ledger.lock().unwrap();
    assert_eq!(ledger.len() as u32, total, "every stage completed");
    let twice: Vec<_> = ledger.iter().filter(|(_, epochs)| epochs.len() != 1).collect();
    assert!(twice.is_empty(), "stages accepted more than once: {twice:?}");
    drop(serve);
}
