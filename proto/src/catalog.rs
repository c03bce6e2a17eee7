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

/// Default configuration of `kind` (an empty object for unknown kinds).
pub fn defaults(kind: &str) -> Value {
    match kind {
        "model" => json!({ "ref": "builtin:tiny", "init_seed": 0 }),
        "pretrain" => json!({ "corpus": "builtin", "steps": 1000, "save_at": [], "seed": 0 }),
        "rl" => json!({
            "algorithm": "dr-grpo",
            "steps": 95,
            "learning_rate": 3e-6,
            "lora": { "rank": 32, "alpha": 64 },
            "entropy_coef": 0.01,
            "temperature": 0.7,
            "mazes_per_batch": 8,
            "group_size": 64,
        }),
        "extract" => json!({
            "per_class": 5000,
            "base_seed": 474_747,
            "min_len": 1,
            "max_len": 15,
            "classes": ["mold", "gold", "path"],
            "balance_final_direction": true,
        }),
        "evaluate" => json!({
            "suites": ["geometry", "logit-lens", "emotions", "tracking", "steering"],
            "alphas": [-4, -2, 0, 2, 4],
        }),
        "report" => json!({}),
        "sleep" => json!({ "ms": 0, "files": 1 }),
        "fail-n-times" => json!({ "n": 1, "failure": "stage-error" }),
        _ => json!({}),
    }
}

/// Default maze generation settings (PROTOCOL.md §1.1), shared by the stages that build mazes.
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

/// Default episode rules (PROTOCOL.md §1.3–1.8).
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
