//! The building blocks of a decoder layer: linear maps, norms, activations.

use tch::{Kind, Tensor};

use super::config::{Activation, NormKind};
use super::lora::LoraAdapter;

/// `x @ w.T + b`, plus the low-rank update of a LoRA adapter when one is attached and not merged.
#[derive(Debug)]
pub struct Linear {
    /// The Hugging Face module name, e.g. `model.layers.0.self_attn.q_proj`.
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(lora) if !lora.merged => y + lora.delta(x),
            _ => y,
        }
    }
}

/// RMSNorm or LayerNorm, computed in float32 and cast back to the input kind (as transformers
/// does for reduced precision).
#[derive(Debug)]
pub struct Norm {
    pub kind: NormKind,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f64,
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let input_kind = x.kind();
        let width = *x.size().last().unwrap_or(&0);
        match self.kind {
            // libtorch's rms_norm accumulates in float32 for reduced precision and rounds the
            // normalised value to the input kind before the weight multiplies it, as
            // transformers does; one fused kernel on CUDA.
            NormKind::Rms => &self.weight * x.rms_norm([width], None::<&Tensor>, self.eps),
            NormKind::Layer => {
                let xf = x.to_kind(Kind::Float);
                let w = self.weight.to_kind(Kind::Float);
                let b = self.bias.as_ref().map(|b| b.to_kind(Kind::Float));
                xf.layer_norm([width], Some(&w), b.as_ref(), self.eps, false).to_kind(input_kind)
            }
        }
    }
}

/// The feed-forward block.
#[derive(Debug)]
pub enum Mlp {
    /// `down(act(gate(x)) * up(x))` (Llama, Qwen).
    Gated { gate: Linear, up: Linear, down: Linear },
    /// `down(act(up(x)))` (GPT-NeoX).
    Plain { up: Linear, down: Linear, activation: Activation },
}

fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Silu => x.silu(),
        Activation::Gelu => x.gelu("none"),
        Activation::GeluTanh => x.gelu("tanh"),
    }
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Mlp::Gated { gate, up, down } => {
                down.forward(&(gate.forward(x).silu() * up.forward(x)))
            }
            Mlp::Plain { up, down, activation } => {
                down.forward(&activate(&up.forward(x), *activation))
            }
        }
    }
}
