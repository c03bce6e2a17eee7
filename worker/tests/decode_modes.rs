//! The graph-ready decode loop (`Decode::Static`: device-side slot, positions and counters, the
//! work a CUDA graph records) gives exactly what the op-by-op loop gives — tokens, log-probs,
//! stops, and the conversation state the next turn continues from — on every fixture family,
//! with sampling, per-step allowed sets, stop tokens and attention windows crossing a boundary.
//! (On the GPU machine worker/tests/gpu_decode.rs checks the captured graphs the same way.)

#[path = "common/fixtures.rs"]
mod fixtures;

use fixtures::model_dir;
use tch::{Device, Kind};
use wax_worker::generate::{
    Allowed, Chunk, Decode, GenerateOptions, Generation, Sampling, Session, SteerSpec,
};
use wax_worker::model::{HookPoint, KvCache, LayerSite, Model, SteerScope, StepInput, TokenRole};

/// GPT-OSS's window (4 tokens) is engaged throughout: the conversations run over 100 tokens.
const FAMILIES: [&str; 6] = ["qwen3", "llama", "qwen2", "gpt_neox", "olmo2", "gpt_oss"];

fn load(name: &str) -> Model {
    Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture model")
}

fn chunks(rows: &[Vec<i64>]) -> Vec<Chunk> {
    rows.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect()
}

/// Two turns: a long first prompt so that decoding crosses the 128-slot window boundary, then a
/// user message and a second generation with per-step allowed sets and a stop token.
fn conversation(model: &Model, decode: Decode) -> (Generation, Generation, Vec<i64>) {
    steered_conversation(model, decode, Vec::new())
}

/// [`conversation`] with the session steered by `steering`.
fn steered_conversation(
    model: &Model,
    decode: Decode,
    steering: Vec<SteerSpec>,
) -> (Generation, Generation, Vec<i64>) {
    let vocab = model.config().vocab_size;
    let first: Vec<Vec<i64>> = (0..3)
        .map(|r| (0..(110 + 3 * r)).map(|i| ((i * 37 + r * 11 + 5) % (vocab - 1)) + 1).collect())
        .collect();
    let mut s = Session::new(model, &[7, 8, 9], 200, steering).unwrap();
    s.append(&chunks(&first)).unwrap();
    let a = s
        .generate(&GenerateOptions {
            max_new_tokens: 30,
            sampling: Sampling { temperature: 0.9, top_k: None, top_p: Some(0.9) },
            check_every: 0,
            decode,
            ..Default::default()
        })
        .unwrap();
    s.append(&chunks(&[vec![3, 4], vec![5], vec![6, 7, 8]])).unwrap();
    let allowed = Allowed::PerStep(vec![
        Allowed::only(&[20, 21, 22, 23], vocab, Device::Cpu),
        Allowed::only(&[20, 21, 22, 23, 30, 31], vocab, Device::Cpu),
        Allowed::only(&[30, 31, 40], vocab, Device::Cpu),
    ]);
    let b = s
        .generate(&GenerateOptions {
            max_new_tokens: 12,
            sampling: Sampling { temperature: 1.0, top_k: None, top_p: None },
            allowed,
            stop_tokens: vec![31],
            check_every: 2,
            decode,
        })
        .unwrap();
    (a, b, s.lengths().to_vec())
}

/// Same tokens and stops; log-probs within `tol`. (The graph-ready step attends over a window of
/// slots rather than exactly the used ones, so its logits differ from the eager step's by float
/// rounding, ~1e-7; under top-p a token at the nucleus boundary can then change the nucleus's
/// mass, hence a looser tolerance there.)
fn assert_same(name: &str, what: &str, x: &Generation, y: &Generation, tol: f32) {
    assert_eq!(x.tokens, y.tokens, "{name} {what}: tokens");
    assert_eq!(x.stopped, y.stopped, "{name} {what}: stopped");
    for (rx, ry) in x.logprobs.iter().zip(&y.logprobs) {
        for (a, b) in rx.iter().zip(ry) {
            assert!((a - b).abs() < tol, "{name} {what}: log-prob {a} vs {b}");
        }
    }
}

