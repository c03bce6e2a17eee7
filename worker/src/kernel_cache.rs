//! CUDA kernels compiled once per process and key (device, shape): kept for the process's life,
//! and a failed compilation is said once and not retried.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

/// Where a decode-step kernel runs: the CUDA kernel on device `.1`, or its arithmetic on the
/// host (the `Reference` modes, for tests).
pub enum Run<K: 'static> {
    Cuda(&'static K, usize),
    Host,
}

/// What a step runs when `kernel` or `reference` was chosen (`None`: libtorch's ops). Both round
/// as float32 or bfloat16 only, so other kinds keep the ops; the CUDA kernel also needs a CUDA
/// device and a kernel `compiled` for its ordinal (compiling it on first use).
pub fn run_for<K>(
    kernel: bool,
    reference: bool,
    kind: tch::Kind,
    device: tch::Device,
    compiled: impl FnOnce(usize) -> Option<&'static K>,
) -> Option<Run<K>> {
    if !matches!(kind, tch::Kind::Float | tch::Kind::BFloat16) {
        return None;
    }
    match device {
        _ if reference => Some(Run::Host),
        tch::Device::Cuda(ordinal) if kernel => Some(Run::Cuda(compiled(ordinal)?, ordinal)),
        _ => None,
    }
}

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
