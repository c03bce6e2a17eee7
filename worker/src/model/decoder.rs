//! `Model`: loading a snapshot into a `VarStore` and the batched forward pass.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor, nn};

use super::attend::{SlotAttention, StepAttention};
use super::cache::KvCache;
use super::config::{Family, ModelConfig, NormKind};
use super::error::ModelError;
use super::hooks::{HookPoint, Hooks, LayerSite, Prepared};
use super::layers::{Linear, Mlp, Norm, Packed, Packing};
use super::moe::Dispatch;
use super::prep::{SlotPrep, StepPrep};
use super::resid::StepNorm;
use super::rope;
use super::step::StepLogits;
use super::weights::WeightFiles;

/// The inputs of one forward call.
#[derive(Debug)]
pub struct ForwardInput {
    /// `[B, T]` i64 token ids (pads may be any valid id).
    pub input_ids: Tensor,
    /// `[B, T]` i64 absolute positions (for left padding: `cumsum(mask) - 1`, clamped at 0).
    pub positions: Tensor,
    /// `[B, S]` bool, `S = cached length + T`; true marks a real token.
    pub attention_mask: Tensor,
}

/// Which positions the logits are computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsSelect {
    /// `[B, T, V]`.
    All,
    /// `[B, 1, V]`: only the last position of the call (what generation needs).
    Last,
    /// No logits: the call returns the final-normed hidden states `[B, T, H]` (in the model's
    /// kind), for callers that project only a few rows or a few tokens through
    /// [`Model::lm_head`] (RL over four move tokens, SFT on assistant positions).
    None,
}

#[derive(Debug)]
enum Qkv {
    /// Llama/Qwen `q_proj`, `k_proj`, `v_proj`, whose weights are views of `packed`.
    Separate { q: Linear, k: Linear, v: Linear, packed: Packed },
    /// GPT-NeoX `query_key_value`, laid out per head as `[heads, 3, head_dim]`.
    Fused(Linear),
}

#[derive(Debug)]
pub(super) struct Layer {
    pub(super) ln1: Norm,
    pub(super) ln2: Norm,
    qkv: Qkv,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    /// Norms of the whole query and key projections (OLMo-2).
    qk_norm_full: Option<(Norm, Norm)>,
    o: Linear,
    pub(super) mlp: Mlp,
    /// A learned logit per query head that joins the softmax (GPT-OSS), `[heads]`.
    sinks: Option<Tensor>,
    /// Whether the layer attends through the sliding window.
    sliding: bool,
}

impl Layer {
    /// The layer's linear maps in a fixed order: attention inputs, attention output, MLP.
    fn linears(&self) -> Vec<&Linear> {
        let mut out = match &self.qkv {
            Qkv::Separate { q, k, v, .. } => vec![q, k, v],
            Qkv::Fused(qkv) => vec![qkv],
        };
        out.push(&self.o);
        match &self.mlp {
            Mlp::Gated { gate, up, down, .. } => out.extend([gate, up, down]),
            Mlp::Plain { up, down, .. } => out.extend([up, down]),
            // The router and the 3-D experts are no LoRA targets.
            Mlp::Moe(_) => {}
        }
        out
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = match &mut self.qkv {
            Qkv::Separate { q, k, v, .. } => vec![q, k, v],
            Qkv::Fused(qkv) => vec![qkv],
        };
        out.push(&mut self.o);
        match &mut self.mlp {
            Mlp::Gated { gate, up, down, .. } => out.extend([gate, up, down]),
            Mlp::Plain { up, down, .. } => out.extend([up, down]),
            Mlp::Moe(_) => {}
        }
        out
    }
}

/// A decoder-only language model whose parameters live in a `VarStore` under their Hugging Face
/// names (trainable).
pub struct Model {
    pub(super) config: ModelConfig,
    vs: nn::VarStore,
    pub(super) kind: Kind,
    pub(super) embed: Tensor,
    pub(super) layers: Vec<Layer>,
    pub(super) final_norm: Norm,
    pub(super) lm_head: Tensor,
    pub(super) inv_freq: Tensor,
    pub(super) rope_scaling: f64,
    /// The snapshot directory the model was loaded from.
    source: PathBuf,
    /// Training mode (LoRA dropout active); false after loading.
    pub(super) training: bool,
    /// The configuration of the attached LoRA adapters (targets resolved), if any.
    pub(super) lora: Option<super::lora::LoraConfig>,
    /// Which packed projections inference uses.
    pub(super) packing: Packing,
    /// How the graph-ready decode step attends.
    pub(super) step_attention: StepAttention,
    /// How the graph-ready decode step prepares queries and keys.
    pub(super) step_prep: StepPrep,
    /// How the graph-ready decode step adds to the residual stream and norms it.
    pub(super) step_norm: StepNorm,
    /// The kind a decode loop over the graph-ready step keeps its logits in.
    pub(super) step_logits: StepLogits,
}

