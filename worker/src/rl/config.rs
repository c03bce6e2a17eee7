//! The training configuration: one TOML file per run (`wax train run.toml`). Every field has the
//! paper's value as its default where the paper gives one (docs/protocol.md §2); the CPU-sized
//! defaults are marked. Unknown keys are errors, and errors name the file, line and field.

use super::loss::{Aggregation, KlEstimator};
use crate::maze::{EnvConfig, MazeConfig};
use crate::tokenizer::{ReasoningEffort, TemplateOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The algorithms one trainer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Group-mean baseline without std division, dual clip, seq-mean-token-sum / Z (§2.2).
    DrGrpo,
    /// Std-normalised group advantages and length-normalised loss.
    Grpo,
    /// Returns-to-go with a per-position group baseline (§2.4).
    Reinforce,
    /// Value head (a linear critic on the policy's detached final hidden state), GAE, clipped
    /// policy and value losses, per-minibatch advantage normalisation, epochs × minibatches.
    Ppo,
    /// Supervised training on planner trajectories, assistant (move) tokens only (§2.5).
    Sft,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::DrGrpo => "dr-grpo",
            Algorithm::Grpo => "grpo",
            Algorithm::Reinforce => "reinforce",
            Algorithm::Ppo => "ppo",
            Algorithm::Sft => "sft",
        }
    }
}

/// LoRA settings; `enabled = false` trains every parameter (full fine-tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSettings {
    pub enabled: bool,
    /// Paper: 32.
    pub rank: i64,
    /// Paper: 64.
    pub alpha: f64,
    pub dropout: f64,
    /// Empty: every linear map of the decoder blocks (PEFT's `all-linear`).
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings { enabled: true, rank: 32, alpha: 64.0, dropout: 0.0, targets: Vec::new() }
    }
}

/// PPO's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoSettings {
    pub gamma: f64,
    pub lambda: f64,
    /// Clip range of the value update around the rollout's value.
    pub value_clip: f64,
    /// Weight of the value loss.
    pub value_coef: f64,
}

impl Default for PpoSettings {
    fn default() -> Self {
        PpoSettings { gamma: 1.0, lambda: 0.95, value_clip: 0.2, value_coef: 0.5 }
    }
}

/// The SFT control's data and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftSettings {
    /// Planner trajectories in fresh mazes (paper: 50,000).
    pub trajectories: usize,
    /// Trajectories per optimizer step (paper, inferred: 16).
    pub batch: usize,
}

impl Default for SftSettings {
    fn default() -> Self {
        SftSettings { trajectories: 256, batch: 16 }
    }
}

