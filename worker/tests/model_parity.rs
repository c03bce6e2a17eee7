//! Parity of `wax_worker::model` with transformers on tiny random models of every family, plus
//! loading errors and the `save_pretrained` round trip.

#[path = "common/fixtures.rs"]
mod fixtures;

use std::path::Path;

use fixtures::{max_abs_diff_masked, model_dir, reference, reference_metadata};
use tch::{Device, Kind, Tensor};
use wax_worker::model::{
    ForwardInput, HookPoint, Hooks, LayerSite, Model, ModelConfig, ModelError, Packing, Positions,
    RopeScaling,
};

fn input_from(reference: &std::collections::HashMap<String, Tensor>) -> (ForwardInput, Tensor) {
    let mask = reference["attention_mask"].to_kind(Kind::Bool);
    let input = ForwardInput {
        input_ids: reference["input_ids"].shallow_clone(),
        positions: reference["position_ids"].shallow_clone(),
        attention_mask: mask.shallow_clone(),
    };
    (input, mask)
}

/// Loads fixture `name` in fp32 and checks logits, every layer output and the hidden states.
fn check_parity(name: &str) {
    let _guard = tch::no_grad_guard();
    let model = Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture");
    let r = reference(name);
    let (input, mask) = input_from(&r);
    let layers = model.config().num_layers as usize;
    let mut hooks = Hooks::new();
    hooks.capture("embed", HookPoint::layer(0, LayerSite::ResidPre), Positions::All);
    for l in 0..layers {
        hooks.capture(
            format!("post{l}"),
            HookPoint::layer(l, LayerSite::ResidPost),
            Positions::All,
        );
    }
    hooks.capture("final", HookPoint::FinalNorm, Positions::All);
    let logits = model.forward(&input, None, &mut hooks).expect("forward");
    assert_eq!(logits.kind(), Kind::Float);
    assert_eq!(logits.size(), r["logits"].size());
    let err = max_abs_diff_masked(&logits, &r["logits"], &mask);
    assert!(err <= 1e-4, "{name}: logits max abs error {err}");
    let err = max_abs_diff_masked(hooks.get("embed").unwrap(), &r["hidden_states.0"], &mask);
    assert!(err <= 1e-5, "{name}: embeddings error {err}");
    for l in 0..layers {
        let got = hooks.get(&format!("post{l}")).unwrap();
        let err = max_abs_diff_masked(got, &r[&format!("layer_output.{l}")], &mask);
        assert!(err <= 1e-4, "{name}: resid_post of layer {l} vs forward-hook reference: {err}");
        if l + 1 < layers {
            let err = max_abs_diff_masked(got, &r[&format!("hidden_states.{}", l + 1)], &mask);
            assert!(
                err <= 1e-4,
                "{name}: resid_post of layer {l} vs hidden_states[{}]: {err}",
                l + 1
            );
        }
    }
    // transformers 5.24 returns the final-normed state as the last `hidden_states` entry.
    let normed = reference_metadata(name, "last_hidden_state_is_normed").expect("metadata");
    let last = &r[&format!("hidden_states.{layers}")];
    let expected_source = if normed == "true" { "final" } else { &*format!("post{}", layers - 1) };
    let err = max_abs_diff_masked(hooks.get(expected_source).unwrap(), last, &mask);
    assert!(err <= 1e-4, "{name}: last hidden state ({expected_source}) error {err}");
}

/// A batch without padding and without a cache runs plain causal attention (no mask, grouped
/// heads handled by the kernel): the fixtures' second row is unpadded.
#[test]
fn unpadded_prefill_matches_transformers() {
    let _guard = tch::no_grad_guard();
    for name in ["qwen3", "llama", "qwen2", "gpt_neox", "gpt_neox_sequential"] {
        let model = Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture");
        let r = reference(name);
        let (input, mask) = input_from(&r);
        let row = |t: &Tensor| t.narrow(0, 1, 1);
        assert!(bool::try_from(row(&mask).all()).unwrap(), "{name}: row 1 is unpadded");
        let input = ForwardInput {
            input_ids: row(&input.input_ids),
            positions: row(&input.positions),
            attention_mask: row(&input.attention_mask),
        };
        let logits = model.forward(&input, None, &mut Hooks::new()).unwrap();
        let err = max_abs_diff_masked(&logits, &row(&r["logits"]), &row(&mask));
        assert!(err <= 1e-4, "{name}: unpadded row logits max abs error {err}");
    }
}

