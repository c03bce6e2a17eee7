//! Conversations for the behavioural evaluations: rendering with per-token roles (assistant-
//! turn tokens, including the role header and the generation prompt, are the steered ones),
//! batched generation under an optional steering vector, and steered single forwards.
//!
//! A conversation is rendered message by message: the tokens a message adds to the template's
//! rendering are tokenized on their own and take that message's role, and the generation
//! prompt is the difference between the renderings with and without it (for ChatML this is
//! exactly the template's rendering of the whole conversation; the RL layout splits the same
//! way).

use tch::{Kind, Tensor};

use crate::generate::{Chunk, GenerateOptions, Sampling, Session, SteerSpec};
use crate::model::{
    ForwardInput, HookPoint, Hooks, LayerSite, LogitsSelect, SteerScope, Steering, TokenRole,
    steering_mask,
};
use crate::tokenizer::{ChatArgs, Message};
use crate::vectors::Subject;

use super::EvalError;

/// Token ids and the role of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub tokens: Vec<i64>,
    pub roles: Vec<TokenRole>,
    /// Index of the first token of the generation prompt (== len when there is none).
    pub gen_prompt_start: usize,
}

/// A steering vector at one layer's block output.
#[derive(Debug)]
pub struct Steer {
    pub layer: usize,
    /// `[H]`.
    pub vector: Tensor,
    pub coefficient: f64,
}

impl Steer {
    fn spec(&self) -> SteerSpec {
        SteerSpec {
            point: HookPoint::layer(self.layer, LayerSite::ResidPost),
            vector: self.vector.shallow_clone(),
            alpha: self.coefficient,
            scope: SteerScope::AssistantTurns,
        }
    }
}

fn args(subject: &Subject, generation: bool) -> ChatArgs {
    subject.template_options.args(generation)
}

fn encode(subject: &Subject, text: &str) -> Result<Vec<i64>, EvalError> {
    Ok(subject
        .tokenizer
        .encode(text, false)
        .map_err(|e| EvalError::Model(format!("tokenizing: {e}")))?
        .into_iter()
        .map(i64::from)
        .collect())
}

/// Renders `messages` (and the generation prompt when `gen_prompt`) with roles.
pub fn render(
    subject: &Subject,
    messages: &[Message],
    gen_prompt: bool,
) -> Result<Rendered, EvalError> {
    let t = &subject.template;
    let render = |m: &[Message], g: bool| {
        t.render(m, &args(subject, g)).map_err(|e| EvalError::Model(format!("chat template: {e}")))
    };
    let mut tokens = Vec::new();
    let mut roles = Vec::new();
    let mut prev = String::new();
    for i in 0..messages.len() {
        let text = render(&messages[..=i], false)?;
        let Some(piece) = text.strip_prefix(prev.as_str()) else {
            // The template rewrote earlier turns (e.g. stripped reasoning): fall back to one
            // rendering, with every token before the generation prompt a prompt token.
            return render_whole(subject, messages, gen_prompt);
        };
        let ids = encode(subject, piece)?;
        let role =
            if messages[i].role == "assistant" { TokenRole::Assistant } else { TokenRole::Prompt };
        roles.extend(std::iter::repeat_n(role, ids.len()));
        tokens.extend(ids);
        prev = text;
    }
    let gen_prompt_start = tokens.len();
    if gen_prompt {
        let full = render(messages, true)?;
        let Some(piece) = full.strip_prefix(prev.as_str()) else {
            return render_whole(subject, messages, gen_prompt);
        };
        let ids = encode(subject, piece)?;
        roles.extend(std::iter::repeat_n(TokenRole::Assistant, ids.len()));
        tokens.extend(ids);
    }
    if tokens.is_empty() {
        return Err(EvalError::Input("the conversation renders to no tokens".into()));
    }
    Ok(Rendered { tokens, roles, gen_prompt_start })
}

fn render_whole(
    subject: &Subject,
    messages: &[Message],
    gen_prompt: bool,
) -> Result<Rendered, EvalError> {
    let t = &subject.template;
    let head =
        t.render(messages, &args(subject, false)).map_err(|e| EvalError::Model(e.to_string()))?;
    let full = t
        .render(messages, &args(subject, gen_prompt))
        .map_err(|e| EvalError::Model(e.to_string()))?;
    let mut tokens = encode(subject, &head)?;
    let start = tokens.len();
    let mut roles = vec![TokenRole::Prompt; start];
    if let Some(rest) = full.strip_prefix(head.as_str()) {
        let ids = encode(subject, rest)?;
        roles.extend(std::iter::repeat_n(TokenRole::Assistant, ids.len()));
        tokens.extend(ids);
    }
    Ok(Rendered { tokens, roles, gen_prompt_start: start })
}

/// Generation settings of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct GenSettings {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub batch: usize,
}

