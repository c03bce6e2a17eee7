//! Generation: sampling the next token reproducibly on the device ([`sampling`], [`noise`]) and
//! batched multi-turn decoding over one preallocated KV cache ([`session`]), with the decode loop
//! captured as CUDA graphs ([`graphed`]) and the sampler fused into one kernel ([`fused`]) on GPUs.

pub mod bench;
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