/// One graph-ready step equals `forward_select` over the used slots.
#[test]
fn the_step_forward_matches_the_cached_forward() {
    use tch::Tensor;
    use wax_worker::model::{ForwardInput, Hooks, LogitsSelect};
    for name in FAMILIES {
        let model = load(name);
        let (b, t) = (2i64, 9i64);
        let ids = Tensor::arange(b * t, (Kind::Int64, Device::Cpu)).view([b, t]).remainder(50) + 3;
        let prefill = ForwardInput {
            input_ids: ids.shallow_clone(),
            positions: Tensor::arange(t, (Kind::Int64, Device::Cpu)).repeat([b, 1]),
            attention_mask: Tensor::ones([b, t], (Kind::Bool, Device::Cpu)),
        };
        let mut c1 = model.new_cache(b, 40).unwrap();
        let mut c2 = model.new_cache(b, 40).unwrap();
        for c in [&mut c1, &mut c2] {
            let _ = model
                .forward_select(&prefill, Some(c), &mut Hooks::new(), LogitsSelect::Last)
                .unwrap();
        }
        let next = Tensor::from_slice(&[11i64, 12]).view([b, 1]);
        let pos = Tensor::from_slice(&[t, t]).view([b, 1]);
        let eager = ForwardInput {
            input_ids: next.shallow_clone(),
            positions: pos.shallow_clone(),
            attention_mask: Tensor::ones([b, t + 1], (Kind::Bool, Device::Cpu)),
        };
        let want = model
            .forward_select(&eager, Some(&mut c1), &mut Hooks::new(), LogitsSelect::Last)
            .unwrap()
            .squeeze_dim(1);
        let real = Tensor::zeros([b, 40], (Kind::Bool, Device::Cpu));
        let _ = real.narrow(1, 0, t + 1).fill_(1);
        let slot = Tensor::from_slice(&[t]);
        let input = StepInput {
            ids: &next,
            positions: &pos,
            real: &real,
            slot: &slot,
            view: 32,
            steering: &[],
        };
        let got = model.forward_step(&input, &c2).unwrap();
        let diff = (got - want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name}: max |Δlogit| {diff}");
    }
}

#[test]
fn static_decode_equals_eager_decode_on_every_family() {
    for name in FAMILIES {
        let model = load(name);
        let (a1, b1, len1) = conversation(&model, Decode::Eager);
        let (a2, b2, len2) = conversation(&model, Decode::Static);
        assert_same(name, "turn 1 (top-p)", &a1, &a2, 1e-2);
        assert_same(name, "turn 2", &b1, &b2, 1e-4);
        assert_eq!(len1, len2, "{name}: positions after two turns");
        assert!(a1.tokens.iter().all(|r| r.len() == 30));
        // The allowed sets held in the static loop too.
        for row in &b2.tokens {
            if let Some(&t) = row.first() {
                assert!([20, 21, 22, 23].contains(&t), "{name}: first token {t}");
            }
        }
    }
}

/// A fixed pseudo-random vector of `width` values in (−1.7, 1.7) for `key`, computed without
/// libtorch's global generator (tests run in parallel threads, and a `manual_seed` in one could
/// land between another's seed and draw, giving two runs of one test different vectors).
fn steering_vector(width: i64, key: i64) -> tch::Tensor {
    let values: Vec<f32> = (0..width)
        .map(|i| {
            let x = ((i as f64 * 12.9898 + key as f64 * 78.233).sin() * 43_758.545_3).fract();
            (x * 1.7) as f32
        })
        .collect();
    tch::Tensor::from_slice(&values)
}

/// Steering entries of every kind the graph-ready step takes: two at one point (summed), a
/// parallel-residual-sensitive resid_mid, the final norm, and a scope that starts mid-decode.
fn steering(model: &Model, seed: i64) -> Vec<SteerSpec> {
    let c = model.config();
    let v = |s: i64| steering_vector(c.hidden_size, seed * 10 + s);
    let last = c.num_layers as usize - 1;
    vec![
        SteerSpec {
            point: HookPoint::layer(0, LayerSite::ResidMid),
            vector: v(0),
            alpha: 3.0,
            scope: SteerScope::AssistantTurns,
        },
        SteerSpec {
            point: HookPoint::layer(last, LayerSite::ResidPost),
            vector: v(1),
            alpha: 2.0,
            scope: SteerScope::Generated,
        },
        SteerSpec {
            point: HookPoint::layer(last, LayerSite::ResidPost),
            vector: v(2),
            alpha: -1.5,
            scope: SteerScope::FromIndex(125),
        },
        SteerSpec { point: HookPoint::FinalNorm, vector: v(3), alpha: 0.5, scope: SteerScope::All },
    ]
}