/// Held-out evaluation: fixed mazes never used in training, one episode each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    pub mazes: usize,
    /// Evaluate every this many steps (0: only before and after training).
    pub every: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings { mazes: 64, every: 0 }
    }
}

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `builtin:<size>[@seed]` or a local Hugging Face snapshot directory.
    pub model: String,
    pub algorithm: Algorithm,
    /// Optimizer steps (SFT: steps over the planner data, cycling through it).
    pub steps: usize,
    /// Mazes per step (paper: 8).
    pub mazes_per_step: usize,
    /// Rollouts per maze: the group of the baselines (paper: 10 or 64; CPU default 8).
    pub group_size: usize,
    /// Sampling temperature of rollouts; the policy's log-probabilities use the same (paper 0.7).
    pub temperature: f64,
    /// Peak learning rate (paper: 3e-6 LoRA instruct, 3e-5 base).
    pub lr: f64,
    /// Equalized-entropy coefficient β0 (paper: 0.01; REINFORCE 0.2; base runs 0).
    pub entropy_coef: f64,
    /// Nominal length S of the cosine that scales both β and the learning rate (paper: 500).
    pub schedule_steps: usize,
    /// The cosine's speed-up factor f (paper: 1).
    pub schedule_factor: f64,
    /// KL coefficient κ to the reference (starting) model; 0 turns the reference off.
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    /// Clip range ε of the ratio (paper: 0.2).
    pub clip_eps: f64,
    /// Dual-clip constant c (paper: 3.0).
    pub dual_clip: f64,
    /// Clamp of the log-ratio (paper: 20).
    pub log_ratio_clamp: f64,
    /// Loss aggregation; default by algorithm (GRPO: seq-mean-token-mean; others
    /// seq-mean-token-sum).
    pub aggregation: Option<Aggregation>,
    /// The constant Z of seq-mean-token-sum (paper: 2048).
    pub z: f64,
    /// Policy updates per rollout batch: the batch is split into this many minibatches, each an
    /// optimizer step (PPO default 4, others 1).
    pub minibatches: Option<usize>,
    /// Passes over each rollout batch (PPO default 2, others 1).
    pub epochs: Option<usize>,
    /// Gradient accumulation: micro-batches per minibatch (memory, not maths).
    pub grad_accum: usize,
    pub grad_clip: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    /// Rollout token budget: an episode ends early when its context would exceed it (paper 1024).
    pub token_budget: usize,
    /// Pass `enable_thinking` to the chat template (Qwen3 with reasoning off: false).
    pub enable_thinking: Option<bool>,
    /// Pass `reasoning_effort` to the chat template (GPT-OSS's harmony: low, medium, high).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    pub lora: LoraSettings,
    pub ppo: PpoSettings,
    pub sft: SftSettings,
    pub eval: EvalSettings,
    pub maze: MazeConfig,
    pub env: EnvConfig,
    /// Save a checkpoint after these steps (the recruitment analysis reads them).
    pub checkpoint_at: Vec<usize>,
    /// Also save one every this many steps (0: none).
    pub checkpoint_every: usize,
    /// `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// `f32` or `bf16`.
    pub dtype: String,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "builtin:1m".into(),
            algorithm: Algorithm::DrGrpo,
            steps: 100,
            mazes_per_step: 8,
            group_size: 8,
            temperature: 0.7,
            lr: 3e-4,
            entropy_coef: 0.01,
            schedule_steps: 500,
            schedule_factor: 1.0,
            kl_coef: 0.0,
            kl_estimator: KlEstimator::K3,
            clip_eps: 0.2,
            dual_clip: 3.0,
            log_ratio_clamp: 20.0,
            aggregation: None,
            z: 2048.0,
            minibatches: None,
            epochs: None,
            grad_accum: 1,
            grad_clip: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            token_budget: 1024,
            enable_thinking: None,
            reasoning_effort: None,
            lora: LoraSettings::default(),
            ppo: PpoSettings::default(),
            sft: SftSettings::default(),
            eval: EvalSettings::default(),
            maze: MazeConfig::default(),
            env: EnvConfig::default(),
            checkpoint_at: Vec::new(),
            checkpoint_every: 0,
            device: "cpu".into(),
            dtype: "f32".into(),
            seed: 0,
        }
    }
}

