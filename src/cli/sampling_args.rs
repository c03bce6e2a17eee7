//! The sampling flags shared by `wax model generate` and `wax bench model`.

use clap::Args;
use wax_worker::generate::Sampling;

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose mass reaches P.
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,
    /// Keep only the K most likely tokens.
    #[arg(long, value_name = "K")]
    pub top_k: Option<i64>,
}

impl SamplingArgs {
    /// The checked sampling parameters (the error names the bad flag's value).
    pub fn sampling(&self) -> anyhow::Result<Sampling> {
        let s = Sampling { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p };
        s.validate().map_err(|e| anyhow::anyhow!("sampling: {e}"))?;
        Ok(s)
    }
}
