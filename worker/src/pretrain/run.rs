//! The pretraining loop, resumable: a [`Pretrainer`] holds everything a run's future depends
//! on — weights, optimizer moments, the window generator, the loss accumulators and the log —
//! and [`Pretrainer::save_resume`] writes all of it, so a run resumed from that directory (on
//! another machine, in an empty output folder) takes the same steps as one that never stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::data::{Windows, tokenize_split};
use super::{
    EvalPoint, PretrainConfig, PretrainError, PretrainReport, held_out_loss, next_token_loss,
    save_checkpoint,
};
use crate::builtin::copy_tokenizer_files;
use crate::model::Model;
use crate::rl::optim::AdamW;
use crate::tokenizer::{Corpus, Split, Tokenizer};

/// What a resume checkpoint holds besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeState {
    step: usize,
    /// Training-loss sum and count since the last held-out measurement.
    since_sum: f64,
    since_n: usize,
    config: PretrainConfig,
}

/// One optimizer step's outcome.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// Steps done, counting this one.
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    /// The held-out measurement taken after this step, if any.
    pub eval: Option<EvalPoint>,
    /// The checkpoint written after this step (`save_at`), if any.
    pub saved: Option<PathBuf>,
}

/// A pretraining run in progress.
pub struct Pretrainer {
    cfg: PretrainConfig,
    /// Where the tokenizer files come from (the initial snapshot).
    tokenizer_dir: PathBuf,
    model: Model,
    opt: AdamW,
    train: Vec<i64>,
    val: Vec<i64>,
    windows: Windows,
    pad: i64,
    /// Steps done.
    pub step: usize,
    since_sum: f64,
    since_n: usize,
    evals: Vec<EvalPoint>,
    checkpoints: Vec<PathBuf>,
    out: PathBuf,
    log: std::fs::File,
    train_seconds: f64,
}

fn named_parameters(model: &Model) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, t) in &mut vars {
        if !t.requires_grad() {
            *t = t.set_requires_grad(true);
        }
    }
    vars
}

fn write_line<T: Serialize>(
    file: &mut std::fs::File,
    path: &Path,
    v: &T,
) -> Result<(), PretrainError> {
    let line = serde_json::to_string(v).map_err(|e| PretrainError::io(path, e))?;
    writeln!(file, "{line}").map_err(|e| PretrainError::io(path, e))
}