/// Tensors in snapshots that are buffers, not parameters.
fn is_known_buffer(name: &str) -> bool {
    name.ends_with(".attention.bias")
        || name.ends_with(".attention.masked_bias")
        || name.ends_with("rotary_emb.inv_freq")
}

pub(super) struct Loader<'a> {
    pub(super) files: &'a WeightFiles,
    vs: &'a nn::VarStore,
    pub(super) kind: Kind,
    pub(super) device: Device,
    pub(super) used: Vec<String>,
}

impl Loader<'_> {
    pub(super) fn param(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ModelError> {
        let t = self.files.load(name, shape, self.kind, self.device)?;
        self.register(name, t)
    }

    /// Adds `t` to the `VarStore` under its Hugging Face name (trainable).
    pub(super) fn register(&mut self, name: &str, t: Tensor) -> Result<Tensor, ModelError> {
        let mut parts: Vec<&str> = name.split('.').collect();
        let last = parts.pop().unwrap_or(name);
        let mut path = self.vs.root();
        for p in parts {
            path = path.sub(p);
        }
        self.used.push(name.to_string());
        Ok(path.add(last, t, true))
    }

    pub(super) fn linear(
        &mut self,
        prefix: &str,
        out: i64,
        inp: i64,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        Ok(Linear {
            name: prefix.to_string(),
            weight: self.param(&format!("{prefix}.weight"), &[out, inp])?,
            bias: if bias { Some(self.param(&format!("{prefix}.bias"), &[out])?) } else { None },
            lora: None,
        })
    }

    /// Linear maps reading the same input, each `(prefix, out)`, loaded into the row blocks of one
    /// packed matrix and registered as views of it (under their own names).
    fn packed<const N: usize>(
        &mut self,
        parts: [(&str, i64); N],
        inp: i64,
        bias: bool,
    ) -> Result<([Linear; N], Packed), ModelError> {
        let rows = parts.iter().map(|p| p.1).sum();
        let packed = Packed::zeros(rows, inp, bias, self.kind, self.device);
        let mut start = 0;
        let mut linears = Vec::with_capacity(parts.len());
        for (prefix, out) in parts {
            let (w, b) = packed.part(start, out);
            start += out;
            linears.push(Linear {
                name: prefix.to_string(),
                weight: self.param_into(&format!("{prefix}.weight"), &w)?,
                bias: match b {
                    Some(b) => Some(self.param_into(&format!("{prefix}.bias"), &b)?),
                    None => None,
                },
                lora: None,
            });
        }
        let linears = <[Linear; N]>::try_from(linears)
            .map_err(|l| ModelError::Input(format!("{} of {N} packed projections", l.len())))?;
        Ok((linears, packed))
    }

    /// Loads `name` (of `dest`'s shape) into `dest`, a view of a packed matrix, and registers it.
    fn param_into(&mut self, name: &str, dest: &Tensor) -> Result<Tensor, ModelError> {
        let t = self.files.load(name, &dest.size(), self.kind, self.device)?;
        tch::no_grad(|| dest.shallow_clone().copy_(&t));
        self.register(name, dest.shallow_clone())
    }

    fn norm(&mut self, prefix: &str, c: &ModelConfig, width: i64) -> Result<Norm, ModelError> {
        Ok(Norm {
            kind: c.norm,
            weight: self.param(&format!("{prefix}.weight"), &[width])?,
            bias: match c.norm {
                NormKind::Layer => Some(self.param(&format!("{prefix}.bias"), &[width])?),
                NormKind::Rms | NormKind::RmsF32Weight => None,
            },
            eps: c.norm_eps,
        })
    }
}

