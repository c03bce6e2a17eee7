//! Builtin models: `builtin:<size>[@seed]` references to seeded, randomly initialised
//! Qwen3-architecture decoders from a ladder of sizes ([`LADDER`]), materialised as real Hugging
//! Face snapshots (`config.json`, `model.safetensors`, the builtin tokenizer's files) that wax's
//! [`Model::load`](crate::model::Model::load) and transformers both load.
//!
//! Snapshots live in the cache directory ([`cache_root`]): `$WAX_CACHE_DIR`, else
//! `~/.cache/wax`. The builtin tokenizer is trained once into `tokenizers/builtin-<config hash>/`;
//! a model goes to `models/builtin-<size>-seed<seed>-tok<tokenizer hash>/`. Both are built in a
//! temporary sibling directory and renamed into place, so concurrent processes never see a
//! partial snapshot.

mod forward;
mod init;
mod inspect;
mod ladder;
pub mod pretrained;
mod textgen;

pub use forward::{ForwardRequest, ForwardResult, NextToken, SITES, forward_to_file};
pub use init::{INIT_STD, write_initial_weights};
pub use inspect::{ModelSummary, inspect_snapshot, preview_conversation};
pub use ladder::{LADDER, LadderSize, MAX_POSITIONS, ROPE_THETA, ladder_names, ladder_size};

pub use textgen::{SteerArg, TextRequest, TextResult, generate_text};

use std::path::{Path, PathBuf};

use crate::model::ModelError;
use crate::tokenizer::{Corpus, Tokenizer, TokenizerError, TrainConfig, train_builtin};

/// The seed of `builtin:<size>` without `@seed`.
pub const DEFAULT_SEED: u64 = 0;
/// Overrides the cache directory.
pub const CACHE_ENV: &str = "WAX_CACHE_DIR";
/// The prefix of builtin model references.
pub const BUILTIN_PREFIX: &str = "builtin:";
/// Files of a tokenizer snapshot copied next to the weights.
pub const TOKENIZER_FILES: [&str; 3] =
    ["tokenizer.json", "tokenizer_config.json", "generation_config.json"];

/// Errors of builtin models and model references.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("unknown builtin model size `{found}` (the ladder: {ladder})")]
    UnknownSize { found: String, ladder: String },
    #[error("model reference `{reference}`: {why}")]
    BadReference { reference: String, why: String },
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error("no cache directory: set ${CACHE_ENV} or HOME")]
    NoCacheDir,
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("--steer {0}")]
    Steer(String),
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
}

impl BuiltinError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        BuiltinError::Io { path: path.to_path_buf(), why: e.to_string() }
    }
}

/// A parsed `builtin:<size>[@seed]` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRef {
    pub size: &'static LadderSize,
    pub seed: u64,
}

impl BuiltinRef {
    /// Parses `builtin:<size>[@seed]` (the prefix is required).
    pub fn parse(reference: &str) -> Result<BuiltinRef, BuiltinError> {
        let bad = |why: String| BuiltinError::BadReference { reference: reference.into(), why };
        let rest = reference
            .strip_prefix(BUILTIN_PREFIX)
            .ok_or_else(|| bad(format!("expected `{BUILTIN_PREFIX}<size>[@seed]`")))?;
        let (name, seed) = match rest.split_once('@') {
            None => (rest, DEFAULT_SEED),
            Some((name, seed)) => {
                let seed = seed
                    .parse::<u64>()
                    .map_err(|_| bad(format!("seed `{seed}` is not a non-negative integer")))?;
                (name, seed)
            }
        };
        let size = ladder_size(name).ok_or_else(|| BuiltinError::UnknownSize {
            found: name.to_string(),
            ladder: ladder_names(),
        })?;
        Ok(BuiltinRef { size, seed })
    }
}

/// `builtin:<size>` for every ladder size, smallest first.
pub fn ladder_refs() -> Vec<String> {
    LADDER.iter().map(|s| format!("{BUILTIN_PREFIX}{}", s.name)).collect()
}

