//! The mixture-of-experts MLP of GPT-OSS, computed as transformers' `GptOssMLP` computes it.
//!
//! A router (a linear map with bias) scores the `E` experts for each token; the top `k` scores
//! are softmaxed into weights and the output is the weighted sum of those experts' outputs.
//! Expert `e` is a clamped SwiGLU on its slice of 3-D parameters: `gu = x @ gate_up[e] + b`
//! with gate and up interleaved in the columns of `gu` (even columns gate, odd ones up), the
//! gate clamped above at `limit` and up to `±limit`, `(up + 1) · gate · σ(alpha · gate)`, then
//! `@ down[e] + b`.
//!
//! [`Dispatch::Sparse`] runs each expert on the tokens routed to it (one host read of the
//! routing per layer: the forward pass); [`Dispatch::Dense`] runs every expert on every token
//! and weighs the unchosen ones by zero — no host read, so it is what the graph-ready decode
//! step runs (and for a decode batch most experts are chosen by some row anyway). Both add a
//! token's weighted expert outputs one at a time in the model's kind, in increasing expert
//! order starting from zero, as transformers does (a zero-weighted output adds exactly zero).

use tch::{Device, Tensor};

use super::config::ModelConfig;
use super::decoder::{Loader, Model};
use super::error::ModelError;
use super::layers::{Linear, Mlp};
use super::mxfp4;

/// How the experts' outputs are computed (the same values either way, up to float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dispatch {
    /// Each chosen expert on its tokens: the routing is read on the host.
    Sparse,
    /// Every expert on every token, unchosen ones weighted by zero: no host read.
    Dense,
}

/// One layer's experts and router.
#[derive(Debug)]
pub(super) struct Moe {
    /// `[E, H]` with a bias `[E]`.
    pub(super) router: Linear,
    /// `[E, H, 2I]`, gate and up interleaved in the last dimension.
    pub(super) gate_up: Tensor,
    /// `[E, 2I]`.
    pub(super) gate_up_bias: Tensor,
    /// `[E, I, H]`.
    pub(super) down: Tensor,
    /// `[E, H]`.
    pub(super) down_bias: Tensor,
    pub(super) top_k: i64,
    pub(super) limit: f64,
    pub(super) alpha: f64,
}

/// A router's decision for `N` tokens.
#[derive(Debug)]
pub struct Routing {
    /// `[N, E]`: the router's logits.
    pub logits: Tensor,
    /// `[N, k]`: the chosen experts, best first.
    pub experts: Tensor,
    /// `[N, k]`: their weights (softmax over the chosen logits).
    pub weights: Tensor,
}

impl Moe {
    /// The routing of `x` `[N, H]`.
    pub(super) fn route(&self, x: &Tensor) -> Routing {
        let logits = self.router.forward(x);
        let (top, experts) = logits.topk(self.top_k, -1, true, true);
        let weights = top.softmax(-1, top.kind());
        Routing { logits, experts, weights }
    }

    /// The block's output for `x` `[..., H]`.
    pub(super) fn forward(&self, x: &Tensor, dispatch: Dispatch) -> Result<Tensor, ModelError> {
        let size = x.size();
        let h = *size.last().unwrap_or(&0);
        let flat = x.reshape([-1, h]);
        let routing = self.route(&flat);
        let out = match dispatch {
            Dispatch::Sparse => self.sparse(&flat, &routing)?,
            Dispatch::Dense => self.dense(&flat, &routing),
        };
        Ok(out.reshape(size.as_slice()))
    }

    /// `(up + 1) · gate · σ(alpha · gate)` with the clamps, on interleaved `gu` `[..., 2I]`.
    fn swiglu(&self, gu: &Tensor) -> Tensor {
        let gate = gu.slice(-1, 0, None, 2).clamp_max(self.limit);
        let up = gu.slice(-1, 1, None, 2).clamp(-self.limit, self.limit);
        let glu = &gate * (&gate * self.alpha).sigmoid();
        (up + 1.0) * glu
    }

