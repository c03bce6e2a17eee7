//! The builtin tokenizer: byte-level BPE trained with the `tokenizers` crate on English prose
//! ([`Corpus`]) and rendered maze conversations, saved as a Hugging Face snapshot
//! (`tokenizer.json` + `tokenizer_config.json` with the builtin ChatML template).
//!
//! Pre-tokenization follows Qwen2/3 (contractions, letter runs with one leading non-letter,
//! punctuation runs, newlines, spaces) except that digits group in runs of up to three with an optional leading space, so the
//! maze's coordinates can become single tokens. Special tokens: `<|endoftext|>` (id 0, padding),
//! `<|im_start|>` (1), `<|im_end|>` (2, end of turn); `<think>` and `</think>` are added as
//! ordinary (non-special) tokens, as Qwen3 has them.
//!
//! The maze prompt's fixed phrases ([`maze_phrases`]) are added tokens too, so each costs one
//! token wherever it appears: a turn is then about 30 tokens instead of about 67 with words
//! alone. Added tokens are matched before pre-tokenization by the `tokenizers` library itself,
//! so transformers encodes identically. The trainer sees the text between them.

use super::chat::{BUILTIN_CHATML_TEMPLATE, ChatArgs, ChatTemplate, PlainTemplate};
use super::corpus::{Corpus, Split};
use super::maze_text::{MazeTextConfig, maze_conversations};
use super::{Tokenizer, TokenizerError};
use crate::maze::{ChatFormat, ChatMessage, Dir, RenderOptions, Role, render_chat};
use serde_json::json;
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split as SplitPre, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// The pre-tokenizer's split pattern.
pub const PRETOKENIZE_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Ordinary added tokens (after the trained vocabulary).
pub const THINK_TOKENS: [&str; 2] = ["<think>", "</think>"];

/// How to train the builtin tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Total vocabulary, special and added tokens included.
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
    /// Stop reading English training documents after this many bytes (`None`: all of them).
    pub english_max_bytes: Option<usize>,
    /// Validation bytes encoded to measure compression (0: skip).
    pub validation_max_bytes: usize,
    /// The maze conversations mixed in; each is rendered as ChatML and as the plain dialogue.
    pub maze: MazeTextConfig,
    /// Strings added as single (non-special) tokens; default [`maze_phrases`].
    pub phrase_tokens: Vec<String>,
}

/// The fixed phrases of the maze prompt (docs/protocol.md §1.4, §1.6), both apostrophes.
pub fn maze_phrases() -> Vec<String> {
    let mut out = Vec::new();
    for apostrophe in ['\u{2019}', '\''] {
        let intro = format!("You are in a maze. Currently, you{apostrophe}re at location (");
        out.push(format!("! {intro}"));
        out.push(intro);
    }
    for p in [
        "). To the ",
        " there is ",
        "; to the ",
        ". Where do you move? Output only N/E/S/W without punctuation.",
        "A strong wind from the ",
        " blew you ",
    ] {
        out.push(p.to_string());
    }
    out
}

/// Splits `text` around occurrences of `tokens` (leftmost, longest first), as the added
/// vocabulary does before pre-tokenization; returns the pieces between them.
fn split_on_tokens<'a>(text: &'a str, tokens: &[&str]) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < text.len() {
        let rest = &text[i..];
        match tokens
            .iter()
            .filter(|t| !t.is_empty() && rest.starts_with(**t))
            .map(|t| t.len())
            .max()
        {
            Some(len) => {
                if start < i {
                    pieces.push(&text[start..i]);
                }
                i += len;
                start = i;
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            vocab_size: 4096,
            min_frequency: 2,
            english_max_bytes: None,
            validation_max_bytes: 1 << 20,
            maze: MazeTextConfig::default(),
            phrase_tokens: maze_phrases(),
        }
    }
}

/// Move letters as tokens, checked by encoding rendered conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveCheck {
    /// Ids of `N`, `E`, `S`, `W` (the ChatML answer).
    pub letter_ids: [u32; 4],
    /// Ids of `" N"` … (the plain dialogue's answer after `Assistant:`).
    pub spaced_letter_ids: [u32; 4],
    /// Assistant answers found to be exactly one token (both formats).
    pub answers: usize,
    /// Open-ended renders whose last token was the final move (both formats).
    pub endings: usize,
}

/// What training produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub vocab_size: usize,
    pub english_documents: usize,
    pub english_bytes: usize,
    pub maze_conversations: usize,
    pub moves: MoveCheck,
    /// Mean tokens per maze turn (user message + answer + markup), builtin ChatML.
    pub chatml_tokens_per_turn: f64,
    /// The same for the plain dialogue.
    pub plain_tokens_per_turn: f64,
    /// UTF-8 bytes per token on English validation documents (`None` if not measured).
    pub validation_bytes_per_token: Option<f64>,
}

fn train_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Train(e.to_string())
}

