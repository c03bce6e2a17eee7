//! Builtin models: the ladder's parameter counts, seeded creation, loading in wax and in
//! transformers with equal logits, and a short pretraining run whose checkpoints reload.
//!
//! Needs the English corpus (Debian python3-doc) for the builtin tokenizer and the Python
//! environment (`make bootstrap`). The tokenizer and snapshots are cached under
//! `target/wax-builtin-cache/`.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};

use fixtures::{max_abs_diff_masked, run_script, workspace_root};
use tch::{Device, Kind, Tensor};
use wax_worker::builtin::{
    BuiltinRef, INIT_STD, LADDER, builtin_snapshot_in, builtin_tokenizer_config,
    builtin_tokenizer_dir_in, inspect_snapshot, ladder_names, resolve_model_ref, write_snapshot,
};
use wax_worker::model::{ForwardInput, Hooks, Model, ModelConfig};
use wax_worker::pretrain::run::StepOutcome;
use wax_worker::pretrain::{
    PretrainConfig, PretrainError, PretrainHooks, Pretrainer, pretrain, pretrain_with,
};
use wax_worker::tokenizer::Tokenizer;

fn cache() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("wax-builtin-cache")
}

fn tokenizer_dir() -> PathBuf {
    builtin_tokenizer_dir_in(&cache()).unwrap_or_else(|e| panic!("{e}"))
}

