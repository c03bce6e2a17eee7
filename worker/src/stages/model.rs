//! The `model` stage: resolve a model reference into a snapshot artifact.
//!
//! References: `builtin:<size>[@seed]` (a seeded random-init model of the builtin ladder),
//! `hf-dir:<path>` (a local Hugging Face snapshot directory: `config.json`, `*.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`), `pretrained:<name>` (a real pretrained model
//! installed from a registry package, see `crate::builtin::pretrained`) and `s3://bucket/prefix`
//! (the same files under an S3 prefix, read with the worker's S3 settings).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::ModelStage;
use super::ctx::{StageCtx, StageError};
use crate::artifacts::{ArtifactStore, FileRecord};
use crate::builtin::pretrained::{PRETRAINED_PREFIX, lookup, pretrained_names};
use crate::builtin::{BUILTIN_PREFIX, BuiltinRef, inspect_snapshot};
use crate::tokenizer::{ReasoningEffort, TemplateOptions};

/// The file a model stage writes next to the snapshot: where it came from and what it is.
pub const MODEL_INFO: &str = "wax-model.json";

/// The content of [`MODEL_INFO`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The reference as the manifest gave it.
    pub reference: String,
    /// `enable_thinking` for conversations with this model and its trained descendants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// `reasoning_effort` for conversations with this model and its trained descendants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    pub family: String,
    pub parameters: i64,
    pub layers: i64,
    pub hidden_size: i64,
    pub vocab_size: i64,
    /// The snapshot's files as read.
    pub files: Vec<FileRecord>,
}

impl ModelInfo {
    /// The chat-template switches recorded for this model.
    pub fn template_options(&self) -> TemplateOptions {
        TemplateOptions {
            enable_thinking: self.enable_thinking,
            reasoning_effort: self.reasoning_effort,
        }
    }

    /// Reads `dir/wax-model.json` (`None` if absent).
    pub fn read(dir: &Path) -> Result<Option<ModelInfo>, StageError> {
        let path = dir.join(MODEL_INFO);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StageError::Infrastructure(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))
    }
}

/// Weight formats wax does not read; a snapshot's copy leaves them out.
const FOREIGN_WEIGHTS: &[&str] =
    &[".bin", ".pt", ".pth", ".h5", ".msgpack", ".gguf", ".onnx", ".ckpt"];

fn wanted(name: &str) -> bool {
    !name.starts_with('.') && !FOREIGN_WEIGHTS.iter().any(|ext| name.ends_with(ext))
}

/// Runs a `model` stage: the snapshot's files become the artifact (uploaded straight from
/// where they are), with [`MODEL_INFO`] beside them.
pub fn run(ctx: &StageCtx, m: &ModelStage) -> Result<(), StageError> {
    let reference = check_reference(&m.reference).map_err(StageError::Config)?;
    let source = match &reference {
        ModelRef::Builtin(r) => {
            ctx.log(format!(
                "creating {} (seeded random init; cached on this machine)",
                m.reference
            ));
            crate::builtin::builtin_snapshot(*r)
                .map_err(|e| StageError::from_message(e.to_string()))?
        }
        ModelRef::Pretrained(name) => {
            ctx.log(format!(
                "resolving {} (imported from its GGUF file on first use; cached on this machine)",
                m.reference
            ));
            crate::builtin::pretrained::pretrained_snapshot(name)
                .map_err(|e| StageError::from_message(e.to_string()))?
        }
        ModelRef::HfDir(dir) => {
            check_snapshot_dir(dir).map_err(StageError::Config)?;
            dir.clone()
        }
        ModelRef::S3 { bucket, prefix } => {
            download_s3(ctx, bucket, prefix)?;
            ctx.out.clone()
        }
    };
    let summary = inspect_snapshot(&source)
        .map_err(|e| StageError::Config(format!("{}: not a usable snapshot: {e}", m.reference)))?;
    let mut files = Vec::new();
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(&source)
        .map_err(|e| StageError::Infrastructure(format!("{}: {e}", source.display())))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| wanted(n) && n != MODEL_INFO)
        .collect();
    names.sort();
    for (name, path) in &names {
        let (sha256, size) = crate::artifacts::hash_file(path)
            .map_err(|e| StageError::Infrastructure(e.to_string()))?;
        files.push(FileRecord { path: name.clone(), size, sha256 });
        if source != ctx.out {
            ctx.add_external(name, path);
        }
    }
    let info = ModelInfo {
        reference: m.reference.clone(),
        enable_thinking: m.enable_thinking,
        reasoning_effort: m.reasoning_effort,
        family: summary.family.clone(),
        parameters: summary.parameters,
        layers: summary.layers,
        hidden_size: summary.hidden_size,
        vocab_size: summary.vocab_size,
        files,
    };
    let text =
        serde_json::to_string_pretty(&info).map_err(|e| StageError::Failed(e.to_string()))?;
    std::fs::write(ctx.out.join(MODEL_INFO), text + "\n")
        .map_err(|e| StageError::Infrastructure(format!("{MODEL_INFO}: {e}")))?;
    ctx.log(format!(
        "{}: {} with {} parameters, {} layers, width {}",
        m.reference, summary.family, summary.parameters, summary.layers, summary.hidden_size
    ));
    Ok(())
}

