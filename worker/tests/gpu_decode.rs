//! GPU checks of the fast decode path (run by scripts/device/decode_check.sh on the GPU machine;
//! skipped unless `WAX_GPU_TESTS=1` and libtorch sees CUDA):
//!
//! - the fused sampler kernel draws the same tokens as the libtorch sampler on the same logits,
//!   with the same log-probs, over temperatures, top-p values, allowed sets and flat or peaked
//!   rows;
//! - decoding through captured CUDA graphs gives the tokens of the op-by-op loop (greedy, fp32),
//!   across a 128-slot window boundary, and a second turn continues from the same state; the
//!   same with the session steered (the paper's assistant-turn steering, and a scope that starts
//!   mid-decode);
//! - packed q/k/v and gate/up matmuls give the logits of the separate ones, and a batch without
//!   padding (plain causal attention, grouped heads in the kernel) the logits of the masked path;
//! - the split-K decode-attention kernels give what their host algorithm and libtorch's SDPA give
//!   (float32 and bfloat16, several head and group sizes, windows of one to four chunks, padded
//!   rows); the q/k preparation kernel gives the logits and cached keys of the ops and of its
//!   host arithmetic; the residual-norm kernel gives its host arithmetic bit for bit and the
//!   ops' values closely, alone and in the step; decoding through CUDA graphs with all three
//!   gives the tokens of the eager loop.
//!
//! The model is `WAX_GPU_TEST_MODEL` (a local snapshot; the device script makes a random-init
//! Qwen3-0.6B-shaped one).

use tch::{Device, Kind, Tensor};
use wax_worker::generate::{
    Chunk, Decode, GenerateOptions, Generation, Sampling, Session, SteerSpec, sample_at,
    sample_reference,
};
use wax_worker::model::{
    ForwardInput, HookPoint, Hooks, LayerSite, Model, Packing, SteerScope, TokenRole,
};

fn gpu() -> Option<Device> {
    if std::env::var("WAX_GPU_TESTS").is_ok_and(|v| v == "1") && tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        eprintln!("skipped: set WAX_GPU_TESTS=1 on a machine where libtorch sees CUDA");
        None
    }
}

/// The GPU and the test model (`WAX_GPU_TEST_MODEL`) loaded on it in float32, if both exist.
fn gpu_model() -> Option<(Device, Model)> {
    let dev = gpu()?;
    let Ok(dir) = std::env::var("WAX_GPU_TEST_MODEL") else {
        eprintln!("skipped: WAX_GPU_TEST_MODEL is not set");
        return None;
    };
    Some((dev, Model::load(std::path::Path::new(&dir), dev, Kind::Float).unwrap()))
}

fn to_vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_device(Device::Cpu)).unwrap()
}

fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Float)).unwrap()
}

#[test]
fn fused_sampler_draws_what_the_libtorch_sampler_draws() {
    let Some(dev) = gpu() else { return };
    let _guard = tch::no_grad_guard();
    tch::manual_seed(11);
    let (rows, vocab) = (512i64, 151_936i64);
    let seeds = Tensor::arange(rows, (Kind::Int64, dev)) * 7919 + 5;
    let mask = Tensor::rand([vocab], (Kind::Float, dev)).lt(0.3);
    let one = Tensor::zeros([vocab], (Kind::Bool, dev)).index_fill(
        0,
        &Tensor::from_slice(&[77i64]).to_device(dev),
        1,
    );
    let mut report = Vec::new();
    for scale in [0.1f64, 1.0, 4.0, 12.0] {
        let logits = Tensor::randn([rows, vocab], (Kind::Float, dev)) * scale;
        for (t, p) in [(1.0, None), (1.0, Some(0.95)), (0.7, Some(0.5)), (1.3, Some(0.999))] {
            let sampling = Sampling { temperature: t, top_k: None, top_p: p };
            for (name, allowed) in [("any", None), ("mask", Some(&mask)), ("one", Some(&one))] {
                for step in [0i64, 3] {
                    let at = Tensor::from_slice(&[step]).to_device(dev);
                    let got = sample_at(&logits, &sampling, allowed, &seeds, &at);
                    let want = sample_reference(&logits, &sampling, allowed, &seeds, &at);
                    // The step as a host scalar (the op-by-op loop's form) draws the same.
                    let host =
                        sample_reference(&logits, &sampling, allowed, &seeds, &Tensor::from(step));
                    assert!(host.tokens.equal(&want.tokens), "host-side step {step}");
                    let (g, w) = (to_vec_i64(&got.tokens), to_vec_i64(&want.tokens));
                    let (gl, wl) = (to_vec_f32(&got.logprobs), to_vec_f32(&want.logprobs));
                    let same = g.iter().zip(&w).filter(|(a, b)| a == b).count();
                    let lp = g
                        .iter()
                        .zip(&w)
                        .zip(gl.iter().zip(&wl))
                        .filter(|((a, b), _)| a == b)
                        .map(|(_, (x, y))| (x - y).abs())
                        .fold(0f32, f32::max);
                    let line = format!(
                        "scale {scale} T {t} top_p {p:?} {name} step {step}: {same}/{rows} \
                         tokens agree, max |Δ log-prob| {lp:.2e}"
                    );
                    eprintln!("{line}");
                    assert!(same as f64 >= 0.998 * rows as f64, "{line}");
                    assert!(lp < 1e-3, "{line}");
                    if name == "one" {
                        assert!(g.iter().all(|&x| x == 77), "{line}: only token 77 is allowed");
                    }
                    report.push(line);
                }
            }
        }
    }
    if let Ok(dir) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{dir}/fused_sampler.txt"), report.join("\n") + "\n");
    }
}

