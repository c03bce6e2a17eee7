//! CUDA kernels compiled once per process and key (device, shape): kept for the process's life,
//! and a failed compilation is said once and not retried.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

/// The compiled kernels of one kind (`None`: compiling failed).
pub type Cache<K, T> = OnceLock<Mutex<HashMap<K, Option<&'static T>>>>;

/// The kernel for `key`, built by `build` on first use. On failure `build` returns the line to
/// print (once); later calls with the same key get `None` without trying again.
pub fn compiled_once<K: Eq + Hash, T>(
    cache: &'static Cache<K, T>,
    key: K,
    build: impl FnOnce() -> Result<T, String>,
) -> Option<&'static T> {
    let mut map =
        cache.get_or_init(|| Mutex::new(HashMap::new())).lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key).or_insert_with(|| match build() {
        Ok(k) => Some(Box::leak(Box::new(k))),
        Err(line) => {
            eprintln!("wax: {line}");
            None
        }
    })
}
