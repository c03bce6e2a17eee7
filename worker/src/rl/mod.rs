//! Reinforcement learning in the maze (docs/protocol.md §2): rollouts, the algorithms' math, one
//! trainer for Dr. GRPO, GRPO, token-level REINFORCE, PPO and the SFT control.

pub mod advantage;
pub mod batch;
pub mod config;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod rollout;
pub mod run;
pub mod sft;
pub mod trainer;

pub use config::{Algorithm, TrainConfig};
pub use metrics::{PairedComparison, StepMetrics};
pub use run::{RunHooks, run, run_with};
pub use trainer::{Evaluation, Resume, TrainError, TrainSummary, Trainer};