/// The fused sampler's bfloat16 variant draws from bfloat16 logits exactly what the float32
/// kernel and the libtorch sampler draw from their float32 copy: the same tokens and bit-identical
/// log-probabilities, over vocabularies on both sides of libtorch's softmax kernels (rows whose
/// float32 copies are misaligned included), temperatures, top-p and masks.
#[test]
fn fused_sampler_reads_bfloat16_logits_as_their_float32_copy() {
    let Some(dev) = gpu() else { return };
    let _guard = tch::no_grad_guard();
    tch::manual_seed(13);
    let rows = 96i64;
    let seeds = Tensor::arange(rows, (Kind::Int64, dev)) * 104_729 - 31;
    let mut report = Vec::new();
    for vocab in [151_936i64, 10_000, 9_001, 2_048, 1_000, 7] {
        let mask = Tensor::rand([vocab], (Kind::Float, dev)).lt(0.5);
        let _ = mask.narrow(0, 0, 1).fill_(1);
        for scale in [0.3f64, 3.0] {
            let bf16 =
                (Tensor::randn([rows, vocab], (Kind::Float, dev)) * scale).to_kind(Kind::BFloat16);
            let f32 = bf16.to_kind(Kind::Float);
            for (t, p) in [(1.0, None), (1.0, Some(0.95)), (0.6, Some(0.3))] {
                let sampling = Sampling { temperature: t, top_k: None, top_p: p };
                for (name, allowed) in [("any", None), ("mask", Some(&mask))] {
                    let at = Tensor::from_slice(&[5i64]).to_device(dev);
                    let got = sample_at(&bf16, &sampling, allowed, &seeds, &at);
                    let f32_kernel = sample_at(&f32, &sampling, allowed, &seeds, &at);
                    let want = sample_reference(&f32, &sampling, allowed, &seeds, &at);
                    let bits = |t: &Tensor| {
                        to_vec_f32(t).iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
                    };
                    let tokens = to_vec_i64(&got.tokens);
                    let same_kernel = tokens == to_vec_i64(&f32_kernel.tokens)
                        && bits(&got.logprobs) == bits(&f32_kernel.logprobs);
                    let same_ops = tokens
                        .iter()
                        .zip(&to_vec_i64(&want.tokens))
                        .filter(|(a, b)| a == b)
                        .count();
                    let line = format!(
                        "vocab {vocab} scale {scale} T {t} top_p {p:?} {name}: bf16 kernel = f32 \
                         kernel bit for bit: {same_kernel}; tokens as libtorch's {same_ops}/{rows}"
                    );
                    eprintln!("{line}");
                    assert!(same_kernel, "{line}");
                    assert!(same_ops as f64 >= 0.99 * rows as f64, "{line}");
                    report.push(line);
                }
            }
        }
    }
    if let Ok(dir) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{dir}/fused_sampler_bf16.txt"), report.join("\n") + "\n");
    }
}

fn two_turns(model: &Model, decode: Decode, rows: usize) -> (Generation, Generation) {
    steered_two_turns(model, decode, rows, Vec::new())
}

