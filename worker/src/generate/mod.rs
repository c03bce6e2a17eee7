//! Generation: sampling the next token reproducibly on the device ([`sampling`], [`noise`]) and
//! batched multi-turn decoding over one preallocated KV cache ([`session`]).

pub mod bench;
pub mod noise;
pub mod sampling;
pub mod session;

pub use bench::{DecodeBench, DecodeBenchConfig, decode_bench};
pub use sampling::{Sampled, Sampling, log_probs, sample};
pub use session::{Allowed, Chunk, GenerateError, GenerateOptions, Generation, Session, SteerSpec};
