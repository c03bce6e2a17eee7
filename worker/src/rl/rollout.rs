//! Batched multi-turn maze rollouts (docs/protocol.md §1, §2.1).
//!
//! Every row of one [`Session`] plays one episode: each turn appends the environment's next user
//! message (rendered by the model's chat template, closing the previous assistant turn first)
//! and samples exactly one token restricted to the four move letters, at the configured
//! temperature. The full history stays in the context. Per-turn rewards, the tile class of each
//! neighbour before the move (for the equalized entropy bonus), and the sampling log-probability
//! of every move (the "old" log-probs of the update) are recorded.
//!
//! Token layout, shared with training and extraction: a conversation is the concatenation of
//! per-turn segments, each tokenized on its own and followed by the move token. Turn 1's segment
//! is the template's rendering of the first user message with the generation prompt (including
//! whatever the template writes once, such as a default system prompt); a later turn's segment
//! is what the template writes after an assistant message up to the next generation prompt:
//! the close of the previous assistant turn, the user message and the prompt. Both are taken
//! as differences of whole-conversation renderings. Every segment then ends with the template's
//! answer header: what it writes between the generation prompt and an answer's content (empty
//! for most templates; harmony's `<|channel|>final<|message|>`, so the move is written in the
//! final channel). For every template that renders a conversation as an append-only sequence
//! (ChatML, SmolLM2's and Qwen2.5's default system prompts, Llama 3, Qwen3 with thinking on,
//! GPT-OSS's harmony) the concatenation is exactly the template's rendering of the whole
//! conversation. Templates that rewrite earlier turns (Qwen3 with `enable_thinking` off drops
//! the empty think block of past answers) cannot be rendered append-only; for them each turn
//! keeps what the template wrote when it was the latest, and
//! [`TurnLayout::matches_whole_conversation`] is false.

use crate::generate::{Allowed, Chunk, GenerateError, GenerateOptions, Sampling, Session};
use crate::maze::{ChatMessage, Dir, EnvConfig, Episode, Maze, Tile};
use crate::model::{Model, TokenRole};
use crate::tokenizer::{ChatArgs, ChatTemplate, TemplateOptions, Tokenizer, TokenizerError};
use std::sync::Arc;

/// Converts the conversation of a maze into model tokens.
pub struct TurnLayout {
    template: ChatTemplate,
    args: ChatArgs,
    /// Whether segments concatenate to the template's rendering of the whole conversation.
    exact: bool,
    /// What the template writes between the generation prompt and an answer's content.
    answer_header: String,
    /// Token ids of N, E, S, W.
    pub moves: [i64; 4],
}

/// An assistant content no template writes by itself: splits a rendering after an answer.
const PROBE: &str = "\u{E000}";
/// The first user message of the probe conversation that later turns' segments are cut from.
const PROBE_USER: &str = "q";

impl TurnLayout {
    /// The layout of `template`; the move letters must be single tokens of `tokenizer`.
    pub fn new(
        tokenizer: &Tokenizer,
        template: ChatTemplate,
        options: &TemplateOptions,
    ) -> Result<TurnLayout, TokenizerError> {
        let args = options.chat_args();
        let mut moves = [0i64; 4];
        for (slot, d) in moves.iter_mut().zip(Dir::ALL) {
            let letter = d.letter().to_string();
            let ids = tokenizer.encode(&letter, false)?;
            match ids.as_slice() {
                [id] => *slot = i64::from(*id),
                _ => {
                    return Err(TokenizerError::Template {
                        name: template.name().to_string(),
                        why: format!("the move `{letter}` is {} tokens, not one", ids.len()),
                    });
                }
            }
        }
        let mut layout =
            TurnLayout { template, args, exact: false, answer_header: String::new(), moves };
        // Probing writes an answer with a character the template must pass through verbatim.
        layout.prompt_text(2, "p")?;
        layout.answer_header = layout.probe_answer_header()?;
        layout.exact = layout.append_only()?;
        if !layout.exact {
            tracing::warn!(
                template = layout.template.name(),
                "the chat template rewrites earlier turns when a conversation grows; each maze \
                 turn keeps the tokens the template wrote when it was the latest"
            );
        }
        Ok(layout)
    }

    /// Whether the concatenated segments and moves equal the template's rendering of the whole
    /// conversation (checked at construction on a three-turn probe conversation).
    pub fn matches_whole_conversation(&self) -> bool {
        self.exact
    }

