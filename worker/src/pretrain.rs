//! Pretraining: next-token prediction on the English corpus ([`Corpus`]).
//!
//! The training split is tokenized with the model's tokenizer, documents joined by the
//! end-of-text token into one stream; each step draws `batch` windows of `seq_len + 1` tokens at
//! seeded random offsets (ChaCha8 keyed by the seed). The loss is the mean cross-entropy over
//! the non-pad targets; AdamW with linear warmup then cosine decay to `min_lr_ratio · lr`, and
//! the global gradient norm clipped to `grad_clip`. The held-out loss is measured on
//! consecutive windows of the validation split (the last one padded, its pad targets ignored).
//! Checkpoints at the requested steps are `save_pretrained` snapshots plus the tokenizer files,
//! in `<out>/step-<N>/`; every evaluation is appended to `<out>/log.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::Serialize;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

use crate::builtin::{BuiltinError, copy_tokenizer_files, create_atomically};
use crate::model::{ForwardInput, Hooks, Model, ModelError};
use crate::tokenizer::{Corpus, Split, Tokenizer, TokenizerError};

/// Targets with this value are ignored by the loss.
const IGNORE: i64 = -100;
const KEY_TAG: &[u8; 24] = b"wax/pretrain-windows\0\0\0\0";

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
}

/// How to pretrain.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainConfig {
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
    pub train_max_bytes: Option<usize>,
    /// The same for the validation split.
    pub val_max_bytes: Option<usize>,
    /// Show a progress bar on standard error.
    pub progress: bool,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
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
        for b in [self.beta1, self.beta2] {
            if !(0.0..1.0).contains(&b) {
                return bad("beta1/beta2", format!("must be in [0, 1), got {b}"));
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
}

/// One held-out measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPoint {
    pub step: usize,
    /// Mean training loss over the steps since the previous point (`None` at step 0).
    pub train_loss: Option<f64>,
    pub val_loss: f64,
    pub lr: f64,
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

/// The tokens of `split` (documents joined by `separator`), stopping after `max_bytes`.
pub fn tokenize_split(
    corpus: &Corpus,
    tok: &Tokenizer,
    split: Split,
    max_bytes: Option<usize>,
    separator: u32,
) -> Result<Vec<i64>, PretrainError> {
    let mut texts = Vec::new();
    let mut bytes = 0usize;
    for doc in corpus.documents(split) {
        if max_bytes.is_some_and(|m| bytes >= m) {
            break;
        }
        let doc = doc?;
        bytes += doc.text.len();
        texts.push(doc.text);
    }
    let mut out = Vec::new();
    for ids in tok.encode_batch(&texts, false)? {
        out.extend(ids.into_iter().map(i64::from));
        out.push(i64::from(separator));
    }
    Ok(out)
}

fn window_rng(seed: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..].copy_from_slice(KEY_TAG);
    ChaCha8Rng::from_seed(key)
}

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
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

fn global_grad_norm_clip(vars: &[Tensor], max: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut sq = 0.0f64;
    let grads: Vec<Tensor> = vars.iter().map(Tensor::grad).filter(Tensor::defined).collect();
    for g in &grads {
        sq += g.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]);
    }
    let norm = sq.sqrt();
    if norm > max {
        let scale = max / (norm + 1e-6);
        for mut g in grads {
            let _ = g.f_mul_scalar_(scale);
        }
    }
    norm
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

