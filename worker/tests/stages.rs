//! The stage executors end to end without a coordinator or a store: model → pretrain → rl →
//! extract (trained, naive) → evaluate → report on the smallest builtin model, each stage
//! reading the previous stages' output folders as the runtime would hand them over. Configs
//! are the catalog's defaults with small overrides, exactly what a sweep would plan.

use std::path::{Path, PathBuf};

#[path = "common/s3.rs"]
mod common_s3;

use serde_json::{Value, json};
use wax_coordinator::plan::deep_merge;
use wax_worker::stages::{self, InputDir, LocalReporter, StageCtx, StageError};

fn cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wax-builtin-cache")
}

struct Run {
    root: tempfile::TempDir,
}

impl Run {
    fn stage(
        &self,
        id: &str,
        kind: &str,
        overlay: Value,
        inputs: &[(&str, &str)],
    ) -> Result<PathBuf, StageError> {
        let out = self.root.path().join(id);
        let scratch = self.root.path().join(format!("{id}.scratch"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        let reporter = LocalReporter::default();
        let ctx = StageCtx {
            stage_id: id.to_string(),
            kind: kind.to_string(),
            attempt: 1,
            out: out.clone(),
            scratch,
            inputs: inputs
                .iter()
                .map(|(i, k)| InputDir::local(i, k, &self.root.path().join(i)))
                .collect(),
            device: tch::Device::Cpu,
            resume_every: None,
            s3: Default::default(),
            external: Default::default(),
            reporter: &reporter,
        };
        // As the coordinator's planner merges them.
        let config = deep_merge(&wax_proto::catalog::defaults(kind), &overlay);
        stages::run(&ctx, &config)?;
        // Files a stage leaves where they are (a model snapshot) are uploaded from there; here
        // they are linked in, as a download of the artifact would place them.
        for (rel, src) in ctx.external.lock().unwrap().iter() {
            std::fs::copy(src, out.join(rel)).unwrap();
        }
        Ok(out)
    }
}

fn read(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn a_trial_runs_stage_by_stage() {
    // SAFETY: set before any thread of this test process reads the environment.
    unsafe { std::env::set_var("WAX_CACHE_DIR", cache()) };
    let run = Run { root: tempfile::tempdir().unwrap() };
    let env = json!({ "turns": 3, "shuffle_directions": false });
    run.stage("model", "model", json!({ "ref": "builtin:1m" }), &[]).unwrap();
    let info = read(&run.root.path().join("model/wax-model.json"));
    assert_eq!(info["family"], "qwen3");
    assert!(info["files"].as_array().unwrap().iter().any(|f| f["path"] == "model.safetensors"));

    let pre = run
        .stage(
            "pretrain",
            "pretrain",
            json!({ "steps": 4, "batch": 2, "seq_len": 32, "save_at": [2], "eval_every": 2, "eval_windows": 2,
                    "train_max_bytes": 100_000, "val_max_bytes": 20_000 }),
            &[("model", "model")],
        )
        .unwrap();
    for step in [2, 4] {
        assert!(pre.join(format!("step-{step}/model.safetensors")).is_file(), "step-{step}");
    }
    assert!(pre.join("wax-model.json").is_file());

    let rl_cfg = json!({
        "rl": { "steps": 3, "mazes_per_step": 2, "group_size": 4, "entropy_coef": 0.5, "eval": { "mazes": 4 } },
        "env": env, "seed": 1, "checkpoint": 2,
    });
    let rl = run.stage("rl", "rl", rl_cfg, &[("pretrain", "pretrain")]).unwrap();
    assert!(rl.join("step-3/model/model.safetensors").is_file(), "the final checkpoint is saved");
    let summary = read(&rl.join("summary.json"));
    assert_eq!(summary["steps"], 3);
    assert_eq!(std::fs::read_to_string(rl.join("metrics.jsonl")).unwrap().lines().count(), 3);

    let ex = json!({ "synthetic": { "per_class": 12, "max_len": 3 }, "resamples": 20 });
    let trained = run
        .stage(
            "ex-t",
            "extract",
            json!({ "extract": ex, "env": env, "model": "trained" }),
            &[("rl", "rl")],
        )
        .unwrap();
    let naive = run
        .stage(
            "ex-n",
            "extract",
            json!({ "extract": ex, "env": env, "model": "naive", "checkpoint": 2 }),
            &[("pretrain", "pretrain")],
        )
        .unwrap();
    assert_eq!(read(&trained.join("subject.json"))["model_path"], "step-3/model");
    assert_eq!(read(&naive.join("subject.json"))["model_path"], "step-2");
    assert!(trained.join("vectors.safetensors").is_file());

    let ev = json!({ "evaluate": {
        "suites": ["geometry", "tracking"], "resamples": 20, "null_draws": 20, "tracking_questions": 4,
        "tracking": { "per_class": 8, "resamples": 20, "null_draws": 20 },
        "steering": { "phase0_max_new_tokens": 4, "batch": 8 },
    }});
    let eval = run
        .stage(
            "eval",
            "evaluate",
            ev,
            &[("rl", "rl"), ("ex-t", "extract"), ("ex-n", "extract"), ("pretrain", "pretrain")],
        )
        .unwrap();
    let trial = read(&eval.join("trial.json"));
    assert_eq!(trial["rl"]["steps"], 3);
    assert!(trial["extract"]["trained"]["cos_min"].is_number());
    assert!(trial["extract"]["naive"]["cos_min"].is_number());
    assert!(
        trial["tracking"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["model"] == "trained" && r["d"].is_number())
    );

    let report = run
        .stage(
            "report",
            "report",
            json!({ "sweep": "t", "trials": [{ "params": { "mapping": "office" }, "evaluate": "eval" }] }),
            &[("eval", "evaluate")],
        )
        .unwrap();
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| mapping |") && md.contains("office"), "{md}");
    assert_eq!(std::fs::read_to_string(report.join("trials.jsonl")).unwrap().lines().count(), 1);

    // A configuration the worker cannot read is a configuration error, not a crash.
    let e = run
        .stage("bad", "rl", json!({ "rl": { "learning_rate": 1 } }), &[("model", "model")])
        .unwrap_err();
    assert!(matches!(e, StageError::Config(_)) && e.to_string().contains("learning_rate"), "{e}");
}

#[test]
fn testing_kinds_fail_then_succeed() {
    let run = Run { root: tempfile::tempdir().unwrap() };
    let out = run.stage("s", "sleep", json!({ "ms": 20, "files": 2 }), &[]).unwrap();
    assert!(out.join("file-1.txt").is_file());
    let e = run
        .stage("f", "fail-n-times", json!({ "n": 1, "failure": "infrastructure" }), &[])
        .unwrap_err();
    assert!(matches!(e, StageError::Infrastructure(_)), "{e}");
}

/// `s3://bucket/prefix` model references: the snapshot's files are read from an S3-protocol
/// server (moto) with the worker's settings, and become the model stage's artifact.
#[test]
fn a_model_stage_reads_an_s3_snapshot() {
    // SAFETY: set before any thread of this test process reads the environment.
    unsafe { std::env::set_var("WAX_CACHE_DIR", cache()) };
    let Some(s3) = wax_tests::s3::TestS3::start(&common_s3::python()) else { return };
    s3.create_bucket("models");
    let settings = common_s3::settings(&s3);
    let snapshot = wax_worker::builtin::resolve_model_ref("builtin:1m").unwrap();
    let store = wax_worker::artifacts::ArtifactStore::open("s3://models", &settings).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&snapshot).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        rt.block_on(store.upload_file(&e.path(), &format!("team/tiny/{name}"))).unwrap();
        names.push(name);
    }
    drop(rt);
    let run = Run { root: tempfile::tempdir().unwrap() };
    let out = run.root.path().join("m");
    std::fs::create_dir_all(&out).unwrap();
    let reporter = LocalReporter::default();
    let ctx = StageCtx {
        stage_id: "m".into(),
        kind: "model".into(),
        attempt: 1,
        out: out.clone(),
        scratch: run.root.path().join("scratch"),
        inputs: vec![],
        device: tch::Device::Cpu,
        resume_every: None,
        s3: settings,
        external: Default::default(),
        reporter: &reporter,
    };
    stages::run(&ctx, &json!({ "ref": "s3://models/team/tiny" })).unwrap();
    let info = read(&out.join("wax-model.json"));
    assert_eq!(info["reference"], "s3://models/team/tiny");
    assert_eq!(info["family"], "qwen3");
    for name in names {
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(snapshot.join(&name)).unwrap(),
            "{name}"
        );
    }
    let e = stages::run(&ctx, &json!({ "ref": "s3://models/nothing-here" })).unwrap_err();
    assert!(e.to_string().contains("no snapshot files"), "{e}");
}
