//! The measurement pipeline end to end on CPU (docs/protocol.md §3–§7), short form: a builtin model
//! trained briefly by the RL trainer, extraction of v (trained) and u (maze-naive), every
//! `wax eval` suite with the offline judge, the steering suite again with the HTTP judge
//! against an OpenAI-compatible test server, and the artifacts read back in Python
//! (safetensors, pandas).

#[path = "common/builtin_cache.rs"]
mod builtin_cache;
#[path = "common/fixtures.rs"]
mod fixtures;
#[path = "common/openai_stub.rs"]
mod openai_stub;

use std::path::Path;
use std::process::Command;

use builtin_cache::builtin_1m;
use fixtures::python;
use openai_stub::OpenAiStub;
use wax_worker::evals::judge::JudgeConfig;
use wax_worker::evals::run::{EvalConfig, EvalInputs, Suite, run_eval};
use wax_worker::evals::steering::EvalKind;
use wax_worker::maze::EnvConfig;
use wax_worker::rl::{TrainConfig, run};
use wax_worker::tokenizer::TemplateOptions;
use wax_worker::vectors::geometry::Uncertainty;
use wax_worker::vectors::run::{ExtractJob, run_extract};
use wax_worker::vectors::{Concept, ExtractConfig, Extraction};

fn small_eval() -> EvalConfig {
    let mut cfg = EvalConfig {
        device: Some("cpu".into()),
        resamples: 50,
        null_draws: 50,
        tracking_questions: 6,
        ..EvalConfig::default()
    };
    cfg.tracking.per_class = 40;
    cfg.tracking.resamples = 50;
    cfg.tracking.null_draws = 50;
    let s = &mut cfg.steering;
    s.alphas = vec![-4.0, 0.0, 4.0];
    s.sentiment_prompts = Some(4);
    s.backtracking_problems = 2;
    s.mmlu_questions = 4;
    s.simpleqa_questions = 3;
    s.refusal_per_split = 1;
    s.sentiment_samples = 2;
    s.backtracking_samples = 1;
    s.refusal_samples = 1;
    s.max_new_tokens = 12;
    s.phase0_max_new_tokens = 6;
    s.resamples = 50;
    cfg
}