    fn sparse(&self, x: &Tensor, routing: &Routing) -> Result<Tensor, ModelError> {
        let (n, k) = (x.size()[0], self.top_k);
        let experts = self.gate_up.size()[0];
        let device = x.device();
        let chosen = routing.experts.to_device(Device::Cpu).reshape([-1]);
        let chosen = Vec::<i64>::try_from(&chosen)?;
        // Per expert: the tokens routed to it and the flat index of their weight.
        let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); experts as usize];
        let mut slots: Vec<Vec<i64>> = vec![Vec::new(); experts as usize];
        for (i, &e) in chosen.iter().enumerate() {
            if let Some(list) = tokens.get_mut(e as usize) {
                list.push(i as i64 / k);
                slots[e as usize].push(i as i64);
            }
        }
        let weights = routing.weights.reshape([n * k]);
        let mut out = x.zeros_like();
        for (e, (toks, flat)) in tokens.iter().zip(&slots).enumerate() {
            if toks.is_empty() {
                continue;
            }
            let toks = Tensor::from_slice(toks).to_device(device);
            let w = weights.index_select(0, &Tensor::from_slice(flat).to_device(device));
            let e = e as i64;
            let gu =
                x.index_select(0, &toks).matmul(&self.gate_up.get(e)) + self.gate_up_bias.get(e);
            let y = self.swiglu(&gu).matmul(&self.down.get(e)) + self.down_bias.get(e);
            out = out.index_add(0, &toks, &(y * w.unsqueeze(-1)).to_kind(x.kind()));
        }
        Ok(out)
    }

    fn dense(&self, x: &Tensor, routing: &Routing) -> Tensor {
        let n = x.size()[0];
        let experts = self.gate_up.size()[0];
        let gu = x.unsqueeze(0).matmul(&self.gate_up) + self.gate_up_bias.unsqueeze(1);
        let y = self.swiglu(&gu).matmul(&self.down) + self.down_bias.unsqueeze(1);
        let w = Tensor::zeros([n, experts], (routing.weights.kind(), x.device())).scatter(
            1,
            &routing.experts,
            &routing.weights,
        );
        let weighted = (y * w.transpose(0, 1).unsqueeze(-1)).to_kind(x.kind());
        // One add per expert in the model's kind, as the sparse loop (and transformers) adds.
        (0..experts).fold(x.zeros_like(), |out, e| out + weighted.get(e))
    }
}

impl Loader<'_> {
    /// Layer `prefix`'s router and experts: `mlp.experts.gate_up_proj` and `down_proj` as stored,
    /// or dequantized from their MXFP4 `_blocks` and `_scales`.
    pub(super) fn moe(&mut self, prefix: &str, c: &ModelConfig) -> Result<Mlp, ModelError> {
        let moe_config = c.moe.as_ref().ok_or_else(|| {
            ModelError::Input(format!("{}: no experts in the config", c.model_type))
        })?;
        let (h, i, e) = (c.hidden_size, c.intermediate_size, moe_config.num_experts);
        let router = self.linear(&format!("{prefix}.mlp.router"), e, h, true)?;
        let x = format!("{prefix}.mlp.experts");
        let gate_up = self.experts(&format!("{x}.gate_up_proj"), [e, h, 2 * i])?;
        let down = self.experts(&format!("{x}.down_proj"), [e, i, h])?;
        Ok(Mlp::Moe(Box::new(Moe {
            router,
            gate_up,
            gate_up_bias: self.param(&format!("{x}.gate_up_proj_bias"), &[e, 2 * i])?,
            down,
            down_bias: self.param(&format!("{x}.down_proj_bias"), &[e, h])?,
            top_k: moe_config.experts_per_token,
            limit: moe_config.swiglu_limit,
            alpha: moe_config.swiglu_alpha,
        })))
    }

    /// The expert matrix `name` of `shape` `[E, in, out]`: stored as is, or as MXFP4 blocks
    /// `[E, out, in/32, 16]` and scales `[E, out, in/32]`.
    fn experts(&mut self, name: &str, shape: [i64; 3]) -> Result<Tensor, ModelError> {
        let (blocks, scales) = (format!("{name}_blocks"), format!("{name}_scales"));
        if !self.files.contains(&blocks) {
            return self.param(name, &shape);
        }
        let [e, inp, out] = shape;
        let groups = inp / (2 * mxfp4::BLOCK_BYTES);
        if inp % (2 * mxfp4::BLOCK_BYTES) != 0 {
            return Err(ModelError::Input(format!(
                "{blocks}: MXFP4 needs an input width divisible by 32, found {inp}"
            )));
        }
        let b = self.files.load_bytes(&blocks, &[e, out, groups, mxfp4::BLOCK_BYTES])?;
        let s = self.files.load_bytes(&scales, &[e, out, groups])?;
        let t = mxfp4::dequantize(&b, &s, self.kind, self.device)?;
        self.used.extend([blocks, scales]);
        self.register(name, t)
    }
}

