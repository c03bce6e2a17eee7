//! One trainer for every algorithm: rollouts (or planner data for SFT), advantages, the update,
//! metrics, held-out evaluation, checkpoints and resume.
//!
//! Everything random is a pure function of (run seed, step, index) — the mazes, the wind, every
//! rollout's sampling noise, PPO's minibatch order — so a run resumed from a checkpoint repeats
//! the original run's next steps exactly (on CPU: bit for bit), given the checkpoint's weights
//! and optimizer moments.

use super::advantage::{gae, group_advantages, reinforce_advantages};
use super::batch::{Batch, PolicyOut, decision_hidden, policy_forward};
use super::config::{Algorithm, TrainConfig};
use super::loss::{
    Aggregation, aggregate, approx_kl, clipped_value_loss, cosine_multiplier, dual_clip_surrogate,
    equalized_entropy, explained_variance, kl, masked_mean, normalize_advantages,
};
use super::metrics::{PairedComparison, StepMetrics};
use super::optim::AdamW;
use super::rollout::{RolloutSpec, Trajectory, TurnLayout, play};
use super::sft::planner_dataset;
use crate::maze::{EnvConfig, Maze};
use crate::model::{LoraConfig, Model, ModelError};
use crate::rng::{Stream, WaxRng};
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Errors of training, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {why}")]
    Io { what: String, why: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Run(String),
    /// The loss became NaN or infinite: the configuration cannot train (not retryable).
    #[error("the loss diverged at step {step} ({loss})")]
    Diverged { step: usize, loss: f64 },
    /// Stopped on request between steps (a cancelled stage, a draining worker).
    #[error("stopped: {0}")]
    Interrupted(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let what = what.into();
    move |e| TrainError::Io { what, why: e.to_string() }
}

/// Domain tags of the derived seeds.
const TAG_TRAIN_MAZE: u64 = 1;
const TAG_EPISODE: u64 = 2;
const TAG_SAMPLE: u64 = 3;
const TAG_EVAL_MAZE: u64 = 4;
const TAG_EVAL_EPISODE: u64 = 5;
const TAG_EVAL_SAMPLE: u64 = 6;
const TAG_SFT: u64 = 7;
const TAG_SHUFFLE: u64 = 8;

/// A seed derived from `(a, tag, b, c)` (ChaCha keyed by the mix, first output).
pub fn derive(a: u64, tag: u64, b: u64, c: u64) -> u64 {
    let mut x = a ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for v in [b, c] {
        x = (x ^ v.wrapping_mul(0xbf58_476d_1ce4_e5b9))
            .rotate_left(31)
            .wrapping_mul(0x94d0_49bb_1331_11eb);
    }
    WaxRng::new(x, Stream::Rollout).next_u64()
}

/// Held-out evaluation result: one episode per fixed maze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: usize,
    pub returns: Vec<f64>,
    pub mean: f64,
    pub gold_rate: f64,
    pub mold_rate: f64,
}

/// What `wax train` writes at the end (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub algorithm: String,
    pub model: String,
    pub steps: usize,
    pub before: Evaluation,
    pub after: Evaluation,
    pub comparison: PairedComparison,
    pub checkpoints: Vec<PathBuf>,
    pub seconds: f64,
}

/// The value head of PPO: a linear map of the final-normed hidden state.
struct ValueHead {
    weight: Tensor,
    bias: Tensor,
}

impl ValueHead {
    fn new(hidden: i64, seed: u64, device: Device) -> ValueHead {
        let mut rng = WaxRng::new(seed, Stream::Minibatch);
        let bound = 1.0 / (hidden as f64).sqrt();
        let w: Vec<f32> = (0..hidden).map(|_| ((2.0 * rng.unit() - 1.0) * bound) as f32).collect();
        ValueHead {
            weight: Tensor::from_slice(&w)
                .view([1, hidden])
                .to_device(device)
                .set_requires_grad(true),
            bias: Tensor::zeros([1], (Kind::Float, device)).set_requires_grad(true),
        }
    }

    fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.to_kind(Kind::Float).linear(&self.weight, Some(&self.bias)).squeeze_dim(-1)
    }
}

/// A training run in progress.
pub struct Trainer {
    pub cfg: TrainConfig,
    model: Model,
    reference: Option<Model>,
    tokenizer: Tokenizer,
    tokenizer_dir: PathBuf,
    layout: TurnLayout,
    env: Arc<EnvConfig>,
    opt: AdamW,
    value: Option<ValueHead>,
    sft_data: Vec<Trajectory>,
    /// Steps completed.
    pub step: usize,
    out: PathBuf,
}

fn parse_device(s: &str) -> Result<Device, TrainError> {
    crate::device::parse_device(s).ok_or_else(|| {
        TrainError::Config(format!("device: expected cpu, cuda or cuda:N, got `{s}`"))
    })
}

impl Trainer {
    /// Loads the model (plus LoRA), the tokenizer and template, and prepares `out`. With `resume`,
    /// continues from a checkpoint directory written by an earlier run of the same config.
    pub fn new(
        cfg: TrainConfig,
        out: &Path,
        resume: Option<&Resume>,
    ) -> Result<Trainer, TrainError> {
        cfg.validate().map_err(|e| TrainError::Config(e.0))?;
        let device = parse_device(&cfg.device)?;
        if let Device::Cuda(i) = device
            && !(tch::Cuda::is_available() && (i as i64) < tch::Cuda::device_count())
        {
            return Err(TrainError::Config(format!("device: libtorch sees no CUDA device {i}")));
        }
        // Validated by the config: `f32` or `bf16`.
        let kind = crate::device::parse_kind(&cfg.dtype).unwrap_or(Kind::Float);
        let source = crate::builtin::resolve_model_ref(&cfg.model)
            .map_err(|e| TrainError::Config(format!("model: {e}")))?;
        let state = match resume {
            Some(r) => Some(read_state(&r.dir)?),
            None => None,
        };
        if let (Some(s), Some(r)) = (&state, resume) {
            let mut written = s.config.clone();
            if r.relocated {
                written.model = cfg.model.clone();
                written.device = cfg.device.clone();
            }
            if written != cfg {
                return Err(TrainError::Config(format!(
                    "resume: {} was written by a different configuration",
                    r.dir.display()
                )));
            }
        }
        let resume = resume.map(|r| r.dir.as_path());
        let weights_dir = match (resume, cfg.lora.enabled) {
            (Some(dir), false) => dir.join("model"),
            _ => source.clone(),
        };
        let mut model = Model::load(&weights_dir, device, kind)?;
        if cfg.lora.enabled {
            match resume {
                Some(dir) => {
                    model.load_lora_adapter(&dir.join("adapter"))?;
                }
                None => {
                    let lora = LoraConfig {
                        rank: cfg.lora.rank,
                        alpha: cfg.lora.alpha,
                        dropout: cfg.lora.dropout,
                        targets: cfg.lora.targets.clone(),
                    };
                    model.add_lora(&lora, cfg.seed)?;
                }
            }
        }
        let reference = if cfg.kl_coef > 0.0 && cfg.algorithm != Algorithm::Sft {
            Some(Model::load(&source, device, kind)?)
        } else {
            None
        };
        let tokenizer =
            Tokenizer::load(&source).map_err(|e| TrainError::Config(format!("tokenizer: {e}")))?;
        let template = tokenizer
            .chat_template_or_plain()
            .map_err(|e| TrainError::Config(format!("chat template: {e}")))?;
        let layout = TurnLayout::new(&tokenizer, template, &cfg.template_options())
            .map_err(|e| TrainError::Config(format!("chat template: {e}")))?;

        let mut named = trainable(&model, cfg.lora.enabled);
        let value = (cfg.algorithm == Algorithm::Ppo)
            .then(|| ValueHead::new(model.config().hidden_size, cfg.seed, device));
        if let Some(v) = &value {
            named.push(("value_head.weight".into(), v.weight.shallow_clone()));
            named.push(("value_head.bias".into(), v.bias.shallow_clone()));
        }
        let mut opt = AdamW::new(named, cfg.beta1, cfg.beta2, cfg.weight_decay);
        let mut step = 0;
        if let (Some(dir), Some(s)) = (resume, &state) {
            opt.load(&dir.join("optimizer.safetensors")).map_err(TrainError::Run)?;
            if let Some(v) = &value {
                let read = Tensor::read_safetensors(dir.join("value_head.safetensors"))
                    .map_err(|e| TrainError::Run(format!("value head: {e}")))?;
                let _guard = tch::no_grad_guard();
                for (name, t) in read {
                    let dst = if name == "weight" { &v.weight } else { &v.bias };
                    dst.shallow_clone().copy_(&t.to_device(device));
                }
            }
            step = s.step;
        }
        std::fs::create_dir_all(out).map_err(io(out.display().to_string()))?;
        let env = Arc::new(cfg.env.clone());
        let sft_data = if cfg.algorithm == Algorithm::Sft {
            let seed = cfg.seed;
            planner_dataset(
                cfg.sft.trajectories,
                &cfg.maze,
                &env,
                |i| (derive(seed, TAG_SFT, i as u64, 0), derive(seed, TAG_SFT, i as u64, 1)),
                &tokenizer,
                &layout,
            )
            .map_err(TrainError::Run)?
        } else {
            Vec::new()
        };
        Ok(Trainer {
            cfg,
            model,
            reference,
            tokenizer,
            tokenizer_dir: source,
            layout,
            env,
            opt,
            value,
            sft_data,
            step,
            out: out.to_path_buf(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The planner data of an SFT run (empty otherwise).
    pub fn sft_data(&self) -> &[Trajectory] {
        &self.sft_data
    }

    fn lr_and_beta(&self, step: usize) -> (f64, f64) {
        let m = cosine_multiplier(step, self.cfg.schedule_steps, self.cfg.schedule_factor);
        (self.cfg.lr * m, self.cfg.entropy_coef * m)
    }

    /// Plays `specs` with the current policy (no gradients).
    fn rollouts(&self, specs: &[RolloutSpec]) -> Result<Vec<Trajectory>, TrainError> {
        let _guard = tch::no_grad_guard();
        play(
            &self.model,
            &self.tokenizer,
            &self.layout,
            &self.env,
            specs,
            self.cfg.temperature,
            self.cfg.token_budget,
        )
        .map_err(|e| TrainError::Run(format!("rollout: {e}")))
    }

    /// The held-out evaluation: the same mazes, wind and sampling noise whatever the run seed.
    pub fn evaluate(&self) -> Result<Evaluation, TrainError> {
        let mut specs = Vec::with_capacity(self.cfg.eval.mazes);
        for i in 0..self.cfg.eval.mazes as u64 {
            let maze = Maze::generate(&self.cfg.maze, derive(0, TAG_EVAL_MAZE, i, 0))
                .map_err(|e| TrainError::Run(e.to_string()))?;
            specs.push(RolloutSpec {
                maze: Arc::new(maze),
                episode_seed: derive(0, TAG_EVAL_EPISODE, i, 0),
                sample_seeds: vec![derive(0, TAG_EVAL_SAMPLE, i, 0)],
            });
        }
        let mut returns = Vec::new();
        let (mut gold, mut mold, mut turns) = (0u64, 0u64, 0usize);
        for chunk in specs.chunks(64) {
            for t in self.rollouts(chunk)? {
                returns.push(t.ret);
                gold += u64::from(t.gold);
                mold += u64::from(t.mold);
                turns += t.decisions.len();
            }
        }
        let n = returns.len().max(1) as f64;
        Ok(Evaluation {
            step: self.step,
            mean: returns.iter().sum::<f64>() / n,
            gold_rate: gold as f64 / turns.max(1) as f64,
            mold_rate: mold as f64 / turns.max(1) as f64,
            returns,
        })
    }

    /// One optimizer step (RL: one rollout batch, possibly several updates; SFT: one batch).
    pub fn train_step(&mut self) -> Result<StepMetrics, TrainError> {
        let started = Instant::now();
        let s = self.step;
        let (lr, beta) = self.lr_and_beta(s);
        let mut m = StepMetrics {
            step: s + 1,
            algorithm: self.cfg.algorithm.name().into(),
            lr,
            entropy_coef: beta,
            ..Default::default()
        };
        if self.cfg.algorithm == Algorithm::Sft {
            self.sft_step(&mut m, lr)?;
        } else {
            self.rl_step(&mut m, lr, beta)?;
        }
        self.step += 1;
        m.step_s = started.elapsed().as_secs_f64();
        Ok(m)
    }

    fn rl_step(&mut self, m: &mut StepMetrics, lr: f64, beta: f64) -> Result<(), TrainError> {
        let cfg = self.cfg.clone();
        let s = self.step as u64;
        let t0 = Instant::now();
        let mut specs = Vec::with_capacity(cfg.mazes_per_step);
        for j in 0..cfg.mazes_per_step as u64 {
            let maze = Maze::generate(&cfg.maze, derive(cfg.seed, TAG_TRAIN_MAZE, s, j))
                .map_err(|e| TrainError::Run(e.to_string()))?;
            let base = j * cfg.group_size as u64;
            specs.push(RolloutSpec {
                maze: Arc::new(maze),
                episode_seed: derive(cfg.seed, TAG_EPISODE, s, j),
                sample_seeds: (0..cfg.group_size as u64)
                    .map(|r| derive(cfg.seed, TAG_SAMPLE, s, base + r))
                    .collect(),
            });
        }
        let trajs: Vec<Trajectory> =
            self.rollouts(&specs)?.into_iter().filter(|t| !t.decisions.is_empty()).collect();
        if trajs.is_empty() {
            return Err(TrainError::Run("no rollout took a turn (token budget too small?)".into()));
        }
        m.rollout_s = t0.elapsed().as_secs_f64();
        record_episodes(m, &trajs.iter().collect::<Vec<_>>());

        let device = self.model.device();
        let groups: Vec<usize> = trajs.iter().map(|t| t.group).collect();
        let rewards: Vec<Vec<f64>> =
            trajs.iter().map(|t| t.decisions.iter().map(|d| d.reward).collect()).collect();
        let all = Batch::new(&trajs.iter().collect::<Vec<_>>(), device);
        // Values at sampling time (PPO) and the reference's log-probs (KL), without gradients.
        let (old_values, ref_logp) = {
            let _guard = tch::no_grad_guard();
            let old_values = match &self.value {
                Some(v) => Some(v.forward(&decision_hidden(&self.model, &all)?)),
                None => None,
            };
            let ref_logp = match &self.reference {
                Some(r) => Some(policy_forward(r, &all, &self.layout.moves, cfg.temperature)?.logp),
                None => None,
            };
            (old_values, ref_logp)
        };
        let (adv, returns): (Vec<Vec<f64>>, Option<Vec<Vec<f64>>>) = match cfg.algorithm {
            Algorithm::DrGrpo | Algorithm::Grpo => {
                let r: Vec<f64> = trajs.iter().map(|t| t.ret).collect();
                let a = group_advantages(&r, &groups, cfg.algorithm == Algorithm::Grpo, 1e-6);
                (trajs.iter().zip(a).map(|(t, a)| vec![a; t.decisions.len()]).collect(), None)
            }
            Algorithm::Reinforce => (reinforce_advantages(&rewards, &groups), None),
            Algorithm::Ppo => {
                let v = old_values.as_ref().map(host_rows).unwrap_or_default();
                let (mut advs, mut rets) = (Vec::new(), Vec::new());
                for (i, r) in rewards.iter().enumerate() {
                    let (a, g) = gae(r, &v[i][..r.len()], cfg.ppo.gamma, cfg.ppo.lambda);
                    advs.push(a);
                    rets.push(g);
                }
                (advs, Some(rets))
            }
            Algorithm::Sft => {
                return Err(TrainError::Run("SFT trains on planner data, not rollouts".into()));
            }
        };
        if let (Some(v), Some(r)) = (&old_values, &returns) {
            let v = host_rows(v);
            let (mut vs, mut rs) = (Vec::new(), Vec::new());
            for (i, row) in r.iter().enumerate() {
                vs.extend_from_slice(&v[i][..row.len()]);
                rs.extend_from_slice(row);
            }
            m.explained_variance = Some(explained_variance(&vs, &rs));
        }
        let adv_all = all.per_decision(&adv, device);
        let ret_all = returns.as_ref().map(|r| all.per_decision(r, device));

        let t1 = Instant::now();
        let n = trajs.len();
        let minibatches = cfg.minibatches().min(n);
        let mut acc = UpdateAcc::default();
        for epoch in 0..cfg.epochs() {
            let mut order: Vec<usize> = (0..n).collect();
            if cfg.epochs() > 1 || minibatches > 1 {
                let mut rng =
                    WaxRng::new(derive(cfg.seed, TAG_SHUFFLE, s, epoch as u64), Stream::Minibatch);
                rng.shuffle(&mut order);
            }
            for mb in 0..minibatches {
                let rows: Vec<usize> =
                    order.iter().copied().skip(mb).step_by(minibatches).collect();
                self.opt.zero_grad();
                let micro = cfg.grad_accum.min(rows.len()).max(1);
                for k in 0..micro {
                    let part: Vec<usize> = rows.iter().copied().skip(k).step_by(micro).collect();
                    let idx =
                        Tensor::from_slice(&part.iter().map(|&i| i as i64).collect::<Vec<_>>())
                            .to_device(device);
                    let sub: Vec<&Trajectory> = part.iter().map(|&i| &trajs[i]).collect();
                    let batch = Batch::new(&sub, device);
                    let t = batch.turns;
                    let pick = |x: &Tensor| x.index_select(0, &idx).narrow(1, 0, t);
                    let mut adv_b = pick(&adv_all);
                    if cfg.algorithm == Algorithm::Ppo {
                        adv_b = normalize_advantages(&adv_b, &batch.mask);
                    }
                    let out =
                        policy_forward(&self.model, &batch, &self.layout.moves, cfg.temperature)?;
                    let loss = self.rl_loss(
                        &cfg,
                        &batch,
                        &out,
                        &adv_b,
                        ref_logp.as_ref().map(pick),
                        old_values.as_ref().map(pick),
                        ret_all.as_ref().map(pick),
                        beta,
                        epoch == 0,
                        &mut acc,
                    )?;
                    (loss / micro as f64).backward();
                }
                let norm = self.opt.clip_grad_norm(cfg.grad_clip);
                acc.grad_norm = acc.grad_norm.max(norm);
                self.opt.step(lr);
            }
        }
        m.update_s = t1.elapsed().as_secs_f64();
        acc.finish(m);
        m.tokens_per_s = m.rollout_tokens as f64 / m.rollout_s.max(1e-9);
        Ok(())
    }

    // `loss = loss + term` builds new graph nodes; the in-place `+=` would modify a node that
    // autograd may still need.
    #[allow(clippy::too_many_arguments, clippy::assign_op_pattern)]
    fn rl_loss(
        &self,
        cfg: &TrainConfig,
        batch: &Batch,
        out: &PolicyOut,
        adv: &Tensor,
        ref_logp: Option<Tensor>,
        old_values: Option<Tensor>,
        returns: Option<Tensor>,
        beta: f64,
        first_epoch: bool,
        acc: &mut UpdateAcc,
    ) -> Result<Tensor, TrainError> {
        let agg = cfg.aggregation();
        let mask = &batch.mask;
        let sur = dual_clip_surrogate(
            &out.logp,
            &batch.old_logp,
            adv,
            cfg.clip_eps,
            cfg.dual_clip,
            cfg.log_ratio_clamp,
        );
        let pg = aggregate(&sur.loss, mask, agg, cfg.z);
        let flat4 = out.logits4.reshape([-1, 4]);
        let classes = batch.classes.reshape([-1, 4]);
        let h_eq = equalized_entropy(&flat4, &classes).view([batch.rows, batch.turns]);
        let mut loss = &pg - aggregate(&h_eq, mask, agg, cfg.z) * beta;
        if let Some(r) = &ref_logp {
            let k = kl(&out.logp, r, cfg.kl_estimator);
            acc.kl_sum += masked_mean(&k.detach(), mask) * mask_count(mask);
            acc.kl_seen = true;
            loss = loss + aggregate(&k, mask, agg, cfg.z) * cfg.kl_coef;
        }
        if let (Some(v_old), Some(ret), Some(head)) = (&old_values, &returns, &self.value) {
            // The critic reads the policy's hidden state detached: its loss trains the head
            // only, so value errors (in squared reward units) never swamp the policy gradient.
            let v = head.forward(&out.hidden.detach());
            let vl = aggregate(
                &clipped_value_loss(&v, v_old, ret, cfg.ppo.value_clip),
                mask,
                Aggregation::TokenMean,
                1.0,
            );
            acc.value_loss += vl.double_value(&[]);
            acc.value_n += 1;
            loss = loss + vl * cfg.ppo.value_coef;
        }
        let count = mask_count(mask);
        acc.updates += 1;
        acc.loss += loss.double_value(&[]);
        acc.pg += pg.double_value(&[]);
        acc.clip += masked_mean(&sur.clipped.to_kind(Kind::Float), mask) * count;
        acc.dual += masked_mean(&sur.dual_clipped.to_kind(Kind::Float), mask) * count;
        acc.approx_kl += approx_kl(&out.logp.detach(), &batch.old_logp, mask) * count;
        acc.decisions += count;
        if first_epoch {
            let _guard = tch::no_grad_guard();
            let logits = flat4.detach();
            let probs = logits.softmax(-1, Kind::Float);
            let h = -(&probs * logits.log_softmax(-1, Kind::Float)).sum_dim_intlist(
                -1,
                false,
                Kind::Float,
            );
            let mflat = mask.reshape([-1]);
            acc.entropy += (&h * &mflat).sum(Kind::Double).double_value(&[]);
            acc.entropy_eq +=
                (h_eq.detach().reshape([-1]) * &mflat).sum(Kind::Double).double_value(&[]);
            acc.entropy_n += count;
            for c in 0..3i64 {
                let only = classes.where_scalarother(&classes.eq(c), -1);
                let hc = equalized_entropy(&logits, &only);
                let eligible =
                    only.eq(c).sum_dim_intlist(-1, false, Kind::Int64).ge(2).to_kind(Kind::Float)
                        * &mflat;
                acc.class_sum[c as usize] += (&hc * &eligible).sum(Kind::Double).double_value(&[]);
                acc.class_n[c as usize] += eligible.sum(Kind::Double).double_value(&[]);
            }
        }
        Ok(loss)
    }

    fn sft_step(&mut self, m: &mut StepMetrics, lr: f64) -> Result<(), TrainError> {
        let t0 = Instant::now();
        let n = self.sft_data.len();
        let b = self.cfg.sft.batch.min(n);
        let start = (self.step * b) % n;
        let rows: Vec<&Trajectory> = (0..b).map(|i| &self.sft_data[(start + i) % n]).collect();
        record_episodes(m, &rows);
        let device = self.model.device();
        self.opt.zero_grad();
        let micro = self.cfg.grad_accum.min(rows.len()).max(1);
        let (mut loss_sum, mut correct, mut total) = (0.0, 0.0, 0.0);
        for k in 0..micro {
            let part: Vec<&Trajectory> = rows.iter().copied().skip(k).step_by(micro).collect();
            let batch = Batch::new(&part, device);
            let hidden = decision_hidden(&self.model, &batch)?;
            let logits = hidden.matmul(&self.model.lm_head().tr()).to_kind(Kind::Float);
            let moves = Tensor::from_slice(&self.layout.moves).to_device(device);
            let target =
                moves.index_select(0, &batch.actions.reshape([-1])).view([batch.rows, batch.turns]);
            let nll = -logits
                .log_softmax(-1, Kind::Float)
                .gather(-1, &target.unsqueeze(-1), false)
                .squeeze_dim(-1);
            let loss = aggregate(&nll, &batch.mask, Aggregation::TokenMean, 1.0);
            (&loss / micro as f64).backward();
            loss_sum += loss.double_value(&[]);
            let _guard = tch::no_grad_guard();
            let hit =
                logits.argmax(-1, false).eq_tensor(&target).to_kind(Kind::Float) * &batch.mask;
            correct += hit.sum(Kind::Double).double_value(&[]);
            total += mask_count(&batch.mask);
        }
        m.grad_norm = self.opt.clip_grad_norm(self.cfg.grad_clip);
        self.opt.step(lr);
        m.loss = loss_sum / micro as f64;
        m.pg_loss = m.loss;
        m.sft_accuracy = Some(correct / total.max(1.0));
        m.update_s = t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Writes `out/step-N` (a checkpoint with the merged model; see
    /// [`Trainer::save_checkpoint_to`]).
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let dir = self.out.join(format!("step-{}", self.step));
        self.save_checkpoint_to(&dir, true)?;
        Ok(dir)
    }

    /// Writes a checkpoint into `dir` (atomically: built beside it, then renamed): the LoRA
    /// adapter, the optimizer moments, the value head and the state (step, config), plus the
    /// merged model as an HF snapshot with the tokenizer when `with_model` (always for full
    /// fine-tuning, whose weights are the state). A resume needs no merged model under LoRA.
    pub fn save_checkpoint_to(&self, dir: &Path, with_model: bool) -> Result<(), TrainError> {
        let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let parent = dir.parent().unwrap_or(Path::new("."));
        let tmp = parent.join(format!(".{name}.partial"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(tmp.display().to_string()))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(tmp.display().to_string()))?;
        if with_model || !self.cfg.lora.enabled {
            crate::pretrain::save_checkpoint(&self.model, &self.tokenizer_dir, &tmp.join("model"))
                .map_err(|e| TrainError::Run(format!("checkpoint: {e}")))?;
        }
        if self.cfg.lora.enabled {
            self.model.save_lora_adapter(&tmp.join("adapter"))?;
        }
        self.opt
            .save(&tmp.join("optimizer.safetensors"))
            .map_err(|e| TrainError::Run(format!("optimizer state: {e}")))?;
        if let Some(v) = &self.value {
            Tensor::write_safetensors(
                &[
                    ("weight", v.weight.detach().to_device(Device::Cpu)),
                    ("bias", v.bias.detach().to_device(Device::Cpu)),
                ],
                tmp.join("value_head.safetensors"),
            )
            .map_err(|e| TrainError::Run(format!("value head: {e}")))?;
        }
        let state = RunState { step: self.step, config: self.cfg.clone() };
        let text =
            serde_json::to_string_pretty(&state).map_err(|e| TrainError::Run(e.to_string()))?;
        std::fs::write(tmp.join("state.json"), text).map_err(io("state.json"))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir.display().to_string()))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir.display().to_string()))?;
        Ok(())
    }

    /// The directory checkpoints go to.
    pub fn out(&self) -> &Path {
        &self.out
    }
}

/// Where a run continues from.
#[derive(Debug, Clone)]
pub struct Resume {
    /// A checkpoint directory (`step-N`) of an earlier run of the same configuration.
    pub dir: PathBuf,
    /// The run moved to another machine: the base model sits at another path than when the
    /// checkpoint was written (the same snapshot, copied), and the device may differ. Accept a
    /// different `model` path and `device`. Only callers that know the content is identical (a
    /// stage whose input is content-addressed) set this.
    pub relocated: bool,
}

impl Resume {
    /// Resume from `dir`, requiring the very same configuration.
    pub fn from_dir(dir: &Path) -> Resume {
        Resume { dir: dir.to_path_buf(), relocated: false }
    }
}

/// The part of a checkpoint that is not tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: usize,
    config: TrainConfig,
}

