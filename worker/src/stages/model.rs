//! The `model` stage: resolve a model reference into a snapshot artifact.
//!
//! References: `builtin:<size>[@seed]` (a seeded random-init model of the builtin ladder),
//! `hf-dir:<path>` (a local Hugging Face snapshot directory: `config.json`, `*.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) and `s3://bucket/prefix` (the same files under an
//! S3 prefix, read with the worker's S3 settings).

use std::path::{Path, PathBuf};

use crate::builtin::{BUILTIN_PREFIX, BuiltinRef};

/// The prefix of local snapshot references.
pub const HF_DIR_PREFIX: &str = "hf-dir:";
/// The prefix of S3 snapshot references.
pub const S3_PREFIX: &str = "s3://";

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Builtin(BuiltinRef),
    HfDir(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Parses a model reference; the error says what is accepted.
pub fn check_reference(reference: &str) -> Result<ModelRef, String> {
    if reference.starts_with(BUILTIN_PREFIX) {
        return BuiltinRef::parse(reference).map(ModelRef::Builtin).map_err(|e| e.to_string());
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
         `hf-dir:<snapshot directory>` or `s3://bucket/prefix`",
        crate::builtin::ladder_names()
    ))
}

/// For a reference that must resolve on this machine (`wax run`): a local snapshot exists and
/// holds `config.json`.
pub fn check_local(reference: &str) -> Result<(), String> {
    if let ModelRef::HfDir(dir) = check_reference(reference)? {
        check_snapshot_dir(&dir)?;
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