/// Copies the snapshot files under `s3://bucket/prefix/` into the output folder.
fn download_s3(ctx: &StageCtx, bucket: &str, prefix: &str) -> Result<(), StageError> {
    let url = format!("s3://{bucket}");
    let store =
        ArtifactStore::open(&url, &ctx.s3).map_err(|e| StageError::Config(e.to_string()))?;
    super::block_on(async {
        let listed =
            store.list(prefix).await.map_err(|e| StageError::Infrastructure(e.to_string()))?;
        let mut n = 0;
        for (key, _) in listed {
            let name = key.rsplit('/').next().unwrap_or_default().to_string();
            let rest = key.strip_prefix(prefix).unwrap_or(&key).trim_start_matches('/');
            if rest.contains('/') || !wanted(&name) {
                continue;
            }
            store
                .download(&key, &ctx.out.join(&name), None)
                .await
                .map_err(|e| StageError::Infrastructure(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(StageError::Config(format!(
                "s3://{bucket}/{prefix}: no snapshot files there"
            )));
        }
        ctx.log(format!("read {n} files from s3://{bucket}/{prefix}"));
        Ok(())
    })
}

/// The prefix of local snapshot references.
pub const HF_DIR_PREFIX: &str = "hf-dir:";
/// The prefix of S3 snapshot references.
pub const S3_PREFIX: &str = "s3://";

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Builtin(BuiltinRef),
    /// A `pretrained:` name (known to [`crate::builtin::pretrained::PRETRAINED`]).
    Pretrained(&'static str),
    HfDir(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
}

/// Parses a model reference; the error says what is accepted.
pub fn check_reference(reference: &str) -> Result<ModelRef, String> {
    if reference.starts_with(BUILTIN_PREFIX) {
        return BuiltinRef::parse(reference).map(ModelRef::Builtin).map_err(|e| e.to_string());
    }
    if reference.starts_with(PRETRAINED_PREFIX) {
        return lookup(reference).map(|p| ModelRef::Pretrained(p.name)).map_err(|e| e.to_string());
    }
    if let Some(path) = reference.strip_prefix(HF_DIR_PREFIX) {
        if path.trim().is_empty() {
            return Err(format!("`{reference}`: `{HF_DIR_PREFIX}` needs a directory"));
        }
        return Ok(ModelRef::HfDir(PathBuf::from(path)));
    }
    if let Some(rest) = reference.strip_prefix(S3_PREFIX) {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{reference}`: expected s3://bucket/prefix"));
        }
        return Ok(ModelRef::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        });
    }
    Err(format!(
        "unknown model reference `{reference}`: expected `builtin:<size>[@seed]` (sizes {}), \
         `pretrained:<name>` (names {}), `hf-dir:<snapshot directory>` or `s3://bucket/prefix`",
        crate::builtin::ladder_names(),
        pretrained_names()
    ))
}

/// For a reference that must resolve on this machine (`wax run`): a local snapshot exists and
/// holds `config.json`; a pretrained model is installed (imported or its GGUF file present).
pub fn check_local(reference: &str) -> Result<(), String> {
    match check_reference(reference)? {
        ModelRef::HfDir(dir) => check_snapshot_dir(&dir)?,
        ModelRef::Pretrained(_) => {
            crate::builtin::pretrained::check_installed(reference).map_err(|e| e.to_string())?
        }
        _ => {}
    }
    Ok(())
}

fn check_snapshot_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{}: no such directory", dir.display()));
    }
    if !dir.join("config.json").is_file() {
        return Err(format!("{}: not a Hugging Face snapshot (no config.json)", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert!(matches!(check_reference("builtin:1m@3"), Ok(ModelRef::Builtin(r)) if r.seed == 3));
        let e = check_reference("builtin:tiny").unwrap_err();
        assert!(e.contains("`tiny`") && e.contains("1m"), "{e}");
        assert_eq!(check_reference("hf-dir:/m/q").unwrap(), ModelRef::HfDir("/m/q".into()));
        assert_eq!(
            check_reference("s3://b/p/q/").unwrap(),
            ModelRef::S3 { bucket: "b".into(), prefix: "p/q".into() }
        );
        let e = check_reference("/models/x").unwrap_err();
        assert!(e.contains("unknown model reference") && e.contains("hf-dir:"), "{e}");
        assert!(check_reference("s3:///x").is_err());
        let e = check_local("hf-dir:/nonexistent/snapshot").unwrap_err();
        assert!(e.contains("no such directory"), "{e}");
    }
}