fn read_jsonl(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn extraction_and_every_suite_run_on_cpu_and_load_in_python() {
    let _ = tch::Cuda::is_available();
    let dir = tempfile::tempdir().unwrap();
    // A briefly trained checkpoint (the RL trainer's short form, cut down).
    let train = TrainConfig {
        model: builtin_1m().display().to_string(),
        steps: 3,
        mazes_per_step: 2,
        group_size: 4,
        lr: 1e-3,
        entropy_coef: 0.5,
        checkpoint_at: vec![3],
        env: EnvConfig { turns: 5, shuffle_directions: false, ..EnvConfig::default() },
        ..TrainConfig::default()
    };
    let mut train = train;
    train.eval.mazes = 4;
    run(train, &dir.path().join("rl"), None, |_| {}).unwrap();
    let model = dir.path().join("rl/step-3/model");

    let mut config = ExtractConfig { chunk: 64, blocks: 4, ..ExtractConfig::default() };
    config.synthetic.per_class = 30;
    config.synthetic.max_len = 5;
    let out = dir.path().join("extract");
    let job = ExtractJob {
        model: model.display().to_string(),
        naive: Some("auto".into()),
        config,
        device: tch::Device::Cpu,
        kind: tch::Kind::Float,
        template_options: TemplateOptions::default(),
        uncertainty: Uncertainty { resamples: 50, null_draws: 50, ..Uncertainty::default() },
        out: out.clone(),
    };
    let report = run_extract(&job, |_, _| {}).unwrap();
    assert_eq!(report.models.len(), 2, "trained and naive");
    let v = Extraction::load(&out.join("trained")).unwrap();
    let u = Extraction::load(&out.join("naive")).unwrap();
    // The naive model is the checkpoint's base model, read from its state.json.
    assert_eq!(u.meta.model, builtin_1m().display().to_string());
    assert_eq!(v.meta.algorithm.as_deref(), Some("dr-grpo"));
    assert_eq!(v.meta.checkpoint_step, Some(3));
    // The env of the training run is used for rendering (5 turns, fixed clause order).
    assert!(!v.meta.config.env.as_ref().unwrap().shuffle_directions);
    let total: usize =
        v.meta.fit_counts.iter().sum::<usize>() + v.meta.heldout_counts.iter().sum::<usize>();
    assert_eq!(total, 90);
    for c in Concept::ALL {
        assert!(v.layer(c).is_some(), "{c:?} has a selected layer");
        assert_eq!(v.vector(c).size(), [v.meta.num_layers as i64, v.meta.hidden]);
    }

    // Every suite with the offline judge.
    let eval_dir = out.join("eval");
    let cfg = small_eval();
    let inputs = EvalInputs {
        trained: out.join("trained"),
        naive: Some(out.join("naive")),
        ..EvalInputs::default()
    };
    let r = run_eval(&[Suite::All], &inputs, &cfg, &eval_dir, &mut |_, _, _| {}).unwrap();
    assert!(r.files.len() >= 10, "{:?}", r.files);
    let samples = read_jsonl(&eval_dir.join("steering/samples.jsonl"));
    // 4 conditions × 2 concepts × 3 α × (sentiment 4×2 + backtracking 2 + refusal 3 + confidence 4+3).
    assert_eq!(samples.len(), 4 * 2 * 3 * (8 + 2 + 3 + 7));
    assert!(
        samples.iter().all(|s| s["proxy"].as_bool() == Some(true) || s["eval"] == "confidence")
    );
    let ptrue: Vec<f64> = samples
        .iter()
        .filter(|s| s["eval"] == "confidence")
        .map(|s| s["metric"].as_f64().unwrap())
        .collect();
    assert!(ptrue.iter().all(|p| (0.0..=1.0).contains(p)));
    // The norm-matched control's coefficient is α‖v‖/‖u‖ at the vectors' own layers.
    let c = samples
        .iter()
        .find(|s| s["condition"] == "naive-u" && s["concept"] == "gold" && s["alpha"] == 4.0)
        .unwrap();
    let (lv, lu) = (v.layer(Concept::Gold).unwrap() as i64, u.layer(Concept::Gold).unwrap() as i64);
    let want = 4.0 * v.vector(Concept::Gold).get(lv).norm().double_value(&[])
        / u.vector(Concept::Gold).get(lu).norm().double_value(&[]);
    assert!((c["coefficient"].as_f64().unwrap() - want).abs() < 1e-6 * want.abs().max(1.0));
    let slopes = read_jsonl(&eval_dir.join("steering/slopes.jsonl"));
    assert!(slopes.iter().any(|s| s["eval"] == "confidence" && s["slope"].as_f64().is_some()));
    let tracking = read_jsonl(&eval_dir.join("tracking.jsonl"));
    assert!(
        tracking
            .iter()
            .any(|t| t["analysis"] == "maze" && t["model"] == "naive" && t["vectors"] == "v")
    );
    assert!(tracking.iter().any(|t| t["analysis"].as_str().unwrap().starts_with("correctness:")));

    // The steering suite with the HTTP judge against an OpenAI-compatible server.
    let stub = OpenAiStub::start("t0ken");
    // SAFETY: set before any thread reads the environment in this test process's judge code.
    unsafe { std::env::set_var("WAX_MEASURE_TEST_KEY", "t0ken") };
    let mut http = small_eval();
    http.steering.evals = vec![EvalKind::Sentiment, EvalKind::Backtracking, EvalKind::Refusal];
    http.judge = JudgeConfig::Http {
        url: stub.url.clone(),
        model: "judge".into(),
        api_key_env: Some("WAX_MEASURE_TEST_KEY".into()),
        max_tokens: 64,
        temperature: 0.0,
        timeout_s: 30,
        concurrency: 4,
        retries: 1,
    };
    let http_dir = out.join("eval-http");
    run_eval(&[Suite::Steering], &inputs, &http, &http_dir, &mut |_, _, _| {}).unwrap();
    let judged = read_jsonl(&http_dir.join("steering/samples.jsonl"));
    assert_eq!(judged.len(), 4 * 2 * 3 * (8 + 2 + 3));
    let by_server = judged.iter().filter(|s| s["judge_source"] == "judge").count();
    assert!(by_server > 0 && stub.requests.load(std::sync::atomic::Ordering::SeqCst) >= by_server);
    assert_eq!(stub.unauthorized.load(std::sync::atomic::Ordering::SeqCst), 0);
    for s in judged.iter().filter(|s| s["judge_source"] == "judge") {
        let want = match s["eval"].as_str().unwrap() {
            "sentiment" => "2",
            "backtracking" => "normal",
            _ => "direct_answer",
        };
        assert_eq!(s["label"], want, "{s}");
        assert_eq!(s["proxy"], false);
    }

    // Python reads the vectors (safetensors + metadata) and every table (pandas).
    let script = r#"
import json, sys, pandas as pd
from safetensors import safe_open
from safetensors.numpy import load_file
root = sys.argv[1]
t = load_file(root + "/trained/vectors.safetensors")
with safe_open(root + "/trained/vectors.safetensors", "np") as f:
    meta = f.metadata()
L, H = int(meta["num_layers"]), int(meta["hidden"])
assert t["v.mold"].shape == (L, H) and t["steer.gold"].shape == (H,), t["v.mold"].shape
assert meta["algorithm"] == "dr-grpo" and json.loads(meta["mapping"])["gold"]
import numpy as np
l = int(meta["layer.gold"])
assert np.allclose(t["steer.gold"], t["v.gold"][l])
out = {}
for name in ["trained/layers.jsonl", "eval/geometry_layers.jsonl", "eval/lens.jsonl", "eval/emotions.jsonl", "eval/pc1.jsonl", "eval/tracking.jsonl", "eval/steering/samples.jsonl", "eval/steering/means.jsonl", "eval/steering/slopes.jsonl"]:
    df = pd.read_json(root + "/" + name, lines=True)
    out[name] = len(df)
s = pd.read_json(root + "/eval/steering/slopes.jsonl", lines=True)
assert {"eval", "condition", "concept", "layer", "slope", "slope_se", "ci_lo", "ci_hi"} <= set(s.columns)
print(json.dumps(out))
"#;
    let o = Command::new(python()).arg("-c").arg(script).arg(&out).output().unwrap();
    assert!(
        o.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(counts["eval/steering/samples.jsonl"], samples.len());
}
