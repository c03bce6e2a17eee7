//! Measuring the engine: prefill (forward) and decode throughput of a model on its device.
//!
//! The measured path is the product's own: a [`Session`] appends the prompts (one forward over
//! `batch × prompt_len` tokens, logits for the last position only) and then decodes
//! `new_tokens` per row with the configured sampling, one cache slot per step. On CUDA the clock
//! is read only after synchronising the device.

use super::decode::{Feed, logits_kind};
use super::fused;
use super::sampling::{Sampling, sample, sample_reference};
use super::session::{Chunk, Decode, GenerateError, GenerateOptions, Session};
use crate::model::{ForwardInput, Hooks, LogitsSelect, Model, TokenRole};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeBenchConfig {
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub sampling: Sampling,
    /// Untimed runs first (allocator and kernel warm-up).
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub repeats: usize,
    pub seed: u64,
    /// How the decode loop runs (`auto`: CUDA graphs where they apply).
    pub decode: Decode,
}

impl Default for DecodeBenchConfig {
    fn default() -> Self {
        DecodeBenchConfig {
            batch: 8,
            prompt_len: 64,
            new_tokens: 64,
            sampling: Sampling { temperature: 1.0, top_k: None, top_p: Some(0.95) },
            warmup: 1,
            repeats: 3,
            seed: 0,
            decode: Decode::Auto,
        }
    }
}

