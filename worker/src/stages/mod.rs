//! Stage executors: what a worker runs for each stage kind of the coordinator's catalog, one
//! module per kind.
//!
//! - [`config`]: every kind's resolved configuration, read with the science's own types (the
//!   same code validates manifests before anything runs); [`check`]: a planned stage's problems;
//! - [`ctx`]: what a running stage sees ([`StageCtx`]) and how it fails ([`StageError`]);
//! - [`model`], [`pretrain`], [`rl`], [`extract`], [`evaluate`], [`report`]: the science;
//! - [`testing`]: `sleep` and `fail-n-times`, for scheduler and cluster tests.
//!
//! Each executor reads its inputs (materialized folders of the input stages' artifacts) and
//! writes its outputs into `ctx.out`; the runtime uploads them under `cas/<stage>/<attempt>/`.

pub mod check;
pub mod config;
pub mod ctx;
pub mod evaluate;
pub mod extract;
pub mod model;
pub mod pretrain;
pub mod report;
mod resume;
pub mod rl;
pub mod testing;

pub use check::{PlannedStage, check_stage};
pub use config::{FieldError, StageConfig};
pub use ctx::{
    CheckpointRole, InputDir, LocalReporter, Reporter, ResumePoint, StageCtx, StageError,
};

use std::path::Path;

/// Whether `kind` exists only for testing (run only by workers started with `--testing`).
pub fn is_testing_kind(kind: &str) -> bool {
    wax_proto::catalog::find(kind).is_some_and(|k| k.testing)
}

/// Runs the stage of `kind` with `config` (the resolved JSON the coordinator planned).
pub fn run(ctx: &StageCtx, config: &serde_json::Value) -> Result<(), StageError> {
    let parsed =
        StageConfig::parse(&ctx.kind, config).map_err(|e| StageError::Config(e.to_string()))?;
    match &parsed {
        StageConfig::Model(m) => model::run(ctx, m),
        StageConfig::Pretrain(p) => pretrain::run(ctx, p),
        StageConfig::Rl(r) => rl::run(ctx, r),
        StageConfig::Extract(e) => extract::run(ctx, e),
        StageConfig::Evaluate(e) => evaluate::run(ctx, e),
        StageConfig::Report(r) => report::run(ctx, r),
        StageConfig::Sleep(s) => testing::sleep(ctx, s),
        StageConfig::FailNTimes(f) => testing::fail_n_times(ctx, f),
    }
}

/// Writes `value` as pretty JSON to `dir/name` (atomically, with `vectors::store`).
pub(crate) fn write_json<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), StageError> {
    crate::vectors::store::write_json(&dir.join(name), value)
        .map_err(|e| StageError::Infrastructure(e.to_string()))
}

/// Reads a JSON document of an input or of this stage's outputs.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, StageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))
}

/// Runs a future from a stage's (synchronous) thread: on the runtime that started the stage
/// when there is one, else on a small runtime of its own.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for a stage's store calls")
            .block_on(f),
    }
}
