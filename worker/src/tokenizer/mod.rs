//! Tokenizers and chat templates: loading Hugging Face snapshots, rendering conversations
//! exactly as transformers' `apply_chat_template` does, and training the builtin byte-level BPE
//! tokenizer used by the CPU experiments.
//!
//! - [`Tokenizer`]: a snapshot's `tokenizer.json` plus `tokenizer_config.json` (special tokens,
//!   chat templates, `chat_template.jinja`) and `generation_config.json` (extra end ids).
//! - [`chat`]: [`ChatTemplate`] renders `[Message]` through minijinja set up like transformers'
//!   jinja environment; [`PlainTemplate`] is the `User: …\nAssistant: …` format for base models.
//! - [`train`]: the builtin tokenizer, trained on English prose ([`corpus`]) and on rendered maze
//!   conversations ([`maze_text`]), saved in Hugging Face format.

pub mod chat;
mod config;
pub mod corpus;
pub(crate) mod jinja;
pub mod maze_text;
pub mod options;
pub mod train;

pub use chat::{BUILTIN_CHATML_TEMPLATE, ChatArgs, ChatTemplate, Message, PlainTemplate};
pub use config::SpecialTokens;
pub use corpus::{Corpus, Document, Split};
pub(crate) use jinja::{DAYS, MONTHS};
pub use maze_text::{MazeTextConfig, maze_conversations};
pub use options::{ReasoningEffort, TemplateOptions};
pub use train::{
    MoveCheck, TrainConfig, TrainReport, maze_phrases, tokens_per_turn, train_builtin, verify_moves,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything that can go wrong loading, rendering, encoding or training.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error("{path}: invalid JSON: {why}")]
    Json { path: PathBuf, why: String },
    #[error("{path}: field `{field}`: {why}")]
    Field { path: PathBuf, field: String, why: String },
    #[error("{path}: cannot load tokenizer: {why}")]
    Load { path: PathBuf, why: String },
    #[error("{path}: field `{field}`: token {token:?} is not in the vocabulary")]
    UnknownToken { path: PathBuf, field: String, token: String },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("chat template `{name}`: {why}")]
    Template { name: String, why: String },
    #[error("no chat template named `{name}` (have: {available})")]
    NoTemplate { name: String, available: String },
    #[error("corpus: {0}")]
    Corpus(String),
    #[error("maze conversations: {0}")]
    Maze(String),
    #[error("training: {0}")]
    Train(String),
}

impl TokenizerError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        TokenizerError::Io { path: path.to_path_buf(), why: e.to_string() }
    }
}

/// A loaded tokenizer: the `tokenizers` model plus the snapshot's special tokens and chat
/// templates.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    dir: PathBuf,
    special: SpecialTokens,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
    bos_id: Option<u32>,
    templates: BTreeMap<String, ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a snapshot directory: `tokenizer.json` (required), `tokenizer_config.json`
    /// (optional: special tokens and `chat_template`), `chat_template.jinja` (optional; wins over
    /// the config's default template, as in newer snapshots) and `generation_config.json`
    /// (optional: its `eos_token_id`s join [`Tokenizer::eos_ids`]).
    pub fn load(dir: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        if !json.is_file() {
            return Err(TokenizerError::io(
                &json,
                "missing (a tokenizer snapshot needs tokenizer.json)",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&json)
            .map_err(|e| TokenizerError::Load { path: json.clone(), why: e.to_string() })?;
        let cfg = config::read_snapshot(dir)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let id_of = |field: &str, token: &Option<String>| -> Result<Option<u32>, TokenizerError> {
            match token {
                None => Ok(None),
                Some(t) => {
                    inner.token_to_id(t).map(Some).ok_or_else(|| TokenizerError::UnknownToken {
                        path: cfg_path.clone(),
                        field: field.into(),
                        token: t.clone(),
                    })
                }
            }
        };
        let bos_id = id_of("bos_token", &cfg.special.bos)?;
        let pad_id = id_of("pad_token", &cfg.special.pad)?;
        let mut eos_ids: Vec<u32> = id_of("eos_token", &cfg.special.eos)?.into_iter().collect();
        for id in cfg.generation_eos {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let mut templates = BTreeMap::new();
        for (name, source) in cfg.templates {
            let t = ChatTemplate::new(&name, source, &cfg.special)?;
            templates.insert(name, t);
        }
        Ok(Tokenizer {
            inner,
            dir: dir.to_path_buf(),
            special: cfg.special,
            eos_ids,
            pad_id,
            bos_id,
            templates,
        })
    }

    /// The snapshot directory this was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`. `add_special_tokens` runs the snapshot's post-processor (BOS/EOS
    /// insertion where the model has one), like transformers' argument of the same name.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The full encoding (ids, byte offsets, tokens) of `text`.
    pub fn encode_full(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<tokenizers::Encoding, TokenizerError> {
        self.inner
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Encodes many texts (in parallel where the `tokenizers` crate does so).
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let inputs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let encs = self
            .inner
            .encode_batch(inputs, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids`; `skip_special_tokens` drops special added tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The id of a token (vocabulary or added token), if it has one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids that end generation: `eos_token`, then any further `generation_config.json` ids.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The default chat template, if the snapshot has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.templates.get("default")
    }

    /// The default chat template, or the plain `User:`/`Assistant:` dialogue for base models
    /// that have none.
    pub fn chat_template_or_plain(&self) -> Result<ChatTemplate, TokenizerError> {
        match self.chat_template() {
            Some(t) => Ok(t.clone()),
            None => PlainTemplate::default().compile(self.special_tokens()),
        }
    }

    /// A named chat template (`default`, or a name from a list-valued `chat_template`).
    pub fn chat_template_named(&self, name: &str) -> Result<&ChatTemplate, TokenizerError> {
        self.templates.get(name).ok_or_else(|| TokenizerError::NoTemplate {
            name: name.into(),
            available: if self.templates.is_empty() {
                "none".into()
            } else {
                self.templates.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// A template built from `source` with this tokenizer's special tokens as variables.
    pub fn template_from_source(
        &self,
        name: &str,
        source: impl Into<String>,
    ) -> Result<ChatTemplate, TokenizerError> {
        ChatTemplate::new(name, source.into(), &self.special)
    }
}
