//! # wax-coordinator
//!
//! Turns sweep manifests into a DAG of content-addressed stages and hands them to workers
//! under leases with fencing epochs, keeping every durable fact in a store (SQLite embedded,
//! Postgres on a cluster).
//!
//! - [`manifest`]: TOML/YAML/JSON sweep manifests → validated [`manifest::Manifest`] → trials,
//!   with errors located as `file:line:column: field.path: message`.
//! - [`records`]: the durable records (sweeps, stages, workers, events).
//! - [`store`]: the [`store::Store`] trait, SQLite and Postgres implementations.
//!
//! Invariant: this crate knows nothing about models, tensors or Kubernetes. A stage is an
//! opaque `kind` plus a JSON `config` it never interprets; it meets the workers only through
//! [`wax_proto`].

pub mod auth;
pub mod bench;
pub mod manifest;
pub mod plan;
pub mod records;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod submit;
