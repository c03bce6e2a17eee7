//! The catalog of stage kinds: what the coordinator may schedule and the workers may run.
//!
//! For each kind: a schema version (part of every stage id, so bumping it invalidates cached
//! results of that kind and nothing else), default configuration (deep-merged under what a
//! manifest says), and default resources. The coordinator uses the catalog to plan; workers use
//! it to check that they implement the version the coordinator expects. Neither side
//! interprets the other's half: the coordinator never reads a config beyond merging it, and
//! workers never see scheduling state.
//!
//! The science defaults mirror the worker's own config types (the `wax` binary, which links
//! both, tests that they agree).

use crate::v1::Resources;
use serde_json::{Value, json};

/// One stage kind.
#[derive(Debug, Clone)]
pub struct StageKindSpec {
    pub kind: &'static str,
    pub schema_version: u32,
    pub about: &'static str,
    /// Only for testing the scheduler: never part of a science pipeline.
    pub testing: bool,
}

const GIB: u64 = 1 << 30;

/// Every known stage kind.
pub const STAGE_KINDS: &[StageKindSpec] = &[
    StageKindSpec {
        kind: "model",
        schema_version: 1,
        about: "resolve a model reference (builtin, hf-dir, s3, stage:pretrain)",
        testing: false,
    },
    StageKindSpec {
        kind: "pretrain",
        schema_version: 1,
        about: "next-token pretraining, saving pretrain-only checkpoints",
        testing: false,
    },
    StageKindSpec {
        kind: "rl",
        schema_version: 1,
        about: "maze RL (Dr. GRPO, GRPO, REINFORCE, PPO, SFT control)",
        testing: false,
    },
    StageKindSpec {
        kind: "extract",
        schema_version: 1,
        about: "concept vectors from synthetic trajectories",
        testing: false,
    },
    StageKindSpec {
        kind: "evaluate",
        schema_version: 1,
        about: "geometry, logit lens, emotions, tracking, steering",
        testing: false,
    },
    StageKindSpec {
        kind: "report",
        schema_version: 1,
        about: "per-sweep tables, plots and summary",
        testing: false,
    },
    StageKindSpec {
        kind: "sleep",
        schema_version: 1,
        about: "TESTING: wait `ms` milliseconds, write `files` small files",
        testing: true,
    },
    StageKindSpec {
        kind: "fail-n-times",
        schema_version: 1,
        about: "TESTING: fail attempts 1..=n (as `failure`: stage-error or infrastructure), then succeed",
        testing: true,
    },
];

/// The spec of `kind`, if known.
pub fn find(kind: &str) -> Option<&'static StageKindSpec> {
    STAGE_KINDS.iter().find(|k| k.kind == kind)
}

