//! The smallest builtin model, cached under `target/wax-builtin-cache/` like the other builtin
//! model tests (never in the user's cache).

use std::path::{Path, PathBuf};
use wax_worker::builtin::{BuiltinRef, LADDER, builtin_snapshot_in, builtin_tokenizer_dir_in};

pub fn builtin_1m() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let root = target.join("wax-builtin-cache");
    let tok = builtin_tokenizer_dir_in(&root).unwrap_or_else(|e| panic!("{e}"));
    builtin_snapshot_in(&root, BuiltinRef { size: &LADDER[0], seed: 0 }, &tok)
        .unwrap_or_else(|e| panic!("{e}"))
}
