//! LoRA adapters of `wax_worker::model`: identity at init, training touches only the adapters,
//! merge/unmerge, the merged `save_pretrained` snapshot in transformers, and the PEFT adapter
//! format (checked with `peft.PeftModel`).

#[path = "common/fixtures.rs"]
mod fixtures;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use fixtures::{max_abs_diff_masked, model_dir, reference};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};
use wax_worker::model::{ForwardInput, Hooks, LoraConfig, Model, ModelError};

fn load(name: &str) -> Model {
    Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture")
}

fn input(name: &str) -> (ForwardInput, Tensor) {
    let r = reference(name);
    let mask = r["attention_mask"].to_kind(Kind::Bool);
    let input = ForwardInput {
        input_ids: r["input_ids"].shallow_clone(),
        positions: r["position_ids"].shallow_clone(),
        attention_mask: mask.shallow_clone(),
    };
    (input, mask)
}

fn logits(model: &Model, input: &ForwardInput) -> Tensor {
    tch::no_grad(|| model.forward(input, None, &mut Hooks::new()).expect("forward"))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn is_adapter(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// Copies of every base (non-adapter) parameter.
fn base_snapshot(model: &Model) -> HashMap<String, Tensor> {
    model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(n, _)| !is_adapter(n))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

fn adapters(model: &Model) -> HashMap<String, Tensor> {
    model.var_store().variables().into_iter().filter(|(n, _)| is_adapter(n)).collect()
}

/// Gives every adapter deterministic non-zero values of a size that visibly moves the logits.
fn randomise_adapters(model: &Model) {
    let _guard = tch::no_grad_guard();
    let mut names: Vec<(String, Tensor)> = adapters(model).into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, mut t)) in names.into_iter().enumerate() {
        let n = t.numel() as i64;
        let scale = if name.contains("lora_B") { 0.2 } else { 0.15 };
        let values = ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.73 + i as f64).sin()
            * scale)
            .view(t.size().as_slice());
        t.copy_(&values);
    }
}