/// Default configuration of a stage of `kind`, in the shape of its config (an empty object for
/// unknown kinds). What a manifest says is deep-merged over it, and the result is what the stage
/// id hashes and the worker runs. These mirror the worker's own config types field by field:
/// the CPU-sized defaults of `wax train` and `wax extract`, the paper's evaluation counts
/// (a test in the `wax` binary, which links both crates, checks that they agree).
pub fn defaults(kind: &str) -> Value {
    match kind {
        "model" => json!({ "ref": "builtin:1m" }),
        "pretrain" => json!({
            "steps": 1000,
            "batch": 16,
            "seq_len": 128,
            "lr": 3e-3,
            "min_lr_ratio": 0.1,
            "weight_decay": 0.1,
            "beta1": 0.9,
            "beta2": 0.95,
            "grad_clip": 1.0,
            "seed": 0,
            "save_at": [],
            "eval_every": 100,
            "eval_windows": 32,
            "val_max_bytes": 1_048_576,
        }),
        "rl" => json!({
            "rl": {
                "algorithm": "dr-grpo",
                "steps": 100,
                "mazes_per_step": 8,
                "group_size": 8,
                "temperature": 0.7,
                "lr": 3e-4,
                "entropy_coef": 0.01,
                "schedule_steps": 500,
                "schedule_factor": 1.0,
                "kl_coef": 0.0,
                "kl_estimator": "k3",
                "clip_eps": 0.2,
                "dual_clip": 3.0,
                "log_ratio_clamp": 20.0,
                "z": 2048.0,
                "grad_accum": 1,
                "grad_clip": 1.0,
                "beta1": 0.9,
                "beta2": 0.999,
                "weight_decay": 0.0,
                "token_budget": 1024,
                "lora": { "enabled": true, "rank": 32, "alpha": 64.0, "dropout": 0.0, "targets": [] },
                "ppo": { "gamma": 1.0, "lambda": 0.95, "value_clip": 0.2, "value_coef": 0.5 },
                "sft": { "trajectories": 256, "batch": 16 },
                "eval": { "mazes": 64, "every": 0 },
                "checkpoint_at": [],
                "checkpoint_every": 0,
                "dtype": "f32",
            },
            "maze": maze_defaults(),
            "env": env_defaults(),
            "seed": 0,
            "checkpoint": "final",
        }),
        "extract" => json!({
            "extract": {
                "synthetic": {
                    "per_class": 5000,
                    "base_seed": 474_747,
                    "min_len": 1,
                    "max_len": 15,
                    "classes": ["mold", "gold", "path"],
                    "balance_final_direction": true,
                    "walk_attempts": 32,
                    "max_mazes_per_trajectory": 10_000,
                },
                "heldout_fraction": 0.2,
                "block_seed": 0,
                "batch_tokens": 16_384,
                "chunk": 512,
                "blocks": 20,
                "overlap_bins": 50,
                "dtype": "f32",
                "resamples": 500,
            },
            "maze": maze_defaults(),
            "env": env_defaults(),
            "model": "trained",
            "checkpoint": "final",
        }),
        "evaluate" => json!({
            "evaluate": {
                "suites": ["geometry", "lens", "emotions", "tracking", "steering"],
                "dtype": "f32",
                "resamples": 500,
                "null_draws": 500,
                "seed": 0,
                "lens": { "k": 5 },
                "emotions": { "variance_threshold": 0.5, "max_story_tokens": 256, "batch_tokens": 8192 },
                "tracking": {
                    "per_class": 500,
                    "base_seed": 90_474_747,
                    "resamples": 500,
                    "null_draws": 500,
                    "seed": 0,
                    "batch_tokens": 16_384,
                },
                "tracking_questions": 100,
                "steering": {
                    "alphas": [-4.0, -2.0, 0.0, 2.0, 4.0],
                    "evals": ["sentiment", "backtracking", "confidence", "refusal"],
                    "conditions": ["naive-v", "trained-v", "naive-u", "naive-random"],
                    "concepts": ["mold", "gold"],
                    "backtracking_problems": 200,
                    "mmlu_questions": 3420,
                    "simpleqa_questions": 1000,
                    "refusal_per_split": 200,
                    "sentiment_samples": 20,
                    "backtracking_samples": 10,
                    "refusal_samples": 5,
                    "max_new_tokens": 256,
                    "phase0_max_new_tokens": 64,
                    "temperature": 0.7,
                    "top_p": 0.95,
                    "batch": 32,
                    "resamples": 500,
                    "seed": 0,
                    "data": {},
                },
                "judge": { "kind": "offline" },
            },
        }),
        "report" => json!({ "report": {} }),
        "sleep" => json!({ "ms": 0, "files": 1, "shard": 0 }),
        "fail-n-times" => json!({ "n": 1, "failure": "stage-error", "shard": 0 }),
        _ => json!({}),
    }
}

/// Default maze generation settings (docs/protocol.md §1.1), shared by the stages that build mazes.
pub fn maze_defaults() -> Value {
    json!({
        "width": 100,
        "height": 100,
        "walk_length_factor": [5.0, 15.0],
        "mold_fraction_max": 0.5,
        "mold_fraction_min": 0.1,
        "gold_fraction": 0.2,
        "gold_min": 1,
    })
}

/// Default episode rules (docs/protocol.md §1.3–1.8).
pub fn env_defaults() -> Value {
    json!({
        "turns": 15,
        "wind_probability": 0.1,
        "melt": true,
        "melt_wind_intermediate": true,
        "shuffle_directions": true,
        "step_reward": -0.1,
        "mapping": "office",
        "apostrophe": "typographic",
    })
}

/// Default resources of a stage of `kind`: one core and 1 GiB, no GPU — runs anywhere. GPU
/// sweeps ask for GPUs in their manifest.
pub fn default_resources(_kind: &str) -> Resources {
    Resources { gpus: 0, gpu_memory_bytes: 0, cpu_millis: 1000, memory_bytes: GIB }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_have_object_defaults() {
        for (i, k) in STAGE_KINDS.iter().enumerate() {
            assert!(STAGE_KINDS[i + 1..].iter().all(|o| o.kind != k.kind), "{} twice", k.kind);
            assert!(defaults(k.kind).is_object());
            assert_eq!(find(k.kind).unwrap().kind, k.kind);
        }
        assert!(find("nope").is_none());
    }
}