/// Trains, writes `tokenizer.json` and `tokenizer_config.json` into `out_dir` (created if
/// needed), loads them back and checks the move letters.
pub fn train_builtin(
    corpus: &Corpus,
    cfg: &TrainConfig,
    out_dir: &Path,
) -> Result<(Tokenizer, TrainReport), TokenizerError> {
    let added = THINK_TOKENS.len() + cfg.phrase_tokens.len();
    let floor = 256 + SPECIAL_TOKENS.len() + added;
    if cfg.vocab_size <= floor {
        return Err(TokenizerError::Train(format!(
            "vocab_size {} must exceed {floor} (bytes, special, think and phrase tokens)",
            cfg.vocab_size
        )));
    }
    let mut texts: Vec<String> = Vec::new();
    let (mut english_documents, mut english_bytes) = (0usize, 0usize);
    for doc in corpus.documents(Split::Train) {
        if cfg.english_max_bytes.is_some_and(|m| english_bytes >= m) {
            break;
        }
        let doc = doc?;
        english_bytes += doc.text.len();
        english_documents += 1;
        texts.push(doc.text);
    }
    let conversations = maze_conversations(&cfg.maze)?;
    let chatml_opts = RenderOptions { add_generation_prompt: false, close_final_assistant: true };
    for conv in &conversations {
        texts.push(render_chat(conv, ChatFormat::Chatml, chatml_opts));
        texts.push(render_chat(conv, ChatFormat::Plain, chatml_opts));
    }

    let mut cut: Vec<&str> = SPECIAL_TOKENS.iter().chain(THINK_TOKENS.iter()).copied().collect();
    cut.extend(cfg.phrase_tokens.iter().map(String::as_str));
    let pieces: Vec<&str> = texts.iter().flat_map(|t| split_on_tokens(t, &cut)).collect();

    let split = SplitPre::new(
        SplitPattern::Regex(PRETOKENIZE_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(train_err)?;
    let byte_level = ByteLevel::new(false, false, false);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ]);
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)));
    let specials: Vec<AddedToken> =
        SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true).normalized(false)).collect();
    let mut trainer = TrainerWrapper::BpeTrainer(
        BpeTrainer::builder()
            .vocab_size(cfg.vocab_size - added)
            .min_frequency(cfg.min_frequency)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(specials)
            .build(),
    );
    tok.train(&mut trainer, pieces.iter()).map_err(train_err)?;
    let extra = THINK_TOKENS.iter().copied().chain(cfg.phrase_tokens.iter().map(String::as_str));
    tok.add_tokens(extra.map(|t| AddedToken::from(t, false).normalized(false)))
        .map_err(train_err)?;

    std::fs::create_dir_all(out_dir).map_err(|e| TokenizerError::io(out_dir, e))?;
    let json_path = out_dir.join("tokenizer.json");
    tok.save(&json_path, true).map_err(|e| TokenizerError::io(&json_path, e))?;
    let cfg_path = out_dir.join("tokenizer_config.json");
    let config = hf_config(&tok)?;
    let text = serde_json::to_string_pretty(&config).map_err(train_err)?;
    std::fs::write(&cfg_path, text + "\n").map_err(|e| TokenizerError::io(&cfg_path, e))?;

    let loaded = Tokenizer::load(out_dir)?;
    let moves = verify_moves(&loaded, &conversations)?;
    let chatml = loaded.chat_template_named("default")?;
    let plain = PlainTemplate::default().compile(loaded.special_tokens())?;
    let chatml_tokens_per_turn = tokens_per_turn(&loaded, chatml, &conversations)?;
    let plain_tokens_per_turn = tokens_per_turn(&loaded, &plain, &conversations)?;
    let validation_bytes_per_token =
        validation_compression(&loaded, corpus, cfg.validation_max_bytes)?;
    let report = TrainReport {
        vocab_size: loaded.vocab_size(),
        english_documents,
        english_bytes,
        maze_conversations: conversations.len(),
        moves,
        chatml_tokens_per_turn,
        plain_tokens_per_turn,
        validation_bytes_per_token,
    };
    Ok((loaded, report))
}

/// `tokenizer_config.json` for transformers' `AutoTokenizer`.
fn hf_config(tok: &tokenizers::Tokenizer) -> Result<serde_json::Value, TokenizerError> {
    let mut decoder = serde_json::Map::new();
    let mut added: Vec<(u32, AddedToken)> = tok.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    for (id, t) in added {
        decoder.insert(
            id.to_string(),
            json!({"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                   "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}),
        );
    }
    for t in SPECIAL_TOKENS.iter().chain(THINK_TOKENS.iter()) {
        if tok.token_to_id(t).is_none() {
            return Err(TokenizerError::Train(format!("token {t} missing after training")));
        }
    }
    Ok(json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": decoder,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 32768,
        "split_special_tokens": false,
        "chat_template": BUILTIN_CHATML_TEMPLATE,
    }))
}

fn letter_index(content: &str) -> Option<usize> {
    Dir::ALL.iter().position(|d| content.len() == 1 && content.starts_with(d.letter()))
}