/// `$WAX_CACHE_DIR`, else `~/.cache/wax`.
pub fn cache_root() -> Result<PathBuf, BuiltinError> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home =
        std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(BuiltinError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache/wax"))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Builds a directory with `build` in a temporary sibling of `dir` and renames it into place;
/// if another process got there first, its directory is kept. Returns `dir`.
pub fn create_atomically(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<(), BuiltinError>,
) -> Result<PathBuf, BuiltinError> {
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().ok_or_else(|| BuiltinError::io(dir, "has no parent directory"))?;
    std::fs::create_dir_all(parent).map_err(|e| BuiltinError::io(parent, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".tmp-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| BuiltinError::io(&tmp, e))?;
    if let Err(e) = build(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.is_dir() {
            return Err(BuiltinError::io(dir, e));
        }
    }
    Ok(dir.to_path_buf())
}

/// The builtin tokenizer's training configuration.
pub fn builtin_tokenizer_config() -> TrainConfig {
    TrainConfig::default()
}

/// The builtin tokenizer's snapshot directory in the cache, trained on the English corpus
/// ([`Corpus::locate`]) the first time it is needed.
pub fn builtin_tokenizer_dir() -> Result<PathBuf, BuiltinError> {
    builtin_tokenizer_dir_in(&cache_root()?)
}

/// [`builtin_tokenizer_dir`] under the cache directory `root`.
pub fn builtin_tokenizer_dir_in(root: &Path) -> Result<PathBuf, BuiltinError> {
    let cfg = builtin_tokenizer_config();
    let key = fnv1a(format!("v1 {cfg:?}").as_bytes());
    let dir = root.join("tokenizers").join(format!("builtin-{key:016x}"));
    if dir.join("tokenizer.json").is_file() {
        return Ok(dir);
    }
    let corpus = Corpus::locate(None)?;
    create_atomically(&dir, |tmp| {
        train_builtin(&corpus, &cfg, tmp)?;
        Ok(())
    })
}

/// A short hash of a tokenizer snapshot (`tokenizer.json` and `tokenizer_config.json`).
pub fn tokenizer_hash(dir: &Path) -> Result<String, BuiltinError> {
    let mut bytes = Vec::new();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let path = dir.join(file);
        if path.is_file() {
            bytes.extend(std::fs::read(&path).map_err(|e| BuiltinError::io(&path, e))?);
        }
        bytes.push(0);
    }
    Ok(format!("{:012x}", fnv1a(&bytes) >> 16))
}

/// Copies the tokenizer files present in `from` into `to`.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<(), BuiltinError> {
    for file in TOKENIZER_FILES {
        let src = from.join(file);
        if src.is_file() {
            std::fs::copy(&src, to.join(file)).map_err(|e| BuiltinError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Writes the snapshot of `size` with `seed` into `out` (which must exist), using the tokenizer
/// snapshot in `tokenizer_dir`.
pub fn write_snapshot(
    size: &LadderSize,
    seed: u64,
    tokenizer_dir: &Path,
    out: &Path,
) -> Result<(), BuiltinError> {
    let tok = Tokenizer::load(tokenizer_dir)?;
    let vocab = tok.vocab_size() as i64;
    let config = size.config_json(vocab, tok.eos_ids().first().copied(), tok.pad_id());
    let path = out.join("config.json");
    let text = serde_json::to_string_pretty(&config).map_err(|e| BuiltinError::io(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| BuiltinError::io(&path, e))?;
    let generation = serde_json::json!({
        "eos_token_id": tok.eos_ids(),
        "pad_token_id": tok.pad_id(),
    });
    let path = out.join("generation_config.json");
    std::fs::write(&path, generation.to_string() + "\n").map_err(|e| BuiltinError::io(&path, e))?;
    write_initial_weights(size, vocab, seed, &out.join("model.safetensors"))?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let src = tokenizer_dir.join(file);
        if src.is_file() {
            std::fs::copy(&src, out.join(file)).map_err(|e| BuiltinError::io(&src, e))?;
        }
    }
    Ok(())
}

/// The snapshot of `reference` with the tokenizer in `tokenizer_dir`, under the cache
/// directory `root`, created if missing.
pub fn builtin_snapshot_in(
    root: &Path,
    reference: BuiltinRef,
    tokenizer_dir: &Path,
) -> Result<PathBuf, BuiltinError> {
    let hash = tokenizer_hash(tokenizer_dir)?;
    let dir = root
        .join("models")
        .join(format!("builtin-{}-seed{}-tok{hash}", reference.size.name, reference.seed));
    create_atomically(&dir, |tmp| {
        write_snapshot(reference.size, reference.seed, tokenizer_dir, tmp)
    })
}

/// The cached snapshot of `reference` with the builtin tokenizer.
pub fn builtin_snapshot(reference: BuiltinRef) -> Result<PathBuf, BuiltinError> {
    let root = cache_root()?;
    let tok = builtin_tokenizer_dir_in(&root)?;
    builtin_snapshot_in(&root, reference, &tok)
}

/// Resolves a model reference to a snapshot directory: `builtin:<size>[@seed]` (created in the
/// cache if needed), `pretrained:<name>` (imported into the cache on first use) or a local
/// directory holding `config.json`.
pub fn resolve_model_ref(reference: &str) -> Result<PathBuf, BuiltinError> {
    if reference.starts_with(BUILTIN_PREFIX) {
        return builtin_snapshot(BuiltinRef::parse(reference)?);
    }
    if reference.starts_with(pretrained::PRETRAINED_PREFIX) {
        return pretrained::pretrained_snapshot(reference);
    }
    let path = PathBuf::from(reference);
    if !path.is_dir() {
        return Err(BuiltinError::BadReference {
            reference: reference.into(),
            why: format!(
                "not a directory (use a local Hugging Face snapshot or `{BUILTIN_PREFIX}<size>[@seed]` with size one of {})",
                ladder_names()
            ),
        });
    }
    if !path.join("config.json").is_file() {
        return Err(BuiltinError::BadReference {
            reference: reference.into(),
            why: "the directory has no config.json".into(),
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = BuiltinRef::parse("builtin:6m@42").unwrap();
        assert_eq!((r.size.name, r.seed), ("6m", 42));
        assert_eq!(BuiltinRef::parse("builtin:1M").unwrap().seed, DEFAULT_SEED);
        let e = BuiltinRef::parse("builtin:3m").unwrap_err().to_string();
        assert!(e.contains("`3m`") && e.contains("1m, 6m, 25m, 100m"), "{e}");
        let e = BuiltinRef::parse("builtin:1m@x").unwrap_err().to_string();
        assert!(e.contains("seed `x`"), "{e}");
    }

    #[test]
    fn ladder_grows_and_counts_match_the_docs() {
        let counts: Vec<i64> = LADDER.iter().map(|s| s.parameter_count(4096)).collect();
        assert_eq!(counts, [1_115_520, 5_771_264, 25_699_840, 99_897_600]);
    }
}