impl Model {
    /// The routing layer `layer`'s MLP applies to the tokens of `resid_mid` (`[..., H]`, the
    /// stream captured at [`super::LayerSite::ResidMid`]): its post-attention norm, then the
    /// router.
    /// `None` for a layer without experts. For tests and analyses of expert choice.
    pub fn moe_routing(
        &self,
        layer: usize,
        resid_mid: &Tensor,
    ) -> Result<Option<Routing>, ModelError> {
        let l = self.layers.get(layer).ok_or_else(|| {
            ModelError::Input(format!("layer {layer} out of range ({} layers)", self.layers.len()))
        })?;
        let Mlp::Moe(moe) = &l.mlp else { return Ok(None) };
        let h = self.config.hidden_size;
        let x = l.ln2.forward(&resid_mid.to_kind(self.kind).reshape([-1, h]));
        Ok(Some(moe.route(&x)))
    }
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    fn moe(top_k: i64) -> Moe {
        tch::manual_seed(5);
        let (e, h, i) = (4, 8, 6);
        let f = (Kind::Float, Device::Cpu);
        Moe {
            router: Linear {
                name: "router".into(),
                weight: Tensor::randn([e, h], f),
                bias: Some(Tensor::randn([e], f)),
                lora: None,
            },
            gate_up: Tensor::randn([e, h, 2 * i], f),
            gate_up_bias: Tensor::randn([e, 2 * i], f),
            down: Tensor::randn([e, i, h], f),
            down_bias: Tensor::randn([e, h], f),
            top_k,
            limit: 1.5,
            alpha: 1.702,
        }
    }

    /// Token by token in f64: route, run the chosen experts, weigh and add.
    fn reference(m: &Moe, x: &Tensor) -> Tensor {
        let d = |t: &Tensor| t.to_kind(Kind::Double);
        let n = x.size()[0];
        let rows: Vec<Tensor> = (0..n)
            .map(|t| {
                let xt = d(&x.get(t));
                let logits = d(&m.router.weight).matmul(&xt) + d(m.router.bias.as_ref().unwrap());
                let (top, idx) = logits.topk(m.top_k, -1, true, true);
                let w = top.softmax(-1, Kind::Double);
                let mut acc = xt.zeros_like();
                for j in 0..m.top_k {
                    let e = idx.int64_value(&[j]);
                    let gu = xt.matmul(&d(&m.gate_up.get(e))) + d(&m.gate_up_bias.get(e));
                    let gate = gu.slice(-1, 0, None, 2).clamp_max(m.limit);
                    let up = gu.slice(-1, 1, None, 2).clamp(-m.limit, m.limit);
                    let act = (up + 1.0) * &gate * (&gate * m.alpha).sigmoid();
                    let y = act.matmul(&d(&m.down.get(e))) + d(&m.down_bias.get(e));
                    acc += y * w.double_value(&[j]);
                }
                acc
            })
            .collect();
        Tensor::stack(&rows, 0)
    }

    #[test]
    fn sparse_and_dense_dispatch_compute_the_weighted_chosen_experts() {
        for k in [1, 2, 4] {
            let m = moe(k);
            let x = Tensor::randn([2, 5, 8], (Kind::Float, Device::Cpu));
            let want = reference(&m, &x.reshape([10, 8])).view([2, 5, 8]);
            for dispatch in [Dispatch::Sparse, Dispatch::Dense] {
                let got = m.forward(&x, dispatch).unwrap();
                let err = (got.to_kind(Kind::Double) - &want).abs().max().double_value(&[]);
                assert!(err < 1e-4, "top {k} {dispatch:?}: {err}");
            }
        }
    }

    #[test]
    fn the_clamps_bound_the_activation() {
        let m = moe(2);
        let gu = Tensor::from_slice(&[10.0f32, 10.0, -10.0, -10.0]).view([1, 4]);
        let act = Vec::<f32>::try_from(m.swiglu(&gu).reshape([-1])).unwrap();
        // gate 10 → 1.5, up 10 → 1.5: (1.5 + 1) · 1.5 · σ(1.702 · 1.5).
        let want = 2.5 * 1.5 / (1.0 + (-1.702f64 * 1.5).exp());
        assert!((f64::from(act[0]) - want).abs() < 1e-5, "{act:?}");
        // gate −10 (not clamped below), up −10 → −1.5: (−0.5) · (−10) · σ(−17.02).
        let want = -0.5 * -10.0 / (1.0 + (17.02f64).exp());
        assert!((f64::from(act[1]) - want).abs() < 1e-6, "{act:?}");
    }
}