#[test]
fn steered_static_decode_equals_steered_eager_decode() {
    for name in FAMILIES {
        let model = load(name);
        let (a1, b1, len1) = steered_conversation(&model, Decode::Eager, steering(&model, 1));
        let (a2, b2, len2) = steered_conversation(&model, Decode::Static, steering(&model, 1));
        assert_same(name, "steered turn 1 (top-p)", &a1, &a2, 1e-2);
        assert_same(name, "steered turn 2", &b1, &b2, 1e-4);
        assert_eq!(len1, len2, "{name}: positions after two turns");
        // The steering took effect: an unsteered conversation samples other tokens.
        let (a0, _, _) = conversation(&model, Decode::Static);
        assert_ne!(a0.tokens, a2.tokens, "{name}: steering changed nothing");
    }
}

#[test]
fn graph_mode_on_the_cpu_is_a_clear_error_and_auto_decodes_op_by_op() {
    let model = load("qwen3");
    let mut s = Session::new(&model, &[1], 64, Vec::new()).unwrap();
    s.append(&chunks(&[vec![5, 6, 7]])).unwrap();
    let opts = GenerateOptions { max_new_tokens: 20, decode: Decode::Graph, ..Default::default() };
    let why = s.graphs_apply(&opts).unwrap_err();
    assert!(why.contains("CUDA device"), "{why}");
    let err = s.generate(&opts).unwrap_err().to_string();
    assert!(err.contains("CUDA"), "{err}");
    // The failed call consumed nothing: the same session still generates, now in Auto mode.
    let g = s.generate(&GenerateOptions { max_new_tokens: 20, ..Default::default() });
    assert!(g.is_err() || g.unwrap().tokens[0].len() == 20);
}

/// The split-K decode-attention kernel's algorithm (run on the host: `StepAttention::Reference`)
/// in the graph-ready step gives the conversation SDPA gives: the kernel's layouts (grouped query
/// heads, cache windows, real-slot mask, the new token's slot) are those of the model, over
/// left padding, two turns, windows of two and four 64-slot chunks and steering. On the GPU
/// machine worker/tests/gpu_decode.rs checks the CUDA kernel against this algorithm.
#[test]
fn the_decode_attention_kernels_algorithm_gives_the_conversation_of_sdpa() {
    use wax_worker::model::StepAttention;
    for name in FAMILIES {
        let mut model = load(name);
        assert_eq!(model.step_attention(), StepAttention::Sdpa, "{name}: default");
        let (a1, b1, len1) = steered_conversation(&model, Decode::Static, steering(&model, 2));
        model.set_step_attention(StepAttention::Reference);
        let (a2, b2, len2) = steered_conversation(&model, Decode::Static, steering(&model, 2));
        assert_same(name, "turn 1 (top-p)", &a1, &a2, 1e-2);
        assert_same(name, "turn 2", &b1, &b2, 1e-4);
        assert_eq!(len1, len2, "{name}: positions after two turns");
        // The kernel path never touches the eager loop, which must still agree with both.
        let (a3, _, _) = steered_conversation(&model, Decode::Eager, steering(&model, 2));
        assert_eq!(a3.tokens, a2.tokens, "{name}: eager vs kernel algorithm");
    }
}

/// The q/k preparation kernel's arithmetic (run on the host: `StepPrep::Reference`) in the
/// graph-ready step gives the conversation of the libtorch ops on every family (q/k norms on
/// Qwen3, biases on Qwen2, GPT-NeoX's interleaved heads and partial rotary), alone and with the
/// attention kernel's algorithm.
#[test]
fn the_qk_prep_kernels_arithmetic_gives_the_conversation_of_the_ops() {
    use wax_worker::model::{StepAttention, StepPrep};
    for name in FAMILIES {
        let mut model = load(name);
        assert_eq!(model.step_prep(), StepPrep::Ops, "{name}: default");
        let (a1, b1, len1) = steered_conversation(&model, Decode::Static, steering(&model, 3));
        model.set_step_prep(StepPrep::Reference);
        let (a2, b2, len2) = steered_conversation(&model, Decode::Static, steering(&model, 3));
        assert_same(name, "turn 1 (top-p)", &a1, &a2, 1e-2);
        assert_same(name, "turn 2", &b1, &b2, 1e-4);
        assert_eq!(len1, len2, "{name}: positions after two turns");
        model.set_step_attention(StepAttention::Reference);
        let (a3, b3, _) = steered_conversation(&model, Decode::Static, steering(&model, 3));
        assert_same(name, "both kernels, turn 1 (top-p)", &a1, &a3, 1e-2);
        assert_same(name, "both kernels, turn 2", &b1, &b3, 1e-4);
    }
}