fn read_state(dir: &Path) -> Result<RunState, TrainError> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).map_err(io(p.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", p.display())))
}

/// The trainable parameters, sorted by name (a fixed order for the optimizer state).
fn trainable(model: &Model, lora: bool) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = model
        .var_store()
        .variables()
        .into_iter()
        .filter(|(n, _)| !lora || n.contains("lora_A") || n.contains("lora_B"))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, t) in &mut vars {
        if !t.requires_grad() {
            *t = t.set_requires_grad(true);
        }
    }
    vars
}

fn host_rows(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.detach().to_kind(Kind::Double).to_device(Device::Cpu);
    let cols = t.size()[1] as usize;
    let flat = Vec::<f64>::try_from(&t.reshape([-1])).unwrap_or_default();
    flat.chunks(cols.max(1)).map(<[f64]>::to_vec).collect()
}

fn mask_count(mask: &Tensor) -> f64 {
    mask.sum(Kind::Double).double_value(&[])
}

fn record_episodes(m: &mut StepMetrics, trajs: &[&Trajectory]) {
    let r: Vec<f64> = trajs.iter().map(|t| t.ret).collect();
    let n = r.len().max(1) as f64;
    let mean = r.iter().sum::<f64>() / n;
    m.return_mean = mean;
    m.return_std = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    m.return_max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m.return_min = r.iter().copied().fold(f64::INFINITY, f64::min);
    let turns: usize = trajs.iter().map(|t| t.decisions.len()).sum();
    let per_turn = |k: u32| f64::from(k) / turns.max(1) as f64;
    m.gold_rate = per_turn(trajs.iter().map(|t| t.gold).sum());
    m.mold_rate = per_turn(trajs.iter().map(|t| t.mold).sum());
    m.path_rate = per_turn(trajs.iter().map(|t| t.path).sum());
    m.episodes = trajs.len();
    m.truncated = trajs.iter().filter(|t| t.truncated).count();
    m.rollout_tokens = trajs.iter().map(|t| t.tokens.len()).sum();
}

