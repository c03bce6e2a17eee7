//! Key names of the object-store layout and the small JSON markers in it.

use serde::{Deserialize, Serialize};

use super::FileRecord;

/// The name of the file that closes an uploaded checkpoint directory.
pub const CHECKPOINT_MARKER: &str = "_CHECKPOINT";

/// `cas/<stage>`.
pub fn stage_prefix(stage: &str) -> String {
    format!("cas/{stage}")
}

/// `cas/<stage>/<attempt>`.
pub fn attempt_prefix(stage: &str, attempt: u64) -> String {
    format!("cas/{stage}/{attempt}")
}

/// `cas/<stage>/<attempt>/<path>`: a file of an attempt.
pub fn attempt_key(stage: &str, attempt: u64, path: &str) -> String {
    format!("{}/{path}", attempt_prefix(stage, attempt))
}

/// `cas/<stage>/_COMMITTED`.
pub fn committed_key(stage: &str) -> String {
    format!("cas/{stage}/_COMMITTED")
}

/// The content of `_COMMITTED`: the canonical attempt and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub stage_id: String,
    pub kind: String,
    pub attempt: u64,
    pub files: Vec<FileRecord>,
}

/// The content of a `_CHECKPOINT` marker: a training step's state, complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMarker {
    /// Steps done when it was saved.
    pub step: u64,
    /// `science` (a checkpoint the config asked for, part of the outputs) or `resume` (only
    /// for continuing after a lost attempt).
    pub role: String,
    /// The checkpoint's files, paths relative to the attempt.
    pub files: Vec<FileRecord>,
}
