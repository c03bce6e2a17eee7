//! Tiny Hugging Face models and transformers reference activations for the model tests.
//!
//! `scripts/fixtures/tiny_models.py` is run once (per version of the script) into
//! `target/wax-fixtures/<hash of the script>/` with the project's Python (`.wax/python`); the
//! directory is built under a temporary name and renamed into place, so concurrent test
//! binaries are safe. A missing Python or transformers fails the test: it is never skipped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tch::{Kind, Tensor};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("worker/ has a parent").to_path_buf()
}

pub fn script() -> PathBuf {
    workspace_root().join("scripts/fixtures/tiny_models.py")
}

/// The project's Python interpreter; panics with instructions when it is missing.
pub fn python() -> PathBuf {
    let p = workspace_root().join(".wax/python");
    if !p.exists() {
        panic!(
            "{} not found: the model tests need Python with torch and transformers; run `make bootstrap`",
            p.display()
        );
    }
    p
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs the fixture script with `args`; panics with its output on failure.
pub fn run_script(args: &[&std::ffi::OsStr]) {
    let out =
        Command::new(python()).arg(script()).args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {}: {e}; run `make bootstrap`", python().display())
        });
    if !out.status.success() {
        panic!(
            "{} failed ({}); if torch or transformers is missing, run `make bootstrap`\nstdout:\n{}\nstderr:\n{}",
            script().display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The directory holding every fixture model, built on first use.
pub fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = std::fs::read(script()).expect("read scripts/fixtures/tiny_models.py");
        let root = target_dir().join("wax-fixtures");
        let done = root.join(format!("{:016x}", fnv1a(&source)));
        if done.join("DONE").is_file() {
            return done;
        }
        std::fs::create_dir_all(&root).expect("create target/wax-fixtures");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = root.join(format!("tmp-{}-{nanos}", std::process::id()));
        run_script(&["--out".as_ref(), tmp.as_os_str()]);
        std::fs::write(tmp.join("DONE"), b"ok\n").expect("mark fixtures complete");
        if std::fs::rename(&tmp, &done).is_err() {
            // Another test binary finished first.
            assert!(done.join("DONE").is_file(), "could not move fixtures into {}", done.display());
            let _ = std::fs::remove_dir_all(&tmp);
        }
        done
    })
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The reference tensors of fixture `name` (see the script's docstring).
pub fn reference(name: &str) -> HashMap<String, Tensor> {
    let path = model_dir(name).join("reference.safetensors");
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// A metadata entry of the reference file.
pub fn reference_metadata(name: &str, key: &str) -> Option<String> {
    let path = model_dir(name).join("reference.safetensors");
    let bytes = std::fs::read(&path).expect("read reference");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("reference header");
    meta.metadata().as_ref().and_then(|m| m.get(key).cloned())
}

/// Max |a - b| over positions where `mask` ([B, T] bool) is true; a and b are [B, T, ...].
pub fn max_abs_diff_masked(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    let d = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs();
    let mut m = mask.to_kind(Kind::Double);
    while m.dim() < d.dim() {
        m = m.unsqueeze(-1);
    }
    (d * m).max().double_value(&[])
}
