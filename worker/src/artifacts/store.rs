//! Opening an object store from a URL, and the operations wax needs on it: streamed uploads
//! that hash as they go, downloads verified against a recorded SHA-256, conditional creates.

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ArtifactError, FileRecord};

/// Files up to this size go up in one PUT; larger ones as a multipart upload of such parts.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once (bounds the memory of an upload to this many parts).
const PARTS_IN_FLIGHT: usize = 4;

/// How to reach S3 (or an S3-protocol server). Unset fields fall back to the object store
/// client's defaults (region `us-east-1`, the AWS endpoint).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// `http(s)://host:port` of a non-AWS server (MinIO, moto, Ceph…).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow a plain-http endpoint (test servers on 127.0.0.1).
    pub allow_http: bool,
}

/// An object store and the key prefix wax writes under.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArtifactStore({})", self.url)
    }
}

/// The process's `memory://` stores by name.
type MemoryStores = Mutex<Vec<(String, Arc<InMemory>)>>;

/// `memory://NAME` stores live as long as the process; every opener of a name shares one.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<MemoryStores> = OnceLock::new();
    let mut stores = STORES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = stores.iter().find(|(n, _)| n == name) {
        return s.clone();
    }
    let s = Arc::new(InMemory::new());
    stores.push((name.to_string(), s.clone()));
    s
}

