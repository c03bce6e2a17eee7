//! The gRPC services over the scheduler.

mod convert;
mod sweep;
mod worker;

pub use sweep::SweepApi;
pub use worker::WorkerApi;
