//! Runs `scripts/fixtures/chat_templates.py` (transformers' `apply_chat_template` and
//! tokenizers) for the tokenizer tests. Missing Python fails the test with a bootstrap hint.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("worker/ has a parent").to_path_buf()
}

/// Runs the fixture script on `request`; fails with a bootstrap hint if Python is missing.
pub fn transformers(request: &Value, dir: &Path) -> Value {
    let python = repo_root().join(".wax/python");
    assert!(
        python.exists(),
        "{} is missing: run `make bootstrap` to create the Python environment",
        python.display()
    );
    let req = dir.join("request.json");
    let resp = dir.join("response.json");
    std::fs::write(&req, serde_json::to_vec(request).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(repo_root().join("scripts/fixtures/chat_templates.py"))
        .arg(&req)
        .arg(&resp)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make bootstrap`", python.display()));
    assert!(
        out.status.success(),
        "scripts/fixtures/chat_templates.py failed (is transformers installed? run `make bootstrap`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&resp).unwrap()).unwrap()
}