/// One decode step after a 7-token prefill, on the CPU, run by `step`: its logits and the first
/// layer's cache (the new token's keys at slot 7).
fn step_after_prefill(
    model: &Model,
    step: impl FnOnce(&StepInput, &KvCache) -> tch::Tensor,
) -> (tch::Tensor, tch::Tensor) {
    use tch::Tensor;
    use wax_worker::model::{ForwardInput, Hooks, LogitsSelect};
    let (b, t) = (3i64, 7i64);
    let ids = Tensor::arange(b * t, (Kind::Int64, Device::Cpu)).view([b, t]).remainder(40) + 3;
    let prefill = ForwardInput {
        input_ids: ids,
        positions: Tensor::arange(t, (Kind::Int64, Device::Cpu)).repeat([b, 1]),
        attention_mask: Tensor::ones([b, t], (Kind::Bool, Device::Cpu)),
    };
    let next = Tensor::from_slice(&[11i64, 12, 13]).view([b, 1]);
    let pos = Tensor::from_slice(&[t, t, t]).view([b, 1]);
    let real = Tensor::zeros([b, 16], (Kind::Bool, Device::Cpu));
    let _ = real.narrow(1, 0, t + 1).fill_(1);
    let slot = Tensor::from_slice(&[t]);
    let mut cache = model.new_cache(b, 16).unwrap();
    let _ = model
        .forward_select(&prefill, Some(&mut cache), &mut Hooks::new(), LogitsSelect::Last)
        .unwrap();
    let input = StepInput {
        ids: &next,
        positions: &pos,
        real: &real,
        slot: &slot,
        view: 16,
        steering: &[],
    };
    let logits = step(&input, &cache);
    (logits, cache.keys_of(0).copy())
}

/// [`step_after_prefill`] through `forward_step`.
fn bf16_step(model: &Model) -> (tch::Tensor, tch::Tensor) {
    step_after_prefill(model, |input, cache| model.forward_step(input, cache).unwrap())
}

/// `forward_step_into` writes exactly `forward_step`'s float32 logits into the caller's buffer
/// (one converting copy for a bfloat16 model) or the same values into a buffer of the model's
/// kind; steering at the logits adds to the float32 logits (the vector in the model's kind);
/// a buffer of another kind or shape is refused.
#[test]
fn the_step_writes_the_logits_of_forward_step_into_a_float32_buffer() {
    use tch::Tensor;
    use wax_worker::model::StepSteer;
    for kind in [Kind::Float, Kind::BFloat16] {
        let model = Model::load(&model_dir("qwen3"), Device::Cpu, kind).expect("load fixture");
        let v = model.config().vocab_size;
        let (want, _) = bf16_step(&model);
        let (got, _) = step_after_prefill(&model, |input, cache| {
            let out = Tensor::full([3, v], f64::NAN, (Kind::Float, Device::Cpu));
            model.forward_step_into(input, cache, &out).unwrap();
            out
        });
        assert_eq!(got.kind(), Kind::Float);
        assert!(got.equal(&want), "{kind:?}: logits differ");
        tch::manual_seed(11);
        let vector = (Tensor::randn([v], (Kind::Float, Device::Cpu)) * 3.0).to_kind(kind);
        let rows = Tensor::from_slice(&[true, false, true]);
        let (steered, _) = step_after_prefill(&model, |input, cache| {
            let steering =
                [StepSteer { point: HookPoint::Logits, vector: &vector, rows: rows.copy() }];
            let input = StepInput { steering: &steering, ..*input };
            let out = Tensor::zeros([3, v], (Kind::Float, Device::Cpu));
            model.forward_step_into(&input, cache, &out).unwrap();
            assert!(out.equal(&model.forward_step(&input, cache).unwrap()), "{kind:?}");
            out
        });
        let delta = rows.to_kind(Kind::Float).unsqueeze(1) * vector.to_kind(Kind::Float);
        let gap = (&steered - (&want + delta)).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "{kind:?}: steered logits off by {gap}");
        // A buffer in the model's own kind holds the same values; another kind, another shape,
        // or the model's kind while steering adds to the logits, is refused.
        let (own, _) = step_after_prefill(&model, |input, cache| {
            let out = Tensor::zeros([3, v], (kind, Device::Cpu));
            model.forward_step_into(input, cache, &out).unwrap();
            out
        });
        assert!(own.to_kind(Kind::Float).equal(&want), "{kind:?}: logits in the model's kind");
        let other = if kind == Kind::Float { Kind::BFloat16 } else { Kind::Half };
        let (_, _) = step_after_prefill(&model, |input, cache| {
            for bad in [
                Tensor::zeros([3, v], (other, Device::Cpu)),
                Tensor::zeros([3, v + 1], (Kind::Float, Device::Cpu)),
            ] {
                let e = model.forward_step_into(input, cache, &bad).unwrap_err().to_string();
                assert!(e.contains("float32"), "{e}");
            }
            if kind != Kind::Float {
                let steering =
                    [StepSteer { point: HookPoint::Logits, vector: &vector, rows: rows.copy() }];
                let input = StepInput { steering: &steering, ..*input };
                let out = Tensor::zeros([3, v], (kind, Device::Cpu));
                let e = model.forward_step_into(&input, cache, &out).unwrap_err().to_string();
                assert!(e.contains("without logits steering"), "{e}");
            }
            Tensor::zeros([1], (Kind::Float, Device::Cpu))
        });
    }
}

