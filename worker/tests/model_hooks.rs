//! Steering and capture hooks, and the KV cache, on tiny fixture models.

#[path = "common/fixtures.rs"]
mod fixtures;

use fixtures::{max_abs_diff_masked, model_dir, reference};
use tch::{Device, Kind, Tensor};
use wax_worker::model::{
    ForwardInput, HookPoint, Hooks, LayerSite, LogitsSelect, Model, Positions, SteerScope,
    Steering, TokenRole, steering_mask,
};

const SITES: [LayerSite; 5] = [
    LayerSite::ResidPre,
    LayerSite::AttnOut,
    LayerSite::ResidMid,
    LayerSite::MlpOut,
    LayerSite::ResidPost,
];

struct Fixture {
    model: Model,
    input: ForwardInput,
    mask: Tensor,
    positions: Vec<Vec<i64>>,
}

fn fixture(name: &str) -> Fixture {
    let model = Model::load(&model_dir(name), Device::Cpu, Kind::Float).expect("load");
    let r = reference(name);
    let mask = r["attention_mask"].to_kind(Kind::Bool);
    let positions: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&r["position_ids"]).unwrap();
    let input = ForwardInput {
        input_ids: r["input_ids"].shallow_clone(),
        positions: r["position_ids"].shallow_clone(),
        attention_mask: mask.shallow_clone(),
    };
    Fixture { model, input, mask, positions }
}

/// Captures every site of every layer, the final norm and the logits, at all positions.
fn capture_everything(model: &Model, hooks: &mut Hooks) -> Vec<String> {
    let mut names = Vec::new();
    for l in 0..model.config().num_layers as usize {
        for site in SITES {
            let name = format!("{l}.{site:?}");
            hooks.capture(name.clone(), HookPoint::layer(l, site), Positions::All);
            names.push(name);
        }
    }
    hooks.capture("final", HookPoint::FinalNorm, Positions::All);
    hooks.capture("logits", HookPoint::Logits, Positions::All);
    names.extend(["final".to_string(), "logits".to_string()]);
    names
}

fn random_vector(width: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([width], (Kind::Float, Device::Cpu))
}

#[test]
fn alpha_zero_steering_changes_nothing() {
    let _guard = tch::no_grad_guard();
    for name in ["qwen3", "gpt_neox"] {
        let f = fixture(name);
        let h = f.model.config().hidden_size;
        let mut plain = Hooks::new();
        let names = capture_everything(&f.model, &mut plain);
        let base = f.model.forward(&f.input, None, &mut plain).unwrap();
        let mut steered = Hooks::new();
        capture_everything(&f.model, &mut steered);
        let all = f.mask.ones_like();
        for l in 0..f.model.config().num_layers as usize {
            for site in SITES {
                steered.steer(Steering {
                    point: HookPoint::layer(l, site),
                    vector: random_vector(h, l as i64),
                    alpha: 0.0,
                    mask: all.shallow_clone(),
                });
            }
        }
        let out = f.model.forward(&f.input, None, &mut steered).unwrap();
        assert!(out.equal(&base), "{name}: alpha = 0 changed the logits");
        for n in &names {
            assert!(
                plain.get(n).unwrap().equal(steered.get(n).unwrap()),
                "{name}: alpha = 0 changed {n}"
            );
        }
    }
}

/// Row 0: 3 pads, 4 prompt tokens, 3 assistant tokens; row 1: 6 prompt, 4 assistant.
fn roles() -> Vec<Vec<TokenRole>> {
    use TokenRole::*;
    vec![
        vec![Pad, Pad, Pad, Prompt, Prompt, Prompt, Prompt, Assistant, Assistant, Assistant],
        vec![
            Prompt, Prompt, Prompt, Prompt, Prompt, Prompt, Assistant, Assistant, Assistant,
            Assistant,
        ],
    ]
}

#[test]
fn steering_assistant_turns_leaves_user_positions_untouched() {
    let _guard = tch::no_grad_guard();
    for (name, layer, site) in [
        ("qwen3", 1, LayerSite::ResidPre),
        ("gpt_neox", 0, LayerSite::ResidMid),
        ("llama", 0, LayerSite::AttnOut),
    ] {
        let f = fixture(name);
        let h = f.model.config().hidden_size;
        let steer =
            steering_mask(SteerScope::AssistantTurns, &roles(), &f.positions, Device::Cpu).unwrap();
        let user = steering_mask(SteerScope::All, &roles(), &f.positions, Device::Cpu)
            .unwrap()
            .logical_and(&steer.logical_not());
        assert_eq!(steer.sum(Kind::Int64).int64_value(&[]), 7);
        assert_eq!(user.sum(Kind::Int64).int64_value(&[]), 10);

        let mut plain = Hooks::new();
        let names = capture_everything(&f.model, &mut plain);
        let _ = f.model.forward(&f.input, None, &mut plain).unwrap();
        let mut steered = Hooks::new();
        capture_everything(&f.model, &mut steered);
        steered.steer(Steering {
            point: HookPoint::layer(layer, site),
            vector: random_vector(h, 7),
            alpha: 4.0,
            mask: steer.shallow_clone(),
        });
        let _ = f.model.forward(&f.input, None, &mut steered).unwrap();

        let keep = user.to_kind(Kind::Bool);
        for n in &names {
            let (a, b) = (plain.get(n).unwrap(), steered.get(n).unwrap());
            let mask = keep.unsqueeze(-1).expand_as(a);
            assert!(
                a.masked_select(&mask).equal(&b.masked_select(&mask)),
                "{name}: {n} changed at a non-steered position"
            );
        }
        // Downstream of the steered site, every steered position changes.
        let downstream = ["logits".to_string(), "final".to_string(), format!("{layer}.ResidPost")];
        for n in &downstream {
            let (a, b) = (plain.get(n).unwrap(), steered.get(n).unwrap());
            let changed = (a - b).abs().amax([-1], false).gt(1e-3);
            assert!(
                changed.logical_and(&steer).sum(Kind::Int64).int64_value(&[]) == 7,
                "{name}: {n} not steered everywhere"
            );
        }
    }
}

