//! # wax-proto
//!
//! The only thing the coordinator and the workers share: the gRPC contract (`wax/v1/*.proto`,
//! compiled here with protox, so no system `protoc` is needed), the protocol version they
//! exchange at registration, and the catalog of stage kinds ([`catalog`]). Neither side's
//! internals leak in here — no SQL, no scheduling policy, no tensors.
//!
//! A coordinator refuses a worker whose [`PROTOCOL_VERSION`] differs from its own, with a
//! message naming both versions, so a half-upgraded cluster fails loudly instead of
//! mis-decoding messages.

pub mod catalog;
pub mod client;

/// Version of the coordinator–worker protocol. Bump it on any incompatible change to the
/// messages or to the meaning of their fields.
pub const PROTOCOL_VERSION: u32 = 1;

/// Whether a peer speaking `theirs` may talk to us. Versions must match exactly: the protocol
/// is young and carries no negotiation yet.
pub fn compatible(theirs: u32) -> bool {
    theirs == PROTOCOL_VERSION
}

/// Generated messages and services of `wax.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("wax.v1");
}

/// The encoded `FileDescriptorSet` of `wax.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wax_descriptor.bin"));

impl v1::Resources {
    /// Whether `self` (what a worker has free) covers `need`.
    pub fn covers(&self, need: &v1::Resources) -> bool {
        self.gpus >= need.gpus
            && (need.gpus == 0 || self.gpu_memory_bytes >= need.gpu_memory_bytes)
            && self.cpu_millis >= need.cpu_millis
            && self.memory_bytes >= need.memory_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_version_is_compatible() {
        assert!(compatible(PROTOCOL_VERSION));
        assert!(!compatible(PROTOCOL_VERSION + 1));
        assert!(!compatible(0));
    }

    #[test]
    fn descriptor_set_names_both_services() {
        let text = String::from_utf8_lossy(FILE_DESCRIPTOR_SET);
        assert!(text.contains("SweepService") && text.contains("WorkerService"));
    }

    #[test]
    fn resource_cover() {
        let worker = v1::Resources {
            gpus: 1,
            gpu_memory_bytes: 80 << 30,
            cpu_millis: 8000,
            memory_bytes: 64 << 30,
        };
        let small = v1::Resources {
            gpus: 1,
            gpu_memory_bytes: 40 << 30,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        };
        let big_gpu = v1::Resources { gpu_memory_bytes: 100 << 30, ..small };
        let cpu_only =
            v1::Resources { gpus: 0, gpu_memory_bytes: 0, cpu_millis: 1000, memory_bytes: 1 << 30 };
        assert!(worker.covers(&small));
        assert!(!worker.covers(&big_gpu));
        assert!(worker.covers(&cpu_only));
        assert!(!cpu_only.covers(&small));
    }
}