fn steered_two_turns(
    model: &Model,
    decode: Decode,
    rows: usize,
    steering: Vec<SteerSpec>,
) -> (Generation, Generation) {
    let vocab = model.config().vocab_size;
    let seeds: Vec<u64> = (0..rows as u64).collect();
    let prompts: Vec<Chunk> = (0..rows as i64)
        .map(|r| {
            let toks =
                (0..100 + r % 7).map(|i| (i * 7919 + r * 104_729) % (vocab - 1) + 1).collect();
            Chunk::uniform(toks, TokenRole::Prompt)
        })
        .collect();
    let mut s = Session::new(model, &seeds, 200, steering).unwrap();
    s.append(&prompts).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 40,
        sampling: Sampling::GREEDY,
        check_every: 0,
        decode,
        ..Default::default()
    };
    let a = s.generate(&opts).unwrap();
    let next: Vec<Chunk> =
        (0..rows).map(|_| Chunk::uniform(vec![11, 12, 13], TokenRole::Prompt)).collect();
    s.append(&next).unwrap();
    let b = s.generate(&GenerateOptions { max_new_tokens: 20, ..opts }).unwrap();
    (a, b)
}

#[test]
fn graph_decode_gives_the_tokens_of_the_eager_loop() {
    let Some((_, model)) = gpu_model() else { return };
    let _guard = tch::no_grad_guard();
    let rows = 32;
    let (e1, e2) = two_turns(&model, Decode::Eager, rows);
    let (g1, g2) = two_turns(&model, Decode::Graph, rows);
    let same1 = e1.tokens.iter().zip(&g1.tokens).filter(|(a, b)| a == b).count();
    let same2 = e2.tokens.iter().zip(&g2.tokens).filter(|(a, b)| a == b).count();
    let line = format!(
        "greedy fp32, {rows} rows: turn 1 (40 tokens, crossing slot 128) {same1}/{rows} rows \
         identical, turn 2 {same2}/{rows}"
    );
    eprintln!("{line}");
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/graph_vs_eager.txt"), line.clone() + "\n");
    }
    // Argmax over a random-init model's nearly flat logits can flip on rounding-level
    // differences (the graph step attends over a 128-slot window); a broken graph (stale
    // addresses, a wrong slot) diverges on every row.
    assert!(same1 * 10 >= rows * 9, "{line}");
    assert!(same2 * 10 >= rows * 9, "{line}");
}

#[test]
fn steered_graph_decode_gives_the_tokens_of_the_steered_eager_loop() {
    let Some((dev, model)) = gpu_model() else { return };
    let _guard = tch::no_grad_guard();
    let rows = 32;
    let c = model.config();
    let steering = || {
        tch::manual_seed(5);
        let v = Tensor::randn([c.hidden_size], (Kind::Float, dev));
        let u = Tensor::randn([c.hidden_size], (Kind::Float, dev));
        let l = c.num_layers as usize * 2 / 3;
        vec![
            SteerSpec {
                point: HookPoint::layer(l, LayerSite::ResidPost),
                vector: v,
                alpha: 4.0,
                scope: SteerScope::AssistantTurns,
            },
            SteerSpec {
                point: HookPoint::layer(l / 2, LayerSite::ResidMid),
                vector: u,
                alpha: 2.0,
                scope: SteerScope::FromIndex(120),
            },
        ]
    };
    let (e1, e2) = steered_two_turns(&model, Decode::Eager, rows, steering());
    let (g1, g2) = steered_two_turns(&model, Decode::Graph, rows, steering());
    let (p1, _) = two_turns(&model, Decode::Graph, rows);
    let same1 = e1.tokens.iter().zip(&g1.tokens).filter(|(a, b)| a == b).count();
    let same2 = e2.tokens.iter().zip(&g2.tokens).filter(|(a, b)| a == b).count();
    let plain = p1.tokens.iter().zip(&g1.tokens).filter(|(a, b)| a == b).count();
    let line = format!(
        "steered greedy fp32, {rows} rows: graph vs eager turn 1 {same1}/{rows} rows identical, \
         turn 2 {same2}/{rows}; unsteered graph vs steered graph {plain}/{rows}"
    );
    eprintln!("{line}");
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/steered_graph_vs_eager.txt"), line.clone() + "\n");
    }
    assert!(same1 * 10 >= rows * 9, "{line}");
    assert!(same2 * 10 >= rows * 9, "{line}");
    assert!(plain < rows, "steering changed no row: {line}");
}