/// Installs rustls' ring provider as the process's TLS crypto (https to S3 endpoints); calling
/// it again is harmless.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ArtifactStore {
    /// Opens `url`: `file:///abs/dir` (or a plain path; created if missing), `s3://bucket[/prefix]`
    /// with `s3`, or `memory://name` (tests; shared within the process).
    pub fn open(url: &str, s3: &S3Settings) -> Result<ArtifactStore, ArtifactError> {
        let bad = |why: String| ArtifactError::Url { url: url.to_string(), why };
        let (inner, prefix): (Arc<dyn ObjectStore>, String) = if let Some(rest) =
            url.strip_prefix("s3://")
        {
            install_crypto();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("expected s3://bucket[/prefix]".into()));
            }
            let mut b =
                AmazonS3Builder::new().with_bucket_name(bucket).with_allow_http(s3.allow_http);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            b = b.with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
            match (&s3.access_key_id, &s3.secret_access_key) {
                (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
                (None, None) => {}
                _ => return Err(bad("S3 access_key_id and secret_access_key go together".into())),
            }
            if let Some(t) = &s3.session_token {
                b = b.with_token(t);
            }
            let store = b.build().map_err(|e| bad(e.to_string()))?;
            (Arc::new(store), prefix.trim_matches('/').to_string())
        } else if let Some(name) = url.strip_prefix("memory://") {
            (memory_store(name), String::new())
        } else {
            let dir = match url.strip_prefix("file://") {
                Some(p) => p,
                None if url.contains("://") => {
                    return Err(bad("expected file://, s3:// or memory://".into()));
                }
                None => url,
            };
            if dir.is_empty() {
                return Err(bad("no directory".into()));
            }
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            let dir = std::fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(e.to_string()))?
                .with_automatic_cleanup(true);
            (Arc::new(fs), String::new())
        };
        Ok(ArtifactStore { inner, prefix: Path::from(prefix), url: url.to_string() })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full key of `rel` (`cas/<stage>/…`) under the store's prefix.
    pub fn key(&self, rel: &str) -> Path {
        let mut key = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            key = key.join(part);
        }
        key
    }

    fn relative(&self, key: &Path) -> String {
        let full = key.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(prefix).map_or(full, |r| r.trim_start_matches('/')).to_string()
        }
    }

    fn err(&self, what: &str, rel: &str, e: object_store::Error) -> ArtifactError {
        match e {
            object_store::Error::NotFound { .. } => {
                ArtifactError::NotFound { what: format!("{what} {}/{rel}", self.url) }
            }
            other => ArtifactError::Store {
                what: format!("{what} {}/{rel}", self.url),
                why: other.to_string(),
            },
        }
    }

    /// Uploads the local file `local` to `rel`, hashing it on the way: one PUT up to
    /// [`PART_SIZE`], else a multipart upload with at most a few parts in memory. Returns the
    /// record (relative path as given, size, SHA-256).
    pub async fn upload_file(
        &self,
        local: &FsPath,
        rel: &str,
    ) -> Result<FileRecord, ArtifactError> {
        let key = self.key(rel);
        let io = |e: std::io::Error| ArtifactError::Io {
            path: local.display().to_string(),
            why: e.to_string(),
        };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        let mut hasher = Sha256::new();
        if size as usize <= PART_SIZE {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(io)?;
            hasher.update(&buf);
            let len = buf.len() as u64;
            self.inner
                .put(&key, PutPayload::from(Bytes::from(buf)))
                .await
                .map_err(|e| self.err("uploading", rel, e))?;
            return Ok(FileRecord {
                path: rel.to_string(),
                size: len,
                sha256: hex::encode(hasher.finalize()),
            });
        }
        let upload =
            self.inner.put_multipart(&key).await.map_err(|e| self.err("uploading", rel, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(self.err("uploading", rel, e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| self.err("uploading", rel, e))?;
        Ok(FileRecord {
            path: rel.to_string(),
            size: total,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Downloads `rel` into `local` (through a temporary sibling, renamed when complete),
    /// checking size and SHA-256 against `expected`.
    pub async fn download_verified(
        &self,
        rel: &str,
        local: &FsPath,
        expected: &FileRecord,
    ) -> Result<(), ArtifactError> {
        self.download(rel, local, Some(expected)).await.map(|_| ())
    }

    /// Downloads `rel` into `local` (through a temporary sibling, renamed when complete),
    /// hashing it; with `expected`, a different size or hash is an error and nothing is left.
    pub async fn download(
        &self,
        rel: &str,
        local: &FsPath,
        expected: Option<&FileRecord>,
    ) -> Result<FileRecord, ArtifactError> {
        let io = |p: &FsPath, e: std::io::Error| ArtifactError::Io {
            path: p.display().to_string(),
            why: e.to_string(),
        };
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| io(parent, e))?;
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = local.with_file_name(format!(
            ".{}.{}-{}.partial",
            local.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = async {
            let got = self
                .inner
                .get(&self.key(rel))
                .await
                .map_err(|e| self.err("downloading", rel, e))?;
            let mut stream = got.into_stream();
            let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| io(&tmp, e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err("downloading", rel, e))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| io(&tmp, e))?;
            }
            file.flush().await.map_err(|e| io(&tmp, e))?;
            file.sync_all().await.map_err(|e| io(&tmp, e))?;
            let sha = hex::encode(hasher.finalize());
            if let Some(expected) = expected
                && (size != expected.size || sha != expected.sha256)
            {
                return Err(ArtifactError::Corrupt {
                    what: format!("{}/{rel}", self.url),
                    why: format!(
                        "expected {} bytes with SHA-256 {}, got {size} bytes with {sha}",
                        expected.size, expected.sha256
                    ),
                });
            }
            tokio::fs::rename(&tmp, local).await.map_err(|e| io(local, e))?;
            Ok(FileRecord { path: rel.to_string(), size, sha256: sha })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Writes small bytes to `rel`, replacing what was there.
    pub async fn put_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        self.inner
            .put(&self.key(rel), PutPayload::from(Bytes::from(bytes)))
            .await
            .map(|_| ())
            .map_err(|e| self.err("writing", rel, e))
    }

    /// Creates `rel` with `bytes` unless it exists; `Ok(false)` when it did (nothing written).
    pub async fn create_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, ArtifactError> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.inner.put_opts(&self.key(rel), PutPayload::from(Bytes::from(bytes)), opts).await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err("creating", rel, e)),
        }
    }

    /// The bytes of `rel`; `Ok(None)` when it does not exist.
    pub async fn get_bytes(&self, rel: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        match self.inner.get(&self.key(rel)).await {
            Ok(g) => Ok(Some(g.bytes().await.map_err(|e| self.err("reading", rel, e))?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", rel, e)),
        }
    }

    /// Every object under `rel/` (relative keys and sizes), sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>, ArtifactError> {
        let prefix = self.key(rel);
        let mut stream = self.inner.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.err("listing", rel, e))?;
            out.push((self.relative(&meta.location), meta.size));
        }
        out.sort();
        Ok(out)
    }

    /// Deletes every object under `rel/`; returns how many.
    pub async fn delete_prefix(&self, rel: &str) -> Result<usize, ArtifactError> {
        let keys = self.list(rel).await?;
        for (k, _) in &keys {
            match self.inner.delete(&self.key(k)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("deleting", k, e)),
            }
        }
        Ok(keys.len())
    }

    /// Deletes one object (absent is fine).
    pub async fn delete(&self, rel: &str) -> Result<(), ArtifactError> {
        match self.inner.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", rel, e)),
        }
    }

    /// Copies `from` to `to` inside the store (server-side where the store can).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), ArtifactError> {
        self.inner
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(|e| self.err("copying", from, e))
    }
}