#[test]
fn steering_masks_follow_scope_roles_and_positions() {
    use TokenRole::*;
    let roles =
        vec![vec![Pad, Prompt, Assistant, Generated], vec![Prompt, Prompt, Assistant, Generated]];
    let positions = vec![vec![0, 0, 1, 2], vec![0, 1, 2, 3]];
    let as_vec = |scope| -> Vec<Vec<bool>> {
        let m = steering_mask(scope, &roles, &positions, Device::Cpu).unwrap();
        Vec::<Vec<bool>>::try_from(&m).unwrap()
    };
    assert_eq!(as_vec(SteerScope::All), [[false, true, true, true], [true, true, true, true]]);
    assert_eq!(
        as_vec(SteerScope::AssistantTurns),
        [[false, false, true, true], [false, false, true, true]]
    );
    assert_eq!(
        as_vec(SteerScope::Generated),
        [[false, false, false, true], [false, false, false, true]]
    );
    assert_eq!(
        as_vec(SteerScope::FromIndex(1)),
        [[false, false, true, true], [false, true, true, true]]
    );
    assert!(steering_mask(SteerScope::All, &roles, &positions[..1], Device::Cpu).is_err());
}

#[test]
fn capture_positions_select_the_right_rows() {
    let _guard = tch::no_grad_guard();
    let f = fixture("qwen3");
    let point = HookPoint::layer(1, LayerSite::ResidPost);
    let pick = Tensor::from_slice(&[5i64, 2]);
    let mut hooks = Hooks::new();
    hooks
        .capture("all", point, Positions::All)
        .capture("last", point, Positions::Last)
        .capture("mask", point, Positions::Mask(f.mask.shallow_clone()))
        .capture("index", point, Positions::Index(pick.shallow_clone()));
    let _ = f.model.forward(&f.input, None, &mut hooks).unwrap();
    let all = hooks.get("all").unwrap();
    assert!(hooks.get("last").unwrap().equal(&all.select(1, 9)));
    assert!(hooks.get("index").unwrap().get(0).equal(&all.get(0).get(5)));
    assert!(hooks.get("index").unwrap().get(1).equal(&all.get(1).get(2)));
    let masked = hooks.get("mask").unwrap();
    assert_eq!(masked.size(), [17, 64]);
    assert!(masked.get(0).equal(&all.get(0).get(3)));
    let mut bad = Hooks::new();
    bad.capture("x", HookPoint::layer(9, LayerSite::ResidPost), Positions::All);
    assert!(f.model.forward(&f.input, None, &mut bad).is_err());
}

/// Prefill `prefill` tokens, then decode one token at a time; compare with one uncached call.
fn cached_logits(f: &Fixture, prefill: i64, steer: Option<(&Tensor, &Tensor)>) -> Tensor {
    let (b, t) = (f.input.input_ids.size()[0], f.input.input_ids.size()[1]);
    let mut cache = f.model.new_cache(b, t + 2).unwrap();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < t {
        let len = if start == 0 { prefill } else { 1 };
        let input = ForwardInput {
            input_ids: f.input.input_ids.narrow(1, start, len),
            positions: f.input.positions.narrow(1, start, len),
            attention_mask: f.mask.narrow(1, 0, start + len),
        };
        let mut hooks = Hooks::new();
        if let Some((vector, mask)) = steer {
            hooks.steer(Steering {
                point: HookPoint::layer(0, LayerSite::ResidPost),
                vector: vector.shallow_clone(),
                alpha: 3.0,
                mask: mask.narrow(1, start, len),
            });
        }
        chunks.push(f.model.forward(&input, Some(&mut cache), &mut hooks).unwrap());
        start += len;
    }
    assert_eq!(cache.len(), t);
    Tensor::cat(&chunks, 1)
}

