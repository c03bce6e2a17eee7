//! Generation: sampling the next token reproducibly on the device ([`sampling`], [`noise`]) and
//! batched multi-turn decoding over one preallocated KV cache ([`session`]) in one decode loop
//! (`decode`), captured as CUDA graphs ([`graphed`]) and with the sampler fused into one kernel
//! ([`fused`]) on GPUs.

pub mod bench;
mod decode;
pub mod fused;
pub mod graphed;
pub mod noise;
pub mod sampling;
pub mod session;

pub use bench::{DecodeBench, DecodeBenchConfig, decode_bench};
pub use sampling::{Sampled, Sampling, log_probs, sample, sample_at, sample_reference};
pub use session::{
    Allowed, Chunk, Decode, GenerateError, GenerateOptions, Generation, Session, SteerSpec,
};
