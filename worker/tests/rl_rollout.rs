//! Rollouts against the environment and the model they came from: the token layout is the chat
//! template's rendering, rewards and tile classes replay exactly, the recorded log-probs are the
//! training forward's, and a checkpoint resumes bit for bit.

#[path = "common/builtin_cache.rs"]
mod builtin_cache;

use builtin_cache::builtin_1m;
use std::sync::Arc;
use tch::{Device, Kind};
use wax_worker::maze::{ChatMessage, Dir, EnvConfig, Episode, Maze, MazeConfig};
use wax_worker::model::Model;
use wax_worker::rl::batch::{Batch, policy_forward};
use wax_worker::rl::metrics::{StepMetrics, read_jsonl};
use wax_worker::rl::rollout::{RolloutSpec, TurnLayout, play};
use wax_worker::rl::{Algorithm, TrainConfig, run};
use wax_worker::tokenizer::{ChatArgs, ChatTemplate, TemplateOptions, Tokenizer};

fn builtin() -> (Model, Tokenizer, TurnLayout) {
    let dir = builtin_1m();
    let model = Model::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let tok = Tokenizer::load(&dir).unwrap();
    let t = tok.chat_template().unwrap();
    let template =
        ChatTemplate::new(t.name(), t.source().to_string(), tok.special_tokens()).unwrap();
    let layout = TurnLayout::new(&tok, template, &TemplateOptions::default()).unwrap();
    (model, tok, layout)
}

#[test]
fn rollouts_replay_and_match_the_training_forward() {
    let _guard = tch::no_grad_guard();
    let (model, tok, layout) = builtin();
    let env = Arc::new(EnvConfig { turns: 6, ..EnvConfig::default() });
    let specs: Vec<RolloutSpec> = (0..3u64)
        .map(|i| RolloutSpec {
            maze: Arc::new(Maze::generate(&MazeConfig::default(), 100 + i).unwrap()),
            episode_seed: 7 + i,
            sample_seeds: vec![i * 10, i * 10 + 1],
        })
        .collect();
    let trajs = play(&model, &tok, &layout, &env, &specs, 0.7, 1024).unwrap();
    assert_eq!(trajs.len(), 6);
    for t in &trajs {
        assert_eq!(t.decisions.len(), 6);
        // Replaying the moves in a fresh episode gives the same rewards and tile classes, and
        // the conversation is the template's rendering (plus the final close).
        let maze = Maze::generate(&MazeConfig::default(), t.maze_seed).unwrap();
        let mut ep = Episode::new(&maze, env.clone(), t.episode_seed).unwrap();
        let mut text = String::new();
        for d in &t.decisions {
            let classes = ep.observation().neighbours.map(|x| x as i64);
            assert_eq!(classes, d.classes);
            text += &layout.segment_text(ep.turns_taken() + 1, &ep.user_message()).unwrap();
            text += &Dir::ALL[d.action].letter().to_string();
            let rec = ep.step(Dir::ALL[d.action]).unwrap();
            assert_eq!(rec.reward, d.reward);
            assert_eq!(t.tokens[d.pos + 1], layout.moves[d.action]);
        }
        assert!((ep.total_return() - t.ret).abs() < 1e-9);
        let msgs: Vec<ChatMessage> = ep.messages();
        let full = tok.chat_template().unwrap().render_maze(&msgs, &ChatArgs::new(false)).unwrap();
        assert_eq!(format!("{text}<|im_end|>\n"), full);
    }
    // The log-probs recorded while sampling (cached, left-padded, batched) equal the training
    // forward's (uncached, right-padded).
    let batch = Batch::new(&trajs.iter().collect::<Vec<_>>(), Device::Cpu);
    let out = policy_forward(&model, &batch, &layout.moves, 0.7).unwrap();
    let diff = ((&out.logp - &batch.old_logp) * &batch.mask).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "log-prob mismatch {diff}");
}

#[test]
fn a_tiny_token_budget_truncates_episodes() {
    let _guard = tch::no_grad_guard();
    let (model, tok, layout) = builtin();
    let env = Arc::new(EnvConfig { turns: 10, ..EnvConfig::default() });
    let spec = RolloutSpec {
        maze: Arc::new(Maze::generate(&MazeConfig::default(), 5).unwrap()),
        episode_seed: 1,
        sample_seeds: vec![1, 2],
    };
    let trajs = play(&model, &tok, &layout, &env, &[spec], 1.0, 100).unwrap();
    for t in &trajs {
        assert!(t.truncated && t.tokens.len() <= 100, "{} tokens", t.tokens.len());
        assert!(!t.decisions.is_empty() && t.decisions.len() < 10);
    }
}

fn small(algorithm: Algorithm, lora: bool) -> TrainConfig {
    let mut cfg = TrainConfig {
        model: builtin_1m().display().to_string(),
        algorithm,
        steps: 4,
        mazes_per_step: 2,
        group_size: 4,
        lr: 1e-3,
        entropy_coef: 0.5,
        checkpoint_at: vec![2],
        env: EnvConfig { turns: 3, ..EnvConfig::default() },
        ..TrainConfig::default()
    };
    cfg.lora.enabled = lora;
    cfg.eval.mazes = 4;
    cfg.sft.trajectories = 24;
    cfg.sft.batch = 4;
    cfg
}

/// Training 4 steps, or 2 steps then resuming from the step-2 checkpoint in an empty
/// directory, gives the same metrics, bit for bit (wall-clock fields aside): steps 1 and 2 are
/// carried by the checkpoint, 3 and 4 are recomputed.
#[test]
fn resume_repeats_the_run_exactly() {
    for (alg, lora) in [(Algorithm::DrGrpo, true), (Algorithm::Ppo, false), (Algorithm::Sft, true)]
    {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        run(small(alg, lora), &a, None, |_| {}).unwrap();
        run(small(alg, lora), &b, Some(&a.join("step-2")), |_| {}).unwrap();
        let ma: Vec<StepMetrics> = read_jsonl(&a.join("metrics.jsonl")).unwrap();
        let mb: Vec<StepMetrics> = read_jsonl(&b.join("metrics.jsonl")).unwrap();
        assert_eq!(ma.len(), 4);
        assert_eq!(mb.iter().map(|m| m.step).collect::<Vec<_>>(), [1, 2, 3, 4], "{alg:?}");
        for (x, y) in ma.iter().zip(&mb) {
            assert_eq!(x.deterministic(), y.deterministic(), "{alg:?} step {}", x.step);
        }
        // A different configuration refuses to resume.
        let mut other = small(alg, lora);
        other.lr = 5e-4;
        let err = run(other, &dir.path().join("c"), Some(&a.join("step-2")), |_| {}).unwrap_err();
        assert!(err.to_string().contains("different configuration"), "{err}");
    }
}