/// Inference can run q/k/v and gate/up as one packed matmul each; with gradient mode on and
/// trainable weights the separate maps run instead. Every combination gives transformers' logits.
#[test]
fn packed_and_separate_projections_both_match_transformers() {
    let all = Packing { qkv: true, mlp: true };
    for name in ["qwen3", "qwen2", "llama_llama3"] {
        let mut model =
            Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture");
        if std::env::var_os("WAX_PACKED_PROJECTIONS").is_none() {
            assert_eq!(model.packing(), Packing { qkv: true, mlp: false }, "the CPU default");
        }
        let r = reference(name);
        let (input, mask) = input_from(&r);
        let mut run = |packing, grad: bool| {
            model.set_packing(packing);
            let forward = || model.forward(&input, None, &mut Hooks::new()).unwrap();
            if grad { forward() } else { tch::no_grad(forward) }
        };
        let packed = run(all, false);
        let separate = run(Packing { qkv: false, mlp: false }, false);
        let fallback = run(all, true);
        // Gradients reach the projections' own weights: the separate maps ran.
        fallback.sum(Kind::Float).backward();
        let vars = model.var_store().variables();
        for w in ["self_attn.k_proj.weight", "mlp.up_proj.weight"] {
            let g = vars[&format!("model.layers.0.{w}")].grad();
            assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}: {w}");
        }
        for (path, logits) in
            [("packed", &packed), ("separate", &separate), ("fallback", &fallback.detach())]
        {
            let err = max_abs_diff_masked(logits, &r["logits"], &mask);
            assert!(err <= 1e-4, "{name} {path}: logits max abs error {err}");
        }
        let err = max_abs_diff_masked(&packed, &separate, &mask);
        assert!(err <= 1e-5, "{name}: packed vs separate {err}");
    }
}

#[test]
fn qwen3_gqa_tied_head_dim_matches_transformers() {
    check_parity("qwen3");
    let m = Model::load(&model_dir("qwen3"), Device::Cpu, Kind::Float).unwrap();
    let c = m.config();
    assert!(c.tie_word_embeddings && c.qk_norm);
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_size), (4, 2, 24, 64));
}

#[test]
fn llama_untied_gqa_matches_transformers() {
    check_parity("llama");
}

#[test]
fn llama_llama3_rope_with_biases_matches_transformers() {
    check_parity("llama_llama3");
    let m = Model::load(&model_dir("llama_llama3"), Device::Cpu, Kind::Float).unwrap();
    assert!(matches!(m.config().rope.scaling, RopeScaling::Llama3 { .. }));
    assert!(m.config().qkv_bias && m.config().mlp_bias);
}

#[test]
fn llama_linear_rope_matches_transformers() {
    check_parity("llama_linear");
}

#[test]
fn llama_dynamic_rope_beyond_max_positions_matches_transformers() {
    check_parity("llama_dynamic");
}

#[test]
fn llama_yarn_rope_matches_transformers() {
    check_parity("llama_yarn");
}

#[test]
fn qwen2_sharded_with_biases_matches_transformers() {
    assert!(model_dir("qwen2").join("model.safetensors.index.json").is_file());
    check_parity("qwen2");
}

