//! Batched multi-turn generation over the KV cache, checked against plain uncached forwards on the
//! tiny transformers-made fixture models.

#[path = "common/fixtures.rs"]
mod fixtures;

use fixtures::model_dir;
use tch::{Device, Kind, Tensor};
use wax_worker::generate::{
    Allowed, Chunk, GenerateOptions, Generation, Sampling, Session, SteerSpec,
};
use wax_worker::model::{
    ForwardInput, HookPoint, Hooks, LayerSite, Model, SteerScope, Steering, TokenRole,
};

/// GPT-OSS's sliding window (4 tokens) is engaged: every row outgrows it while decoding.
const FAMILIES: [&str; 6] = ["qwen3", "llama", "qwen2", "gpt_neox", "olmo2", "gpt_oss"];

fn load(name: &str) -> Model {
    Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load fixture model")
}

fn prompts() -> Vec<Vec<i64>> {
    vec![vec![5, 17, 42, 9, 100, 3, 77], vec![11, 250], vec![8, 8, 60, 1, 2]]
}

/// Greedy decoding by re-running the whole sequence each step, one row at a time: the
/// reference for the cached, batched, left-padded path.
fn greedy_uncached(model: &Model, prompt: &[i64], new: usize) -> Vec<i64> {
    greedy_uncached_with(model, prompt, new, |_| Hooks::new())
}

/// [`greedy_uncached`] with the hooks `hooks(t)` gives for a sequence of `t` tokens.
fn greedy_uncached_with(
    model: &Model,
    prompt: &[i64],
    new: usize,
    hooks: impl Fn(i64) -> Hooks,
) -> Vec<i64> {
    let mut seq = prompt.to_vec();
    for _ in 0..new {
        let t = seq.len() as i64;
        let input = ForwardInput {
            input_ids: Tensor::from_slice(&seq).view([1, t]),
            positions: Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]),
            attention_mask: Tensor::ones([1, t], (Kind::Bool, Device::Cpu)),
        };
        let logits = model.forward(&input, None, &mut hooks(t)).unwrap();
        seq.push(logits.get(0).get(t - 1).argmax(-1, false).int64_value(&[]));
    }
    seq[prompt.len()..].to_vec()
}