/// One measurement (medians over the timed repeats).
#[derive(Debug, Clone, Serialize)]
pub struct DecodeBench {
    pub parameters: i64,
    pub device: String,
    pub dtype: String,
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Full forward over every position (logits for all of them), tokens per second.
    pub forward_tokens_per_s: f64,
    /// The session's prefill (logits for the last position only), prompt tokens per second.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second over the decode loop alone.
    pub decode_tokens_per_s: f64,
    /// Milliseconds per decode step (one token for every row).
    pub decode_ms_per_step: f64,
    /// Milliseconds per call of the sampler alone on `[batch, vocab]` float32 logits (part of
    /// each decode step).
    pub sample_ms: f64,
    /// The sampler the decode loop used: `fused` (one CUDA kernel) or `libtorch`.
    pub sampler: String,
    /// Milliseconds per call of the sampler on the same logits rounded to bfloat16 (the fused
    /// kernel's bfloat16 variant; CUDA only).
    pub sample_bf16_ms: Option<f64>,
    /// The kind the decode loop kept its logits in: `float32`, or `bfloat16` for a bfloat16
    /// model with `WAX_DECODE_LOGITS=bf16` and the step feed.
    pub decode_logits: String,
    /// Milliseconds per call of the libtorch sampler on the same logits (equal to `sample_ms`
    /// where that is the sampler in use).
    pub sample_reference_ms: f64,
    /// The decode mode requested, and whether the loop ran as captured CUDA graphs (capture time
    /// included in the decode time).
    pub decode: Decode,
    pub graphs: bool,
    /// Host wall time the decode loop spent capturing CUDA graphs (part of the decode time),
    /// milliseconds.
    pub capture_ms: f64,
    /// How the graph-ready decode step attended: `sdpa` or `kernel` (the split-K CUDA kernel,
    /// chosen by `WAX_DECODE_ATTENTION=kernel`); the eager loop always uses SDPA.
    pub step_attention: String,
    /// How the graph-ready decode step prepared queries and keys: `ops` or `kernel` (one launch
    /// for q/k norms, RoPE and cache writes, chosen by `WAX_DECODE_PREP=kernel`).
    pub step_prep: String,
    /// How the graph-ready decode step added to the residual stream and normed it: `ops` or
    /// `kernel` (one launch per norm with the add before it, chosen by `WAX_DECODE_NORM=kernel`).
    pub step_norm: String,
    /// Wall time of prefill + decode, seconds.
    pub total_s: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Random prompts of the configured shape, deterministic for the seed.
fn prompts(cfg: &DecodeBenchConfig, vocab: i64) -> Vec<Vec<i64>> {
    let mut rng = crate::rng::WaxRng::new(cfg.seed, crate::rng::Stream::Policy);
    (0..cfg.batch)
        .map(|_| (0..cfg.prompt_len).map(|_| rng.below(vocab as u64) as i64).collect())
        .collect()
}

/// Measures forward, prefill and decode throughput of `model`.
pub fn decode_bench(model: &Model, cfg: &DecodeBenchConfig) -> Result<DecodeBench, GenerateError> {
    if cfg.batch == 0 || cfg.prompt_len == 0 || cfg.new_tokens == 0 || cfg.repeats == 0 {
        return Err(GenerateError::Input(
            "bench: batch, prompt length, new tokens and repeats must be positive".into(),
        ));
    }
    let device = model.device();
    let prompts = prompts(cfg, model.config().vocab_size);
    let chunks: Vec<Chunk> =
        prompts.iter().map(|p| Chunk::uniform(p.clone(), TokenRole::Prompt)).collect();
    let seeds: Vec<u64> = (0..cfg.batch as u64).map(|i| cfg.seed.wrapping_add(i)).collect();
    let capacity = (cfg.prompt_len + cfg.new_tokens + 1) as i64;
    let opts = GenerateOptions {
        max_new_tokens: cfg.new_tokens,
        sampling: cfg.sampling,
        // Fixed-length decode: never stop early, never synchronise mid-loop.
        check_every: 0,
        decode: cfg.decode,
        ..Default::default()
    };
    let flat: Vec<i64> = prompts.concat();
    let (b, t) = (cfg.batch as i64, cfg.prompt_len as i64);
    let forward_input = ForwardInput {
        input_ids: Tensor::from_slice(&flat).view([b, t]).to_device(device),
        positions: Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0).repeat([b, 1]),
        attention_mask: Tensor::ones([b, t], (Kind::Bool, device)),
    };
    let (mut fwd, mut pre, mut dec, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut graphs = false;
    let mut capture = Vec::new();
    let _guard = tch::no_grad_guard();
    for run in 0..cfg.warmup + cfg.repeats {
        sync(device);
        let t0 = Instant::now();
        let logits =
            model.forward_select(&forward_input, None, &mut Hooks::new(), LogitsSelect::All)?;
        drop(logits);
        sync(device);
        let t1 = Instant::now();
        let mut s = Session::new(model, &seeds, capacity, Vec::new())?;
        s.append(&chunks)?;
        sync(device);
        let t2 = Instant::now();
        let g = s.generate(&opts)?;
        sync(device);
        let t3 = Instant::now();
        graphs = s.last_decode_graphed();
        if run >= cfg.warmup {
            capture.push(s.last_capture_s());
        }
        debug_assert!(g.tokens.iter().all(|r| r.len() == cfg.new_tokens));
        if run >= cfg.warmup {
            fwd.push((t1 - t0).as_secs_f64());
            pre.push((t2 - t1).as_secs_f64());
            dec.push((t3 - t2).as_secs_f64());
            total.push((t3 - t1).as_secs_f64());
        }
    }
    // The sampler alone, on logits of the decode step's shape.
    let logits = Tensor::randn([b, model.config().vocab_size], (Kind::Float, device)) * 3.0;
    let seeds_i: Vec<i64> = seeds.iter().map(|&s| s as i64).collect();
    let seeds_t = Tensor::from_slice(&seeds_i).to_device(device);
    let logits_bf16 = device.is_cuda().then(|| logits.to_kind(Kind::BFloat16));
    let (mut samp, mut samp_ref, mut samp_bf16) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..cfg.warmup + cfg.repeats.max(5) {
        sync(device);
        let t0 = Instant::now();
        drop(sample(&logits, &cfg.sampling, None, &seeds_t, step as i64));
        sync(device);
        let t1 = Instant::now();
        let at = Tensor::from(step as i64);
        drop(sample_reference(&logits, &cfg.sampling, None, &seeds_t, &at));
        sync(device);
        let t2 = Instant::now();
        if let Some(l) = &logits_bf16 {
            drop(sample(l, &cfg.sampling, None, &seeds_t, step as i64));
            sync(device);
        }
        if step >= cfg.warmup {
            samp.push((t1 - t0).as_secs_f64());
            samp_ref.push((t2 - t1).as_secs_f64());
            samp_bf16.push(t2.elapsed().as_secs_f64());
        }
    }
    let fused = fused::for_logits(&logits, &cfg.sampling).is_some();
    let feed = if graphs || cfg.decode == Decode::Static { Feed::Static } else { Feed::Eager };

    let prompt_tokens = (cfg.batch * cfg.prompt_len) as f64;
    let new = (cfg.batch * cfg.new_tokens) as f64;
    let dec = median(dec);
    Ok(DecodeBench {
        parameters: model.num_parameters(),
        device: format!("{device:?}"),
        dtype: format!("{:?}", model.kind()),
        batch: cfg.batch,
        prompt_len: cfg.prompt_len,
        new_tokens: cfg.new_tokens,
        forward_tokens_per_s: prompt_tokens / median(fwd),
        prefill_tokens_per_s: prompt_tokens / median(pre),
        decode_tokens_per_s: new / dec,
        decode_ms_per_step: dec * 1e3 / cfg.new_tokens as f64,
        sample_ms: median(samp) * 1e3,
        sampler: if fused { "fused" } else { "libtorch" }.to_string(),
        sample_bf16_ms: logits_bf16.is_some().then(|| median(samp_bf16) * 1e3),
        decode_logits: match logits_kind(model, feed) {
            Kind::BFloat16 => "bfloat16",
            _ => "float32",
        }
        .to_string(),
        sample_reference_ms: median(samp_ref) * 1e3,
        decode: cfg.decode,
        graphs,
        capture_ms: median(capture) * 1e3,
        step_attention: format!("{:?}", model.step_attention_in_use()).to_lowercase(),
        step_prep: format!("{:?}", model.step_prep_in_use()).to_lowercase(),
        step_norm: format!("{:?}", model.step_norm_in_use()).to_lowercase(),
        total_s: median(total),
    })
}