impl Model {
    /// Loads `dir/config.json` and the safetensors weights onto `device` as `kind`
    /// (`Kind::Float` or `Kind::BFloat16`).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Model, ModelError> {
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half) {
            return Err(ModelError::Input(format!(
                "unsupported parameter kind {kind:?} (use Float or BFloat16)"
            )));
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let files = WeightFiles::open(dir)?;
        let vs = nn::VarStore::new(device);
        let c = &config;
        let mut ld = Loader { files: &files, vs: &vs, kind, device, used: Vec::new() };
        let (h, v, i) = (c.hidden_size, c.vocab_size, c.intermediate_size);
        let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let neox = c.family == Family::GptNeoX;
        let base = if neox { "gpt_neox" } else { "model" };
        let embed = ld.param(
            &format!("{base}.{}.weight", if neox { "embed_in" } else { "embed_tokens" }),
            &[v, h],
        )?;
        let mut layers = Vec::with_capacity(c.num_layers as usize);
        for l in 0..c.num_layers {
            let p = format!("{base}.layers.{l}");
            // With post-norms `ln1`/`ln2` normalise the attention and MLP outputs.
            let (ln1, ln2) = if c.post_norm {
                (
                    ld.norm(&format!("{p}.post_attention_layernorm"), c, h)?,
                    ld.norm(&format!("{p}.post_feedforward_layernorm"), c, h)?,
                )
            } else {
                (
                    ld.norm(&format!("{p}.input_layernorm"), c, h)?,
                    ld.norm(&format!("{p}.post_attention_layernorm"), c, h)?,
                )
            };
            let layer = if neox {
                Layer {
                    ln1,
                    ln2,
                    qkv: Qkv::Fused(ld.linear(
                        &format!("{p}.attention.query_key_value"),
                        3 * h,
                        h,
                        c.qkv_bias,
                    )?),
                    q_norm: None,
                    k_norm: None,
                    qk_norm_full: None,
                    sinks: None,
                    sliding: false,
                    o: ld.linear(&format!("{p}.attention.dense"), h, h, c.o_bias)?,
                    mlp: Mlp::Plain {
                        up: ld.linear(&format!("{p}.mlp.dense_h_to_4h"), i, h, true)?,
                        down: ld.linear(&format!("{p}.mlp.dense_4h_to_h"), h, i, true)?,
                        activation: c.activation,
                    },
                }
            } else {
                let a = format!("{p}.self_attn");
                let (q_norm, k_norm) = if c.qk_norm {
                    (
                        Some(ld.norm(&format!("{a}.q_norm"), c, c.head_dim)?),
                        Some(ld.norm(&format!("{a}.k_norm"), c, c.head_dim)?),
                    )
                } else {
                    (None, None)
                };
                let qk_norm_full = if c.qk_norm_full {
                    Some((
                        ld.norm(&format!("{a}.q_norm"), c, qd)?,
                        ld.norm(&format!("{a}.k_norm"), c, kvd)?,
                    ))
                } else {
                    None
                };
                let ([q, k, v], packed_qkv) = ld.packed(
                    [
                        (&format!("{a}.q_proj"), qd),
                        (&format!("{a}.k_proj"), kvd),
                        (&format!("{a}.v_proj"), kvd),
                    ],
                    h,
                    c.qkv_bias,
                )?;
                let o = ld.linear(&format!("{a}.o_proj"), h, qd, c.o_bias)?;
                let sinks = if c.attention_sinks {
                    Some(ld.param(&format!("{a}.sinks"), &[c.num_heads])?)
                } else {
                    None
                };
                let mlp = if c.moe.is_some() {
                    ld.moe(&p, c)?
                } else {
                    let ([gate, up], packed) = ld.packed(
                        [(&format!("{p}.mlp.gate_proj"), i), (&format!("{p}.mlp.up_proj"), i)],
                        h,
                        c.mlp_bias,
                    )?;
                    let down = ld.linear(&format!("{p}.mlp.down_proj"), h, i, c.mlp_bias)?;
                    Mlp::Gated { gate, up, down, packed }
                };
                Layer {
                    ln1,
                    ln2,
                    qkv: Qkv::Separate { q, k, v, packed: packed_qkv },
                    q_norm,
                    k_norm,
                    qk_norm_full,
                    o,
                    mlp,
                    sinks,
                    sliding: c.is_sliding(l as usize),
                }
            };
            layers.push(layer);
        }
        let final_norm =
            ld.norm(&format!("{base}.{}", if neox { "final_layer_norm" } else { "norm" }), c, h)?;
        let mut tolerated: Vec<&str> = Vec::new();
        let lm_head = if c.tie_word_embeddings {
            // Some snapshots store the tied head anyway; transformers ignores it.
            tolerated.push("lm_head.weight");
            embed.shallow_clone()
        } else if neox && !files.contains("lm_head.weight") {
            ld.param("embed_out.weight", &[v, h])?
        } else {
            ld.param("lm_head.weight", &[v, h])?
        };
        let used = std::mem::take(&mut ld.used);
        let unexpected: Vec<String> = files
            .names()
            .into_iter()
            .filter(|n| {
                !used.contains(n) && !is_known_buffer(n) && !tolerated.contains(&n.as_str())
            })
            .collect();
        if !unexpected.is_empty() {
            return Err(ModelError::UnexpectedTensors { names: unexpected.join(", ") });
        }
        let (inv_freq, rope_scaling) = config.rope.inv_freq(config.rotary_dim, None, device);
        Ok(Model {
            config,
            vs,
            kind,
            embed,
            layers,
            final_norm,
            lm_head,
            inv_freq,
            rope_scaling,
            source: dir.to_path_buf(),
            training: false,
            lora: None,
            packing: Packing::default_for(device),
            step_attention: StepAttention::from_env(),
            step_prep: StepPrep::from_env(),
            step_norm: StepNorm::from_env(),
            step_logits: StepLogits::from_env(),
        })
    }

    /// Which packed projections inference uses (by default [`Packing::default_for`] the device).
    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Chooses the packed projections; the results agree either way (within float rounding).
    pub fn set_packing(&mut self, packing: Packing) {
        self.packing = packing;
    }

    /// How [`Model::forward_step`] attends (by default [`StepAttention::from_env`]).
    pub fn step_attention(&self) -> StepAttention {
        self.step_attention
    }

    /// What [`Model::forward_step`] runs under the current choice on this model's device and
    /// kind: `Kernel` only where the CUDA kernel applies and compiles (compiling it now if
    /// needed).
    pub fn step_attention_in_use(&self) -> StepAttention {
        let c = &self.config;
        // The kernel knows neither sinks nor windows.
        if !c.plain_attention() {
            return StepAttention::Sdpa;
        }
        super::attend::in_use(
            self.step_attention,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            self.kind,
            self.device(),
        )
    }

    /// How [`Model::forward_step`] prepares queries and keys (by default [`StepPrep::from_env`]).
    pub fn step_prep(&self) -> StepPrep {
        self.step_prep
    }

    /// What [`Model::forward_step`] runs under the current choice on this model's device and
    /// kind: `Kernel` only where the CUDA kernel applies and compiles (compiling it now if
    /// needed).
    pub fn step_prep_in_use(&self) -> StepPrep {
        super::prep::in_use(self.step_prep, &self.config, self.kind, self.device())
    }

    /// Chooses how [`Model::forward_step`] prepares queries and keys; the results agree either
    /// way (within float rounding).
    pub fn set_step_prep(&mut self, choice: StepPrep) {
        self.step_prep = choice;
    }

    /// How [`Model::forward_step`] adds to the residual stream and norms it (by default
    /// [`StepNorm::from_env`]).
    pub fn step_norm(&self) -> StepNorm {
        self.step_norm
    }

    /// What [`Model::forward_step`] runs under the current choice on this model's family, device
    /// and kind: `Kernel` only where the CUDA kernel applies and compiles (compiling it now if
    /// needed).
    pub fn step_norm_in_use(&self) -> StepNorm {
        super::resid::in_use(self.step_norm, &self.config, self.kind, self.device())
    }

    /// Chooses how [`Model::forward_step`] adds to the residual stream and norms it; the results
    /// agree either way (within float rounding).
    pub fn set_step_norm(&mut self, choice: StepNorm) {
        self.step_norm = choice;
    }

    /// The kind a decode loop over [`Model::forward_step_into`] keeps its logits in (by default
    /// [`StepLogits::from_env`]).
    pub fn step_logits(&self) -> StepLogits {
        self.step_logits
    }

    /// What that kind is on this model: [`Kind::BFloat16`] for [`StepLogits::Model`] on a
    /// bfloat16 model, [`Kind::Float`] otherwise.
    pub fn step_logits_kind(&self) -> Kind {
        match self.step_logits {
            StepLogits::Model if self.kind == Kind::BFloat16 => Kind::BFloat16,
            _ => Kind::Float,
        }
    }

    /// Chooses the kind a decode loop over [`Model::forward_step_into`] keeps its logits in; the
    /// draws are the same either way.
    pub fn set_step_logits(&mut self, choice: StepLogits) {
        self.step_logits = choice;
    }

    /// Chooses how [`Model::forward_step`] attends; the results agree either way (within float
    /// rounding).
    pub fn set_step_attention(&mut self, choice: StepAttention) {
        self.step_attention = choice;
    }

    /// The snapshot directory the model was loaded from.
    pub fn source_dir(&self) -> &Path {
        &self.source
    }

    /// Every linear map of the decoder blocks, layer by layer (see `Layer::linears`).
    pub(super) fn block_linears(&self) -> Vec<&Linear> {
        self.layers.iter().flat_map(Layer::linears).collect()
    }

    pub(super) fn block_linears_mut(&mut self) -> Vec<&mut Linear> {
        self.layers.iter_mut().flat_map(Layer::linears_mut).collect()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The unembedding `[V, H]` (the embedding matrix when tied).
    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// Applies the model's final norm to `x` (`[..., H]`, any float kind; computed in the model's
    /// kind, returned in `x`'s kind).
    pub fn apply_final_norm(&self, x: &Tensor) -> Tensor {
        self.final_norm.forward(&x.to_kind(self.kind)).to_kind(x.kind())
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The kind the parameters were loaded as.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Number of scalar parameters (tied embeddings counted once).
    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(Tensor::numel).sum::<usize>() as i64
    }

    /// A cache for `batch` rows of up to `capacity` tokens each.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache, ModelError> {
        let c = &self.config;
        KvCache::new(
            c.num_layers,
            batch,
            c.num_kv_heads,
            capacity,
            c.head_dim,
            self.kind,
            self.device(),
        )
    }

    /// Logits `[B, T, V]` (float32) for every position of the call.
    pub fn forward(
        &self,
        input: &ForwardInput,
        cache: Option<&mut KvCache>,
        hooks: &mut Hooks,
    ) -> Result<Tensor, ModelError> {
        self.forward_select(input, cache, hooks, LogitsSelect::All)
    }

    fn validate(
        &self,
        input: &ForwardInput,
        past: i64,
        check_ids: bool,
    ) -> Result<(i64, i64), ModelError> {
        let ids = &input.input_ids;
        let size = ids.size();
        if size.len() != 2 || ids.kind() != Kind::Int64 || size[1] == 0 {
            return Err(ModelError::Input(format!(
                "input_ids must be a non-empty i64 [B, T] tensor, found {:?} {:?}",
                ids.kind(),
                size
            )));
        }
        let (b, t) = (size[0], size[1]);
        if input.positions.size() != size || input.positions.kind() != Kind::Int64 {
            return Err(ModelError::Input(format!(
                "positions must be i64 {size:?}, found {:?} {:?}",
                input.positions.kind(),
                input.positions.size()
            )));
        }
        let m = &input.attention_mask;
        if m.size() != [b, past + t] || m.kind() != Kind::Bool {
            return Err(ModelError::Input(format!(
                "attention_mask must be bool [{b}, {}] (cached {past} + new {t}), found {:?} {:?}",
                past + t,
                m.kind(),
                m.size()
            )));
        }
        let device = self.device();
        for (name, t) in
            [("input_ids", ids), ("positions", &input.positions), ("attention_mask", m)]
        {
            if t.device() != device {
                return Err(ModelError::Input(format!(
                    "{name} is on {:?}, the model on {device:?}",
                    t.device()
                )));
            }
        }
        if !check_ids {
            return Ok((b, t));
        }
        // One host synchronisation per call, before the layer loop: out-of-range ids would be a
        // device-side assertion on CUDA.
        let lo = ids.min().int64_value(&[]);
        let hi = ids.max().int64_value(&[]);
        if lo < 0 || hi >= self.config.vocab_size {
            return Err(ModelError::Input(format!(
                "token ids must lie in 0..{}, found range {lo}..={hi}",
                self.config.vocab_size
            )));
        }
        Ok((b, t))
    }

    /// Like `forward`, with a choice of the positions logits are computed for.
    pub fn forward_select(
        &self,
        input: &ForwardInput,
        cache: Option<&mut KvCache>,
        hooks: &mut Hooks,
        select: LogitsSelect,
    ) -> Result<Tensor, ModelError> {
        self.forward_impl(input, cache, hooks, select, true)
    }

    /// `forward_select` for ids the model itself sampled (a decode step): skips the id-range
    /// check, which costs a host synchronisation per call. Shapes are still checked.
    pub fn forward_sampled(
        &self,
        input: &ForwardInput,
        cache: Option<&mut KvCache>,
        hooks: &mut Hooks,
        select: LogitsSelect,
    ) -> Result<Tensor, ModelError> {
        self.forward_impl(input, cache, hooks, select, false)
    }

    fn forward_impl(
        &self,
        input: &ForwardInput,
        mut cache: Option<&mut KvCache>,
        hooks: &mut Hooks,
        select: LogitsSelect,
        check_ids: bool,
    ) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let past = cache.as_ref().map_or(0, |k| k.len());
        let (b, t) = self.validate(input, past, check_ids)?;
        if let Some(k) = cache.as_ref() {
            if k.batch() != b {
                return Err(ModelError::Cache(format!(
                    "cache has batch {}, input has {b}",
                    k.batch()
                )));
            }
            if past + t > k.capacity() {
                return Err(ModelError::Cache(format!(
                    "{past} cached + {t} new tokens exceed the capacity {}",
                    k.capacity()
                )));
            }
            if k.keys.len() != self.layers.len() {
                return Err(ModelError::Cache(format!(
                    "cache has {} layers, model {}",
                    k.keys.len(),
                    self.layers.len()
                )));
            }
        }
        let device = self.device();
        let logits_t = match select {
            LogitsSelect::All | LogitsSelect::None => t,
            LogitsSelect::Last => 1,
        };
        let prep = hooks.prepare(
            b,
            t,
            logits_t,
            c.hidden_size,
            c.vocab_size,
            self.layers.len(),
            self.kind,
            device,
        )?;

        // A first chunk without padding (every prompt of a batch as long) needs no mask; that
        // costs one host read, for prefills only.
        let mask = if !c.plain_attention() {
            super::window::forward_masks(c, &input.attention_mask, past, t, self.kind)
        } else if past == 0 && t > 1 && input.attention_mask.all().int64_value(&[]) != 0 {
            AttnMask::Causal
        } else {
            AttnMask::Additive(additive_mask(
                &group_mask(
                    &attention_mask(&input.attention_mask, past, t),
                    c.num_heads / c.num_kv_heads,
                ),
                self.kind,
            ))
        };
        let rotation = if c.rope.is_dynamic() {
            let seq_len = input.positions.max().int64_value(&[]) + 1;
            let (inv, scale) = c.rope.inv_freq(c.rotary_dim, Some(seq_len), device);
            rope::Rotation::new(&inv, scale, &input.positions, self.kind)
        } else {
            rope::Rotation::new(&self.inv_freq, self.rope_scaling, &input.positions, self.kind)
        };

        let mut x = Tensor::f_embedding(&self.embed, &input.input_ids, -1, false, false)?;
        let mut taps = HookTaps { hooks: &mut *hooks, prep: &prep };
        for (l, layer) in self.layers.iter().enumerate() {
            let kv = match cache.as_deref_mut() {
                Some(k) => KvWrite::At { keys: &k.keys[l], values: &k.values[l], past },
                None => KvWrite::None,
            };
            x = self.block(l, layer, x, &rotation, &mask, kv, &mut taps)?;
        }
        if let Some(k) = cache {
            k.advance(t);
        }
        // Hooks at the final norm see every position of the call (their masks are `[B, T]`), so
        // only without them is the last position cut out before the norm.
        let x = match select {
            LogitsSelect::Last if hooks.touches(HookPoint::FinalNorm) => {
                let x = hooks.site(&prep, HookPoint::FinalNorm, self.final_norm.forward(&x));
                x.narrow(1, t - 1, 1)
            }
            LogitsSelect::Last => self.final_norm.forward(&x.narrow(1, t - 1, 1)),
            LogitsSelect::All | LogitsSelect::None => {
                hooks.site(&prep, HookPoint::FinalNorm, self.final_norm.forward(&x))
            }
        };
        if select == LogitsSelect::None {
            return Ok(x);
        }
        let logits = x.linear::<Tensor>(&self.lm_head, None).to_kind(Kind::Float);
        Ok(hooks.site(&prep, HookPoint::Logits, logits))
    }

    /// One decoder block on the residual stream `x`, with its hook points tapped by `taps`: the
    /// same arithmetic for a hooked forward pass and for the graph-ready decode step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block(
        &self,
        l: usize,
        layer: &Layer,
        x: Tensor,
        rotation: &rope::Rotation,
        mask: &AttnMask,
        kv: KvWrite<'_>,
        taps: &mut impl Taps,
    ) -> Result<Tensor, ModelError> {
        let point = |site| HookPoint::Layer { layer: l, site };
        let x = taps.site(point(LayerSite::ResidPre), x);
        let post = self.config.post_norm;
        // The graph-ready step reads nothing back to the host.
        let dispatch =
            if matches!(kv, KvWrite::Slot { .. }) { Dispatch::Dense } else { Dispatch::Sparse };
        let attn = if post {
            layer.ln1.forward(&self.attention(layer, &x, rotation, mask, kv)?)
        } else {
            self.attention(layer, &layer.ln1.forward(&x), rotation, mask, kv)?
        };
        let attn = taps.site(point(LayerSite::AttnOut), attn);
        let out = if self.config.parallel_residual {
            let mlp = layer.mlp.forward(&layer.ln2.forward(&x), self.packing.mlp, dispatch)?;
            // No tensor carries resid_mid here: it is recorded (and steered) as x + attn.
            let mid_delta = taps.delta(point(LayerSite::ResidMid));
            if taps.any() {
                let mid = match &mid_delta {
                    Some(d) => &x + &attn + d,
                    None => &x + &attn,
                };
                taps.record(point(LayerSite::ResidMid), &mid);
            }
            let mlp = taps.site(point(LayerSite::MlpOut), mlp);
            let out = &mlp + &attn + &x;
            match mid_delta {
                Some(d) => out + d,
                None => out,
            }
        } else {
            let mid = taps.site(point(LayerSite::ResidMid), &x + &attn);
            let mlp = if post {
                layer.ln2.forward(&layer.mlp.forward(&mid, self.packing.mlp, dispatch)?)
            } else {
                layer.mlp.forward(&layer.ln2.forward(&mid), self.packing.mlp, dispatch)?
            };
            let mlp = taps.site(point(LayerSite::MlpOut), mlp);
            mlp + mid
        };
        Ok(taps.site(point(LayerSite::ResidPost), out))
    }

    pub(super) fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        rotation: &rope::Rotation,
        mask: &AttnMask,
        kv: KvWrite<'_>,
    ) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let size = h.size();
        let (b, t) = (size[0], size[1]);
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        // Queries, keys and values as `[B, T, heads, head_dim]` (views where possible).
        let (q, k, v) = match &layer.qkv {
            Qkv::Separate { q, k, v, packed } => {
                let (q, k, v) = if self.packing.qkv && packed.usable(&[q, k, v]) {
                    let (qd, kvd) = (nh * hd, nkv * hd);
                    let y = packed.forward(h);
                    (y.narrow(-1, 0, qd), y.narrow(-1, qd, kvd), y.narrow(-1, qd + kvd, kvd))
                } else {
                    (q.forward(h), k.forward(h), v.forward(h))
                };
                let (q, k) = match &layer.qk_norm_full {
                    Some((qn, kn)) => (qn.forward(&q), kn.forward(&k)),
                    None => (q, k),
                };
                (q.view([b, t, nh, hd]), k.view([b, t, nkv, hd]), v.view([b, t, nkv, hd]))
            }
            Qkv::Fused(qkv) => {
                let qkv = qkv.forward(h).view([b, t, nh, 3 * hd]);
                (qkv.narrow(-1, 0, hd), qkv.narrow(-1, hd, hd), qkv.narrow(-1, 2 * hd, hd))
            }
        };
        // The step's kernel: norms, RoPE and cache writes in one launch.
        if let KvWrite::Slot { keys, values, view, prep: Some(prep), .. } = kv {
            let norms = (layer.q_norm.as_ref(), layer.k_norm.as_ref());
            let q = prep.run(&q, &k, &v, norms, keys, values)?;
            let (k, v) = (keys.narrow(2, 0, view), values.narrow(2, 0, view));
            return self.attend(layer, &q, &k, &v, mask, (b, t));
        }
        let (mut q, mut k) = (q, k);
        if let Some(n) = &layer.q_norm {
            q = n.forward(&q);
        }
        if let Some(n) = &layer.k_norm {
            k = n.forward(&k);
        }
        let q = rotation.apply(&q).transpose(1, 2);
        let k = rotation.apply(&k).transpose(1, 2);
        let v = v.transpose(1, 2);
        let (k, v) = match kv {
            KvWrite::At { keys, values, past } => {
                keys.narrow(2, past, t).copy_(&k);
                values.narrow(2, past, t).copy_(&v);
                (keys.narrow(2, 0, past + t), values.narrow(2, 0, past + t))
            }
            KvWrite::Slot { keys, values, slot, view, .. } => {
                let at = slot.reshape([1]);
                let _ = keys.shallow_clone().index_copy_(2, &at, &k);
                let _ = values.shallow_clone().index_copy_(2, &at, &v);
                (keys.narrow(2, 0, view), values.narrow(2, 0, view))
            }
            KvWrite::None => (k, v),
        };
        self.attend(layer, &q, &k, &v, mask, (b, t))
    }

    /// Attention of queries `q` (`[B, heads, T, head_dim]`) over `k`/`v` (`[B, kv_heads, S,
    /// head_dim]`, the new tokens' included) and the output projection.
    fn attend(
        &self,
        layer: &Layer,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        (b, t): (i64, i64),
    ) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let group = nh / nkv;
        let o = match mask {
            AttnMask::Slots(slots) => slots.attend(q, k, v)?,
            AttnMask::Layered { full, window } => {
                let mask = match window {
                    Some(w) if layer.sliding => w,
                    _ => full,
                };
                match &layer.sinks {
                    Some(sinks) => super::sinks::attention(q, k, v, mask, sinks, group),
                    None => masked_attention(q, k, v, mask, group),
                }
            }
            // Grouped-query attention without copying the cache: the `nh / nkv` query heads that
            // share a kv head become extra query rows of that head (`mask` is already grouped).
            AttnMask::Additive(mask) => match &layer.sinks {
                Some(sinks) => super::sinks::attention(q, k, v, mask, sinks, group),
                None => masked_attention(q, k, v, mask, group),
            },
            // No mask: the fused (flash) kernels apply, grouped heads included.
            AttnMask::Causal => Tensor::scaled_dot_product_attention(
                q,
                k,
                v,
                None::<&Tensor>,
                0.0,
                true,
                None,
                group > 1,
            ),
        };
        Ok(layer.o.forward(&o.transpose(1, 2).reshape([b, t, nh * hd])))
    }
}