#[test]
fn packed_projections_and_causal_prefill_agree_with_the_general_path() {
    let Some((dev, mut model)) = gpu_model() else { return };
    let _guard = tch::no_grad_guard();
    assert_eq!(model.packing(), Packing { qkv: true, mlp: true }, "the CUDA default");
    let vocab = model.config().vocab_size;
    // Four rows of 48 tokens; row r has r·5 left pads.
    let (rows, len) = (4i64, 48i64);
    let ids = Tensor::from_slice(
        &(0..rows * len).map(|i| (i * 7919) % (vocab - 1) + 1).collect::<Vec<i64>>(),
    )
    .view([rows, len]);
    let col = Tensor::arange(len, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let pads = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 5).unsqueeze(1);
    let mask = col.ge_tensor(&pads);
    let positions = (&col - &pads).clamp_min(0);
    let input = |rows: &[i64]| {
        let pick = |t: &Tensor| t.index_select(0, &Tensor::from_slice(rows)).to_device(dev);
        ForwardInput {
            input_ids: pick(&ids),
            positions: pick(&positions),
            attention_mask: pick(&mask),
        }
    };
    let all = input(&[0, 1, 2, 3]);
    let forward = |m: &Model, i: &ForwardInput| m.forward(i, None, &mut Hooks::new()).unwrap();
    let packed = forward(&model, &all);
    model.set_packing(Packing { qkv: false, mlp: false });
    let separate = forward(&model, &all);
    let real = mask.to_device(dev).unsqueeze(-1);
    let diff = (&packed - &separate).abs().masked_fill(&real.logical_not(), 0.0).max();
    let diff = diff.double_value(&[]);
    // Row 0 alone has no padding: plain causal attention instead of the masked kernel.
    let causal = forward(&model, &input(&[0]));
    let diff_causal = (&causal - separate.narrow(0, 0, 1)).abs().max().double_value(&[]);
    let line = format!(
        "fp32: packed vs separate projections max |Δ logit| {diff:.2e}; causal prefill vs masked \
         {diff_causal:.2e}"
    );
    eprintln!("{line}");
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/packed_causal.txt"), line.clone() + "\n");
    }
    assert!(diff <= 1e-3 && diff_causal <= 1e-3, "{line}");
}

/// Host copy of a CUDA tensor as float32 values.
fn host_f32(t: &Tensor) -> Vec<f32> {
    to_vec_f32(&t.contiguous().view([-1]))
}

