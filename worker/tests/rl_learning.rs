//! Learning tests, short form (docs/protocol.md §2 scaled to CI): the smallest builtin model
//! trained with each algorithm raises the mean return on 64 held-out mazes clearly above the
//! untrained policy's on the same mazes, wind and sampling noise (paired t test).
//!
//! Short form: 5-turn mazes with the clause order fixed (N, E, S, W), 60 steps of 8 mazes × 8
//! rollouts. A 1M-parameter random-init model learns to read a fixed layout in a minute or two;
//! with shuffled clauses it needs far longer (`examples/train-full.toml` is the full form).
//! The entropy coefficient is set per algorithm because the bonus competes with advantages of
//! different scales: returns in reward units (Dr. GRPO, REINFORCE) or normalised to unit
//! variance (GRPO, PPO).

#[path = "common/builtin_cache.rs"]
mod builtin_cache;

use builtin_cache::builtin_1m;
use std::sync::Mutex;
use wax_worker::maze::{EnvConfig, TileMapping};
use wax_worker::rl::{Algorithm, TrainConfig, run};

/// One training at a time: each uses every core.
static SERIAL: Mutex<()> = Mutex::new(());

fn short_form(algorithm: Algorithm) -> TrainConfig {
    let mut cfg = TrainConfig {
        model: builtin_1m().display().to_string(),
        algorithm,
        steps: 60,
        mazes_per_step: 8,
        group_size: 8,
        lr: 3e-4,
        entropy_coef: match algorithm {
            Algorithm::Grpo | Algorithm::Ppo => 0.01,
            _ => 0.5,
        },
        minibatches: (algorithm == Algorithm::Ppo).then_some(2),
        env: EnvConfig { turns: 5, shuffle_directions: false, ..EnvConfig::default() },
        ..TrainConfig::default()
    };
    cfg.eval.mazes = 64;
    if algorithm == Algorithm::Sft {
        // 512 planner trajectories, 16 per step: 100 steps ≈ 3 epochs, as in the paper.
        cfg.steps = 100;
        cfg.lr = 1e-3;
        cfg.lora.enabled = false;
        cfg.sft.trajectories = 512;
        cfg.sft.batch = 16;
    }
    cfg
}

/// Trains and checks the held-out improvement: at least +5 reward per episode on average
/// (the untrained policy scores about −27 over 5 turns) with p < 0.01.
fn learns(cfg: TrainConfig, label: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s = run(cfg, dir.path(), None, |_| {}).unwrap();
    let c = &s.comparison;
    eprintln!(
        "{label}: held-out mean return {:+.2} → {:+.2} (Δ {:+.2}, paired t {:.2}, p {:.1e}), \
         Gold/turn {:.3} → {:.3}, Mold/turn {:.3} → {:.3}, {:.0} s",
        c.before_mean,
        c.after_mean,
        c.mean_difference,
        c.t,
        c.p_value,
        s.before.gold_rate,
        s.after.gold_rate,
        s.before.mold_rate,
        s.after.mold_rate,
        s.seconds
    );
    assert!(
        c.mean_difference > 5.0 && c.p_value < 0.01,
        "{label} did not learn: {c:?} (metrics in {})",
        dir.keep().display()
    );
}

#[test]
fn dr_grpo_learns() {
    learns(short_form(Algorithm::DrGrpo), "dr-grpo");
}

#[test]
fn grpo_learns() {
    learns(short_form(Algorithm::Grpo), "grpo");
}

#[test]
fn reinforce_learns() {
    learns(short_form(Algorithm::Reinforce), "reinforce");
}

#[test]
fn ppo_learns() {
    learns(short_form(Algorithm::Ppo), "ppo");
}

#[test]
fn sft_learns() {
    learns(short_form(Algorithm::Sft), "sft");
}

/// Symmetry: with the Gold and Mold symbols swapped, Dr. GRPO learns as well. Runs of this
/// size vary a lot from seed to seed (at 60 steps this one was +6 to +7, the unswapped +19; at
/// a higher learning rate the order reversed), so this run gets 100 steps.
#[test]
fn dr_grpo_learns_the_swapped_mapping() {
    let mut cfg = short_form(Algorithm::DrGrpo);
    cfg.steps = 100;
    cfg.env.mapping = TileMapping::preset("office-swapped").unwrap();
    learns(cfg, "dr-grpo (swapped)");
}