#[test]
fn kv_cache_decode_matches_uncached_forward() {
    let _guard = tch::no_grad_guard();
    for name in ["llama_llama3", "gpt_neox", "qwen2", "qwen3"] {
        let f = fixture(name);
        let full = f.model.forward(&f.input, None, &mut Hooks::new()).unwrap();
        for prefill in [4, 7] {
            let cached = cached_logits(&f, prefill, None);
            let err = max_abs_diff_masked(&cached, &full, &f.mask);
            let scale = max_abs_diff_masked(&full, &full.zeros_like(), &f.mask);
            eprintln!("{name}: prefill {prefill}: cached vs uncached {err:e}, logit scale {scale}");
            assert!(err <= 1e-5, "{name}: cached decode (prefill {prefill}) differs by {err}");
        }
        let last =
            f.model.forward_select(&f.input, None, &mut Hooks::new(), LogitsSelect::Last).unwrap();
        let err = (last.squeeze_dim(1) - full.select(1, 9)).abs().max().double_value(&[]);
        assert!(err <= 1e-5, "{name}: last-position logits differ by {err}");
    }
}

#[test]
fn steering_under_kv_cache_matches_uncached_steering() {
    let _guard = tch::no_grad_guard();
    let f = fixture("qwen3");
    use TokenRole::*;
    let mut roles = roles();
    for row in roles.iter_mut() {
        for r in row.iter_mut().skip(8) {
            *r = Generated;
        }
    }
    let mask = steering_mask(SteerScope::Generated, &roles, &f.positions, Device::Cpu).unwrap();
    let vector = random_vector(64, 11);
    let mut hooks = Hooks::new();
    hooks.steer(Steering {
        point: HookPoint::layer(0, LayerSite::ResidPost),
        vector: vector.shallow_clone(),
        alpha: 3.0,
        mask: mask.shallow_clone(),
    });
    let full = f.model.forward(&f.input, None, &mut hooks).unwrap();
    let plain = f.model.forward(&f.input, None, &mut Hooks::new()).unwrap();
    let cached = cached_logits(&f, 8, Some((&vector, &mask)));
    let err = max_abs_diff_masked(&cached, &full, &f.mask);
    assert!(err <= 1e-5, "steered cached decode differs by {err}");
    assert!(max_abs_diff_masked(&full, &plain, &mask) > 1e-2, "steering had no effect");
}

#[test]
fn cache_and_input_errors_are_reported() {
    let _guard = tch::no_grad_guard();
    let f = fixture("llama");
    let mut small = f.model.new_cache(2, 4).unwrap();
    let err = f.model.forward(&f.input, Some(&mut small), &mut Hooks::new()).unwrap_err();
    assert!(err.to_string().contains("capacity"), "{err}");
    let bad = ForwardInput {
        input_ids: f.input.input_ids.shallow_clone(),
        positions: f.input.positions.shallow_clone(),
        attention_mask: f.mask.narrow(1, 0, 5),
    };
    let err = f.model.forward(&bad, None, &mut Hooks::new()).unwrap_err();
    assert!(err.to_string().contains("attention_mask"), "{err}");
    let oob = ForwardInput {
        input_ids: f.input.input_ids.ones_like() * 100_000,
        positions: f.input.positions.shallow_clone(),
        attention_mask: f.mask.shallow_clone(),
    };
    assert!(f.model.forward(&oob, None, &mut Hooks::new()).is_err());
}

/// With logits for the last position only, hooks at the final norm still see every position of
/// the call: steering there gives the last row of the all-positions forward, and a masked capture
/// keeps the rows its `[B, T]` mask names.
#[test]
fn final_norm_hooks_see_every_position_when_only_the_last_logits_are_computed() {
    let _guard = tch::no_grad_guard();
    let f = fixture("qwen3");
    let h = f.model.config().hidden_size;
    let t = f.mask.size()[1];
    let hooks = || {
        let mut hooks = Hooks::new();
        hooks.steer(Steering {
            point: HookPoint::FinalNorm,
            vector: random_vector(h, 7),
            alpha: 3.0,
            mask: f.mask.shallow_clone(),
        });
        hooks.capture("norm", HookPoint::FinalNorm, Positions::Mask(f.mask.shallow_clone()));
        hooks
    };
    let mut all = hooks();
    let want = f.model.forward_select(&f.input, None, &mut all, LogitsSelect::All).unwrap();
    let mut last = hooks();
    let got = f.model.forward_select(&f.input, None, &mut last, LogitsSelect::Last).unwrap();
    assert_eq!(got.size(), [want.size()[0], 1, want.size()[2]]);
    let diff = (got - want.narrow(1, t - 1, 1)).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "last-position logits differ by {diff}");
    assert!(last.get("norm").unwrap().equal(all.get("norm").unwrap()));
    let mut plain = Hooks::new();
    let unsteered = f.model.forward_select(&f.input, None, &mut plain, LogitsSelect::Last).unwrap();
    assert!(!unsteered.allclose(&want.narrow(1, t - 1, 1), 1e-5, 1e-5, false));
}
