//! # wax-worker
//!
//! Everything a wax worker runs: the node runtime and the science of the paper, stage by stage.
//!
//! - [`runtime`]: register with a coordinator, lease stages, heartbeat, upload, commit, drain;
//! - [`stages`]: one executor per stage kind, reading its config with the science's types;
//! - [`artifacts`]: object storage (local disk, S3), the machine's input cache, the layout;
//! - [`maze`]: the semantically neutral text maze the policy is trained in, its renderer, a
//!   planner for the best return from any state, and the synthetic trajectories used to extract
//!   concept vectors;
//! - [`model`], [`tokenizer`], [`generate`]: decoder models on libtorch and their decoding;
//! - [`pretrain`], [`rl`], [`vectors`], [`evals`]: the science;
//! - [`device`]: what libtorch and the CUDA driver see on this machine;
//! - [`rng`]: the one seeded random generator every stochastic piece draws from.
//!
//! Invariant: the worker knows nothing about SQL or scheduling policy; it meets the coordinator
//! only through `wax-proto`.

pub mod artifacts;
pub mod builtin;
pub mod cuda_graph;
pub mod device;
pub mod evals;
pub mod generate;
pub mod gguf;
pub mod kernel_cache;
pub mod maze;
pub mod model;
pub mod pretrain;
pub mod rl;
pub mod rng;
pub mod runtime;
pub mod stages;
pub mod stats;
pub mod tokenizer;
pub mod vectors;