/// Checks, by encoding, that every assistant move in `conversations` is exactly one token in
/// ChatML (`N`) and in the plain dialogue (`" N"`), and that a render left open after the last
/// move (docs/protocol.md §3.2) ends with that move's token.
pub fn verify_moves(
    tok: &Tokenizer,
    conversations: &[Vec<ChatMessage>],
) -> Result<MoveCheck, TokenizerError> {
    let id = |t: String| {
        tok.token_id(&t)
            .ok_or_else(|| TokenizerError::Train(format!("move {t:?} is not a single token")))
    };
    let mut letter_ids = [0u32; 4];
    let mut spaced_letter_ids = [0u32; 4];
    for (i, d) in Dir::ALL.iter().enumerate() {
        letter_ids[i] = id(d.letter().to_string())?;
        spaced_letter_ids[i] = id(format!("Ġ{}", d.letter()))?;
    }
    let (mut answers, mut endings) = (0, 0);
    let closed = RenderOptions { add_generation_prompt: false, close_final_assistant: true };
    let open = RenderOptions { add_generation_prompt: false, close_final_assistant: false };
    for (format, ids, marker) in [
        (ChatFormat::Chatml, &letter_ids, "<|im_start|>assistant\n"),
        (ChatFormat::Plain, &spaced_letter_ids, "Assistant: "),
    ] {
        // The answer token spans the letter, plus its leading space in the plain format.
        let lead = usize::from(format == ChatFormat::Plain);
        for conv in conversations {
            let text = render_chat(conv, format, closed);
            let enc = tok.encode_full(&text, false)?;
            let moves: Vec<usize> = conv
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .filter_map(|m| letter_index(&m.content))
                .collect();
            let starts: Vec<usize> =
                text.match_indices(marker).map(|(p, _)| p + marker.len()).collect();
            if starts.len() != moves.len() {
                return Err(TokenizerError::Train(format!(
                    "{format:?}: found {} answers in the render, expected {}",
                    starts.len(),
                    moves.len()
                )));
            }
            for (&start, &m) in starts.iter().zip(&moves) {
                let span = (start - lead, start + 1);
                let found = enc
                    .get_offsets()
                    .iter()
                    .zip(enc.get_ids())
                    .any(|(&o, &t)| o == span && t == ids[m]);
                if !found {
                    return Err(TokenizerError::Train(format!(
                        "{format:?}: the move {:?} at byte {start} is not a single token",
                        Dir::ALL[m].letter()
                    )));
                }
                answers += 1;
            }
            if let Some(&last) =
                moves.last().filter(|_| conv.last().is_some_and(|m| m.role == Role::Assistant))
            {
                let ids_open = tok.encode(&render_chat(conv, format, open), false)?;
                if ids_open.last() != Some(&ids[last]) {
                    return Err(TokenizerError::Train(format!(
                        "{format:?}: an open-ended render does not end with the move token {:?}",
                        Dir::ALL[last].letter()
                    )));
                }
                endings += 1;
            }
        }
    }
    Ok(MoveCheck { letter_ids, spaced_letter_ids, answers, endings })
}

/// Mean tokens per maze turn (a user message, the answer and their markup): the tokens of each
/// whole rendered conversation divided by its number of answers, pooled over conversations.
pub fn tokens_per_turn(
    tok: &Tokenizer,
    template: &ChatTemplate,
    conversations: &[Vec<ChatMessage>],
) -> Result<f64, TokenizerError> {
    let (mut tokens, mut turns) = (0usize, 0usize);
    for conv in conversations {
        let answers = conv.iter().filter(|m| m.role == Role::Assistant).count();
        if answers == 0 {
            continue;
        }
        // Whole turns only: drop a trailing unanswered user message.
        let end = conv.iter().rposition(|m| m.role == Role::Assistant).map_or(0, |i| i + 1);
        let text = template.render_maze(&conv[..end], &ChatArgs::new(false))?;
        tokens += tok.encode(&text, false)?.len();
        turns += answers;
    }
    if turns == 0 {
        return Err(TokenizerError::Train("no answered turns to measure".into()));
    }
    Ok(tokens as f64 / turns as f64)
}

fn validation_compression(
    tok: &Tokenizer,
    corpus: &Corpus,
    max_bytes: usize,
) -> Result<Option<f64>, TokenizerError> {
    if max_bytes == 0 {
        return Ok(None);
    }
    let (mut bytes, mut tokens) = (0usize, 0usize);
    for doc in corpus.documents(Split::Validation) {
        if bytes >= max_bytes {
            break;
        }
        let doc = doc?;
        bytes += doc.text.len();
        tokens += tok.encode(&doc.text, false)?.len();
    }
    Ok((tokens > 0).then(|| bytes as f64 / tokens as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_on_tokens_takes_the_longest_leftmost_match() {
        let toks = ["ab", "abc", "<x>"];
        assert_eq!(split_on_tokens("zabcd<x>ab", &toks), vec!["z", "d"]);
        assert_eq!(split_on_tokens("é<x>", &toks), vec!["é"]);
        assert!(split_on_tokens("", &toks).is_empty());
    }
}