/// Sums over an update's minibatches.
#[derive(Default)]
struct UpdateAcc {
    updates: usize,
    loss: f64,
    pg: f64,
    clip: f64,
    dual: f64,
    approx_kl: f64,
    decisions: f64,
    kl_sum: f64,
    kl_seen: bool,
    value_loss: f64,
    value_n: usize,
    grad_norm: f64,
    entropy: f64,
    entropy_eq: f64,
    entropy_n: f64,
    class_sum: [f64; 3],
    class_n: [f64; 3],
}

impl UpdateAcc {
    fn finish(&self, m: &mut StepMetrics) {
        let u = self.updates.max(1) as f64;
        let d = self.decisions.max(1.0);
        m.loss = self.loss / u;
        m.pg_loss = self.pg / u;
        m.clip_fraction = self.clip / d;
        m.dual_clip_fraction = self.dual / d;
        m.approx_kl = self.approx_kl / d;
        m.kl_ref = self.kl_seen.then(|| self.kl_sum / d);
        m.value_loss = (self.value_n > 0).then(|| self.value_loss / self.value_n as f64);
        m.grad_norm = self.grad_norm;
        let e = self.entropy_n.max(1.0);
        m.entropy = self.entropy / e;
        m.entropy_eq = self.entropy_eq / e;
        let class = |c: usize| (self.class_n[c] > 0.0).then(|| self.class_sum[c] / self.class_n[c]);
        m.entropy_path = class(0);
        m.entropy_mold = class(1);
        m.entropy_gold = class(2);
    }
}