fn load_bf16(name: &str) -> Model {
    Model::load(&model_dir(name), Device::Cpu, Kind::BFloat16).expect("load fixture")
}

/// Largest logit difference of `x` from `reference`, and the largest |logit| of `reference`.
fn logit_gap(x: &tch::Tensor, reference: &tch::Tensor) -> (f64, f64) {
    ((x - reference).abs().max().double_value(&[]), reference.abs().max().double_value(&[]))
}

/// In bfloat16 the kernel's arithmetic rounds as libtorch's ops round: one step's logits agree
/// with the ops' (only the norm's float32 sum order differs).
#[test]
fn the_qk_prep_kernels_arithmetic_rounds_bfloat16_as_the_ops_do() {
    use wax_worker::model::StepPrep;
    for name in FAMILIES {
        let mut model = load_bf16(name);
        let (ops, ops_keys) = bf16_step(&model);
        model.set_step_prep(StepPrep::Reference);
        let (kernel, kernel_keys) = bf16_step(&model);
        let (diff, scale) = logit_gap(&kernel, &ops);
        assert!(diff <= 0.02 * scale, "{name}: max |Δlogit| {diff} of {scale}");
        // The cached keys of the new token: equal but for rare last-bit norm differences.
        let new = |k: &tch::Tensor| k.narrow(2, 7, 1).to_kind(Kind::Float);
        let same = new(&kernel_keys).eq_tensor(&new(&ops_keys)).to_kind(Kind::Float).mean(None);
        let same = same.double_value(&[]);
        assert!(same >= 0.98, "{name}: {same} of the new keys bit-identical");
    }
}

/// Steering at every point the fused layers handle: after an add the next norm would do
/// (resid_post, resid_pre, resid_mid), on the addends themselves (attn_out, mlp_out), at the
/// last layer's resid_post (the final norm's add) and the final norm.
fn steering_between_adds(model: &Model, seed: i64) -> Vec<SteerSpec> {
    let c = model.config();
    let v = |s: i64| steering_vector(c.hidden_size, seed * 10 + s);
    let last = c.num_layers as usize - 1;
    let at = |layer, site, s, alpha, scope| SteerSpec {
        point: HookPoint::layer(layer, site),
        vector: v(s),
        alpha,
        scope,
    };
    vec![
        at(0, LayerSite::ResidPost, 0, 2.0, SteerScope::AssistantTurns),
        at(last, LayerSite::ResidPre, 1, -1.0, SteerScope::Generated),
        at(0, LayerSite::AttnOut, 2, 1.5, SteerScope::All),
        at(last, LayerSite::MlpOut, 3, 1.0, SteerScope::FromIndex(120)),
        at(0, LayerSite::ResidMid, 4, -2.0, SteerScope::Generated),
        at(last, LayerSite::ResidPost, 5, 1.0, SteerScope::AssistantTurns),
    ]
}

