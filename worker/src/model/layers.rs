//! The building blocks of a decoder layer: linear maps, norms, activations.

use tch::{Kind, Tensor};

use super::config::{Activation, NormKind};
use super::error::ModelError;
use super::lora::LoraAdapter;
use super::moe::{Dispatch, Moe};

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

/// Linear maps that read the same input (q/k/v, or gate/up), with their weights (and biases) stored
/// as row blocks of one matrix: each map's `weight` is a view of `weight` here, so in-place updates
/// (optimizer steps, LoRA merges, checkpoint loads) reach both, and inference runs one matmul
/// instead of two or three.
#[derive(Debug)]
pub struct Packed {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Packed {
    /// `[rows, inp]` zeros of `kind` on `device` (and `[rows]` biases), to be filled through
    /// [`Packed::part`] views.
    pub fn zeros(rows: i64, inp: i64, bias: bool, kind: Kind, device: tch::Device) -> Packed {
        Packed {
            weight: Tensor::zeros([rows, inp], (kind, device)),
            bias: bias.then(|| Tensor::zeros([rows], (kind, device))),
        }
    }

    /// The rows `start..start+len` of the packed weight and bias (views sharing their storage).
    pub fn part(&self, start: i64, len: i64) -> (Tensor, Option<Tensor>) {
        (self.weight.narrow(0, start, len), self.bias.as_ref().map(|b| b.narrow(0, start, len)))
    }

    /// Whether one matmul over the packed weight computes what `parts` compute separately, with
    /// the gradients they need: no part has an unmerged adapter, and no gradient is wanted for the
    /// parts' own parameters (the packed matrix is not a leaf of the autograd graph; gradients
    /// still reach the input).
    pub fn usable(&self, parts: &[&Linear]) -> bool {
        let adapters_merged = parts.iter().all(|l| l.lora.as_ref().is_none_or(|a| a.merged));
        let trainable = parts.iter().any(|l| {
            l.weight.requires_grad() || l.bias.as_ref().is_some_and(Tensor::requires_grad)
        });
        adapters_merged && !(trainable && grad_mode())
    }

    /// `x @ weight.T + bias` over all parts at once: the parts' outputs side by side.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// Whether libtorch's gradient mode is on for this thread (as `torch.is_grad_enabled()`).
fn grad_mode() -> bool {
    // SAFETY: the call sets the thread-local gradient mode and returns the previous one (or -1
    // if libtorch threw); setting that previous value back leaves the mode as it was.
    unsafe {
        let previous = torch_sys::at_grad_set_enabled(1);
        if previous >= 0 {
            torch_sys::at_grad_set_enabled(previous);
        }
        previous != 0
    }
}

/// Which packed matmuls a model uses where they are usable (see [`Packed::usable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packing {
    /// q/k/v as one matmul.
    pub qkv: bool,
    /// gate/up as one matmul.
    pub mlp: bool,
}

impl Packing {
    /// Both on accelerators; q/k/v only on the CPU, where (builtin:100m widths, 2 threads) one
    /// `[H, 2I]` matmul measured ~10–20% slower than the two `[H, I]` ones for 8 rows, while the
    /// packed q/k/v was ~15% faster for 8 rows (a decode step) and within 4% for 128.
    /// `WAX_PACKED_PROJECTIONS=0` turns both off (for A/B benchmarks).
    pub fn default_for(device: tch::Device) -> Packing {
        if std::env::var("WAX_PACKED_PROJECTIONS").is_ok_and(|v| v == "0") {
            return Packing { qkv: false, mlp: false };
        }
        Packing { qkv: true, mlp: device != tch::Device::Cpu }
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
            NormKind::RmsF32Weight => {
                let normed = x.to_kind(Kind::Float).rms_norm([width], None::<&Tensor>, self.eps);
                (self.weight.to_kind(Kind::Float) * normed).to_kind(input_kind)
            }
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
    /// `down(act(gate(x)) * up(x))` (Llama, Qwen); `gate` and `up` are views of `packed`.
    Gated { gate: Linear, up: Linear, down: Linear, packed: Packed },
    /// `down(act(up(x)))` (GPT-NeoX).
    Plain { up: Linear, down: Linear, activation: Activation },
    /// Routed experts (GPT-OSS).
    Moe(Box<Moe>),
}

fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Silu => x.silu(),
        Activation::Gelu => x.gelu("none"),
        Activation::GeluTanh => x.gelu("tanh"),
    }
}

