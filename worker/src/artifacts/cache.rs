//! The machine's read-through cache of input artifacts, keyed by SHA-256: a file is fetched
//! from the store once per machine and then hard-linked into every task that reads it.
//! Cached files are read-only, so a task cannot alter what later tasks see.

use std::path::{Path, PathBuf};

use super::{ArtifactError, ArtifactStore, FileRecord};

/// A content-addressed file cache in a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file with this SHA-256 lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let shard = sha256.get(..2).unwrap_or("00");
        self.root.join("sha256").join(shard).join(sha256)
    }

    /// The cached copy of `record`, downloaded from `key` in `store` (and verified) if this
    /// machine does not hold it yet. Returns the path and whether it was downloaded.
    pub async fn fetch(
        &self,
        store: &ArtifactStore,
        key: &str,
        record: &FileRecord,
    ) -> Result<(PathBuf, bool), ArtifactError> {
        let path = self.path_of(&record.sha256);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == record.size) {
            return Ok((path, false));
        }
        store.download_verified(key, &path, record).await?;
        let mut perms = std::fs::metadata(&path)
            .map_err(|e| ArtifactError::Io {
                path: path.display().to_string(),
                why: e.to_string(),
            })?
            .permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&path, perms).map_err(|e| ArtifactError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok((path, true))
    }

    /// Places the cached file `cached` at `dest` (a hard link; a copy across file systems).
    pub fn place(cached: &Path, dest: &Path) -> Result<(), ArtifactError> {
        let io = |e: std::io::Error| ArtifactError::Io {
            path: dest.display().to_string(),
            why: e.to_string(),
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if dest.exists() {
            std::fs::remove_file(dest).map_err(io)?;
        }
        if std::fs::hard_link(cached, dest).is_err() {
            std::fs::copy(cached, dest).map_err(io)?;
        }
        Ok(())
    }
}
