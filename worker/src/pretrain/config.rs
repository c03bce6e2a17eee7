//! How to pretrain: one typed, validated settings block (`[pretrain]` of a sweep manifest,
//! or the flags of `wax model pretrain`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::PretrainError;

/// How to pretrain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// A directory of `*.txt` / `*.rst` documents; `None`: the builtin English corpus (Debian's
    /// python3-doc sources, see `tokenizer::Corpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus: Option<PathBuf>,
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// Tokens per window (inputs; the targets are shifted by one).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The cosine decays to `lr · min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Linear warmup steps (`None`: 10% of `steps`, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<usize>,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Maximum global gradient norm.
    pub grad_clip: f64,
    /// Seeds the windows drawn each step.
    pub seed: u64,
    /// Steps after which a checkpoint is written (each in `1..=steps`).
    pub save_at: Vec<usize>,
    /// Held-out loss every this many steps (0: only at the start, checkpoints and the end).
    pub eval_every: usize,
    /// Windows of the validation split used for the held-out loss.
    pub eval_windows: usize,
    /// Stop reading training documents after this many bytes (`None`: the whole split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_max_bytes: Option<usize>,
    /// The same for the validation split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_max_bytes: Option<usize>,
    /// Show a progress bar on standard error (a display choice, not part of the run).
    #[serde(skip)]
    pub progress: bool,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            corpus: None,
            steps: 1000,
            batch: 16,
            seq_len: 128,
            lr: 3e-3,
            min_lr_ratio: 0.1,
            warmup: None,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            seed: 0,
            save_at: Vec::new(),
            eval_every: 100,
            eval_windows: 32,
            train_max_bytes: None,
            val_max_bytes: Some(1 << 20),
            progress: false,
        }
    }
}

impl PretrainConfig {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), PretrainError> {
        let bad = |field, why: String| Err(PretrainError::Config { field, why });
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        if self.seq_len < 2 {
            return bad("seq_len", format!("must be at least 2, got {}", self.seq_len));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", format!("must be in [0, 1], got {}", self.min_lr_ratio));
        }
        if self.grad_clip.is_nan() || self.grad_clip <= 0.0 {
            return bad("grad_clip", format!("must be positive, got {}", self.grad_clip));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad("weight_decay", format!("must be ≥ 0, got {}", self.weight_decay));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(field, format!("must be in [0, 1), got {b}"));
            }
        }
        if self.eval_windows == 0 {
            return bad("eval_windows", "must be at least 1".into());
        }
        if let Some(s) = self.save_at.iter().find(|&&s| s == 0 || s > self.steps) {
            return bad("save_at", format!("step {s} is outside 1..={}", self.steps));
        }
        Ok(())
    }

    fn warmup_steps(&self) -> usize {
        self.warmup.unwrap_or((self.steps / 10).max(1))
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warmup = self.warmup_steps();
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let span = self.steps.saturating_sub(warmup).max(1) as f64;
        let progress = ((step - warmup) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Whether a held-out measurement is taken after `done` steps.
    pub fn evaluates_after(&self, done: usize) -> bool {
        self.save_at.contains(&done)
            || done == self.steps
            || (self.eval_every > 0 && done.is_multiple_of(self.eval_every))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let cfg = PretrainConfig {
            steps: 100,
            warmup: Some(10),
            lr: 1.0,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!(cfg.lr_at(50) < 1.0 && cfg.lr_at(50) > 0.1);
        assert!((cfg.lr_at(100) - 0.1).abs() < 1e-9);
        for s in 10..99 {
            assert!(cfg.lr_at(s + 1) <= cfg.lr_at(s));
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cfg = PretrainConfig { steps: 10, save_at: vec![5, 11], ..Default::default() };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("save_at") && e.contains("11"), "{e}");
        let e =
            PretrainConfig { seq_len: 1, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("seq_len"), "{e}");
        let e =
            PretrainConfig { beta2: 1.0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("beta2"), "{e}");
    }

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let cfg = PretrainConfig { save_at: vec![5], warmup: Some(3), ..Default::default() };
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(serde_json::from_value::<PretrainConfig>(json).unwrap(), cfg);
        let e = serde_json::from_value::<PretrainConfig>(serde_json::json!({"stepz": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stepz"), "{e}");
    }
}