#[test]
fn decode_attention_kernels_match_their_algorithm_and_sdpa() {
    use wax_kernels::decode_attn::{
        AttnArgs, AttnShape, DecodeAttention, HostAttn, reference, splits,
    };
    let Some(dev) = gpu() else { return };
    let _guard = tch::no_grad_guard();
    tch::manual_seed(3);
    let (b, kv_heads, capacity) = (5i64, 3i64, 300i64);
    let mut report = Vec::new();
    for (hd, group, bf16) in
        // Layouts: groups of 8, 16 and 32 lanes with vector loads, 32 with scalar loads (80), one
        // lane per slot (16), and the capped 32 lanes of (256, 8).
        [
            (128, 2, true),
            (128, 2, false),
            (64, 1, false),
            (80, 8, true),
            (128, 4, true),
            (128, 8, false),
            (16, 1, false),
            (256, 8, true),
        ]
    {
        let shape = AttnShape { head_dim: hd, group, bf16 };
        let kernel = DecodeAttention::new(0, shape).unwrap();
        let kind = if bf16 { Kind::BFloat16 } else { Kind::Float };
        let (hd, heads) = (hd as i64, kv_heads * group as i64);
        let keys = Tensor::randn([b, kv_heads, capacity, hd], (Kind::Float, dev)).to_kind(kind);
        let values = Tensor::randn([b, kv_heads, capacity, hd], (Kind::Float, dev)).to_kind(kind);
        // Row r: r·9 left pads and a pad wherever j % 11 == 4.
        let j = Tensor::arange(capacity, (Kind::Int64, dev)).unsqueeze(0);
        let first = (Tensor::arange(b, (Kind::Int64, dev)) * 9).unsqueeze(1);
        let real = j.ge_tensor(&first).logical_and(&j.remainder(11).ne(4)).contiguous();
        for (view, slot) in [(64i64, 0i64), (64, 63), (128, 64), (128, 100), (256, 255), (256, 130)]
        {
            let q = (Tensor::randn([b, heads, 1, hd], (Kind::Float, dev)) * 2.0).to_kind(kind);
            let slot_t = Tensor::from_slice(&[slot]).to_device(dev);
            let out = Tensor::zeros([b, heads, 1, hd], (kind, dev));
            let n = splits(view as usize) as i64;
            let acc = Tensor::zeros([b, heads, n, hd], (Kind::Float, dev));
            let ml = Tensor::zeros([b, heads, n, 2], (Kind::Float, dev));
            let scale = 1.0 / (hd as f32).sqrt();
            let p = |t: &Tensor| t.data_ptr() as u64;
            let args = AttnArgs {
                q: p(&q),
                keys: p(&keys),
                values: p(&values),
                real: p(&real),
                slot: p(&slot_t),
                part_acc: p(&acc),
                part_ml: p(&ml),
                out: p(&out),
                batch: b as usize,
                kv_heads: kv_heads as usize,
                capacity: capacity as usize,
                real_stride: capacity as usize,
                view: view as usize,
                scale,
            };
            // SAFETY: contiguous CUDA tensors of the documented shapes and kinds, alive until the
            // host copies below synchronise; libtorch's default stream is the legacy stream 0.
            unsafe { kernel.launch(0, &args) }.unwrap();
            let got = host_f32(&out);
            let real_host = Vec::<bool>::try_from(&real.to_device(Device::Cpu).view([-1])).unwrap();
            let (qh, kh, vh) = (host_f32(&q), host_f32(&keys), host_f32(&values));
            let want = reference(&HostAttn {
                shape,
                q: &qh,
                keys: &kh,
                values: &vh,
                real: &real_host,
                slot,
                batch: b as usize,
                kv_heads: kv_heads as usize,
                capacity: capacity as usize,
                real_stride: capacity as usize,
                view: view as usize,
                scale,
            })
            .unwrap();
            // SDPA over the window with the decode step's mask, grouped heads repeated.
            let jv = Tensor::arange(view, (Kind::Int64, dev)).unsqueeze(0);
            let mask = real
                .narrow(1, 0, view)
                .logical_or(&jv.eq(slot))
                .logical_and(&jv.le(slot))
                .view([b, 1, 1, view]);
            let rep =
                |t: &Tensor| t.narrow(2, 0, view).repeat_interleave_self_int(group as i64, 1, None);
            let sdpa = Tensor::scaled_dot_product_attention(
                &q,
                &rep(&keys),
                &rep(&values),
                Some(&mask),
                0.0,
                false,
                None,
                false,
            );
            let sdpa = host_f32(&sdpa);
            // error / tolerance, tolerance `rel·|want| + abs`. Against the algorithm only the
            // summation order differs (and, in bfloat16, the output's rounding: ≤ 2^-9
            // relative); SDPA rounds its own output too (two roundings apart: ≤ 2^-8).
            let worst = |x: &[f32], y: &[f32], (rel, abs): (f32, f32)| {
                x.iter()
                    .zip(y)
                    .map(|(a, c)| (a - c).abs() / (rel * c.abs() + abs))
                    .fold(0f32, f32::max)
            };
            let (tol_ref, tol_sdpa) =
                if bf16 { ((4e-3, 1e-4), (1.6e-2, 4e-3)) } else { ((1e-5, 1e-5), (1e-4, 1e-4)) };
            let (vs_ref, vs_sdpa) = (worst(&got, &want, tol_ref), worst(&got, &sdpa, tol_sdpa));
            let line = format!(
                "{shape:?} view {view} slot {slot}: error/tolerance vs algorithm {vs_ref:.3}, vs \
                 SDPA {vs_sdpa:.3}"
            );
            eprintln!("{line}");
            report.push(line.clone());
            assert!(vs_ref <= 1.0 && vs_sdpa <= 1.0, "{line}");
        }
    }
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/decode_attention.txt"), report.join("\n") + "\n");
    }
}

