//! Behavioural evaluations (docs/protocol.md §6–§7): datasets, judges, the steering suite and the
//! tracking analyses.

pub mod chat;
pub mod data;
pub mod judge;
pub mod run;
pub mod steering;
pub mod tracking;

/// Errors of the evaluations; messages name the file, field or item at fault.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Input(String),
    #[error("model: {0}")]
    Model(String),
    #[error(transparent)]
    Vector(#[from] crate::vectors::VectorError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Judge(#[from] judge::JudgeError),
}