    /// The text between the generation prompt and an answer's content: the probe rendering
    /// with an answer, after the rendering of its first message with the generation prompt, up
    /// to the answer. Empty when the former does not extend the latter (the template rewrites
    /// the prompt once answered: such a layout is not exact anyway).
    fn probe_answer_header(&self) -> Result<String, TokenizerError> {
        let prompt = self.template.render_maze(&[ChatMessage::user(PROBE_USER)], &self.args)?;
        let probe =
            [ChatMessage::user(PROBE_USER), ChatMessage::assistant(PROBE), ChatMessage::user("p")];
        let full = self.template.render_maze(&probe, &self.args)?;
        Ok(match full.strip_prefix(&prompt).and_then(|rest| rest.split_once(PROBE)) {
            Some((header, _)) => header.to_string(),
            None => String::new(),
        })
    }

    /// What every segment ends with after the generation prompt (see the module docs).
    pub fn answer_header(&self) -> &str {
        &self.answer_header
    }

    fn append_only(&self) -> Result<bool, TokenizerError> {
        let users = ["first", "second", "third"];
        let mut msgs = Vec::new();
        let mut joined = String::new();
        for (i, u) in users.iter().enumerate() {
            joined.push_str(&self.segment_text(i as u32 + 1, u)?);
            msgs.push(ChatMessage::user(*u));
            if i + 1 < users.len() {
                joined.push('E');
                msgs.push(ChatMessage::assistant("E"));
            }
        }
        // The last segment ends with the answer header, which a rendering that ends with the
        // generation prompt does not write.
        let whole = self.template.render_maze(&msgs, &self.args)? + &self.answer_header;
        Ok(whole == joined)
    }

    /// The text of turn `turn` (1-based) before the move: for turn 1 the rendering of the
    /// first user message with the generation prompt; for later turns what the template writes
    /// after an answer up to the next generation prompt; both followed by the answer header.
    pub fn segment_text(&self, turn: u32, user: &str) -> Result<String, TokenizerError> {
        Ok(self.prompt_text(turn, user)? + &self.answer_header)
    }

    /// [`TurnLayout::segment_text`] without the answer header.
    fn prompt_text(&self, turn: u32, user: &str) -> Result<String, TokenizerError> {
        if turn <= 1 {
            return self.template.render_maze(&[ChatMessage::user(user)], &self.args);
        }
        let probe =
            [ChatMessage::user(PROBE_USER), ChatMessage::assistant(PROBE), ChatMessage::user(user)];
        let full = self.template.render_maze(&probe, &self.args)?;
        match full.split_once(PROBE) {
            Some((_, after)) if !after.contains(PROBE) => Ok(after.to_string()),
            _ => Err(TokenizerError::Template {
                name: self.template.name().to_string(),
                why: "the template does not write assistant content verbatim once".into(),
            }),
        }
    }

    /// Token ids of [`TurnLayout::segment_text`].
    pub fn segment(
        &self,
        tokenizer: &Tokenizer,
        turn: u32,
        user: &str,
    ) -> Result<Vec<i64>, TokenizerError> {
        let text = self.segment_text(turn, user)?;
        Ok(tokenizer.encode(&text, false)?.into_iter().map(i64::from).collect())
    }

    /// The move index (N, E, S, W order) of a token id.
    pub fn move_of(&self, token: i64) -> Option<usize> {
        self.moves.iter().position(|&m| m == token)
    }
}

/// One decision: the move token sampled after a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index in [`Trajectory::tokens`] of the last segment token (its logits chose the move;
    /// the move token itself sits at `pos + 1`).
    pub pos: usize,
    /// 0..4 in N, E, S, W order.
    pub action: usize,
    /// Log-probability under the sampling distribution (temperature, four-token mask).
    pub old_logp: f32,
    /// Tile class of each neighbour before the move (0 Path, 1 Mold, 2 Gold).
    pub classes: [i64; 4],
    /// This turn's reward.
    pub reward: f64,
}

/// One played episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub maze_seed: u64,
    pub episode_seed: u64,
    /// Index of the group (maze) within the batch.
    pub group: usize,
    /// The whole conversation as token ids.
    pub tokens: Vec<i64>,
    pub decisions: Vec<Decision>,
    /// Σ rewards.
    pub ret: f64,
    /// Gold consumed, Mold entered, Path entered over the episode.
    pub gold: u32,
    pub mold: u32,
    pub path: u32,
    /// True when the token budget ended the episode before its last turn.
    pub truncated: bool,
}

impl Trajectory {
    /// An episode with no turns yet.
    pub fn new(maze_seed: u64, episode_seed: u64, group: usize) -> Trajectory {
        Trajectory {
            maze_seed,
            episode_seed,
            group,
            tokens: Vec::new(),
            decisions: Vec::new(),
            ret: 0.0,
            gold: 0,
            mold: 0,
            path: 0,
            truncated: false,
        }
    }