#[test]
fn graph_decode_with_the_decode_kernels_gives_the_tokens_of_the_eager_loop() {
    use wax_worker::model::{StepAttention, StepNorm, StepPrep};
    let Some((_, mut model)) = gpu_model() else { return };
    let _guard = tch::no_grad_guard();
    let rows = 32;
    let (e1, e2) = two_turns(&model, Decode::Eager, rows);
    model.set_step_attention(StepAttention::Kernel);
    model.set_step_prep(StepPrep::Kernel);
    model.set_step_norm(StepNorm::Kernel);
    assert_eq!(model.step_attention_in_use(), StepAttention::Kernel);
    assert_eq!(model.step_prep_in_use(), StepPrep::Kernel);
    assert_eq!(model.step_norm_in_use(), StepNorm::Kernel);
    let (k1, k2) = two_turns(&model, Decode::Graph, rows);
    let same1 = e1.tokens.iter().zip(&k1.tokens).filter(|(a, b)| a == b).count();
    let same2 = e2.tokens.iter().zip(&k2.tokens).filter(|(a, b)| a == b).count();
    let line = format!(
        "greedy fp32, attention, q/k preparation and residual-norm kernels in CUDA graphs, \
         {rows} rows: turn 1 \
         (crossing slot 128) {same1}/{rows} rows identical to the eager loop, turn 2 \
         {same2}/{rows}"
    );
    eprintln!("{line}");
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/kernel_graph_vs_eager.txt"), line.clone() + "\n");
    }
    assert!(same1 * 10 >= rows * 9, "{line}");
    assert!(same2 * 10 >= rows * 9, "{line}");
}

/// One graph-ready decode step of 6 rows after a 37-token prefill on `dev`: the logits and the
/// first layer's keys of the new token (float32).
fn one_step_after_prefill(model: &Model, dev: Device) -> (Tensor, Tensor) {
    use wax_worker::model::{LogitsSelect, StepInput};
    let vocab = model.config().vocab_size;
    let (b, t, cap) = (6i64, 37i64, 64i64);
    let ids =
        Tensor::from_slice(&(0..b * t).map(|i| (i * 7919) % (vocab - 1) + 1).collect::<Vec<i64>>())
            .view([b, t])
            .to_device(dev);
    let prefill = ForwardInput {
        input_ids: ids,
        positions: Tensor::arange(t, (Kind::Int64, dev)).repeat([b, 1]),
        attention_mask: Tensor::ones([b, t], (Kind::Bool, dev)),
    };
    let next = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([b, 1]).to_device(dev);
    let pos = (Tensor::ones([b, 1], (Kind::Int64, dev)) * t).to_device(dev);
    let real = Tensor::zeros([b, cap], (Kind::Bool, dev));
    let _ = real.narrow(1, 0, t + 1).fill_(1);
    let slot = Tensor::from_slice(&[t]).to_device(dev);
    let mut cache = model.new_cache(b, cap).unwrap();
    let _ = model
        .forward_select(&prefill, Some(&mut cache), &mut Hooks::new(), LogitsSelect::Last)
        .unwrap();
    let input = StepInput {
        ids: &next,
        positions: &pos,
        real: &real,
        slot: &slot,
        view: cap,
        steering: &[],
    };
    let logits = model.forward_step(&input, &cache).unwrap();
    (logits, cache.keys_of(0).narrow(2, t, 1).to_kind(Kind::Float))
}

#[test]
fn qk_prep_kernel_gives_the_step_of_the_ops_and_of_its_host_arithmetic() {
    use wax_worker::model::StepPrep;
    let Some(dev) = gpu() else { return };
    let Ok(dir) = std::env::var("WAX_GPU_TEST_MODEL") else { return };
    let _guard = tch::no_grad_guard();
    let mut report = Vec::new();
    for kind in [Kind::Float, Kind::BFloat16] {
        let mut model = Model::load(std::path::Path::new(&dir), dev, kind).unwrap();
        let step = |model: &Model| one_step_after_prefill(model, dev);
        let (ops, ops_k) = step(&model);
        model.set_step_prep(StepPrep::Kernel);
        assert_eq!(model.step_prep_in_use(), StepPrep::Kernel, "{kind:?}");
        let (kern, kern_k) = step(&model);
        model.set_step_prep(StepPrep::Reference);
        let (host, host_k) = step(&model);
        let diff = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]);
        let same = |x: &Tensor, y: &Tensor| {
            x.eq_tensor(y).to_kind(Kind::Float).mean(None).double_value(&[])
        };
        let scale = ops.abs().max().double_value(&[]);
        let line = format!(
            "{kind:?}: max |Δlogit| kernel vs ops {:.2e}, vs host arithmetic {:.2e} (logits up to \
             {scale:.1}); new keys bit-identical: kernel vs ops {:.4}, vs host {:.4}",
            diff(&kern, &ops),
            diff(&kern, &host),
            same(&kern_k, &ops_k),
            same(&kern_k, &host_k)
        );
        eprintln!("{line}");
        report.push(line.clone());
        let tol = if kind == Kind::Float { 1e-3 } else { 0.02 * scale };
        assert!(diff(&kern, &ops) <= tol && diff(&kern, &host) <= tol, "{line}");
        assert!(same(&kern_k, &ops_k) >= 0.98 && same(&kern_k, &host_k) >= 0.98, "{line}");
    }
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/qk_prep.txt"), report.join("\n") + "\n");
    }
}