/// Generates one continuation per prompt (row `i` uses `seeds[i]`), optionally steered on
/// assistant-turn tokens. Returns the decoded texts (special tokens skipped).
pub fn generate(
    subject: &Subject,
    prompts: &[Rendered],
    seeds: &[u64],
    settings: GenSettings,
    steer: Option<&Steer>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<String>, EvalError> {
    let _guard = tch::no_grad_guard();
    let stop: Vec<i64> = subject.tokenizer.eos_ids().iter().map(|&t| i64::from(t)).collect();
    let mut out = Vec::with_capacity(prompts.len());
    for (part, seeds) in
        prompts.chunks(settings.batch.max(1)).zip(seeds.chunks(settings.batch.max(1)))
    {
        let longest = part.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
        let capacity = (longest + settings.max_new_tokens + 1) as i64;
        let steering: Vec<SteerSpec> = steer.map(Steer::spec).into_iter().collect();
        let mut session = Session::new(&subject.model, seeds, capacity, steering)
            .map_err(|e| EvalError::Model(e.to_string()))?;
        let chunks: Vec<Chunk> = part
            .iter()
            .map(|p| Chunk { tokens: p.tokens.clone(), roles: p.roles.clone() })
            .collect();
        session.append(&chunks).map_err(|e| EvalError::Model(e.to_string()))?;
        let g = session
            .generate(&GenerateOptions {
                max_new_tokens: settings.max_new_tokens,
                sampling: settings.sampling,
                stop_tokens: stop.clone(),
                ..Default::default()
            })
            .map_err(|e| EvalError::Model(e.to_string()))?;
        for toks in g.tokens {
            let ids: Vec<u32> = toks.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
            out.push(
                subject
                    .tokenizer
                    .decode(&ids, true)
                    .map_err(|e| EvalError::Model(e.to_string()))?,
            );
        }
        progress(part.len());
    }
    Ok(out)
}

/// Next-token log-probabilities (`[V]` f32 each) after every prompt, optionally steered on
/// assistant-turn tokens, and the block outputs at `read_layers` averaged over each prompt's
/// generation-prompt tokens (`[read_layers, H]` f64 per prompt; none when `read_layers` is
/// empty), all from one forward per batch.
pub fn last_logits(
    subject: &Subject,
    prompts: &[Rendered],
    steer: Option<&Steer>,
    read_layers: &[usize],
    batch: usize,
) -> Result<(Vec<Tensor>, Vec<Tensor>), EvalError> {
    let _guard = tch::no_grad_guard();
    let device = subject.model.device();
    let mut logps = Vec::with_capacity(prompts.len());
    let mut reads = Vec::new();
    for part in prompts.chunks(batch.max(1)) {
        let b = part.len() as i64;
        let t = part.iter().map(|p| p.tokens.len()).max().unwrap_or(1);
        // Left padding, so the last position of every row is its last real token.
        let mut ids = vec![0i64; part.len() * t];
        let mut real = vec![false; part.len() * t];
        let mut roles = vec![vec![TokenRole::Pad; t]; part.len()];
        let mut pos = vec![vec![0i64; t]; part.len()];
        let mut read = vec![false; part.len() * t];
        for (r, p) in part.iter().enumerate() {
            let off = t - p.tokens.len();
            ids[r * t + off..(r + 1) * t].copy_from_slice(&p.tokens);
            for j in 0..p.tokens.len() {
                real[r * t + off + j] = true;
                roles[r][off + j] = p.roles[j];
                pos[r][off + j] = j as i64;
                read[r * t + off + j] = j >= p.gen_prompt_start;
            }
        }
        let ti = t as i64;
        let positions: Vec<i64> = pos.iter().flatten().copied().collect();
        let input = ForwardInput {
            input_ids: Tensor::from_slice(&ids).view([b, ti]).to_device(device),
            positions: Tensor::from_slice(&positions).view([b, ti]).to_device(device),
            attention_mask: Tensor::from_slice(&real).view([b, ti]).to_device(device),
        };
        let mut hooks = Hooks::new();
        if let Some(s) = steer {
            let mask = steering_mask(SteerScope::AssistantTurns, &roles, &pos, device)
                .map_err(|e| EvalError::Model(e.to_string()))?;
            hooks.steer(Steering {
                point: HookPoint::layer(s.layer, LayerSite::ResidPost),
                vector: s.vector.to_kind(Kind::Float),
                alpha: s.coefficient,
                mask,
            });
        }
        let read_mask = Tensor::from_slice(&read).view([b, ti]).to_device(device);
        for &l in read_layers {
            hooks.capture(
                format!("read{l}"),
                HookPoint::layer(l, LayerSite::ResidPost),
                crate::model::Positions::All,
            );
        }
        let logits = subject
            .model
            .forward_select(&input, None, &mut hooks, LogitsSelect::Last)
            .map_err(|e| EvalError::Model(e.to_string()))?
            .squeeze_dim(1)
            .log_softmax(-1, Kind::Float)
            .to_device(tch::Device::Cpu);
        for r in 0..b {
            logps.push(logits.get(r));
        }
        if !read_layers.is_empty() {
            let m = read_mask.unsqueeze(-1).to_kind(Kind::Double);
            let n = m.sum_dim_intlist([1].as_slice(), false, Kind::Double).clamp_min(1.0);
            let mut per_layer = Vec::with_capacity(read_layers.len());
            for &l in read_layers {
                let x = hooks
                    .get(&format!("read{l}"))
                    .ok_or_else(|| EvalError::Model(format!("layer {l} was not captured")))?
                    .to_kind(Kind::Double); // [B, T, H]
                let sums = (&x * &m).sum_dim_intlist([1].as_slice(), false, Kind::Double);
                per_layer.push(sums / &n);
            }
            let means = Tensor::stack(&per_layer, 1).to_device(tch::Device::Cpu); // [B, layers, H]
            for r in 0..b {
                reads.push(means.get(r));
            }
        }
    }
    Ok((logps, reads))
}