    /// Plays `action` (0..4) in `ep` and records the turn: the segment, the move `token`, the
    /// tile classes seen before the move, the reward and the tiles entered.
    pub fn take_turn(
        &mut self,
        ep: &mut Episode,
        segment: &[i64],
        token: i64,
        action: usize,
        old_logp: f32,
    ) -> Result<(), String> {
        let classes = ep.observation().neighbours.map(|t: Tile| t as i64);
        self.tokens.extend_from_slice(segment);
        let pos = self.tokens.len() - 1;
        self.tokens.push(token);
        let rec = ep.step(Dir::ALL[action]).map_err(|e| e.to_string())?;
        for tile in &rec.entered_tiles {
            match tile {
                Tile::Gold => self.gold += 1,
                Tile::Mold => self.mold += 1,
                Tile::Path => self.path += 1,
            }
        }
        self.ret += rec.reward;
        self.decisions.push(Decision { pos, action, old_logp, classes, reward: rec.reward });
        Ok(())
    }
}

/// One maze to play `group` times.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    pub maze: Arc<Maze>,
    /// Wind and clause order (shared by the group: common random numbers).
    pub episode_seed: u64,
    /// Sampling seed of each row of the group.
    pub sample_seeds: Vec<u64>,
}

/// Errors of a rollout.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{0}")]
    Env(String),
}

/// Plays every spec's group in one batched session; trajectories come out in spec order, the
/// rows of one group consecutive.
pub fn play(
    model: &Model,
    tokenizer: &Tokenizer,
    layout: &TurnLayout,
    env: &Arc<EnvConfig>,
    specs: &[RolloutSpec],
    temperature: f64,
    token_budget: usize,
) -> Result<Vec<Trajectory>, RolloutError> {
    let mut eps = Vec::new();
    let mut seeds = Vec::new();
    let mut out = Vec::new();
    for (g, spec) in specs.iter().enumerate() {
        for &s in &spec.sample_seeds {
            let ep = Episode::new(&spec.maze, env.clone(), spec.episode_seed)
                .map_err(|e| RolloutError::Env(e.to_string()))?;
            eps.push(ep);
            seeds.push(s);
            out.push(Trajectory::new(spec.maze.seed, spec.episode_seed, g));
        }
    }
    if eps.is_empty() {
        return Ok(out);
    }
    let device = model.device();
    let vocab = model.config().vocab_size;
    let opts = GenerateOptions {
        max_new_tokens: 1,
        sampling: Sampling { temperature, top_k: None, top_p: None },
        allowed: Allowed::Always(Allowed::only(&layout.moves, vocab, device)),
        stop_tokens: Vec::new(),
        check_every: 0,
        ..Default::default()
    };
    // Room for the budget plus one segment of slack: rows past their budget keep being fed (to
    // stay in lockstep) but record nothing.
    let mut segments: Vec<Vec<i64>> = Vec::with_capacity(eps.len());
    for ep in &eps {
        segments.push(layout.segment(tokenizer, 1, &ep.user_message())?);
    }
    let longest = segments.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = (token_budget + 2 * longest + 8) as i64;
    let mut session = Session::new(model, &seeds, capacity, Vec::new())?;
    let mut active: Vec<bool> = vec![true; eps.len()];
    for turn in 1..=env.turns {
        if turn > 1 {
            segments.clear();
            for ep in &eps {
                segments.push(layout.segment(tokenizer, turn, &ep.user_message())?);
            }
        }
        let used = session.slots_used();
        let longest = segments.iter().map(Vec::len).max().unwrap_or(0) as i64;
        if used + longest + 1 > capacity {
            break;
        }
        for (i, seg) in segments.iter().enumerate() {
            // The move token (pending from the previous turn) plus this segment, then one move.
            if active[i] && out[i].tokens.len() + seg.len() + 1 > token_budget {
                active[i] = false;
                out[i].truncated = true;
            }
        }
        if !active.iter().any(|&a| a) {
            break;
        }
        let chunks: Vec<Chunk> =
            segments.iter().map(|s| Chunk::uniform(s.clone(), TokenRole::Prompt)).collect();
        session.append(&chunks)?;
        let g = session.generate(&opts)?;
        for (i, ep) in eps.iter_mut().enumerate() {
            if !active[i] {
                continue;
            }
            let token = g.tokens[i][0];
            let action = layout
                .move_of(token)
                .ok_or_else(|| RolloutError::Env(format!("sampled token {token} is not a move")))?;
            out[i]
                .take_turn(ep, &segments[i], token, action, g.logprobs[i][0])
                .map_err(RolloutError::Env)?;
        }
    }
    Ok(out)
}