#[test]
fn residual_norm_kernel_matches_its_host_arithmetic_bit_for_bit_and_the_ops_closely() {
    use wax_kernels::resid_norm::{NormArgs, NormShape, ResidNorm, reference};
    let Some(dev) = gpu() else { return };
    let _guard = tch::no_grad_guard();
    tch::manual_seed(5);
    let rows = 37i64;
    let mut report = Vec::new();
    // Qwen3-0.6B / 4B / 8B widths, an odd one, the largest; with and without an addend; the
    // stream read through a row stride (every other row of a wider tensor).
    for (width, bf16) in [(1024, true), (1024, false), (2560, true), (4096, true), (33, false)]
        .into_iter()
        .chain([(wax_kernels::resid_norm::MAX_WIDTH, true)])
    {
        let shape = NormShape { width, bf16 };
        let kernel = ResidNorm::new(0, shape).unwrap();
        let kind = if bf16 { Kind::BFloat16 } else { Kind::Float };
        let w = width as i64;
        let wide = (Tensor::randn([rows, 2 * w], (Kind::Float, dev)) * 3.0).to_kind(kind);
        let x = wide.narrow(1, 0, w);
        let a = (Tensor::randn([rows, w], (Kind::Float, dev)) * 2.0).to_kind(kind);
        let weight = (Tensor::rand([w], (Kind::Float, dev)) + 0.5).to_kind(kind);
        let eps = 1e-6f32;
        for add in [true, false] {
            let sum = Tensor::zeros([rows, w], (kind, dev));
            let normed = Tensor::zeros([rows, w], (kind, dev));
            let p = |t: &Tensor| t.data_ptr() as u64;
            let args = NormArgs {
                x: p(&x),
                x_row: x.stride()[0],
                a: if add { p(&a) } else { 0 },
                a_row: w,
                weight: p(&weight),
                eps,
                rows: rows as usize,
                sum_out: if add { p(&sum) } else { 0 },
                normed: p(&normed),
            };
            // SAFETY: CUDA tensors of the documented shapes and kinds (x read through its row
            // stride), alive until the host copies below synchronise; libtorch's default stream
            // is the legacy stream 0.
            unsafe { kernel.launch(0, &args) }.unwrap();
            let (xh, ah, wh) = (host_f32(&x), host_f32(&a), host_f32(&weight));
            let (mut want_s, mut want_n) = (Vec::new(), Vec::new());
            for r in 0..rows as usize {
                let row = &xh[r * width..(r + 1) * width];
                let addend = add.then(|| &ah[r * width..(r + 1) * width]);
                let (s, n) = reference(shape, row, addend, &wh, eps);
                want_s.extend(s);
                want_n.extend(n);
            }
            let got_n = host_f32(&normed);
            let same_n = got_n.iter().zip(&want_n).filter(|(g, h)| g.to_bits() == h.to_bits());
            let same_n = same_n.count() as f64 / got_n.len() as f64;
            let same_s = if add {
                let got_s = host_f32(&sum);
                got_s.iter().zip(&want_s).filter(|(g, h)| g.to_bits() == h.to_bits()).count() as f64
                    / got_s.len() as f64
            } else {
                1.0
            };
            // libtorch: the add, then Norm::forward's `w * rms_norm(s)`.
            let s_ops = if add { &x + &a } else { x.copy() };
            let n_ops = &weight * s_ops.rms_norm([w], None::<&Tensor>, eps as f64);
            let ops = host_f32(&n_ops);
            let worst = ops
                .iter()
                .zip(&got_n)
                .map(|(o, g)| (o - g).abs() / (o.abs() * if bf16 { 1.6e-2 } else { 1e-5 } + 1e-5))
                .fold(0f32, f32::max);
            let line = format!(
                "{shape:?} addend {add}: bit-identical to the host arithmetic: sums {same_s:.4}, \
                 normed {same_n:.4}; vs libtorch's ops error/tolerance {worst:.3}"
            );
            eprintln!("{line}");
            report.push(line.clone());
            assert!(same_s == 1.0 && same_n == 1.0, "{line}");
            assert!(worst <= 1.0, "{line}");
        }
    }
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/resid_norm.txt"), report.join("\n") + "\n");
    }
}