impl Pretrainer {
    /// Loads the snapshot in `model_dir` (or, with `resume`, the weights and state of that
    /// resume checkpoint), tokenizes the corpus and opens `out/log.jsonl`. Without `resume`
    /// the initial held-out loss is measured.
    pub fn new(
        model_dir: &Path,
        cfg: &PretrainConfig,
        out: &Path,
        device: Device,
        resume: Option<&Path>,
    ) -> Result<Pretrainer, PretrainError> {
        cfg.validate()?;
        let corpus = Corpus::locate(cfg.corpus.as_deref())?;
        let tok = Tokenizer::load(model_dir)?;
        let state = match resume {
            Some(dir) => {
                let path = dir.join("state.json");
                let text =
                    std::fs::read_to_string(&path).map_err(|e| PretrainError::io(&path, e))?;
                let state: ResumeState =
                    serde_json::from_str(&text).map_err(|e| PretrainError::io(&path, e))?;
                let mut written = state.config.clone();
                written.progress = cfg.progress;
                if &written != cfg {
                    return Err(PretrainError::Config {
                        field: "resume",
                        why: format!("{} was written by a different configuration", dir.display()),
                    });
                }
                Some(state)
            }
            None => None,
        };
        let weights = resume.map_or_else(|| model_dir.to_path_buf(), |d| d.join("model"));
        let model = Model::load(&weights, device, Kind::Float)?;
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
                why: format!(
                    "{}: tokenizer has no end-of-text, pad or eos token",
                    model_dir.display()
                ),
            })?;
        let pad = i64::from(tok.pad_id().unwrap_or(separator));
        let train = tokenize_split(&corpus, &tok, Split::Train, cfg.train_max_bytes, separator)?;
        let val = tokenize_split(&corpus, &tok, Split::Validation, cfg.val_max_bytes, separator)?;
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
        std::fs::create_dir_all(out).map_err(|e| PretrainError::io(out, e))?;
        let mut opt = AdamW::new(named_parameters(&model), cfg.beta1, cfg.beta2, cfg.weight_decay);
        let mut windows = Windows::new(cfg.seed, train.len(), window, cfg.batch);
        let log_path = out.join("log.jsonl");
        let mut log =
            std::fs::File::create(&log_path).map_err(|e| PretrainError::io(&log_path, e))?;
        let mut me_evals = Vec::new();
        let (mut step, mut since_sum, mut since_n) = (0, 0.0, 0);
        if let (Some(dir), Some(s)) = (resume, &state) {
            opt.load(&dir.join("optimizer.safetensors"))
                .map_err(|why| PretrainError::Io { path: dir.to_path_buf(), why })?;
            windows.skip(s.step);
            (step, since_sum, since_n) = (s.step, s.since_sum, s.since_n);
            let carried = dir.join("log.jsonl");
            let text =
                std::fs::read_to_string(&carried).map_err(|e| PretrainError::io(&carried, e))?;
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let p: EvalPoint = serde_json::from_str(line)
                    .map_err(|e| PretrainError::io(&carried, format!("line {}: {e}", i + 1)))?;
                write_line(&mut log, &log_path, &p)?;
                me_evals.push(p);
            }
        }
        let mut me = Pretrainer {
            cfg: cfg.clone(),
            tokenizer_dir: model_dir.to_path_buf(),
            model,
            opt,
            train,
            val,
            windows,
            pad,
            step,
            since_sum,
            since_n,
            evals: me_evals,
            checkpoints: Vec::new(),
            out: out.to_path_buf(),
            log,
            train_seconds: 0.0,
        };
        if resume.is_none() {
            let initial = me.held_out()?;
            let point =
                EvalPoint { step: 0, train_loss: None, val_loss: initial, lr: cfg.lr_at(0) };
            me.record(point)?;
        }
        Ok(me)
    }

    fn held_out(&self) -> Result<f64, PretrainError> {
        held_out_loss(&self.model, &self.val, self.cfg.seq_len, self.cfg.eval_windows, self.pad)
    }

    fn record(&mut self, point: EvalPoint) -> Result<(), PretrainError> {
        let path = self.out.join("log.jsonl");
        write_line(&mut self.log, &path, &point)?;
        self.evals.push(point);
        Ok(())
    }

    pub fn config(&self) -> &PretrainConfig {
        &self.cfg
    }

    /// Held-out measurements so far (the carried ones too).
    pub fn evals(&self) -> &[EvalPoint] {
        &self.evals
    }

    /// Training tokens per second of optimizer time in this process.
    pub fn tokens_per_second(&self, steps: usize) -> f64 {
        (steps * self.cfg.batch * self.cfg.seq_len) as f64 / self.train_seconds.max(1e-9)
    }

    /// One optimizer step; measures the held-out loss and writes the `save_at` checkpoint when
    /// due after it.
    pub fn train_step(&mut self) -> Result<StepOutcome, PretrainError> {
        let started = Instant::now();
        let cfg = &self.cfg;
        let (b, t) = (cfg.batch as i64, cfg.seq_len as i64);
        let mut inputs = Vec::with_capacity(cfg.batch * cfg.seq_len);
        let mut targets = Vec::with_capacity(cfg.batch * cfg.seq_len);
        for s in self.windows.next_step() {
            inputs.extend_from_slice(&self.train[s..s + cfg.seq_len]);
            targets.extend_from_slice(&self.train[s + 1..s + cfg.seq_len + 1]);
        }
        let inputs = Tensor::from_slice(&inputs).view([b, t]);
        let targets = Tensor::from_slice(&targets).view([b, t]);
        let lr = cfg.lr_at(self.step);
        self.opt.zero_grad();
        let loss = next_token_loss(&self.model, &inputs, &targets)?;
        loss.f_backward()?;
        let grad_norm = self.opt.clip_grad_norm(cfg.grad_clip);
        self.opt.step(lr);
        let loss = loss.double_value(&[]);
        let done = self.step + 1;
        if !loss.is_finite() {
            return Err(PretrainError::Diverged { step: done, loss });
        }
        self.step = done;
        self.train_seconds += started.elapsed().as_secs_f64();
        self.since_sum += loss;
        self.since_n += 1;
        let mut outcome = StepOutcome { step: done, loss, grad_norm, eval: None, saved: None };
        if self.cfg.evaluates_after(done) {
            let point = EvalPoint {
                step: done,
                train_loss: Some(self.since_sum / self.since_n as f64),
                val_loss: self.held_out()?,
                lr,
            };
            (self.since_sum, self.since_n) = (0.0, 0);
            self.record(point.clone())?;
            outcome.eval = Some(point);
        }
        if self.cfg.save_at.contains(&done) {
            let dir = self.out.join(format!("step-{done}"));
            save_checkpoint(&self.model, &self.tokenizer_dir, &dir)?;
            self.checkpoints.push(dir.clone());
            outcome.saved = Some(dir);
        }
        Ok(outcome)
    }

    /// Writes the current weights as a snapshot (HF format, with the tokenizer) into `dir`.
    pub fn save_snapshot(&self, dir: &Path) -> Result<(), PretrainError> {
        save_checkpoint(&self.model, &self.tokenizer_dir, dir)
    }

    /// Writes everything a resumed run needs into `dir` (built beside it, then renamed): the
    /// weights as a snapshot (`model/`), the optimizer moments, the step and accumulators, and
    /// the log so far.
    pub fn save_resume(&self, dir: &Path) -> Result<(), PretrainError> {
        let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let tmp = dir.parent().unwrap_or(Path::new(".")).join(format!(".{name}.partial"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| PretrainError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| PretrainError::io(&tmp, e))?;
        self.model.save_pretrained(&tmp.join("model"))?;
        copy_tokenizer_files(&self.tokenizer_dir, &tmp.join("model"))?;
        let opt = tmp.join("optimizer.safetensors");
        self.opt.save(&opt)?;
        let state = ResumeState {
            step: self.step,
            since_sum: self.since_sum,
            since_n: self.since_n,
            config: self.cfg.clone(),
        };
        let path = tmp.join("state.json");
        let text = serde_json::to_string_pretty(&state).map_err(|e| PretrainError::io(&path, e))?;
        std::fs::write(&path, text).map_err(|e| PretrainError::io(&path, e))?;
        let path = tmp.join("log.jsonl");
        let mut log = std::fs::File::create(&path).map_err(|e| PretrainError::io(&path, e))?;
        for p in &self.evals {
            write_line(&mut log, &path, p)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| PretrainError::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| PretrainError::io(dir, e))
    }

    fn report(&self, started: Instant, steps_here: usize) -> PretrainReport {
        let initial = self.evals.first().map_or(f64::NAN, |e| e.val_loss);
        PretrainReport {
            parameters: self.model.num_parameters(),
            vocab_size: self.model.config().vocab_size,
            train_tokens: self.train.len(),
            val_tokens: self.val.len(),
            initial_val_loss: initial,
            final_val_loss: self.evals.last().map_or(initial, |e| e.val_loss),
            evals: self.evals.clone(),
            checkpoints: self.checkpoints.clone(),
            steps: self.step,
            seconds: started.elapsed().as_secs_f64(),
            steps_per_second: steps_here as f64 / self.train_seconds.max(1e-9),
            tokens_per_second: self.tokens_per_second(steps_here),
        }
    }
}

