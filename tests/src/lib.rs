//! # wax-tests
//!
//! Tests that drive the real `wax` binary as a user would: end-to-end runs, multi-process
//! set-ups and fault injection. The binary is built by `make test` (or `cargo build --bin wax`)
//! before these run; [`wax_bin`] finds it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `wax` binary under test: `$WAX_BIN`, else `target/{debug,release}/wax` (newest).
///
/// # Panics
/// With instructions when no binary has been built.
pub fn wax_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WAX_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("wax"))
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no wax binary under {}: run `cargo build --bin wax` (make test does)",
                target.display()
            )
        })
}

/// Runs `wax` with `args` and a clean library path (the binary must find libtorch by itself).
pub fn wax(args: &[&str]) -> Output {
    Command::new(wax_bin())
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("wax binary runs")
}

/// Standard output of a successful run.
///
/// # Panics
/// If the command failed, with its standard error.
pub fn wax_ok(args: &[&str]) -> String {
    let out = wax(args);
    assert!(
        out.status.success(),
        "wax {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
