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
    for name in [
        "qwen3",
        "llama",
        "qwen2",
        "gpt_neox",
        "gpt_neox_sequential",
        "olmo2",
        "gpt_oss",
        "gpt_oss_nowindow",
    ] {
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
    for name in ["qwen3", "qwen2", "llama_llama3", "olmo2"] {
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
fn olmo2_post_norms_and_full_qk_norm_match_transformers() {
    check_parity("olmo2");
    let m = Model::load(&model_dir("olmo2"), Device::Cpu, Kind::Float).unwrap();
    let c = m.config();
    assert!(c.post_norm && c.qk_norm_full && !c.qk_norm);
    assert_eq!((c.num_heads, c.num_kv_heads, c.num_layers), (4, 2, 3));
}

/// The router of every GPT-OSS layer, fed the stream wax computes, gives transformers' logits
/// and the same top-k experts on every real token (so the MoE parity is not luck of routing).
fn check_routing(name: &str) {
    let _guard = tch::no_grad_guard();
    let model = Model::load(&model_dir(name), Device::Cpu, Kind::Float).unwrap();
    let r = reference(name);
    let (input, mask) = input_from(&r);
    let layers = model.config().num_layers as usize;
    let mut hooks = Hooks::new();
    for l in 0..layers {
        hooks.capture(format!("mid{l}"), HookPoint::layer(l, LayerSite::ResidMid), Positions::All);
    }
    let _ = model.forward(&input, None, &mut hooks).unwrap();
    let real = mask.reshape([-1]);
    let rows = Vec::<bool>::try_from(&real).unwrap();
    let mut margins = f64::INFINITY;
    for l in 0..layers {
        let routing = model.moe_routing(l, hooks.get(&format!("mid{l}")).unwrap()).unwrap();
        let routing = routing.expect("a MoE layer");
        let want = &r[&format!("router_logits.{l}")];
        let err = max_abs_diff_masked(&routing.logits, want, &real);
        assert!(err <= 1e-4, "{name}: router logits of layer {l}: {err}");
        let got = Vec::<i64>::try_from(routing.experts.reshape([-1])).unwrap();
        let want_idx =
            Vec::<i64>::try_from(r[&format!("router_indices.{l}")].reshape([-1])).unwrap();
        let k = routing.experts.size()[1] as usize;
        for (row, real) in rows.iter().enumerate() {
            if *real {
                let span = row * k..(row + 1) * k;
                assert_eq!(got[span.clone()], want_idx[span], "{name}: layer {l} token {row}");
            }
        }
        // How far the k-th choice is from the next: the agreement is not a near tie.
        let sorted = want.sort(-1, true).0;
        let gap =
            (sorted.narrow(1, k as i64 - 1, 1) - sorted.narrow(1, k as i64, 1)).squeeze_dim(1);
        let gap = gap.masked_select(&real).min().double_value(&[]);
        margins = margins.min(gap);
    }
    assert!(margins > 1e-4, "{name}: a near tie in routing ({margins})");
}

#[test]
fn gpt_oss_experts_sinks_and_sliding_window_match_transformers() {
    check_parity("gpt_oss");
    check_routing("gpt_oss");
    let m = Model::load(&model_dir("gpt_oss"), Device::Cpu, Kind::Float).unwrap();
    let c = m.config();
    assert_eq!(c.sliding_window, Some(4), "shorter than the fixture's 10 tokens: engaged");
    assert_eq!(c.sliding_layers, [true, false, true]);
    assert!(c.attention_sinks && !c.plain_attention());
    let moe = c.moe.as_ref().unwrap();
    assert_eq!((moe.num_experts, moe.experts_per_token, moe.swiglu_limit), (4, 2, 1.0));
    assert!(matches!(c.rope.scaling, RopeScaling::Yarn { truncate: false, .. }));
    let vars = m.var_store().variables();
    assert_eq!(vars["model.layers.0.mlp.experts.gate_up_proj"].size(), [4, 64, 128]);
    assert_eq!(vars["model.layers.2.self_attn.sinks"].size(), [4]);
}

/// In bfloat16 wax rounds as transformers does (norms rounded once after their weight, the
/// experts' outputs cast before they are summed): far closer to transformers' bfloat16 logits
/// than bfloat16 is to float32 (observed: equal).
#[test]
fn gpt_oss_in_bfloat16_matches_transformers_in_bfloat16() {
    let _guard = tch::no_grad_guard();
    for name in ["gpt_oss", "gpt_oss_nowindow"] {
        let model = Model::load(&model_dir(name), Device::Cpu, Kind::BFloat16).unwrap();
        let r = reference(name);
        let (input, mask) = input_from(&r);
        let logits = model.forward(&input, None, &mut Hooks::new()).unwrap();
        let err = max_abs_diff_masked(&logits, &r["logits_bf16"], &mask);
        let noise = max_abs_diff_masked(&r["logits"], &r["logits_bf16"], &mask);
        assert!(noise > 1e-3, "{name}: bfloat16 rounding shows ({noise})");
        assert!(err <= 0.05 * noise, "{name}: {err} from transformers' bfloat16 ({noise} to f32)");
    }
}

#[test]
fn gpt_oss_without_an_engaged_window_matches_transformers() {
    check_parity("gpt_oss_nowindow");
    check_routing("gpt_oss_nowindow");
    let m = Model::load(&model_dir("gpt_oss_nowindow"), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(m.config().sliding_window, Some(16));
    assert!(m.config().tie_word_embeddings);
}

/// The padded row of the fixture equals the same tokens fed alone without padding: the window
/// and the sinks are functions of token positions, not of cache slots.
#[test]
fn gpt_oss_left_padding_changes_nothing() {
    let _guard = tch::no_grad_guard();
    let model = Model::load(&model_dir("gpt_oss"), Device::Cpu, Kind::Float).unwrap();
    let r = reference("gpt_oss");
    let (input, mask) = input_from(&r);
    let padded = model.forward(&input, None, &mut Hooks::new()).unwrap();
    let pads = 10 - mask.get(0).sum(Kind::Int64).int64_value(&[]);
    assert!(pads > 0);
    let alone = ForwardInput {
        input_ids: input.input_ids.narrow(0, 0, 1).narrow(1, pads, 10 - pads),
        positions: input.positions.narrow(0, 0, 1).narrow(1, pads, 10 - pads),
        attention_mask: input.attention_mask.narrow(0, 0, 1).narrow(1, pads, 10 - pads),
    };
    let alone = model.forward(&alone, None, &mut Hooks::new()).unwrap();
    let err =
        (padded.narrow(0, 0, 1).narrow(1, pads, 10 - pads) - alone).abs().max().double_value(&[]);
    assert!(err <= 1e-5, "{err}");
}

/// Runs scripts/fixtures/mxfp4_reference.py with `args`.
fn mxfp4_script(args: &[&std::ffi::OsStr]) {
    let script = fixtures::workspace_root().join("scripts/fixtures/mxfp4_reference.py");
    let out = std::process::Command::new(fixtures::python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run mxfp4_reference.py");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_tensors(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// Bit patterns, so that equality is 0 ulp (and NaN-safe).
fn bits(t: &Tensor) -> Vec<i32> {
    let t = t.contiguous().view([-1]);
    match t.kind() {
        Kind::Float => Vec::<i32>::try_from(t.view_dtype(Kind::Int)).unwrap(),
        Kind::BFloat16 => Vec::<i16>::try_from(t.view_dtype(Kind::Int16))
            .unwrap()
            .into_iter()
            .map(i32::from)
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mxfp4_dequantization_equals_transformers_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mxfp4.safetensors");
    mxfp4_script(&["--dequant".as_ref(), file.as_os_str()]);
    let r = read_tensors(&file);
    for (key, kind) in [("float32", Kind::Float), ("bfloat16", Kind::BFloat16)] {
        let got =
            wax_worker::model::mxfp4_dequantize(&r["blocks"], &r["scales"], kind, Device::Cpu)
                .unwrap();
        assert_eq!(got.size(), r[key].size(), "{key}");
        assert_eq!(got.kind(), r[key].kind(), "{key}");
        assert!(bits(&got) == bits(&r[key]), "{key}: not bit-identical to transformers");
    }
}

/// A GPT-OSS checkpoint with MXFP4 experts (as real ones ship) loads to the experts
/// transformers dequantizes, bit for bit, and to its logits; `save_pretrained` writes the
/// dequantized experts without the quantization config.
#[test]
fn mxfp4_checkpoint_loads_as_transformers_loads_it() {
    let _guard = tch::no_grad_guard();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gpt_oss_mxfp4");
    mxfp4_script(&["--checkpoint".as_ref(), model_dir("gpt_oss").as_os_str(), dir.as_os_str()]);
    let r = read_tensors(&dir.join("reference.safetensors"));
    let model = Model::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let vars = model.var_store().variables();
    let mut experts = 0;
    for (name, want) in &r {
        if name.contains("mlp.experts.") {
            assert!(bits(&vars[name]) == bits(want), "{name}: not bit-identical");
            experts += 1;
        }
    }
    assert_eq!(experts, 6, "gate_up and down of 3 layers");
    let fixture = reference("gpt_oss");
    let (input, mask) = input_from(&fixture);
    let logits = model.forward(&input, None, &mut Hooks::new()).unwrap();
    let err = max_abs_diff_masked(&logits, &r["logits"], &mask);
    assert!(err <= 1e-4, "logits of the dequantized model: {err}");
    let saved = tmp.path().join("saved");
    model.save_pretrained(&saved).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap()).unwrap();
    assert!(cfg.get("quantization_config").is_none());
    let again = Model::load(&saved, Device::Cpu, Kind::Float).unwrap();
    let again = again.forward(&input, None, &mut Hooks::new()).unwrap();
    assert_eq!(max_abs_diff_masked(&again, &logits, &mask), 0.0);
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
    for name in ["qwen3", "gpt_neox", "gpt_oss"] {
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
    for name in ["qwen3", "llama_llama3", "gpt_neox", "olmo2", "gpt_oss", "gpt_oss_nowindow"] {
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
    assert!(
        msg.contains("mamba") && msg.contains("llama, qwen2, qwen3, gpt_neox, olmo2, gpt_oss"),
        "{msg}"
    );
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