/// Pretrains the snapshot in `model_dir` on `corpus`, writing checkpoints under `out`.
pub fn pretrain(
    model_dir: &Path,
    corpus: &Corpus,
    cfg: &PretrainConfig,
    out: &Path,
    device: Device,
) -> Result<PretrainReport, PretrainError> {
    cfg.validate()?;
    let tok = Tokenizer::load(model_dir)?;
    let mut model = Model::load(model_dir, device, Kind::Float)?;
    let vocab = model.config().vocab_size;
    if tok.vocab_size() as i64 > vocab {
        return Err(PretrainError::Config {
            field: "model",
            why: format!(
                "{}: tokenizer has {} tokens, the model's vocab_size is {vocab}",
                model_dir.display(),
                tok.vocab_size()
            ),
        });
    }
    let separator = tok
        .token_id("<|endoftext|>")
        .or(tok.pad_id())
        .or(tok.eos_ids().first().copied())
        .ok_or_else(|| PretrainError::Config {
            field: "model",
            why: format!("{}: tokenizer has no end-of-text, pad or eos token", model_dir.display()),
        })?;
    let pad = i64::from(tok.pad_id().unwrap_or(separator));
    let train = tokenize_split(corpus, &tok, Split::Train, cfg.train_max_bytes, separator)?;
    let val = tokenize_split(corpus, &tok, Split::Validation, cfg.val_max_bytes, separator)?;
    let window = cfg.seq_len + 1;
    if train.len() < window {
        return Err(PretrainError::Config {
            field: "seq_len",
            why: format!(
                "the training split has {} tokens, fewer than seq_len + 1 = {window}",
                train.len()
            ),
        });
    }
    std::fs::create_dir_all(out)
        .map_err(|e| PretrainError::Io { path: out.into(), why: e.to_string() })?;
    let log_path = out.join("log.jsonl");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| PretrainError::Io { path: log_path.clone(), why: e.to_string() })?;

    let vars = model.var_store().trainable_variables();
    let mut opt = nn::AdamW {
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        wd: cfg.weight_decay,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(model.var_store_mut(), cfg.lr)?;

    let eval = |model: &Model| held_out_loss(model, &val, cfg.seq_len, cfg.eval_windows, pad);
    let initial = eval(&model)?;
    let mut evals =
        vec![EvalPoint { step: 0, train_loss: None, val_loss: initial, lr: cfg.lr_at(0) }];
    write_log(&mut log, &log_path, &evals[0])?;

    let bar = if cfg.progress {
        let bar = ProgressBar::new(cfg.steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(format!("val {initial:.3}"));

    let mut rng = window_rng(cfg.seed);
    let (b, t) = (cfg.batch as i64, cfg.seq_len as i64);
    let mut checkpoints = Vec::new();
    let (mut since_sum, mut since_n) = (0.0f64, 0usize);
    let started = Instant::now();
    let mut train_seconds = 0.0f64;
    for step in 0..cfg.steps {
        let step_start = Instant::now();
        let mut inputs = Vec::with_capacity(cfg.batch * cfg.seq_len);
        let mut targets = Vec::with_capacity(cfg.batch * cfg.seq_len);
        for _ in 0..cfg.batch {
            let s = below(&mut rng, (train.len() - window + 1) as u64) as usize;
            inputs.extend_from_slice(&train[s..s + cfg.seq_len]);
            targets.extend_from_slice(&train[s + 1..s + window]);
        }
        let inputs = Tensor::from_slice(&inputs).view([b, t]);
        let targets = Tensor::from_slice(&targets).view([b, t]);
        let lr = cfg.lr_at(step);
        opt.set_lr(lr);
        opt.zero_grad();
        let loss = next_token_loss(&model, &inputs, &targets)?;
        loss.f_backward()?;
        let grad_norm = global_grad_norm_clip(&vars, cfg.grad_clip);
        opt.step();
        let loss = loss.double_value(&[]);
        if !loss.is_finite() {
            return Err(PretrainError::Config {
                field: "lr",
                why: format!("training diverged at step {} (loss {loss})", step + 1),
            });
        }
        train_seconds += step_start.elapsed().as_secs_f64();
        since_sum += loss;
        since_n += 1;
        let done = step + 1;
        let tokens_per_s = (done * cfg.batch * cfg.seq_len) as f64 / train_seconds.max(1e-9);
        bar.set_message(format!("loss {loss:.3} |g| {grad_norm:.2} {tokens_per_s:.0} tok/s"));
        bar.inc(1);
        let save = cfg.save_at.contains(&done);
        if save || done == cfg.steps || (cfg.eval_every > 0 && done % cfg.eval_every == 0) {
            let point = EvalPoint {
                step: done,
                train_loss: Some(since_sum / since_n as f64),
                val_loss: eval(&model)?,
                lr,
            };
            (since_sum, since_n) = (0.0, 0);
            bar.println(format!(
                "step {done}: train loss {:.4}, held-out loss {:.4}",
                point.train_loss.unwrap_or(f64::NAN),
                point.val_loss
            ));
            write_log(&mut log, &log_path, &point)?;
            evals.push(point);
        }
        if save {
            let dir = out.join(format!("step-{done}"));
            save_checkpoint(&model, model_dir, &dir)?;
            checkpoints.push(dir);
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let final_val_loss = evals.last().map_or(initial, |e| e.val_loss);
    Ok(PretrainReport {
        parameters: model.num_parameters(),
        vocab_size: vocab,
        train_tokens: train.len(),
        val_tokens: val.len(),
        initial_val_loss: initial,
        final_val_loss,
        evals,
        checkpoints,
        steps: cfg.steps,
        seconds,
        steps_per_second: cfg.steps as f64 / train_seconds.max(1e-9),
        tokens_per_second: (cfg.steps * cfg.batch * cfg.seq_len) as f64 / train_seconds.max(1e-9),
    })
}

fn write_log(log: &mut std::fs::File, path: &Path, point: &EvalPoint) -> Result<(), PretrainError> {
    let line = serde_json::to_string(point)
        .map_err(|e| PretrainError::Io { path: path.into(), why: e.to_string() })?;
    writeln!(log, "{line}").map_err(|e| PretrainError::Io { path: path.into(), why: e.to_string() })
}

/// Pretrains `builtin:<size>@<seed>` (the seed also seeds the windows) on the corpus at
/// `corpus` (`None`: [`Corpus::locate`]'s default), on CUDA when available.
pub fn pretrain_builtin(
    size: &str,
    corpus: Option<&Path>,
    cfg: &PretrainConfig,
    out: &Path,
) -> Result<PretrainReport, PretrainError> {
    let reference = crate::builtin::BuiltinRef::parse(&format!("builtin:{size}@{}", cfg.seed))?;
    let corpus = Corpus::locate(corpus)?;
    let dir = crate::builtin::builtin_snapshot(reference)?;
    pretrain(&dir, &corpus, cfg, out, Device::cuda_if_available())
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
    }
}