fn smallest(seed: u64) -> PathBuf {
    let r = BuiltinRef { size: &LADDER[0], seed };
    builtin_snapshot_in(&cache(), r, &tokenizer_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// Two rows, the second left-padded; positions count real tokens only.
fn inputs(vocab: i64) -> (Tensor, Tensor, Tensor) {
    let ids: Vec<i64> = (0..24).map(|i| (i * 37 + 5) % vocab).collect();
    let mut mask = vec![1i64; 24];
    for m in &mut mask[12..17] {
        *m = 0;
    }
    let pos: Vec<i64> = (0..12).chain((0..12).map(|i| (i - 5).max(0))).collect();
    (
        Tensor::from_slice(&ids).view([2, 12]),
        Tensor::from_slice(&mask).view([2, 12]),
        Tensor::from_slice(&pos).view([2, 12]),
    )
}

/// Max |wax − transformers| over the real positions' logits of the snapshot in `dir`.
fn parity(dir: &Path) -> f64 {
    let _guard = tch::no_grad_guard();
    let model = Model::load(dir, Device::Cpu, Kind::Float).unwrap_or_else(|e| panic!("{e}"));
    let (ids, mask, pos) = inputs(model.config().vocab_size);
    let input = ForwardInput {
        input_ids: ids.shallow_clone(),
        positions: pos.shallow_clone(),
        attention_mask: mask.to_kind(Kind::Bool),
    };
    let ours = model.forward(&input, None, &mut Hooks::new()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let inputs_path = tmp.path().join("inputs.safetensors");
    Tensor::write_safetensors(
        &[("input_ids", &ids), ("attention_mask", &mask), ("position_ids", &pos)],
        &inputs_path,
    )
    .unwrap();
    let out = tmp.path().join("logits.safetensors");
    run_script(&[
        "--logits".as_ref(),
        dir.as_os_str(),
        "--inputs".as_ref(),
        inputs_path.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let theirs = Tensor::read_safetensors(&out).unwrap().into_iter().next().unwrap().1;
    max_abs_diff_masked(&ours, &theirs, &mask.to_kind(Kind::Bool))
}

#[test]
fn every_ladder_size_is_in_its_band() {
    let vocab = builtin_tokenizer_config().vocab_size as i64;
    assert_eq!(vocab, 4096);
    let bands =
        [("1m", 0.8e6, 1.5e6), ("6m", 4.5e6, 7.5e6), ("25m", 20e6, 30e6), ("100m", 85e6, 115e6)];
    assert_eq!(LADDER.len(), bands.len());
    for (size, (name, lo, hi)) in LADDER.iter().zip(bands) {
        assert_eq!(size.name, name);
        let n = size.parameter_count(vocab) as f64;
        assert!((lo..=hi).contains(&n), "{name}: {n} parameters outside [{lo}, {hi}]");
        // The config is one wax accepts, with the shapes the counts assume.
        let c = ModelConfig::from_value(size.config_json(vocab, Some(2), Some(0)), Path::new(name))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.model_type, "qwen3");
        assert!(c.tie_word_embeddings && c.qk_norm);
        assert_eq!(
            (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim),
            (size.hidden_size, size.num_layers, size.num_heads, size.num_kv_heads, size.head_dim)
        );
    }
}

#[test]
fn smallest_builtin_loads_in_wax_and_transformers_with_equal_logits() {
    let dir = smallest(0);
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(dir.join(file).is_file(), "{file} missing in {}", dir.display());
    }
    let model = Model::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let tok = Tokenizer::load(&dir).unwrap();
    assert_eq!(model.config().vocab_size, tok.vocab_size() as i64);
    let expected = LADDER[0].parameter_count(model.config().vocab_size);
    assert_eq!(model.num_parameters(), expected);
    let summary = inspect_snapshot(&dir).unwrap();
    assert_eq!((summary.family.as_str(), summary.parameters), ("qwen3", expected));
    assert!(summary.chat_preview.unwrap().contains("<|im_start|>assistant\n"));
    // A random init gives near-uniform predictions.
    let err = parity(&dir);
    assert!(err <= 1e-4, "logits differ from transformers by {err}");
}

#[test]
fn creation_is_deterministic_for_a_seed() {
    let tok = tokenizer_dir();
    let tmp = tempfile::tempdir().unwrap();
    let write = |seed: u64, name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        write_snapshot(&LADDER[0], seed, &tok, &d).unwrap();
        std::fs::read(d.join("model.safetensors")).unwrap()
    };
    let (a, b, c) = (write(5, "a"), write(5, "b"), write(6, "c"));
    assert!(a == b, "same seed, different weights");
    assert!(a != c, "different seeds, same weights");
    // Matrices ~ N(0, 0.02²), norms 1.
    let tensors = Tensor::read_safetensors(tmp.path().join("a/model.safetensors")).unwrap();
    for (name, t) in &tensors {
        if name.ends_with("norm.weight") {
            assert_eq!(t.min().double_value(&[]), 1.0, "{name}");
            assert_eq!(t.max().double_value(&[]), 1.0, "{name}");
        } else {
            let std = t.std(true).double_value(&[]);
            assert!((std - INIT_STD).abs() < 0.002, "{name}: std {std}");
        }
    }
    // The cached snapshot is the same bytes as a fresh write.
    assert!(std::fs::read(smallest(5).join("model.safetensors")).unwrap() == a);
}

#[test]
fn unknown_sizes_and_bad_references_are_clear_errors() {
    let e = resolve_model_ref("builtin:2m").unwrap_err().to_string();
    assert!(e.contains("`2m`") && e.contains(&ladder_names()), "{e}");
    for name in ["1m", "6m", "25m", "100m"] {
        assert!(e.contains(name), "{e}");
    }
    let e = resolve_model_ref("builtin:1m@-3").unwrap_err().to_string();
    assert!(e.contains("seed `-3`"), "{e}");
    let e = resolve_model_ref("/nonexistent/model").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model") && e.contains("not a directory"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = resolve_model_ref(empty.path().to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn short_pretrain_lowers_held_out_loss_and_checkpoints_reload() {
    let init = smallest(0);
    let cfg = PretrainConfig {
        steps: 40,
        batch: 8,
        seq_len: 64,
        lr: 3e-3,
        warmup: Some(4),
        save_at: vec![20, 40],
        eval_every: 20,
        eval_windows: 16,
        train_max_bytes: Some(1 << 20),
        val_max_bytes: Some(200_000),
        ..PretrainConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let report = pretrain(&init, &cfg, out.path(), Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "pretrain: held-out {:.3} -> {:.3}, {:.1} steps/s, {:.0} tokens/s, {} train tokens",
        report.initial_val_loss,
        report.final_val_loss,
        report.steps_per_second,
        report.tokens_per_second,
        report.train_tokens
    );
    let uniform = (report.vocab_size as f64).ln();
    assert!((report.initial_val_loss - uniform).abs() < 0.5, "{report:?}");
    assert!(report.final_val_loss < report.initial_val_loss - 1.0, "{report:?}");
    assert_eq!(report.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 20, 40]);
    let log = std::fs::read_to_string(out.path().join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    for step in [20, 40] {
        let dir = out.path().join(format!("step-{step}"));
        assert!(report.checkpoints.contains(&dir));
        assert!(dir.join("tokenizer.json").is_file());
        let err = parity(&dir);
        assert!(err <= 1e-4, "step-{step}: logits differ from transformers by {err}");
    }
    // Same seed, same run: a short rerun reproduces its losses exactly; another seed does not.
    let tiny = PretrainConfig {
        steps: 6,
        batch: 2,
        save_at: vec![],
        eval_every: 3,
        eval_windows: 4,
        ..cfg
    };
    let run = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        let r = pretrain(&init, &PretrainConfig { seed, ..tiny.clone() }, dir.path(), Device::Cpu)
            .unwrap();
        r.evals.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Stops a run after `at` steps, saving a resume checkpoint into `dir` first.
struct StopAt {
    at: usize,
    dir: PathBuf,
}

impl PretrainHooks for StopAt {
    fn after_step(&mut self, run: &Pretrainer, step: &StepOutcome) -> Result<(), PretrainError> {
        if step.step == self.at {
            run.save_resume(&self.dir)?;
            return Err(PretrainError::Interrupted("test stop".into()));
        }
        Ok(())
    }
}

/// A run stopped after 3 of 6 steps and resumed from its resume checkpoint in an empty
/// directory ends with the log and the weights of the run that never stopped, bit for bit.
#[test]
fn resumed_pretraining_repeats_the_uninterrupted_run() {
    let init = smallest(0);
    let cfg = PretrainConfig {
        steps: 6,
        batch: 2,
        seq_len: 32,
        warmup: Some(2),
        save_at: vec![6],
        eval_every: 2,
        eval_windows: 2,
        train_max_bytes: Some(200_000),
        val_max_bytes: Some(20_000),
        ..PretrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (full, first, second) =
        (dir.path().join("full"), dir.path().join("first"), dir.path().join("second"));
    pretrain(&init, &cfg, &full, Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let resume = dir.path().join("resume");
    let mut stop = StopAt { at: 3, dir: resume.clone() };
    let e = pretrain_with(&init, &cfg, &first, Device::Cpu, None, &mut stop).unwrap_err();
    assert!(matches!(e, PretrainError::Interrupted(_)), "{e}");
    let report = pretrain_with(
        &init,
        &cfg,
        &second,
        Device::Cpu,
        Some(&resume),
        &mut StopAt { at: 0, dir: resume.clone() },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.steps, 6);
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        String::from_utf8(read(full.join("log.jsonl"))).unwrap(),
        String::from_utf8(read(second.join("log.jsonl"))).unwrap()
    );
    assert_eq!(
        read(full.join("step-6/model.safetensors")),
        read(second.join("step-6/model.safetensors"))
    );
    // Another configuration refuses the checkpoint.
    let other = PretrainConfig { lr: 1e-3, ..cfg };
    let e = Pretrainer::new(&init, &other, &dir.path().join("x"), Device::Cpu, Some(&resume))
        .err()
        .expect("a different configuration is refused");
    assert!(e.to_string().contains("different configuration"), "{e}");
}
