//! # wax-coordinator
//!
//! Turns sweep manifests into a DAG of content-addressed stages and hands them to workers
//! under leases with fencing epochs, keeping every durable fact in a store (SQLite embedded,
//! Postgres on a cluster).
//!
//! Invariant: this crate knows nothing about models, tensors or Kubernetes. A stage is an
//! opaque `kind` plus a JSON `config` it never interprets; it meets the workers only through
//! [`wax_proto`].
//!
//! The manifest planner, scheduler, stores and services arrive with the coordinator issue;
//! until then this crate only pins the protocol version it will speak.

/// The coordinator–worker protocol version this coordinator speaks.
pub const SPEAKS_PROTOCOL: u32 = wax_proto::PROTOCOL_VERSION;
