//! The one error type of the model module.

use std::path::PathBuf;

/// Everything that can go wrong while reading, running or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {message}")]
    Config { path: PathBuf, field: String, message: String },
    #[error("{path}: unsupported model_type `{found}` (supported: {supported})")]
    UnsupportedModelType { path: PathBuf, found: String, supported: String },
    #[error("{path}: unsupported option `{field}`: {message}")]
    Unsupported { path: PathBuf, field: String, message: String },
    #[error("{dir}: no weights found (expected model.safetensors or model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("missing tensor `{name}` (searched: {searched})")]
    MissingTensor { name: String, searched: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("unexpected tensors not used by the model: {names}")]
    UnexpectedTensors { names: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("KV cache: {0}")]
    Cache(String),
    #[error("hooks: {0}")]
    Hook(String),
    #[error("LoRA: {0}")]
    Lora(String),
    #[error("CUDA kernel: {0}")]
    Kernel(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