/// Scaled-dot-product attention of queries `q` (`[B, heads, T, D]`) over keys and values
/// `[B, heads / group, S, D]` with an additive `mask` grouped as [`group_mask`] groups:
/// grouped-query attention without copying the cache, the `group` query heads that share a kv
/// head becoming extra query rows of that head.
pub(super) fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    group: i64,
) -> Tensor {
    let s = q.size();
    let (b, nh, t, hd) = (s[0], s[1], s[2], s[3]);
    let q = if group > 1 { q.reshape([b, nh / group, group * t, hd]) } else { q.shallow_clone() };
    let o = Tensor::scaled_dot_product_attention(&q, k, v, Some(mask), 0.0, false, None, false);
    if group > 1 { o.reshape([b, nh, t, hd]) } else { o }
}

/// Which slots each query reads.
pub(super) enum AttnMask {
    /// The additive mask of [`additive_mask`] (grouped as [`group_mask`] groups).
    Additive(Tensor),
    /// Additive masks for full-attention layers and, where some layers slide, for those (see
    /// [`super::window`]); attention runs as explicit scores and softmax.
    Layered { full: Tensor, window: Option<Tensor> },
    /// Plain causal attention over this call's tokens: no cache before them and no padding.
    Causal,
    /// One decode token per row over the cache slots of [`SlotAttention`] (the graph-ready
    /// step's kernel path).
    Slots(SlotAttention),
}