/// What a caller may do between pretraining steps.
pub trait PretrainHooks {
    /// After every step; an error ends the run ([`PretrainError::Interrupted`] to stop).
    fn after_step(&mut self, run: &Pretrainer, step: &StepOutcome) -> Result<(), PretrainError>;
}

struct NoHooks;

impl PretrainHooks for NoHooks {
    fn after_step(&mut self, _: &Pretrainer, _: &StepOutcome) -> Result<(), PretrainError> {
        Ok(())
    }
}

/// Pretrains the snapshot in `model_dir` on `cfg.corpus`, writing checkpoints under `out`.
pub fn pretrain(
    model_dir: &Path,
    cfg: &PretrainConfig,
    out: &Path,
    device: Device,
) -> Result<PretrainReport, PretrainError> {
    pretrain_with(model_dir, cfg, out, device, None, &mut NoHooks)
}

/// [`pretrain`], resumed from a resume checkpoint when given, with `hooks` between steps.
pub fn pretrain_with(
    model_dir: &Path,
    cfg: &PretrainConfig,
    out: &Path,
    device: Device,
    resume: Option<&Path>,
    hooks: &mut dyn PretrainHooks,
) -> Result<PretrainReport, PretrainError> {
    let started = Instant::now();
    let mut run = Pretrainer::new(model_dir, cfg, out, device, resume)?;
    let bar = if cfg.progress {
        let bar = ProgressBar::new(cfg.steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(run.step as u64);
        bar
    } else {
        ProgressBar::hidden()
    };
    let first = run.step;
    while run.step < cfg.steps {
        let o = run.train_step()?;
        bar.set_message(format!(
            "loss {:.3} |g| {:.2} {:.0} tok/s",
            o.loss,
            o.grad_norm,
            run.tokens_per_second(run.step - first)
        ));
        bar.inc(1);
        if let Some(p) = &o.eval {
            bar.println(p.to_string());
        }
        hooks.after_step(&run, &o)?;
    }
    bar.finish_and_clear();
    Ok(run.report(started, run.step - first))
}

/// Pretrains `builtin:<size>@<seed>` (the seed also seeds the windows) on `cfg.corpus`, on
/// CUDA when available.
pub fn pretrain_builtin(
    size: &str,
    cfg: &PretrainConfig,
    out: &Path,
) -> Result<PretrainReport, PretrainError> {
    let reference = crate::builtin::BuiltinRef::parse(&format!("builtin:{size}@{}", cfg.seed))?;
    let dir = crate::builtin::builtin_snapshot(reference)?;
    pretrain(&dir, cfg, out, Device::cuda_if_available())
}
