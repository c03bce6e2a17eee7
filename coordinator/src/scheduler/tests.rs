//! Scheduler semantics on an in-memory store: leases and fencing, retries and budgets,
//! cancellation, priorities, placement, stalls and restarts.

use super::*;
use crate::manifest::model::{Limits, Locations, Manifest, Pipeline, SweepSection, Trial};
use crate::records::{Resources, SweepState, WorkerRecord};
use crate::store::memory::MemoryStore;
use serde_json::json;

fn manifest(pipeline: Pipeline, priority: i32, max_concurrent: u32) -> Manifest {
    Manifest {
        sweep: SweepSection {
            name: "t".into(),
            description: String::new(),
            cache_version: 1,
            priority,
            pipeline,
        },
        limits: Limits { max_trials: 1000, max_concurrent },
        resources: Default::default(),
        base: Default::default(),
        axes: Default::default(),
        zip: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        locations: Locations::default(),
    }
}

/// A single-stage sweep of `n` sleep stages, tagged so that different sweeps differ.
fn sleep_plan(tag: &str, n: u32, m: &Manifest) -> Plan {
    let trials: Vec<Trial> = (0..n)
        .map(|i| Trial {
            index: i,
            params: Default::default(),
            config: json!({"kind": "sleep", "tag": tag, "i": i}),
        })
        .collect();
    crate::plan::plan(m, &trials, 0).unwrap()
}

fn paper_plan(m: &Manifest, seeds: u32, algorithms: &[&str]) -> Plan {
    let mut trials = Vec::new();
    for a in algorithms {
        for seed in 0..seeds {
            let index = trials.len() as u32;
            trials.push(Trial {
                index,
                params: Default::default(),
                config: json!({"seed": seed, "rl": {"algorithm": a}}),
            });
        }
    }
    crate::plan::plan(m, &trials, 0).unwrap()
}

fn sweep_record(id: &str, m: &Manifest, plan: &Plan) -> SweepRecord {
    SweepRecord {
        id: id.into(),
        name: m.sweep.name.clone(),
        manifest: String::new(),
        format: "toml".into(),
        source_name: "t.toml".into(),
        submitted_by: "test".into(),
        created_ms: now_ms(),
        state: SweepState::Running,
        priority: m.sweep.priority,
        max_concurrent: m.limits.max_concurrent,
        trials: plan.trials.len() as u32,
        cached: 0,
        plan: plan.summary(),
    }
}

fn worker(id: &str, kinds: &[&str], gpus: u32, slots: u32) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        name: id.into(),
        resources: Resources {
            gpus,
            gpu_memory_bytes: 80 << 30,
            cpu_millis: 64_000,
            memory_bytes: 512 << 30,
        },
        kinds: kinds.iter().map(|k| (k.to_string(), 1)).collect(),
        labels: Vec::new(),
        max_concurrent_tasks: slots,
        registered_ms: now_ms(),
        last_seen_ms: now_ms(),
    }
}

const ALL: &[&str] =
    &["model", "pretrain", "rl", "extract", "evaluate", "report", "sleep", "fail-n-times"];

fn fast() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(50),
        stall_grace: Duration::from_millis(300),
        worker_timeout: Duration::from_secs(30),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..SchedulerConfig::default()
    }
}

async fn start(store: Arc<MemoryStore>, cfg: SchedulerConfig) -> Arc<Scheduler> {
    Scheduler::start(store, cfg).await.unwrap()
}

async fn drain(s: &Scheduler, w: &str) -> u32 {
    let mut done = 0;
    while let Some(g) = s.lease(w, Duration::from_millis(0)).await.unwrap() {
        s.complete(w, &g.spec.id, g.epoch, vec![]).await.unwrap();
        done += 1;
    }
    done
}

