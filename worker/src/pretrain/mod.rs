//! Pretraining: next-token prediction on the English corpus ([`Corpus`]).
//!
//! The training split is tokenized with the model's tokenizer, documents joined by the
//! end-of-text token into one stream; each step draws `batch` windows of `seq_len + 1` tokens at
//! seeded random offsets ([`data::Windows`]). The loss is the mean cross-entropy over the
//! non-pad targets; AdamW ([`crate::rl::optim::AdamW`], whose moments can be saved) with linear
//! warmup then cosine decay to `min_lr_ratio · lr`, and the global gradient norm clipped to
//! `grad_clip`. The held-out loss is measured on consecutive windows of the validation split (the
//! last one padded, its pad targets ignored). Checkpoints at the requested steps are
//! `save_pretrained` snapshots plus the tokenizer files, in `<out>/step-<N>/`; every evaluation
//! is appended to `<out>/log.jsonl`. A run can be resumed exactly from a resume checkpoint
//! ([`run::Pretrainer::save_resume`]): weights, optimizer moments, the step and the loss
//! accumulators, with the window draws replayed.

mod config;
pub mod data;
pub mod run;

pub use config::PretrainConfig;
pub use data::tokenize_split;
pub use run::{PretrainHooks, Pretrainer, pretrain, pretrain_builtin, pretrain_with};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::builtin::{BuiltinError, copy_tokenizer_files, create_atomically};
use crate::model::{ForwardInput, Hooks, Model, ModelError};
use crate::tokenizer::TokenizerError;

/// Targets with this value are ignored by the loss.
const IGNORE: i64 = -100;

/// Errors of pretraining, naming the bad setting or file.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error("pretrain setting `{field}`: {why}")]
    Config { field: &'static str, why: String },
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Builtin(#[from] BuiltinError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The loss became NaN or infinite (not retryable: the settings cannot train).
    #[error("training diverged at step {step} (loss {loss}); lower `lr`")]
    Diverged { step: usize, loss: f64 },
    /// Stopped on request between steps.
    #[error("stopped: {0}")]
    Interrupted(String),
}

impl PretrainError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> PretrainError {
        PretrainError::Io { path: path.to_path_buf(), why: e.to_string() }
    }
}

/// One held-out measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: usize,
    /// Mean training loss over the steps since the previous point (`None` at step 0).
    pub train_loss: Option<f64>,
    pub val_loss: f64,
    pub lr: f64,
}

impl std::fmt::Display for EvalPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}: train loss {:.4}, held-out loss {:.4}",
            self.step,
            self.train_loss.unwrap_or(f64::NAN),
            self.val_loss
        )
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PretrainReport {
    pub parameters: i64,
    pub vocab_size: i64,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub initial_val_loss: f64,
    pub final_val_loss: f64,
    pub evals: Vec<EvalPoint>,
    pub checkpoints: Vec<PathBuf>,
    pub steps: usize,
    pub seconds: f64,
    pub steps_per_second: f64,
    pub tokens_per_second: f64,
}

/// Mean cross-entropy of next-token predictions over targets that are not [`IGNORE`];
/// `inputs` and `targets` are `[B, T]`.
pub fn next_token_loss(
    model: &Model,
    inputs: &Tensor,
    targets: &Tensor,
) -> Result<Tensor, PretrainError> {
    let size = inputs.size();
    let (b, t) = (size[0], size[1]);
    let device = model.device();
    let input = ForwardInput {
        input_ids: inputs.to_device(device),
        positions: Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0).expand([b, t], true),
        attention_mask: Tensor::ones([b, t], (Kind::Bool, device)),
    };
    let logits = model.forward(&input, None, &mut Hooks::new())?;
    let v = logits.size()[2];
    Ok(logits.view([-1, v]).log_softmax(-1, Kind::Float).f_nll_loss(
        &targets.to_device(device).view([-1]),
        None::<Tensor>,
        tch::Reduction::Mean,
        IGNORE,
    )?)
}

/// Held-out loss over consecutive windows of `tokens` (token-weighted mean).
pub fn held_out_loss(
    model: &Model,
    tokens: &[i64],
    seq_len: usize,
    windows: usize,
    pad: i64,
) -> Result<f64, PretrainError> {
    let _guard = tch::no_grad_guard();
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut start = 0usize;
    let mut done = 0usize;
    while done < windows && start + 1 < tokens.len() {
        let end = (start + seq_len + 1).min(tokens.len());
        let chunk = &tokens[start..end];
        let real = chunk.len() - 1;
        let mut inputs = chunk[..real].to_vec();
        let mut targets = chunk[1..].to_vec();
        inputs.resize(seq_len, pad);
        targets.resize(seq_len, IGNORE);
        let inputs = Tensor::from_slice(&inputs).view([1, seq_len as i64]);
        let targets = Tensor::from_slice(&targets).view([1, seq_len as i64]);
        let loss = next_token_loss(model, &inputs, &targets)?.double_value(&[]);
        total += loss * real as f64;
        count += real;
        start += seq_len;
        done += 1;
    }
    if count == 0 {
        return Err(PretrainError::Config {
            field: "corpus",
            why: "the validation split has fewer than 2 tokens".into(),
        });
    }
    Ok(total / count as f64)
}

/// Saves `model` with the tokenizer files of `tokenizer_dir` into `dir` (atomically).
pub fn save_checkpoint(
    model: &Model,
    tokenizer_dir: &Path,
    dir: &Path,
) -> Result<(), PretrainError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| PretrainError::Io { path: dir.into(), why: e.to_string() })?;
    }
    create_atomically(dir, |tmp| {
        model.save_pretrained(tmp)?;
        copy_tokenizer_files(tokenizer_dir, tmp)
    })?;
    Ok(())
}