/// Where a layer's new keys and values go.
pub(super) enum KvWrite<'a> {
    /// No cache: attend over this call's keys and values only.
    None,
    /// Written at host-known slots `past..past+T`; attention over slots `0..past+T`.
    At { keys: &'a Tensor, values: &'a Tensor, past: i64 },
    /// One new token written at the slot held by the device tensor `slot` (one int64), attention
    /// over slots `0..view`: the form a captured CUDA graph replays at every step. With `prep`,
    /// its q/k norms, RoPE and cache writes are one kernel.
    Slot {
        keys: &'a Tensor,
        values: &'a Tensor,
        slot: &'a Tensor,
        view: i64,
        prep: Option<&'a SlotPrep>,
    },
}

/// What a block does at its hook points.
pub(super) trait Taps {
    /// The tensor at `point` after capture and steering.
    fn site(&mut self, point: HookPoint, x: Tensor) -> Tensor;
    /// The steering added at `point` (for a point no tensor carries).
    fn delta(&self, point: HookPoint) -> Option<Tensor>;
    /// Whether steering adds at `point` (without computing the sum).
    fn steers(&self, point: HookPoint) -> bool {
        self.delta(point).is_some()
    }
    /// Captures `x` at `point`.
    fn record(&mut self, point: HookPoint, x: &Tensor);
    /// Whether any hook is set.
    fn any(&self) -> bool;
}