impl Mlp {
    /// The block's output; `pack`: run gate/up as one matmul where that is usable; `dispatch`:
    /// how routed experts run.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        pack: bool,
        dispatch: Dispatch,
    ) -> Result<Tensor, ModelError> {
        Ok(match self {
            Mlp::Moe(moe) => moe.forward(x, dispatch)?,
            Mlp::Gated { gate, up, down, packed } => {
                if pack && packed.usable(&[gate, up]) {
                    let gu = packed.forward(x);
                    let n = gate.weight.size()[0];
                    down.forward(&(gu.narrow(-1, 0, n).silu() * gu.narrow(-1, n, n)))
                } else {
                    down.forward(&(gate.forward(x).silu() * up.forward(x)))
                }
            }
            Mlp::Plain { up, down, activation } => {
                down.forward(&activate(&up.forward(x), *activation))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    fn packed_pair(bias: bool) -> (Packed, Linear, Linear) {
        tch::manual_seed(3);
        let packed = Packed::zeros(7, 5, bias, Kind::Float, Device::Cpu);
        packed.weight.shallow_clone().copy_(&Tensor::randn([7, 5], (Kind::Float, Device::Cpu)));
        if let Some(b) = &packed.bias {
            b.shallow_clone().copy_(&Tensor::randn([7], (Kind::Float, Device::Cpu)));
        }
        let part = |start, len, name: &str| {
            let (weight, bias) = packed.part(start, len);
            Linear { name: name.into(), weight, bias, lora: None }
        };
        let (a, b) = (part(0, 3, "a"), part(3, 4, "b"));
        (packed, a, b)
    }

    #[test]
    fn packed_matmul_equals_the_parts_side_by_side() {
        for bias in [false, true] {
            let (packed, a, b) = packed_pair(bias);
            let x = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
            let want = Tensor::cat(&[a.forward(&x), b.forward(&x)], -1);
            let diff = (packed.forward(&x) - want).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "bias {bias}: {diff}");
        }
    }

    #[test]
    fn in_place_updates_of_a_part_reach_the_packed_matrix() {
        let (packed, a, _b) = packed_pair(true);
        tch::no_grad(|| {
            let _ = a.weight.shallow_clone().f_add_scalar_(1.0).unwrap();
        });
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let diff =
            (packed.forward(&x).narrow(-1, 0, 3) - a.forward(&x)).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn packing_is_skipped_when_the_parts_need_gradients_or_have_live_adapters() {
        let (packed, a, b) = packed_pair(false);
        assert!(packed.usable(&[&a, &b]));
        let a = Linear { weight: a.weight.set_requires_grad(true), ..a };
        assert!(!packed.usable(&[&a, &b]), "gradient mode on and a trainable part");
        assert!(tch::no_grad(|| packed.usable(&[&a, &b])), "no gradient mode");
        let lora = |merged| LoraAdapter {
            a: Tensor::zeros([1, 5], (Kind::Float, Device::Cpu)),
            b: Tensor::zeros([3, 1], (Kind::Float, Device::Cpu)),
            scale: 1.0,
            dropout: 0.0,
            train: false,
            merged,
        };
        let b = Linear { lora: Some(lora(false)), ..b };
        assert!(!tch::no_grad(|| packed.usable(&[&a, &b])), "an unmerged adapter");
        let b = Linear { lora: Some(lora(true)), ..b };
        assert!(tch::no_grad(|| packed.usable(&[&a, &b])), "a merged adapter");
    }
}