#[test]
fn gpt_neox_parallel_partial_rotary_matches_transformers() {
    check_parity("gpt_neox");
    let m = Model::load(&model_dir("gpt_neox"), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(m.config().rotary_dim, 4);
    assert!(m.config().parallel_residual);
}

#[test]
fn gpt_neox_sequential_residual_matches_transformers() {
    check_parity("gpt_neox_sequential");
}

#[test]
fn bf16_load_is_close_to_fp32_reference() {
    let _guard = tch::no_grad_guard();
    for name in ["qwen3", "gpt_neox"] {
        let model = Model::load(&model_dir(name), Device::Cpu, Kind::BFloat16).unwrap();
        let r = reference(name);
        let (input, mask) = input_from(&r);
        let logits = model.forward(&input, None, &mut Hooks::new()).unwrap();
        assert_eq!(logits.kind(), Kind::Float);
        let scale = max_abs_diff_masked(&r["logits"], &r["logits"].zeros_like(), &mask);
        let err = max_abs_diff_masked(&logits, &r["logits"], &mask);
        assert!(
            err.is_finite() && err <= 0.05 * scale,
            "{name}: bf16 error {err} vs logit scale {scale}"
        );
        let parameters = model.var_store().variables();
        assert!(parameters.values().all(|t| t.kind() == Kind::BFloat16 && t.requires_grad()));
    }
}

#[test]
fn parameters_are_named_like_transformers_and_trainable() {
    let m = Model::load(&model_dir("qwen3"), Device::Cpu, Kind::Float).unwrap();
    let vars = m.var_store().variables();
    assert!(vars.contains_key("model.layers.2.self_attn.q_norm.weight"));
    assert!(!vars.contains_key("lm_head.weight"), "tied head must not be a second parameter");
    assert_eq!(m.var_store().trainable_variables().len(), vars.len());
    // 320*64 embed + 3 layers + final norm; computed from the shapes.
    let per_layer = 2 * 64 + (96 * 64 + 2 * 48 * 64 + 64 * 96) + 2 * 24 + 3 * 128 * 64;
    assert_eq!(m.num_parameters(), 320 * 64 + 3 * per_layer + 64);
}

/// Rust writes, transformers reads: the logits of the saved snapshot equal the reference.
#[test]
fn save_pretrained_round_trips_through_transformers() {
    let _guard = tch::no_grad_guard();
    for name in ["qwen3", "llama_llama3", "gpt_neox"] {
        let model = Model::load(&model_dir(name), Device::Cpu, Kind::Float).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("saved");
        model.save_pretrained(&out).unwrap();
        let logits_file = tmp.path().join("logits.safetensors");
        let reference_file = model_dir(name).join("reference.safetensors");
        fixtures::run_script(&[
            "--logits".as_ref(),
            out.as_os_str(),
            "--inputs".as_ref(),
            reference_file.as_os_str(),
            "--out".as_ref(),
            logits_file.as_os_str(),
        ]);
        let got: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&logits_file).unwrap().into_iter().collect();
        let r = reference(name);
        let mask = r["attention_mask"].to_kind(Kind::Bool);
        let err = max_abs_diff_masked(&got["logits"], &r["logits"], &mask);
        assert!(err <= 1e-5, "{name}: transformers on the saved snapshot differs by {err}");
        // And the saved snapshot loads back in Rust with the same parameters.
        let again = Model::load(&out, Device::Cpu, Kind::Float).unwrap();
        assert_eq!(again.num_parameters(), model.num_parameters());
    }
}

fn copy_snapshot(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let file = dir.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&file).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &file).unwrap();
}