/// The hooks of one forward pass.
struct HookTaps<'a> {
    hooks: &'a mut Hooks,
    prep: &'a Prepared,
}

impl Taps for HookTaps<'_> {
    fn site(&mut self, point: HookPoint, x: Tensor) -> Tensor {
        self.hooks.site(self.prep, point, x)
    }
    fn delta(&self, point: HookPoint) -> Option<Tensor> {
        self.hooks.delta(self.prep, point)
    }
    fn record(&mut self, point: HookPoint, x: &Tensor) {
        self.hooks.record(self.prep, point, x)
    }
    fn any(&self) -> bool {
        self.prep.any()
    }
}

/// `[B, 1, T, S]` → `[B, 1, n·T, S]`: the mask of grouped queries (query heads `g·n .. g·n + n`
/// of kv head `g`, stacked along the query axis), each group member seeing the same slots.
pub(super) fn group_mask(mask: &Tensor, n: i64) -> Tensor {
    if n == 1 {
        return mask.shallow_clone();
    }
    let s = mask.size();
    mask.unsqueeze(2).expand([s[0], s[1], n, s[2], s[3]], false).reshape([
        s[0],
        s[1],
        n * s[2],
        s[3],
    ])
}

/// The boolean mask `[B, 1, T, S]` as the additive mask (0 where allowed, −∞ elsewhere, in `kind`)
/// that scaled-dot-product attention would derive from it in every layer: built once per forward.
/// Its rows are padded to a multiple of 8 slots, the alignment the memory-efficient CUDA kernel
/// wants for masks (it copies unaligned ones), and the padding is cut off by a view.
pub(super) fn additive_mask(mask: &Tensor, kind: Kind) -> Tensor {
    let s = mask.size();
    let padded = (s[3] + 7) / 8 * 8;
    let out = Tensor::full([s[0], s[1], s[2], padded], f64::NEG_INFINITY, (kind, mask.device()));
    let view = out.narrow(3, 0, s[3]);
    let _ = view.shallow_clone().masked_fill_(mask, 0.0);
    view
}

