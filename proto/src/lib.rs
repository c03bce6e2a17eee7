//! # wax-proto
//!
//! The only thing the coordinator and the workers share: the gRPC contract (`wax/v1/*.proto`)
//! and the protocol version they exchange at registration. Neither side's internals leak in
//! here — no SQL, no scheduling policy, no tensors.
//!
//! A coordinator refuses a worker whose [`PROTOCOL_VERSION`] differs from its own, with a
//! message naming both versions, so a half-upgraded cluster fails loudly instead of
//! mis-decoding messages.

/// Version of the coordinator–worker protocol. Bump it on any incompatible change to the
/// messages or to the meaning of their fields.
pub const PROTOCOL_VERSION: u32 = 1;

/// Whether a peer speaking `theirs` may talk to us. Versions must match exactly: the protocol
/// is young and carries no negotiation yet.
pub fn compatible(theirs: u32) -> bool {
    theirs == PROTOCOL_VERSION
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
}