#[test]
fn missing_tensor_names_the_tensor_and_the_files_searched() {
    let tmp = tempfile::tempdir().unwrap();
    copy_snapshot(&model_dir("llama"), tmp.path());
    std::fs::remove_file(tmp.path().join("reference.safetensors")).unwrap();
    rewrite_weights(tmp.path(), |t| t.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight"));
    let err = Model::load(tmp.path(), Device::Cpu, Kind::Float).err().expect("must fail");
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_and_unexpected_tensors_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    copy_snapshot(&model_dir("llama"), tmp.path());
    std::fs::remove_file(tmp.path().join("reference.safetensors")).unwrap();
    rewrite_weights(tmp.path(), |t| {
        for (n, v) in t.iter_mut() {
            if n == "model.norm.weight" {
                *v = Tensor::ones([65], (Kind::Float, Device::Cpu));
            }
        }
    });
    let msg =
        Model::load(tmp.path(), Device::Cpu, Kind::Float).err().expect("must fail").to_string();
    assert!(
        msg.contains("model.norm.weight") && msg.contains("[65]") && msg.contains("[64]"),
        "{msg}"
    );

    let tmp = tempfile::tempdir().unwrap();
    copy_snapshot(&model_dir("llama"), tmp.path());
    std::fs::remove_file(tmp.path().join("reference.safetensors")).unwrap();
    rewrite_weights(tmp.path(), |t| {
        t.push((
            "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
            Tensor::ones([8], (Kind::Float, Device::Cpu)),
        ));
        t.push(("model.extra.weight".into(), Tensor::ones([3], (Kind::Float, Device::Cpu))));
    });
    let err = Model::load(tmp.path(), Device::Cpu, Kind::Float).err().expect("must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, ModelError::UnexpectedTensors { .. }) && msg.contains("model.extra.weight"),
        "{msg}"
    );
    assert!(!msg.contains("inv_freq"), "known buffers are skipped: {msg}");
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    copy_snapshot(&model_dir("llama"), tmp.path());
    let path = tmp.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["model_type"] = "mamba".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = Model::load(tmp.path(), Device::Cpu, Kind::Float).err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::UnsupportedModelType { .. }), "{msg}");
    assert!(msg.contains("mamba") && msg.contains("llama, qwen2, qwen3, gpt_neox"), "{msg}");
}

fn config_from(json: serde_json::Value) -> Result<ModelConfig, ModelError> {
    ModelConfig::from_value(json, Path::new("config.json"))
}

#[test]
fn old_style_rope_fields_and_sliding_window_are_handled() {
    // The shape of Qwen3-4B's config.json: top-level rope_theta and rope_scaling.
    let mut old = serde_json::json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560,
        "intermediate_size": 9728, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "num_hidden_layers": 36, "vocab_size": 151936, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
        "rope_scaling": null, "tie_word_embeddings": true, "use_sliding_window": false,
        "sliding_window": null, "max_window_layers": 36, "max_position_embeddings": 40960
    });
    let c = config_from(old.clone()).unwrap();
    assert_eq!(c.rope.theta, 1_000_000.0);
    assert_eq!(c.rope.scaling, RopeScaling::Default);
    assert_eq!(c.rotary_dim, 128);

    old["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768});
    let c = config_from(old.clone()).unwrap();
    assert!(
        matches!(c.rope.scaling, RopeScaling::Yarn { factor, original_max_position_embeddings, .. }
        if factor == 4.0 && original_max_position_embeddings == 32768.0)
    );
    assert_eq!(c.rope.theta, 1_000_000.0);

    old["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 4.0});
    let msg = config_from(old.clone()).unwrap_err().to_string();
    assert!(msg.contains("longrope"), "{msg}");

    old["rope_scaling"] = serde_json::Value::Null;
    old["use_sliding_window"] = true.into();
    old["sliding_window"] = 4096.into();
    old["max_window_layers"] = 20.into();
    let msg = config_from(old).unwrap_err().to_string();
    assert!(msg.contains("sliding"), "{msg}");

    let neox = serde_json::json!({"model_type": "gpt_neox", "hidden_size": 512, "intermediate_size": 2048,
        "num_attention_heads": 8, "num_hidden_layers": 6, "vocab_size": 50304, "rotary_pct": 0.25,
        "rotary_emb_base": 10000, "use_parallel_residual": true, "hidden_act": "gelu"});
    let c = config_from(neox).unwrap();
    assert_eq!((c.head_dim, c.rotary_dim), (64, 16));
}