fn session_greedy(model: &Model, prompts: &[Vec<i64>], new: usize) -> Generation {
    let seeds: Vec<u64> = (0..prompts.len() as u64).collect();
    let mut s = Session::new(model, &seeds, 64, Vec::new()).unwrap();
    let chunks: Vec<Chunk> =
        prompts.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect();
    s.append(&chunks).unwrap();
    s.generate(&GenerateOptions {
        max_new_tokens: new,
        sampling: Sampling::GREEDY,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn cached_batched_greedy_equals_uncached_greedy() {
    for name in FAMILIES {
        let model = load(name);
        let got = session_greedy(&model, &prompts(), 12);
        for (i, p) in prompts().iter().enumerate() {
            assert_eq!(got.tokens[i], greedy_uncached(&model, p, 12), "{name}: row {i}");
            assert!(!got.stopped[i]);
        }
    }
}

/// Rows of different lengths are left-padded within each chunk, so after two turns pads sit
/// between real tokens in the cache; positions (and GPT-OSS's sliding window, defined on them)
/// count real tokens only, so every row continues as its unpadded history would.
#[test]
fn multi_turn_continues_from_the_cache_exactly() {
    for name in ["qwen3", "gpt_oss"] {
        multi_turn_continues(name);
    }
}

fn multi_turn_continues(name: &str) {
    let model = load(name);
    let vocab = model.config().vocab_size;
    let stop = 7i64;
    let mut s = Session::new(&model, &[1, 2], 96, Vec::new()).unwrap();
    let first = [vec![5i64, 17, 42], vec![9i64, 100, 3, 77, 12]];
    s.append(
        &first.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect::<Vec<_>>(),
    )
    .unwrap();
    // Turn 1: allowed tokens force "a move" then the stop token, like the maze's action mask.
    let moves = [20i64, 21, 22, 23];
    let opts = GenerateOptions {
        max_new_tokens: 4,
        sampling: Sampling { temperature: 1.0, ..Default::default() },
        allowed: Allowed::PerStep(vec![
            Allowed::only(&moves, vocab, Device::Cpu),
            Allowed::only(&[stop], vocab, Device::Cpu),
        ]),
        stop_tokens: vec![stop],
        check_every: 1,
        ..Default::default()
    };
    let t1 = s.generate(&opts).unwrap();
    for i in 0..2 {
        assert_eq!(t1.tokens[i].len(), 2, "{:?}", t1.tokens[i]);
        assert!(moves.contains(&t1.tokens[i][0]));
        assert_eq!(t1.tokens[i][1], stop);
        assert!(t1.stopped[i]);
        // The stop token was forced: its log-prob under the masked distribution is 0.
        assert!(t1.logprobs[i][1].abs() < 1e-6);
    }
    // Turn 2: a user message of different length per row, then greedy.
    let second = [vec![30i64, 31], vec![32i64, 33, 34, 35]];
    s.append(
        &second.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect::<Vec<_>>(),
    )
    .unwrap();
    let t2 = s
        .generate(&GenerateOptions {
            max_new_tokens: 6,
            sampling: Sampling::GREEDY,
            ..Default::default()
        })
        .unwrap();
    for i in 0..2 {
        let history: Vec<i64> =
            [first[i].clone(), t1.tokens[i].clone(), second[i].clone()].concat();
        assert_eq!(t2.tokens[i], greedy_uncached(&model, &history, 6), "{name}: row {i}");
        assert_eq!(s.lengths()[i], history.len() as i64 + 5, "fed all but the last token");
    }
}

#[test]
fn a_row_samples_the_same_tokens_alone_or_in_a_batch() {
    let model = load("llama");
    let opts = GenerateOptions {
        max_new_tokens: 10,
        sampling: Sampling { temperature: 1.0, top_p: Some(0.9), top_k: Some(50) },
        ..Default::default()
    };
    let ps = prompts();
    let mut batch = Session::new(&model, &[100, 200, 300], 64, Vec::new()).unwrap();
    batch
        .append(
            &ps.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect::<Vec<_>>(),
        )
        .unwrap();
    let all = batch.generate(&opts).unwrap();
    let mut alone = Session::new(&model, &[200], 64, Vec::new()).unwrap();
    alone.append(&[Chunk::uniform(ps[1].clone(), TokenRole::Prompt)]).unwrap();
    let one = alone.generate(&opts).unwrap();
    assert_eq!(all.tokens[1], one.tokens[0]);
    for (a, b) in all.logprobs[1].iter().zip(&one.logprobs[0]) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // A different seed gives a different continuation (10 tokens of a 300-token vocabulary).
    let mut other = Session::new(&model, &[201], 64, Vec::new()).unwrap();
    other.append(&[Chunk::uniform(ps[1].clone(), TokenRole::Prompt)]).unwrap();
    assert_ne!(other.generate(&opts).unwrap().tokens[0], one.tokens[0]);
}

#[test]
fn stop_tokens_end_rows_independently_and_budget_is_respected() {
    let model = load("qwen2");
    // Find what row 0 greedily produces, then declare its third token a stop token.
    let free = session_greedy(&model, &prompts(), 8);
    let stop = free.tokens[0][2];
    let mut s = Session::new(&model, &[0, 1, 2], 64, Vec::new()).unwrap();
    s.append(
        &prompts().iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect::<Vec<_>>(),
    )
    .unwrap();
    let g = s
        .generate(&GenerateOptions {
            max_new_tokens: 8,
            sampling: Sampling::GREEDY,
            stop_tokens: vec![stop],
            check_every: 2,
            ..Default::default()
        })
        .unwrap();
    let first_stop = free.tokens[0].iter().position(|&t| t == stop).unwrap();
    assert_eq!(g.tokens[0], free.tokens[0][..=first_stop]);
    assert!(g.stopped[0]);
    for i in 1..3 {
        let cut = free.tokens[i].iter().position(|&t| t == stop).map_or(8, |p| p + 1);
        assert_eq!(g.tokens[i], free.tokens[i][..cut], "row {i}");
        assert!(g.tokens[i].len() <= 8);
    }
}

#[test]
fn steering_in_generation_zero_alpha_is_identity_and_nonzero_changes_output() {
    let model = load("qwen3");
    let hidden = model.config().hidden_size;
    let v = Tensor::randn([hidden], (Kind::Float, Device::Cpu)) * 4.0;
    let run = |alpha: f64, scope: SteerScope| {
        let steer = vec![SteerSpec {
            point: HookPoint::layer(1, LayerSite::ResidPost),
            vector: v.shallow_clone(),
            alpha,
            scope,
        }];
        let mut s = Session::new(&model, &[3, 4, 5], 64, steer).unwrap();
        let chunks: Vec<Chunk> =
            prompts().iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect();
        s.append(&chunks).unwrap();
        s.generate(&GenerateOptions {
            max_new_tokens: 8,
            sampling: Sampling::GREEDY,
            ..Default::default()
        })
        .unwrap()
    };
    let plain = session_greedy(&model, &prompts(), 8);
    assert_eq!(run(0.0, SteerScope::All), plain);
    // Steering only generated tokens cannot change the first token (it is predicted from the
    // prompt alone), and with a large vector it changes later ones.
    let gen_only = run(8.0, SteerScope::Generated);
    for i in 0..3 {
        assert_eq!(gen_only.tokens[i][0], plain.tokens[i][0], "row {i}");
    }
    assert_ne!(gen_only.tokens, plain.tokens);
    assert_ne!(run(8.0, SteerScope::All).tokens, plain.tokens);
}

#[test]
fn steered_generation_matches_uncached_steered_decoding() {
    let _guard = tch::no_grad_guard();
    for name in ["qwen3", "gpt_neox", "gpt_oss"] {
        let model = load(name);
        let hidden = model.config().hidden_size;
        let v = Tensor::randn([hidden], (Kind::Float, Device::Cpu)) * 3.0;
        let point = HookPoint::layer(0, LayerSite::ResidMid);
        let steer = vec![SteerSpec {
            point,
            vector: v.shallow_clone(),
            alpha: 2.0,
            scope: SteerScope::All,
        }];
        let mut s = Session::new(&model, &[3, 4, 5], 64, steer).unwrap();
        let chunks: Vec<Chunk> =
            prompts().iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect();
        s.append(&chunks).unwrap();
        let g = s
            .generate(&GenerateOptions {
                max_new_tokens: 10,
                sampling: Sampling::GREEDY,
                ..Default::default()
            })
            .unwrap();
        let plain = session_greedy(&model, &prompts(), 10);
        assert_ne!(g.tokens, plain.tokens, "{name}: the steering vector must matter here");
        for (i, p) in prompts().iter().enumerate() {
            // Steering at every position of the whole sequence, recomputed from scratch.
            let want = greedy_uncached_with(&model, p, 10, |t| {
                let mut hooks = Hooks::new();
                hooks.steer(Steering {
                    point,
                    vector: v.shallow_clone(),
                    alpha: 2.0,
                    mask: Tensor::ones([1, t], (Kind::Bool, Device::Cpu)),
                });
                hooks
            });
            assert_eq!(g.tokens[i], want, "{name}: row {i}");
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let model = load("qwen3");
    let mut s = Session::new(&model, &[1], 4, Vec::new()).unwrap();
    let e = s.generate(&GenerateOptions::default()).unwrap_err().to_string();
    assert!(e.contains("append"), "{e}");
    let e = s.append(&[Chunk::uniform(vec![1, 2, 3, 4, 5], TokenRole::Prompt)]).unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    let e = s.append(&[]).unwrap_err();
    assert!(e.to_string().contains("1 rows"), "{e}");
    let bad = SteerSpec {
        point: HookPoint::layer(0, LayerSite::ResidPost),
        vector: Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        alpha: 1.0,
        scope: SteerScope::All,
    };
    let e = Session::new(&model, &[1], 8, vec![bad]).err().unwrap().to_string();
    assert!(e.contains("hidden size"), "{e}");
    let hidden = model.config().hidden_size;
    let at_logits = SteerSpec {
        point: HookPoint::Logits,
        vector: Tensor::zeros([hidden], (Kind::Float, Device::Cpu)),
        alpha: 1.0,
        scope: SteerScope::All,
    };
    let e = Session::new(&model, &[1], 8, vec![at_logits]).err().unwrap().to_string();
    assert!(e.contains("not a session steering point"), "{e}");
}
