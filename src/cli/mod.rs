//! Subcommand implementations: argument structs and printing; the work is in the libraries.

#[cfg(feature = "worker")]
pub mod doctor;
#[cfg(feature = "worker")]
pub mod maze;