#[tokio::test]
async fn a_paper_sweep_runs_in_dependency_order_and_shares_stages() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let m = manifest(Pipeline::Paper, 0, 0);
    let plan = paper_plan(&m, 3, &["dr-grpo", "sft"]);
    // 6 trials: 1 model, 6 rl, 6 extract-trained, 1 shared extract-naive, 6 evaluate, 1 report.
    assert_eq!(plan.stages.len(), 1 + 6 + 6 + 1 + 6 + 1);
    s.register(worker("w", ALL, 1, 1)).await.unwrap();
    let out = s.submit(sweep_record("s1", &m, &plan), plan.clone()).await.unwrap();
    assert_eq!((out.stages, out.scheduled, out.cached), (21, 21, 0));
    let mut seen = Vec::new();
    while let Some(g) = s.lease("w", Duration::from_millis(0)).await.unwrap() {
        // Every input of a leased stage has already succeeded and is handed over with its files.
        for (spec, attempt, _) in &g.inputs {
            assert!(seen.contains(&spec.id), "{} before its input {}", g.spec.kind, spec.kind);
            assert_eq!(*attempt, 1);
        }
        seen.push(g.spec.id.clone());
        let file = ArtifactFile { path: "out.json".into(), size: 2, sha256: "ab".into() };
        s.complete("w", &g.spec.id, g.epoch, vec![file]).await.unwrap();
    }
    assert_eq!(seen.len(), 21);
    let v = s.sweep("s1").unwrap();
    assert_eq!((v.state.as_str(), v.counts.succeeded), ("succeeded", 21));
    // The same plan again is all cache hits and finishes at once.
    let again = s.submit(sweep_record("s2", &m, &plan), plan).await.unwrap();
    assert_eq!((again.cached, again.scheduled), (21, 0));
    assert_eq!(s.sweep("s2").unwrap().state, "succeeded");
}

#[tokio::test]
async fn an_expired_lease_is_released_and_the_stale_worker_is_fenced_off() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let m = manifest(Pipeline::SingleStage, 0, 0);
    let plan = sleep_plan("a", 1, &m);
    s.register(worker("slow", ALL, 0, 1)).await.unwrap();
    s.register(worker("fast", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    let g1 = s.lease("slow", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(g1.epoch, 1);
    // Heartbeats keep it alive past one TTL…
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.heartbeat("slow", &g1.spec.id, 1, None).await.unwrap();
    }
    assert!(s.lease("fast", Duration::ZERO).await.unwrap().is_none());
    // …then the slow worker goes silent; the lease expires and the task goes to `fast`.
    let g2 =
        s.lease("fast", Duration::from_secs(3)).await.unwrap().expect("re-leased after expiry");
    assert_eq!((g2.spec.id.as_str(), g2.epoch), (g1.spec.id.as_str(), 2));
    let stale = s.complete("slow", &g1.spec.id, 1, vec![]).await.unwrap_err();
    assert!(matches!(stale, SchedError::Op(OpError::Stale(_))), "{stale}");
    assert!(matches!(
        s.heartbeat("slow", &g1.spec.id, 1, None).await,
        Err(SchedError::Op(OpError::Stale(_)))
    ));
    assert_eq!(s.complete("fast", &g2.spec.id, 2, vec![]).await.unwrap(), (false, 2));
    // A retried completion of the committed epoch is acknowledged as a duplicate.
    assert_eq!(s.complete("fast", &g2.spec.id, 2, vec![]).await.unwrap(), (true, 2));
    let v = s.sweep("s").unwrap();
    assert_eq!(v.state, "succeeded");
}

#[tokio::test]
async fn retries_back_off_and_respect_separate_budgets() {
    let cfg = SchedulerConfig { stage_error_budget: 2, infra_failure_budget: 1, ..fast() };
    let s = start(Arc::new(MemoryStore::new()), cfg).await;
    let m = manifest(Pipeline::SingleStage, 0, 0);
    let plan = sleep_plan("b", 1, &m);
    s.register(worker("w", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    // Stage error 1 → retry after 100 ms; not leasable before.
    let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
    let at =
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, true, "boom").await.unwrap().unwrap();
    let remaining = at.saturating_sub(now_ms());
    assert!((50..=100).contains(&remaining), "first backoff: {remaining} ms left");
    assert!(s.lease("w", Duration::ZERO).await.unwrap().is_none(), "leased during backoff");
    let g = s.lease("w", Duration::from_secs(2)).await.unwrap().unwrap();
    assert!(now_ms() + 5 >= at, "leased before the backoff ended");
    // An infrastructure failure uses its own budget (1): this one is retried…
    let at2 =
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Infrastructure, true, "oom").await.unwrap();
    assert!(at2.is_some());
    // …stage error 2 doubles the delay (200 ms) and is still within budget…
    let g = s.lease("w", Duration::from_secs(2)).await.unwrap().unwrap();
    let t = now_ms();
    let at3 =
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, true, "boom").await.unwrap().unwrap();
    assert!(at3 - t >= 195, "second backoff {} ms", at3 - t);
    // …and stage error 3 exceeds it: failed for good.
    let g = s.lease("w", Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(g.epoch, 4);
    assert_eq!(
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, true, "boom").await.unwrap(),
        None
    );
    let v = s.sweep("s").unwrap();
    assert_eq!(v.state, "failed");
    assert!(v.failures[0].2.contains("attempt 4 on w: boom"), "{:?}", v.failures);
    // Non-retryable failures skip the budget; retry --failed brings the stage back.
    assert_eq!(s.retry_failed("s").await.unwrap(), 1);
    let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, false, "bad config").await.unwrap(),
        None
    );
    assert_eq!(s.sweep("s").unwrap().state, "failed");
}

