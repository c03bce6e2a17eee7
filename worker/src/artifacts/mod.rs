//! Artifacts in object storage: where each stage attempt's files go, how they are uploaded
//! (streamed, hashed on the way), downloaded (verified against the recorded SHA-256), cached on
//! the machine (content-addressed, so model weights are fetched once per machine), and how an
//! attempt is marked canonical.
//!
//! Layout (ARCHITECTURE.md): `cas/<stage-id>/<attempt>/…` holds an attempt's files;
//! `cas/<stage-id>/_COMMITTED` (JSON: the attempt and its files) is written after the
//! coordinator committed that attempt, with a conditional create. Correctness never rests on
//! the marker — readers follow the coordinator's record — but the marker lets anyone holding
//! only the bucket find the canonical files. A checkpoint uploaded while a stage runs is a
//! directory of the attempt closed by a `_CHECKPOINT` file listing its files, written last.

mod cache;
mod layout;
mod store;

pub use cache::Cache;
pub use layout::{
    CHECKPOINT_MARKER, CheckpointMarker, Committed, attempt_key, attempt_prefix, committed_key,
    stage_prefix,
};
pub use store::{ArtifactStore, PART_SIZE, S3Settings, install_crypto};

use serde::{Deserialize, Serialize};

/// One file of an attempt: its path relative to the attempt's prefix, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl From<&wax_proto::v1::ArtifactFile> for FileRecord {
    fn from(f: &wax_proto::v1::ArtifactFile) -> Self {
        FileRecord { path: f.path.clone(), size: f.size, sha256: f.sha256.clone() }
    }
}

impl From<&FileRecord> for wax_proto::v1::ArtifactFile {
    fn from(f: &FileRecord) -> Self {
        wax_proto::v1::ArtifactFile { path: f.path.clone(), size: f.size, sha256: f.sha256.clone() }
    }
}

/// What can go wrong with artifacts. Every variant is the machine's or the store's fault
/// (retryable) except [`ArtifactError::Url`], a setting.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact store {url}: {why}")]
    Url { url: String, why: String },
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("{what}: {why}")]
    Store { what: String, why: String },
    #[error("{what}: corrupt: {why}")]
    Corrupt { what: String, why: String },
    #[error("{path}: {why}")]
    Io { path: String, why: String },
}

/// The SHA-256 (lower-case hex) and size of a local file, read in blocks.
pub fn hash_file(path: &std::path::Path) -> Result<(String, u64), ArtifactError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let io = |e: std::io::Error| ArtifactError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}
