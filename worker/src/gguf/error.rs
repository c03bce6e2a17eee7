//! [`GgufError`]: everything that can go wrong reading a GGUF file or importing it, each
//! naming the file and, where there is one, the metadata key or tensor.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file: it starts with {found:?}, not \"GGUF\"")]
    BadMagic { path: PathBuf, found: String },
    #[error("{path}: GGUF version {version} is not supported (supported: 2, 3){hint}")]
    UnsupportedVersion { path: PathBuf, version: u32, hint: &'static str },
    #[error(
        "{path}: truncated: the file ends at byte {len}, reading {what} needs bytes up to {needed}"
    )]
    Truncated { path: PathBuf, what: String, needed: u64, len: u64 },
    #[error("{path}: {what}: {why}")]
    Malformed { path: PathBuf, what: String, why: String },
    #[error("{path}: metadata `{key}`: {why}")]
    Metadata { path: PathBuf, key: String, why: String },
    #[error("{path}: tensor `{tensor}`: {why}")]
    Tensor { path: PathBuf, tensor: String, why: String },
    #[error(
        "{path}: tensor `{tensor}` is stored as {ggml_type}, which cannot be dequantized \
         (supported: {supported})"
    )]
    UnsupportedType { path: PathBuf, tensor: String, ggml_type: String, supported: String },
    #[error(
        "{path}: `general.architecture` is `{found}`, which cannot be imported (supported: {supported})"
    )]
    UnsupportedArchitecture { path: PathBuf, found: String, supported: String },
    #[error("{path}: `{key}` is `{found}`, which cannot be imported (supported: {supported})")]
    UnsupportedTokenizer { path: PathBuf, key: String, found: String, supported: String },
    #[error("{path}: {why}")]
    Unsupported { path: PathBuf, why: String },
    #[error("{path}: the tokenizer built from the GGUF metadata does not load: {why}")]
    Tokenizer { path: PathBuf, why: String },
    #[error(
        "{dir}: {why}; choose another --out or remove it (only an earlier complete import is replaced)"
    )]
    OutputExists { dir: PathBuf, why: String },
}

impl GgufError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> GgufError {
        let path = path.into();
        move |source| GgufError::Io { path, source }
    }
}