/// A lease given back by a draining worker is requeued at once and charges no budget, however
/// often it happens; the next attempt gets a fresh epoch.
#[tokio::test]
async fn a_released_lease_is_requeued_at_once_without_charge() {
    let cfg = SchedulerConfig { stage_error_budget: 0, infra_failure_budget: 0, ..fast() };
    let s = start(Arc::new(MemoryStore::new()), cfg).await;
    let m = manifest(Pipeline::SingleStage, 0, 0);
    let plan = sleep_plan("r", 1, &m);
    s.register(worker("w", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    for epoch in 1..=4 {
        let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(g.epoch, epoch);
        let at = s
            .fail("w", &g.spec.id, g.epoch, FailureKind::Released, true, "draining")
            .await
            .unwrap();
        assert!(at.is_some_and(|t| t <= now_ms()), "requeued at once");
    }
    let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
    s.complete("w", &g.spec.id, g.epoch, vec![]).await.unwrap();
    assert_eq!(s.sweep("s").unwrap().state, "succeeded");
}

#[tokio::test]
async fn a_failed_stage_fails_its_dependents_and_retry_revives_them() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let m = manifest(Pipeline::Paper, 0, 0);
    let plan = paper_plan(&m, 1, &["dr-grpo"]);
    s.register(worker("w", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(g.spec.kind, "model");
    s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, false, "no such model").await.unwrap();
    let v = s.sweep("s").unwrap();
    assert_eq!((v.state.as_str(), v.counts.failed), ("failed", 6));
    assert!(v.failures.iter().any(|f| f.2.starts_with("input model")), "{:?}", v.failures);
    assert_eq!(s.retry_failed("s").await.unwrap(), 6);
    assert_eq!(drain(&s, "w").await, 6);
    assert_eq!(s.sweep("s").unwrap().state, "succeeded");
}

#[tokio::test]
async fn cancel_reaches_a_running_worker_and_spares_shared_stages() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let m = manifest(Pipeline::SingleStage, 0, 0);
    let a = sleep_plan("shared", 2, &m);
    s.register(worker("w", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s1", &m, &a), a.clone()).await.unwrap();
    let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(s.cancel("s1").await.unwrap(), 2);
    assert_eq!(s.sweep("s1").unwrap().state, "cancelled");
    // The running task learns it at its next heartbeat, stops and reports.
    let (cancel, _) = s.heartbeat("w", &g.spec.id, g.epoch, None).await.unwrap();
    assert!(cancel);
    assert_eq!(
        s.fail("w", &g.spec.id, g.epoch, FailureKind::Stage, true, "cancelled").await.unwrap(),
        None
    );
    assert_eq!(s.stage(&g.spec.id).unwrap().1, StageState::Cancelled);
    assert!(s.lease("w", Duration::ZERO).await.unwrap().is_none());
    // A new sweep sharing those stages revives them; cancelling another sweep that shares
    // them with a running one leaves them alone.
    s.submit(sweep_record("s2", &m, &a), a.clone()).await.unwrap();
    s.submit(sweep_record("s3", &m, &a), a).await.unwrap();
    assert_eq!(s.cancel("s3").await.unwrap(), 0);
    assert_eq!(drain(&s, "w").await, 2);
    assert_eq!(s.sweep("s2").unwrap().state, "succeeded");
}

#[tokio::test]
async fn priorities_order_leases_and_max_concurrent_limits_them() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let low = manifest(Pipeline::SingleStage, 0, 0);
    let high = manifest(Pipeline::SingleStage, 5, 2);
    let pl = sleep_plan("low", 3, &low);
    let ph = sleep_plan("high", 3, &high);
    s.register(worker("w", ALL, 0, 10)).await.unwrap();
    s.submit(sweep_record("low", &low, &pl), pl).await.unwrap();
    s.submit(sweep_record("high", &high, &ph), ph.clone()).await.unwrap();
    let mut order = Vec::new();
    while let Some(g) = s.lease("w", Duration::ZERO).await.unwrap() {
        order.push(g.spec.config["tag"].as_str().unwrap().to_string());
    }
    // The high-priority sweep goes first but only two of its stages at a time.
    assert_eq!(order, ["high", "high", "low", "low", "low"]);
    assert_eq!(s.sweep("high").unwrap().counts.leased, 2);
}

#[tokio::test]
async fn placement_respects_resources_and_a_stall_is_reported_with_its_reason() {
    let s = start(Arc::new(MemoryStore::new()), fast()).await;
    let mut m = manifest(Pipeline::SingleStage, 0, 0);
    m.resources.insert(
        "sleep".into(),
        crate::manifest::model::ResourceSpec {
            gpus: Some(1),
            gpu_memory_bytes: Some(40 << 30),
            ..Default::default()
        },
    );
    let plan = sleep_plan("gpu", 1, &m);
    s.register(worker("cpu", ALL, 0, 1)).await.unwrap();
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    assert!(s.lease("cpu", Duration::ZERO).await.unwrap().is_none());
    let mut events = s.subscribe();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let v = s.sweep("s").unwrap();
    assert_eq!(v.state, "stalled");
    assert!(v.stalled_reasons[0].contains("need 1 GPU(s) with 40 GiB"), "{:?}", v.stalled_reasons);
    let mut saw = false;
    while let Ok(e) = events.try_recv() {
        saw |= e.record.kind == "stalled";
    }
    assert!(saw, "a stalled event was published");
    // A big enough worker arrives: the stall clears and the stage runs there.
    s.register(worker("gpu", ALL, 1, 1)).await.unwrap();
    let g = s.lease("gpu", Duration::ZERO).await.unwrap().unwrap();
    s.complete("gpu", &g.spec.id, g.epoch, vec![]).await.unwrap();
    assert_eq!(s.sweep("s").unwrap().state, "succeeded");
}

#[tokio::test]
async fn a_restart_restores_everything_and_open_leases_survive() {
    let store = Arc::new(MemoryStore::new());
    let m = manifest(Pipeline::Paper, 0, 0);
    let plan = paper_plan(&m, 2, &["dr-grpo"]);
    let (held, total) = {
        let s = start(store.clone(), fast()).await;
        s.register(worker("w", ALL, 0, 2)).await.unwrap();
        s.submit(sweep_record("s", &m, &plan), plan.clone()).await.unwrap();
        let g = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
        s.complete("w", &g.spec.id, g.epoch, vec![]).await.unwrap();
        let held = s.lease("w", Duration::ZERO).await.unwrap().unwrap();
        (held, s.sweep("s").unwrap().counts.total())
    };
    let s = start(store, fast()).await;
    let v = s.sweep("s").unwrap();
    assert_eq!((v.counts.total(), v.counts.succeeded, v.counts.leased), (total, 1, 1));
    // The lease held across the restart can still be completed with its epoch.
    s.complete("w", &held.spec.id, held.epoch, vec![]).await.unwrap();
    assert_eq!(drain(&s, "w").await, total - 2);
    assert_eq!(s.sweep("s").unwrap().state, "succeeded");
}

#[tokio::test]
async fn group_commit_batches_concurrent_operations() {
    let store = Arc::new(MemoryStore::new());
    let s = start(store.clone(), fast()).await;
    let m = manifest(Pipeline::SingleStage, 0, 0);
    let plan = sleep_plan("g", 400, &m);
    s.submit(sweep_record("s", &m, &plan), plan).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let w = format!("w{i}");
            s.register(worker(&w, ALL, 0, 1)).await.unwrap();
            drain(&s, &w).await
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    assert_eq!(done, 400);
    let st = s.journal_stats();
    assert!(st.batches < st.receipts, "no grouping: {st:?}");
    assert_eq!(s.sweep("s").unwrap().state, "succeeded");
}
