//! Stage executors: what a worker runs for each stage kind of the coordinator's catalog.
//!
//! - [`config`]: every kind's resolved configuration, read with the science's own types (the
//!   same code validates manifests before anything runs);
//! - [`check`]: a planned stage's problems before it runs;
//! - [`model`]: model references (`builtin:`, `hf-dir:`, `s3://`).

pub mod check;
pub mod config;
pub mod model;

pub use check::{PlannedStage, check_stage};
pub use config::{FieldError, StageConfig};