#[test]
fn residual_norm_kernel_gives_the_step_of_the_ops() {
    use wax_worker::model::StepNorm;
    let Some(dev) = gpu() else { return };
    let Ok(dir) = std::env::var("WAX_GPU_TEST_MODEL") else { return };
    let _guard = tch::no_grad_guard();
    let mut report = Vec::new();
    for kind in [Kind::Float, Kind::BFloat16] {
        let mut model = Model::load(std::path::Path::new(&dir), dev, kind).unwrap();
        let step = |model: &Model| one_step_after_prefill(model, dev).0;
        let ops = step(&model);
        model.set_step_norm(StepNorm::Kernel);
        assert_eq!(model.step_norm_in_use(), StepNorm::Kernel, "{kind:?}");
        let kern = step(&model);
        model.set_step_norm(StepNorm::Reference);
        let host = step(&model);
        let diff = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]);
        let scale = ops.abs().max().double_value(&[]);
        let line = format!(
            "{kind:?}: max |Δlogit| kernel vs ops {:.2e}, vs host arithmetic {:.2e} (logits up to \
             {scale:.1})",
            diff(&kern, &ops),
            diff(&kern, &host)
        );
        eprintln!("{line}");
        report.push(line.clone());
        let tol = if kind == Kind::Float { 1e-3 } else { 0.02 * scale };
        assert!(diff(&kern, &ops) <= tol && diff(&kern, &host) <= tol, "{line}");
    }
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/resid_norm_step.txt"), report.join("\n") + "\n");
    }
}

/// A bfloat16 model decoding through CUDA graphs with its logits kept in bfloat16 (the fused
/// sampler's bfloat16 variant) draws exactly what it draws with float32 logits: the same tokens
/// and log-probabilities under top-p sampling, over two turns crossing a 128-slot window.
#[test]
fn graph_decode_with_bfloat16_logits_draws_what_float32_logits_draw() {
    use wax_worker::model::StepLogits;
    let Some(dev) = gpu() else { return };
    let Ok(dir) = std::env::var("WAX_GPU_TEST_MODEL") else { return };
    let _guard = tch::no_grad_guard();
    let mut model = Model::load(std::path::Path::new(&dir), dev, Kind::BFloat16).unwrap();
    let rows = 48usize;
    let vocab = model.config().vocab_size;
    let run = |model: &Model| {
        let seeds: Vec<u64> = (0..rows as u64).map(|r| r * 31 + 7).collect();
        let prompts: Vec<Chunk> = (0..rows as i64)
            .map(|r| {
                let toks = (0..90 + r % 5).map(|i| (i * 6007 + r * 7919) % (vocab - 1) + 1);
                Chunk::uniform(toks.collect(), TokenRole::Prompt)
            })
            .collect();
        let mut s = Session::new(model, &seeds, 200, Vec::new()).unwrap();
        s.append(&prompts).unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 48,
            sampling: Sampling { temperature: 0.8, top_k: None, top_p: Some(0.9) },
            check_every: 0,
            decode: Decode::Graph,
            ..Default::default()
        };
        let a = s.generate(&opts).unwrap();
        assert!(s.last_decode_graphed(), "decoded through CUDA graphs");
        s.append(
            &(0..rows).map(|_| Chunk::uniform(vec![9, 10], TokenRole::Prompt)).collect::<Vec<_>>(),
        )
        .unwrap();
        let b = s.generate(&GenerateOptions { max_new_tokens: 16, ..opts }).unwrap();
        (a, b)
    };
    model.set_step_logits(StepLogits::Float32);
    let (f1, f2) = run(&model);
    model.set_step_logits(StepLogits::Model);
    assert_eq!(model.step_logits_kind(), Kind::BFloat16);
    let (b1, b2) = run(&model);
    let line = format!(
        "bf16 model, top-p 0.9, {rows} rows: tokens with bfloat16 logits equal to float32 logits: \
         turn 1 {}, turn 2 {}",
        f1.tokens == b1.tokens,
        f2.tokens == b2.tokens
    );
    eprintln!("{line}");
    if let Ok(out) = std::env::var("OUT") {
        let _ = std::fs::write(format!("{out}/bf16_logits_graph.txt"), line.clone() + "\n");
    }
    assert_eq!(f1.tokens, b1.tokens, "{line}");
    assert_eq!(f2.tokens, b2.tokens, "{line}");
    assert_eq!(f1.logprobs, b1.logprobs, "{line}");
    assert_eq!(f2.logprobs, b2.logprobs, "{line}");
}