/// `[B, 1, T, S]` bool: query `i` (absolute slot `past + i`) may read slot `j` iff `j <= past + i`
/// and slot `j` is real, or `j` is its own slot (so pad queries never see an empty row).
pub(super) fn attention_mask(real: &Tensor, past: i64, t: i64) -> Tensor {
    let device = real.device();
    let s = past + t;
    let j = Tensor::arange(s, (Kind::Int64, device)).unsqueeze(0);
    let i = (Tensor::arange(t, (Kind::Int64, device)) + past).unsqueeze(1);
    let causal = j.le_tensor(&i);
    let own = j.eq_tensor(&i);
    let allowed = real.unsqueeze(1).logical_or(&own.unsqueeze(0)).logical_and(&causal.unsqueeze(0));
    allowed.unsqueeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_mask_attends_as_the_boolean_mask_does() {
        tch::manual_seed(11);
        let real =
            Tensor::from_slice(&[false, true, true, true, true, true, true, false, true, true])
                .view([2, 5]);
        // Two new tokens after three cached slots; 4 query heads over 2 kv heads.
        let bool_mask = group_mask(&attention_mask(&real, 3, 2), 2);
        let mask = additive_mask(&bool_mask, Kind::Float);
        assert_eq!(mask.size(), [2, 1, 4, 5]);
        assert_eq!(mask.stride()[2], 8, "rows padded to 8 slots");
        let allowed = Vec::<f32>::try_from(mask.reshape([-1])).unwrap();
        let want = Vec::<bool>::try_from(bool_mask.reshape([-1])).unwrap();
        for (m, w) in allowed.iter().zip(&want) {
            assert_eq!(*m == 0.0, *w);
            assert!(*m == 0.0 || *m == f32::NEG_INFINITY);
        }
        let q = Tensor::randn([2, 2, 4, 8], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([2, 2, 5, 8], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([2, 2, 5, 8], (Kind::Float, Device::Cpu));
        let sdpa = |m: &Tensor| {
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, None, false)
        };
        let diff = (sdpa(&mask) - sdpa(&bool_mask)).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}
