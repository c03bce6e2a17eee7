//! The error type of the fallible statistics routines.

/// Why a statistics routine could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The input was unusable (wrong shape, too few rows, out-of-range parameter).
    #[error("{0}")]
    Input(String),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