/// The residual-norm kernel's arithmetic (run on the host: `StepNorm::Reference`) in the
/// graph-ready step gives the conversation of the ops: unsteered (every add fused into the norm
/// after it, the last block's into the final norm), steered between the adds and their norms
/// (those norms run as ops), and with all three kernels' arithmetic. GPT-NeoX (LayerNorm,
/// parallel residual), OLMo-2 (post-norms) and GPT-OSS (norms rounded after their float32
/// weight) keep the ops.
#[test]
fn the_residual_norm_kernels_arithmetic_gives_the_conversation_of_the_ops() {
    use wax_worker::model::{StepAttention, StepNorm, StepPrep};
    for name in FAMILIES {
        let mut model = load(name);
        assert_eq!(model.step_norm(), StepNorm::Ops, "{name}: default");
        model.set_step_norm(StepNorm::Reference);
        let fused = model.step_norm_in_use() == StepNorm::Reference;
        let fusable = !matches!(name, "gpt_neox" | "olmo2" | "gpt_oss");
        assert_eq!(fused, fusable, "{name}: where the fused layers apply");
        for case in ["unsteered", "steered between adds and norms", "steered"] {
            let steer_for = |model: &Model| match case {
                "unsteered" => Vec::new(),
                "steered" => steering(model, 4),
                _ => steering_between_adds(model, 4),
            };
            model.set_step_norm(StepNorm::Ops);
            let (a1, b1, len1) = steered_conversation(&model, Decode::Static, steer_for(&model));
            model.set_step_norm(StepNorm::Reference);
            let (a2, b2, len2) = steered_conversation(&model, Decode::Static, steer_for(&model));
            let what = |turn: &str| format!("{case}, {turn}");
            assert_same(name, &what("turn 1 (top-p)"), &a1, &a2, 1e-2);
            assert_same(name, &what("turn 2"), &b1, &b2, 1e-4);
            assert_eq!(len1, len2, "{name}: positions after two turns");
            model.set_step_prep(StepPrep::Reference);
            model.set_step_attention(StepAttention::Reference);
            let (a3, b3, _) = steered_conversation(&model, Decode::Static, steer_for(&model));
            assert_same(name, &what("all three kernels, turn 1 (top-p)"), &a1, &a3, 1e-2);
            assert_same(name, &what("all three kernels, turn 2"), &b1, &b3, 1e-4);
            model.set_step_prep(StepPrep::Ops);
            model.set_step_attention(StepAttention::Sdpa);
        }
    }
}

/// In bfloat16 the fused adds and norms round as libtorch's ops round: one step's logits agree
/// with the ops' (only the norms' float32 sum order and `rsqrt` differ).
#[test]
fn the_residual_norm_kernels_arithmetic_rounds_bfloat16_as_the_ops_do() {
    use wax_worker::model::StepNorm;
    for name in ["qwen3", "llama", "qwen2"] {
        let mut model = load_bf16(name);
        let (ops, _) = bf16_step(&model);
        model.set_step_norm(StepNorm::Reference);
        let (kernel, _) = bf16_step(&model);
        let (diff, scale) = logit_gap(&kernel, &ops);
        assert!(diff <= 0.02 * scale, "{name}: max |Δlogit| {diff} of {scale}");
    }
}

/// A bfloat16 model's decode loop with its logits kept in bfloat16 (`StepLogits::Model`: the
/// step writes them without widening; the sampler widens them) draws exactly what it draws with
/// float32 logits, over two turns with per-step allowed sets and stops.
#[test]
fn bfloat16_logits_in_the_decode_loop_draw_what_float32_logits_draw() {
    use wax_worker::model::StepLogits;
    for name in ["qwen3", "llama"] {
        let mut model = load_bf16(name);
        assert_eq!(model.step_logits_kind(), Kind::Float, "{name}: default");
        let (a1, b1, len1) = conversation(&model, Decode::Static);
        model.set_step_logits(StepLogits::Model);
        assert_eq!(model.step_logits_kind(), Kind::BFloat16);
        let (a2, b2, len2) = conversation(&model, Decode::Static);
        for (x, y, turn) in [(&a1, &a2, "turn 1"), (&b1, &b2, "turn 2")] {
            assert_eq!(x.tokens, y.tokens, "{name} {turn}: tokens");
            assert_eq!(x.logprobs, y.logprobs, "{name} {turn}: log-probs");
            assert_eq!(x.stopped, y.stopped, "{name} {turn}: stops");
        }
        assert_eq!(len1, len2);
    }
}