/// A configuration that cannot run; the message names the field (and, from a file, the place).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl TrainConfig {
    /// The chat-template switches of this run's conversations.
    pub fn template_options(&self) -> TemplateOptions {
        TemplateOptions {
            enable_thinking: self.enable_thinking,
            reasoning_effort: self.reasoning_effort,
        }
    }

    /// Reads a TOML file; errors carry `file:line:column`.
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        TrainConfig::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<TrainConfig, ConfigError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| {
            let place = e.span().map(|s| line_col(text, s.start));
            let msg = e.message().to_string();
            match place {
                Some((l, c)) => ConfigError(format!("{origin}:{l}:{c}: {msg}")),
                None => ConfigError(format!("{origin}: {msg}")),
            }
        })?;
        cfg.validate().map_err(|e| ConfigError(format!("{origin}: {}", e.0)))?;
        Ok(cfg)
    }

    /// Checks value ranges; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: String| Err(ConfigError(format!("{field}: {why}")));
        let positive = [
            ("steps", self.steps),
            ("mazes_per_step", self.mazes_per_step),
            ("group_size", self.group_size),
            ("schedule_steps", self.schedule_steps),
            ("grad_accum", self.grad_accum),
            ("token_budget", self.token_budget),
            ("sft.batch", self.sft.batch),
        ];
        for (field, v) in positive {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if matches!(self.minibatches, Some(0)) {
            return bad("minibatches", "must be at least 1".into());
        }
        if matches!(self.epochs, Some(0)) {
            return bad("epochs", "must be at least 1".into());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature", format!("must be > 0, got {}", self.temperature));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        let non_negative = [
            ("entropy_coef", self.entropy_coef),
            ("kl_coef", self.kl_coef),
            ("weight_decay", self.weight_decay),
            ("ppo.value_coef", self.ppo.value_coef),
        ];
        for (field, v) in non_negative {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(field, format!("must be ≥ 0, got {v}"));
            }
        }
        if !(self.clip_eps > 0.0 && self.clip_eps < 1.0) {
            return bad("clip_eps", format!("must be in (0, 1), got {}", self.clip_eps));
        }
        if self.dual_clip.is_nan() || self.dual_clip <= 1.0 {
            return bad("dual_clip", format!("must be > 1, got {}", self.dual_clip));
        }
        if [self.z, self.log_ratio_clamp, self.grad_clip].iter().any(|v| v.is_nan() || *v <= 0.0) {
            return bad("z / log_ratio_clamp / grad_clip", "must be > 0".into());
        }
        for (field, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, format!("must be in [0, 1), got {v}"));
            }
        }
        for (field, v) in [("ppo.gamma", self.ppo.gamma), ("ppo.lambda", self.ppo.lambda)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("must be in [0, 1], got {v}"));
            }
        }
        if self.lora.enabled && self.lora.rank < 1 {
            return bad("lora.rank", format!("must be ≥ 1, got {}", self.lora.rank));
        }
        if !(0.0..1.0).contains(&self.lora.dropout) {
            return bad("lora.dropout", format!("must be in [0, 1), got {}", self.lora.dropout));
        }
        if !matches!(self.dtype.as_str(), "f32" | "bf16") {
            return bad("dtype", format!("must be `f32` or `bf16`, got `{}`", self.dtype));
        }
        if self.algorithm == Algorithm::Sft && self.sft.trajectories == 0 {
            return bad("sft.trajectories", "must be at least 1".into());
        }
        self.maze.validate().map_err(|e| ConfigError(e.to_string()))?;
        self.env.validate().map_err(|e| ConfigError(e.to_string()))?;
        Ok(())
    }

    /// The aggregation in effect.
    pub fn aggregation(&self) -> Aggregation {
        self.aggregation.unwrap_or(match self.algorithm {
            Algorithm::Grpo => Aggregation::SeqMeanTokenMean,
            _ => Aggregation::SeqMeanTokenSum,
        })
    }

    /// Minibatches per rollout batch in effect.
    pub fn minibatches(&self) -> usize {
        self.minibatches.unwrap_or(if self.algorithm == Algorithm::Ppo { 4 } else { 1 })
    }

    /// Epochs per rollout batch in effect.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(if self.algorithm == Algorithm::Ppo { 2 } else { 1 })
    }
}

/// 1-based line and column of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let cfg = TrainConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(TrainConfig::parse(&text, "x.toml").unwrap(), cfg);
    }

    #[test]
    fn errors_name_the_place_and_field() {
        let e = TrainConfig::parse("steps = 10\nlearning_rate = 1e-3\n", "run.toml").unwrap_err();
        assert!(e.0.starts_with("run.toml:2:1:"), "{}", e.0);
        assert!(e.0.contains("learning_rate"), "{}", e.0);
        let e = TrainConfig::parse("algorithm = \"dpo\"\n", "run.toml").unwrap_err();
        assert!(e.0.starts_with("run.toml:1:"), "{}", e.0);
        let e = TrainConfig::parse("temperature = 0.0\n", "run.toml").unwrap_err();
        assert!(e.0.contains("temperature"), "{}", e.0);
        let e = TrainConfig::parse("[env]\nturns = 0\n", "run.toml").unwrap_err();
        assert!(e.0.contains("turns"), "{}", e.0);
    }

    #[test]
    fn algorithm_defaults() {
        let mut cfg = TrainConfig { algorithm: Algorithm::Grpo, ..Default::default() };
        assert_eq!(cfg.aggregation(), Aggregation::SeqMeanTokenMean);
        cfg.algorithm = Algorithm::Ppo;
        assert_eq!((cfg.minibatches(), cfg.epochs()), (4, 2));
        cfg.algorithm = Algorithm::DrGrpo;
        assert_eq!(cfg.aggregation(), Aggregation::SeqMeanTokenSum);
        assert_eq!((cfg.minibatches(), cfg.epochs()), (1, 1));
    }
}