fn expect_lora_err(result: Result<impl std::fmt::Debug, ModelError>, needles: &[&str]) {
    let err = result.expect_err("must fail");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` does not mention `{n}`");
    }
}

#[test]
fn fresh_adapters_leave_logits_exactly_unchanged_and_freeze_the_base() {
    // GPT-OSS: the attention projections only (its experts are 3-D parameters).
    for (name, per_layer) in [("qwen3", 7), ("gpt_neox", 4), ("gpt_oss", 4)] {
        let (input, _) = input(name);
        let mut model = load(name);
        let before = logits(&model, &input);
        let base_vars = model.var_store().variables().len();
        model.add_lora(&LoraConfig { rank: 4, alpha: 8.0, ..Default::default() }, 7).unwrap();
        let after = logits(&model, &input);
        assert!(after.equal(&before), "{name}: B = 0 must give the base logits exactly");

        let layers = model.config().num_layers as usize;
        let adapters = adapters(&model);
        assert_eq!(adapters.len(), 2 * per_layer * layers, "{name}: one A and one B per target");
        assert_eq!(model.var_store().variables().len(), base_vars + adapters.len());
        let trainable = model.var_store().trainable_variables();
        assert_eq!(trainable.len(), adapters.len(), "{name}: only adapters are trainable");
        assert!(trainable.iter().all(|t| t.requires_grad() && t.kind() == Kind::Float));
        for (n, t) in model.var_store().variables() {
            assert_eq!(t.requires_grad(), is_adapter(&n), "{name}: requires_grad of {n}");
        }
        let module = if name == "gpt_neox" {
            "gpt_neox.layers.1.attention.query_key_value"
        } else {
            "model.layers.2.self_attn.q_proj"
        };
        let a = &adapters[&format!("base_model.model.{module}.lora_A.weight")];
        let b = &adapters[&format!("base_model.model.{module}.lora_B.weight")];
        let w = &model.var_store().variables()[&format!("{module}.weight")];
        assert_eq!(a.size(), [4, w.size()[1]]);
        assert_eq!(b.size(), [w.size()[0], 4]);
        assert_eq!(b.abs().max().double_value(&[]), 0.0);
        let bound = 1.0 / (w.size()[1] as f64).sqrt();
        let amax = a.abs().max().double_value(&[]);
        assert!(amax > 0.5 * bound && amax <= bound, "{name}: A range {amax} vs {bound}");

        // The same seed gives the same A; another seed another.
        let mut again = load(name);
        again.add_lora(&LoraConfig { rank: 4, alpha: 8.0, ..Default::default() }, 7).unwrap();
        let mut other = load(name);
        other.add_lora(&LoraConfig { rank: 4, alpha: 8.0, ..Default::default() }, 8).unwrap();
        let key = format!("base_model.model.{module}.lora_A.weight");
        assert!(again.var_store().variables()[&key].equal(a));
        assert!(!other.var_store().variables()[&key].equal(a));
    }
}

#[test]
fn adamw_steps_train_only_the_adapters() {
    let name = "qwen3";
    let (input, mask) = input(name);
    let mut model = load(name);
    let base_logits = logits(&model, &input);
    let config = LoraConfig {
        rank: 4,
        alpha: 16.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
    };
    model.add_lora(&config, 1).unwrap();
    assert_eq!(
        model.lora_config().unwrap().targets,
        ["down_proj", "q_proj", "v_proj"],
        "resolved targets are sorted"
    );
    assert_eq!(adapters(&model).len(), 2 * 3 * 3);
    let base = base_snapshot(&model);
    let initial = adapters(&model)
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect::<HashMap<_, _>>();
    model.set_train(true);
    let mut opt = nn::AdamW::default().build(model.var_store(), 1e-2).unwrap();
    let vocab = model.config().vocab_size;
    // Toy loss: predict the input token itself at every real position.
    let weights = mask.to_kind(Kind::Float).view([-1]);
    let loss_of = |model: &Model| {
        let logits = model.forward(&input, None, &mut Hooks::new()).unwrap();
        let per_token = logits.view([-1, vocab]).log_softmax(-1, Kind::Float).gather(
            1,
            &input.input_ids.view([-1, 1]),
            false,
        );
        -(per_token.view([-1]) * &weights).sum(Kind::Float) / weights.sum(Kind::Float)
    };
    let mut losses = Vec::new();
    for step in 0..5 {
        opt.zero_grad();
        let loss = loss_of(&model);
        losses.push(loss.double_value(&[]));
        loss.backward();
        if step == 0 {
            for (n, t) in model.var_store().variables() {
                if is_adapter(&n) {
                    // With B = 0 only B receives a gradient at the first step.
                    let g = t.grad();
                    assert!(g.defined(), "{n} has no gradient");
                    if n.contains("lora_B") {
                        assert!(g.abs().max().double_value(&[]) > 0.0, "{n}: zero gradient");
                    }
                } else {
                    assert!(!t.grad().defined(), "base parameter {n} got a gradient");
                }
            }
        }
        opt.step();
    }
    model.set_train(false);
    let final_loss = tch::no_grad(|| loss_of(&model)).double_value(&[]);
    assert!(final_loss < losses[0], "loss did not decrease: {losses:?} then {final_loss}");

    for (n, t) in model.var_store().variables() {
        if is_adapter(&n) {
            assert!(!t.equal(&initial[&n]), "adapter {n} did not change");
        } else {
            assert!(t.equal(&base[&n]), "base parameter {n} changed");
        }
    }
    let trained = logits(&model, &input);
    let moved = max_abs_diff_masked(&trained, &base_logits, &mask);
    assert!(moved > 1e-3, "logits did not change ({moved})");
}

#[test]
fn dropout_acts_only_in_training_mode() {
    let name = "llama";
    let (input, _) = input(name);
    let mut model = load(name);
    model.add_lora(&LoraConfig { rank: 4, alpha: 8.0, dropout: 0.5, targets: vec![] }, 3).unwrap();
    randomise_adapters(&model);
    assert!(!model.is_training());
    let eval = logits(&model, &input);
    assert!(logits(&model, &input).equal(&eval), "evaluation must be deterministic");
    model.set_train(true);
    let t1 = logits(&model, &input);
    let t2 = logits(&model, &input);
    assert!(max_diff(&t1, &t2) > 1e-4, "dropout must make training forwards differ");
    model.set_train(false);
    assert!(logits(&model, &input).equal(&eval));
}

#[test]
fn merge_matches_the_adapter_forward_and_unmerge_restores_the_base() {
    for name in ["qwen3", "gpt_neox", "olmo2", "gpt_oss"] {
        let (input, _) = input(name);
        let mut model = load(name);
        let base_logits = logits(&model, &input);
        let base = base_snapshot(&model);
        model.add_lora(&LoraConfig { rank: 8, alpha: 16.0, ..Default::default() }, 5).unwrap();
        randomise_adapters(&model);
        let adapted = logits(&model, &input);
        let moved = max_diff(&adapted, &base_logits);
        assert!(moved > 1e-2, "{name}: adapters barely move the logits ({moved})");

        expect_lora_err(model.unmerge_lora(), &["not merged"]);
        model.merge_lora().unwrap();
        assert!(model.lora_merged());
        expect_lora_err(model.merge_lora(), &["already merged"]);
        let merged = logits(&model, &input);
        let err = max_diff(&merged, &adapted);
        assert!(err <= 1e-5, "{name}: merged vs adapter forward: {err}");
        let vars = model.var_store().variables();
        let mut changed = 0;
        for (n, t) in &base {
            if n.contains(".layers.") && n.ends_with(".weight") && max_diff(&vars[n], t) > 1e-4 {
                changed += 1;
            }
        }
        let per_layer = if matches!(name, "gpt_neox" | "gpt_oss") { 4 } else { 7 };
        assert_eq!(changed, per_layer * model.config().num_layers as usize, "{name}");

        model.unmerge_lora().unwrap();
        assert!(!model.lora_merged());
        let vars = model.var_store().variables();
        for (n, t) in &base {
            let err = max_diff(&vars[n], t);
            assert!(err <= 1e-6, "{name}: {n} not restored ({err})");
        }
        let again = logits(&model, &input);
        let err = max_diff(&again, &adapted);
        assert!(err <= 1e-5, "{name}: unmerged vs adapter forward: {err}");
    }
}

fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// transformers' logits of `model_dir` (fixture script, `--logits` mode).
fn transformers_logits(model_dir: &Path, name: &str, tmp: &Path) -> Tensor {
    let out = tmp.join("logits.safetensors");
    let reference_file = fixtures::model_dir(name).join("reference.safetensors");
    fixtures::run_script(&[
        "--logits".as_ref(),
        model_dir.as_os_str(),
        "--inputs".as_ref(),
        reference_file.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    read_tensors(&out).remove("logits").unwrap()
}

#[test]
fn merged_save_pretrained_loads_in_transformers() {
    // qwen3: tied embeddings, saved while unmerged; gpt_neox: fused QKV, saved while merged.
    for (name, merge_first) in
        [("qwen3", false), ("gpt_neox", true), ("olmo2", false), ("gpt_oss", true)]
    {
        let (input, mask) = input(name);
        let tmp = tempfile::tempdir().unwrap();
        let mut model = load(name);
        let base_logits = logits(&model, &input);
        model.add_lora(&LoraConfig { rank: 4, alpha: 8.0, ..Default::default() }, 11).unwrap();
        randomise_adapters(&model);
        let adapted = logits(&model, &input);
        let unmerged_dir = tmp.path().join("unmerged");
        model.save_pretrained(&unmerged_dir).unwrap();
        model.merge_lora().unwrap();
        let merged_dir = tmp.path().join("merged");
        model.save_pretrained(&merged_dir).unwrap();

        // Both paths write the same plain snapshot: the base names, no adapter tensors.
        let a = read_tensors(&unmerged_dir.join("model.safetensors"));
        let b = read_tensors(&merged_dir.join("model.safetensors"));
        let mut keys: Vec<&String> = a.keys().collect();
        keys.sort();
        let mut base_keys: Vec<String> = base_snapshot(&load(name)).into_keys().collect();
        base_keys.sort();
        assert_eq!(keys, base_keys.iter().collect::<Vec<_>>(), "{name}: saved names");
        assert!(keys.iter().all(|k| !k.contains("lora")));
        for k in keys {
            let err = max_diff(&a[k], &b[k]);
            assert!(err <= 1e-6, "{name}: {k} differs between the save paths by {err}");
        }

        let dir = if merge_first { &merged_dir } else { &unmerged_dir };
        let got = transformers_logits(dir, name, tmp.path());
        let err = max_abs_diff_masked(&got, &adapted, &mask);
        assert!(err <= 1e-4, "{name}: transformers on the merged snapshot differs by {err}");
        let moved = max_abs_diff_masked(&got, &base_logits, &mask);
        assert!(moved > 1e-2, "{name}: the snapshot lost the adapters ({moved})");

        // And wax reads it back as a plain model with the adapted logits.
        let plain = Model::load(dir, Device::Cpu, Kind::Float).unwrap();
        assert_eq!(plain.num_parameters(), load(name).num_parameters());
        let err = max_diff(&logits(&plain, &input), &adapted);
        assert!(err <= 1e-5, "{name}: wax on the merged snapshot differs by {err}");
    }
}

/// PEFT's logits for fixture `name` with the adapter in `adapter`.
fn peft_logits(name: &str, adapter: &Path, tmp: &Path) -> Tensor {
    let out = tmp.join("peft_logits.safetensors");
    let script = fixtures::workspace_root().join("scripts/fixtures/peft_logits.py");
    let reference_file = model_dir(name).join("reference.safetensors");
    let result = Command::new(fixtures::python())
        .arg(&script)
        .arg("--base")
        .arg(model_dir(name))
        .arg("--adapter")
        .arg(adapter)
        .arg("--inputs")
        .arg(&reference_file)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run peft_logits.py");
    assert!(
        result.status.success(),
        "{} failed; is peft installed (run `make bootstrap`)?\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    read_tensors(&out).remove("logits").unwrap()
}

#[test]
fn peft_adapter_format_round_trips_through_peft_and_wax() {
    for (name, targets) in [
        ("qwen3", vec!["q_proj".to_string(), "v_proj".into(), "down_proj".into()]),
        ("gpt_neox", vec![]),
        ("gpt_oss", vec![]),
    ] {
        let (input, mask) = input(name);
        let tmp = tempfile::tempdir().unwrap();
        let mut model = load(name);
        let config = LoraConfig { rank: 4, alpha: 12.0, dropout: 0.1, targets };
        model.add_lora(&config, 21).unwrap();
        randomise_adapters(&model);
        let adapted = logits(&model, &input);
        let dir = tmp.path().join("adapter");
        model.save_lora_adapter(&dir).unwrap();

        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(json["task_type"], "CAUSAL_LM");
        assert_eq!(json["bias"], "none");
        assert_eq!(json["r"], 4);
        assert_eq!(json["lora_alpha"], 12.0);
        assert_eq!(json["lora_dropout"], 0.1);
        assert_eq!(json["base_model_name_or_path"], model_dir(name).display().to_string());
        let expected_targets: Vec<&str> = match name {
            "qwen3" => vec!["down_proj", "q_proj", "v_proj"],
            "gpt_oss" => vec!["k_proj", "o_proj", "q_proj", "v_proj"],
            _ => vec!["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"],
        };
        assert_eq!(json["target_modules"], serde_json::json!(expected_targets));
        let file = read_tensors(&dir.join("adapter_model.safetensors"));
        let vars = adapters(&model);
        assert_eq!(file.len(), vars.len());
        for (n, t) in &vars {
            assert!(file[n].equal(t), "{name}: saved {n} differs");
        }
        let sample = if name == "gpt_neox" {
            "base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_B.weight"
        } else {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
        };
        assert!(file.contains_key(sample), "{name}: no {sample}");

        let got = peft_logits(name, &dir, tmp.path());
        let err = max_abs_diff_masked(&got, &adapted, &mask);
        assert!(err <= 1e-4, "{name}: PEFT on the saved adapter differs by {err}");

        let mut fresh = load(name);
        let loaded = fresh.load_lora_adapter(&dir).unwrap();
        assert_eq!(&loaded, model.lora_config().unwrap());
        let again = adapters(&fresh);
        assert_eq!(again.len(), vars.len());
        for (n, t) in &vars {
            assert!(again[n].equal(t), "{name}: reloaded {n} differs");
        }
        assert!(logits(&fresh, &input).equal(&adapted), "{name}: reloaded adapter logits");
        expect_lora_err(fresh.load_lora_adapter(&dir), &["already has LoRA adapters"]);
    }
}

#[test]
fn bad_configs_and_adapter_files_are_clear_errors() {
    let mut model = load("qwen3");
    let vars = model.var_store().variables().len();
    expect_lora_err(model.add_lora(&LoraConfig { rank: 0, ..Default::default() }, 0), &["rank"]);
    expect_lora_err(
        model.add_lora(&LoraConfig { dropout: 1.0, ..Default::default() }, 0),
        &["dropout"],
    );
    let unknown =
        LoraConfig { targets: vec!["q_proj".into(), "qproj".into()], ..Default::default() };
    expect_lora_err(
        model.add_lora(&unknown, 0),
        &["`qproj`", "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"],
    );
    expect_lora_err(model.merge_lora(), &["no LoRA adapters"]);
    expect_lora_err(model.save_lora_adapter(&std::env::temp_dir()), &["no LoRA adapters"]);
    // Failed calls leave the model untouched and trainable.
    assert!(model.lora_config().is_none());
    assert_eq!(model.var_store().variables().len(), vars);
    assert_eq!(model.var_store().trainable_variables().len(), vars);

    let mut neox = load("gpt_neox");
    let neox_err =
        neox.add_lora(&LoraConfig { targets: vec!["q_proj".into()], ..Default::default() }, 0);
    expect_lora_err(
        neox_err,
        &["`q_proj`", "query_key_value, dense, dense_h_to_4h, dense_4h_to_h"],
    );

    // GPT-OSS's experts and router take no adapters.
    let mut oss = load("gpt_oss");
    for target in ["gate_up_proj", "router", "experts", "down_proj"] {
        let err =
            oss.add_lora(&LoraConfig { targets: vec![target.into()], ..Default::default() }, 0);
        expect_lora_err(err, &[&format!("`{target}`"), "q_proj, k_proj, v_proj, o_proj"]);
    }
    assert!(oss.lora_config().is_none());

    model.add_lora(&LoraConfig::default(), 0).unwrap();
    expect_lora_err(model.add_lora(&LoraConfig::default(), 0), &["already has LoRA adapters"]);

    // Adapter directories wax cannot read.
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    model.save_lora_adapter(&good).unwrap();
    let variant = |label: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = tmp.path().join(label);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            good.join("adapter_model.safetensors"),
            dir.join("adapter_model.safetensors"),
        )
        .unwrap();
        let mut json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(good.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        edit(&mut json);
        std::fs::write(dir.join("adapter_config.json"), json.to_string()).unwrap();
        dir
    };
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        ("peft_type", &|j| j["peft_type"] = "IA3".into(), &["peft_type", "LORA"]),
        ("regex", &|j| j["target_modules"] = ".*proj".into(), &["target_modules", "regular"]),
        ("dora", &|j| j["use_dora"] = true.into(), &["use_dora"]),
        ("rank", &|j| j["r"] = 4.into(), &["lora_A", "[4, 64]", "[8, 64]"]),
        (
            "fewer_targets",
            &|j| j["target_modules"] = serde_json::json!(["q_proj"]),
            &["unexpected", "k_proj.lora_A"],
        ),
        ("unknown", &|j| j["target_modules"] = serde_json::json!(["attn"]), &["`attn`"]),
    ];
    for (label, edit, needles) in cases {
        let dir = variant(label, edit);
        let mut fresh = load("qwen3");
        expect_lora_err(fresh.load_lora_adapter(&dir), needles);
        assert!(fresh.lora_config().is_none(), "{label}: a failed load attached adapters");
    }
    let mut fresh = load("qwen3");
    expect_lora_err(fresh.load_lora_adapter(&tmp.path().join("absent")), &["adapter_config.json"]);
    let dir = variant("no_weights", &|_| {});
    std::fs::remove_file(dir.join("adapter_model.safetensors")).unwrap();
    expect_lora_err(fresh.load_lora_adapter(&dir), &["adapter_model.safetensors"]);
}
