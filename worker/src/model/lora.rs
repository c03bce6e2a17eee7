//! LoRA adapters on the linear maps of the decoder blocks, in the format of PEFT.
//!
//! A target linear map `y = x Wᵀ + b` becomes `y = x Wᵀ + b + (dropout(x) Aᵀ Bᵀ) · alpha / rank`
//! with `A: [rank, in]` (uniform in `±1/sqrt(in)`, PEFT's `kaiming_uniform_(a = sqrt(5))`) and
//! `B: [out, rank]` (zeros), so a fresh adapter leaves the model unchanged. Adapters are float32
//! whatever the base kind (PEFT's default `autocast_adapter_dtype`); the input is cast to float32
//! and the update back to the base kind. Dropout is active only in training mode
//! (`Model::set_train`).
//!
//! The adapters are `VarStore` variables named as in PEFT's `adapter_model.safetensors`, e.g.
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. `add_lora` freezes every
//! base parameter (no gradient, and removed from the store's trainable list), so an optimizer
//! built on the store afterwards holds only the adapters.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tch::{Kind, Tensor};

use super::config::Family;
use super::decoder::Model;
use super::error::ModelError;
use super::save::write_safetensors;
use crate::rng::{Stream, WaxRng};

/// The adapter configuration file of a PEFT adapter directory.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter weights file of a PEFT adapter directory.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

const PEFT_PREFIX: &str = "base_model.model.";

/// Names of the linear maps of a Llama/Qwen decoder block.
const LLAMA_TARGETS: [&str; 7] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
/// The attention projections of a GPT-OSS block: its experts are 3-D parameters (and its
/// router no `nn.Linear` to PEFT), so they take no adapters.
const GPT_OSS_TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
/// Names of the linear maps of a GPT-NeoX decoder block.
const NEOX_TARGETS: [&str; 4] = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"];

/// How to attach LoRA adapters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of the update (at least 1).
    pub rank: i64,
    /// `lora_alpha`: the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability on the adapter input in training mode, in `[0, 1)`.
    pub dropout: f64,
    /// Module name suffixes to adapt (PEFT's `target_modules`: a module matches when its name
    /// equals the entry or ends with `.` + entry). Empty: every linear map of the decoder blocks.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// PEFT's defaults: `r = 8`, `lora_alpha = 8`, no dropout, every block linear map.
    fn default() -> Self {
        LoraConfig { rank: 8, alpha: 8.0, dropout: 0.0, targets: Vec::new() }
    }
}

impl LoraConfig {
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    fn validate(&self) -> Result<(), ModelError> {
        if self.rank < 1 {
            return Err(ModelError::Lora(format!("rank must be at least 1, found {}", self.rank)));
        }
        if !self.alpha.is_finite() || self.alpha == 0.0 {
            return Err(ModelError::Lora(format!(
                "alpha must be finite and non-zero, found {}",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Lora(format!(
                "dropout must lie in [0, 1), found {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// The adapter of one linear map (see the module documentation).
#[derive(Debug)]
pub struct LoraAdapter {
    /// `[rank, in]`, float32.
    pub a: Tensor,
    /// `[out, rank]`, float32.
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
    /// Dropout active.
    pub train: bool,
    /// `B·A·scale` has been added to the base weight; the adapter path is off.
    pub merged: bool,
}

impl LoraAdapter {
    /// The update `(dropout(x) Aᵀ Bᵀ) · scale`, in the kind of `x`.
    pub(super) fn delta(&self, x: &Tensor) -> Tensor {
        let h = x.to_kind(self.a.kind());
        let h = if self.train && self.dropout > 0.0 { h.dropout(self.dropout, true) } else { h };
        let u = h.linear::<Tensor>(&self.a, None).linear::<Tensor>(&self.b, None) * self.scale;
        u.to_kind(x.kind())
    }

    /// `B·A·scale` (no gradient), in `kind`.
    pub(super) fn weight_delta(&self, kind: Kind) -> Tensor {
        tch::no_grad(|| (self.b.matmul(&self.a) * self.scale).to_kind(kind))
    }
}

/// The PEFT names of the two adapter tensors of module `module`.
pub(super) fn adapter_names(module: &str) -> (String, String) {
    (format!("{PEFT_PREFIX}{module}.lora_A.weight"), format!("{PEFT_PREFIX}{module}.lora_B.weight"))
}

fn valid_targets(family: Family) -> &'static [&'static str] {
    match family {
        Family::GptNeoX => &NEOX_TARGETS,
        Family::GptOss => &GPT_OSS_TARGETS,
        _ => &LLAMA_TARGETS,
    }
}

fn matches(module: &str, target: &str) -> bool {
    module == target || module.strip_suffix(target).is_some_and(|head| head.ends_with('.'))
}

/// One linear map an adapter will be attached to.
struct Target {
    /// Index into `Model::block_linears`.
    index: usize,
    name: String,
    out_features: i64,
    in_features: i64,
}

impl Model {
    /// `config` with its targets resolved (defaults filled in, sorted, deduplicated) and the
    /// linear maps they select; errors on an invalid config or a target that selects nothing.
    fn resolve_lora(&self, config: &LoraConfig) -> Result<(LoraConfig, Vec<Target>), ModelError> {
        config.validate()?;
        let valid = valid_targets(self.config().family);
        let requested: BTreeSet<String> = if config.targets.is_empty() {
            valid.iter().map(|s| s.to_string()).collect()
        } else {
            config.targets.iter().cloned().collect()
        };
        let linears = self.block_linears();
        for t in &requested {
            if t.is_empty() || !linears.iter().any(|l| matches(&l.name, t)) {
                return Err(ModelError::Lora(format!(
                    "unknown target module `{t}` (valid for {:?}: {})",
                    self.config().family,
                    valid.join(", ")
                )));
            }
        }
        let mut targets = Vec::new();
        for (index, l) in linears.iter().enumerate() {
            if requested.iter().any(|t| matches(&l.name, t)) {
                let size = l.weight.size();
                targets.push(Target {
                    index,
                    name: l.name.clone(),
                    out_features: size[0],
                    in_features: size[1],
                });
            }
        }
        let resolved = LoraConfig { targets: requested.into_iter().collect(), ..config.clone() };
        Ok((resolved, targets))
    }

    /// Attaches fresh adapters to the linear maps selected by `config` (`A` drawn from `seed`,
    /// `B` zero) and freezes every base parameter. The logits are unchanged until `B` moves.
    pub fn add_lora(&mut self, config: &LoraConfig, seed: u64) -> Result<(), ModelError> {
        if self.lora.is_some() {
            return Err(ModelError::Lora("the model already has LoRA adapters".into()));
        }
        let (resolved, targets) = self.resolve_lora(config)?;
        let device = self.device();
        // Freeze the base: no gradients, and out of the list optimizers are built from.
        {
            let mut vars = self
                .var_store()
                .variables_
                .lock()
                .map_err(|_| ModelError::Lora("the VarStore lock is poisoned".into()))?;
            for t in vars.named_variables.values() {
                let _ = t.set_requires_grad(false);
            }
            vars.trainable_variables.clear();
        }
        let mut rng = WaxRng::new(seed, Stream::LoraInit);
        let mut adapters = Vec::with_capacity(targets.len());
        for t in &targets {
            let bound = 1.0 / (t.in_features as f64).sqrt();
            let values: Vec<f32> = (0..resolved.rank * t.in_features)
                .map(|_| ((2.0 * rng.unit() - 1.0) * bound) as f32)
                .collect();
            let a =
                Tensor::from_slice(&values).view([resolved.rank, t.in_features]).to_device(device);
            let b = Tensor::zeros([t.out_features, resolved.rank], (Kind::Float, device));
            let root = self.var_store().root();
            let mut path = root.sub("base_model").sub("model");
            for part in t.name.split('.') {
                path = path.sub(part);
            }
            let a = path.sub("lora_A").add("weight", a, true);
            let b = path.sub("lora_B").add("weight", b, true);
            adapters.push((t.index, a, b));
        }
        let training = self.training;
        let mut linears = self.block_linears_mut();
        for (index, a, b) in adapters {
            linears[index].lora = Some(LoraAdapter {
                a,
                b,
                scale: resolved.scale(),
                dropout: resolved.dropout,
                train: training,
                merged: false,
            });
        }
        self.lora = Some(resolved);
        Ok(())
    }

    /// The configuration of the attached adapters (targets resolved), if any.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Whether the adapters are merged into the base weights.
    pub fn lora_merged(&self) -> bool {
        self.block_linears().iter().any(|l| l.lora.as_ref().is_some_and(|a| a.merged))
    }

    /// Training mode: LoRA dropout is applied. Models load in evaluation mode.
    pub fn set_train(&mut self, train: bool) {
        self.training = train;
        for l in self.block_linears_mut() {
            if let Some(a) = l.lora.as_mut() {
                a.train = train;
            }
        }
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Adds `B·A·scale` to every adapted base weight and turns the adapter path off.
    pub fn merge_lora(&mut self) -> Result<(), ModelError> {
        self.fold_lora(true)
    }

    /// Subtracts `B·A·scale` from every adapted base weight again and turns the adapter path
    /// back on. The adapters must not have been changed while merged.
    pub fn unmerge_lora(&mut self) -> Result<(), ModelError> {
        self.fold_lora(false)
    }

    fn fold_lora(&mut self, merge: bool) -> Result<(), ModelError> {
        if self.lora.is_none() {
            return Err(ModelError::Lora("the model has no LoRA adapters".into()));
        }
        if self.lora_merged() == merge {
            return Err(ModelError::Lora(
                if merge {
                    "the adapters are already merged"
                } else {
                    "the adapters are not merged"
                }
                .into(),
            ));
        }
        let _guard = tch::no_grad_guard();
        for l in self.block_linears_mut() {
            if let Some(a) = l.lora.as_mut() {
                let delta = a.weight_delta(l.weight.kind());
                if merge {
                    let _ = l.weight.f_add_(&delta)?;
                } else {
                    let _ = l.weight.f_sub_(&delta)?;
                }
                a.merged = merge;
            }
        }
        Ok(())
    }

    /// The names of the adapter variables, and for every adapter that is not merged the base
    /// weight with its update folded in (by weight name): what `save_pretrained` writes.
    pub(super) fn lora_for_save(&self) -> (BTreeSet<String>, HashMap<String, Tensor>) {
        let mut names = BTreeSet::new();
        let mut merged = HashMap::new();
        for l in self.block_linears() {
            if let Some(a) = &l.lora {
                let (na, nb) = adapter_names(&l.name);
                names.insert(na);
                names.insert(nb);
                if !a.merged {
                    let w = tch::no_grad(|| l.weight.detach() + a.weight_delta(l.weight.kind()));
                    merged.insert(format!("{}.weight", l.name), w);
                }
            }
        }
        (names, merged)
    }

    /// Writes the adapters as a PEFT adapter directory: `adapter_config.json` and
    /// `adapter_model.safetensors` (float32), loadable with `peft.PeftModel.from_pretrained`.
    pub fn save_lora_adapter(&self, dir: &Path) -> Result<(), ModelError> {
        let Some(cfg) = &self.lora else {
            return Err(ModelError::Lora("the model has no LoRA adapters to save".into()));
        };
        std::fs::create_dir_all(dir)
            .map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.source_dir().display().to_string(),
            "r": cfg.rank,
            "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout,
            "target_modules": cfg.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
        });
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&config)
            .map_err(|source| ModelError::Json { path: path.clone(), source })?;
        std::fs::write(&path, text + "\n").map_err(|source| ModelError::Io { path, source })?;
        let mut tensors = Vec::new();
        for l in self.block_linears() {
            if let Some(a) = &l.lora {
                let (na, nb) = adapter_names(&l.name);
                tensors.push((na, a.a.shallow_clone()));
                tensors.push((nb, a.b.shallow_clone()));
            }
        }
        write_safetensors(&dir.join(ADAPTER_WEIGHTS), tensors)
    }

    /// Reads a PEFT LoRA adapter directory (as `save_lora_adapter` writes, or PEFT's
    /// `save_pretrained`) and attaches it, unmerged. The model must have no adapters yet.
    /// Returns the adapter's configuration.
    pub fn load_lora_adapter(&mut self, dir: &Path) -> Result<LoraConfig, ModelError> {
        if self.lora.is_some() {
            return Err(ModelError::Lora("the model already has LoRA adapters".into()));
        }
        let config_path = dir.join(ADAPTER_CONFIG);
        let config = read_adapter_config(&config_path)?;
        let (_, targets) = self.resolve_lora(&config)?;
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        std::fs::metadata(&weights_path)
            .map_err(|source| ModelError::Io { path: weights_path.clone(), source })?;
        let mut file: HashMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
            .map_err(|e| ModelError::Safetensors {
                path: weights_path.clone(),
                message: e.to_string(),
            })?
            .into_iter()
            .collect();
        let mut loaded = Vec::with_capacity(targets.len());
        for t in &targets {
            let (na, nb) = adapter_names(&t.name);
            for (name, shape) in
                [(&na, [config.rank, t.in_features]), (&nb, [t.out_features, config.rank])]
            {
                let Some(x) = file.remove(name.as_str()) else {
                    return Err(ModelError::MissingTensor {
                        name: name.clone(),
                        searched: weights_path.display().to_string(),
                    });
                };
                if x.size() != shape {
                    return Err(ModelError::ShapeMismatch {
                        path: weights_path.clone(),
                        name: name.clone(),
                        expected: shape.to_vec(),
                        found: x.size(),
                    });
                }
                if !x.is_floating_point() {
                    return Err(ModelError::UnsupportedDtype {
                        path: weights_path.clone(),
                        name: name.clone(),
                        dtype: format!("{:?}", x.kind()),
                    });
                }
                loaded.push(x);
            }
        }
        if !file.is_empty() {
            let mut names: Vec<String> = file.into_keys().collect();
            names.sort();
            return Err(ModelError::UnexpectedTensors { names: names.join(", ") });
        }
        self.add_lora(&config, 0)?;
        let _guard = tch::no_grad_guard();
        let mut loaded = loaded.into_iter();
        for l in self.block_linears() {
            if let Some(a) = &l.lora {
                for dst in [&a.a, &a.b] {
                    let mut dst = dst.shallow_clone();
                    let src = loaded.next().ok_or_else(|| {
                        ModelError::Lora("adapter tensors and targets disagree".into())
                    })?;
                    dst.f_copy_(&src.to_kind(Kind::Float))?;
                }
            }
        }
        Ok(self.lora.clone().unwrap_or(config))
    }
}

fn config_error(path: &Path, field: &str, message: impl Into<String>) -> ModelError {
    ModelError::Config { path: path.to_path_buf(), field: field.into(), message: message.into() }
}

/// Parses a PEFT `adapter_config.json`, rejecting LoRA variants wax does not implement.
fn read_adapter_config(path: &PathBuf) -> Result<LoraConfig, ModelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|source| ModelError::Json { path: path.clone(), source })?;
    let field = |name: &str| v.get(name).filter(|x| !x.is_null());
    match field("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(config_error(
                path,
                "peft_type",
                format!("expected \"LORA\", found {other:?}"),
            ));
        }
    }
    let rank = field("r")
        .and_then(Value::as_i64)
        .ok_or_else(|| config_error(path, "r", "missing or not an integer"))?;
    let alpha = field("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| config_error(path, "lora_alpha", "missing or not a number"))?;
    let dropout = match field("lora_dropout") {
        None => 0.0,
        Some(x) => x.as_f64().ok_or_else(|| config_error(path, "lora_dropout", "not a number"))?,
    };
    let targets = match field("target_modules") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| config_error(path, "target_modules", "entries must be strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(s)) => {
            return Err(config_error(
                path,
                "target_modules",
                format!("regular expressions (\"{s}\") are not supported; list module names"),
            ));
        }
        _ => return Err(config_error(path, "target_modules", "missing or not a list")),
    };
    if targets.is_empty() {
        return Err(config_error(path, "target_modules", "empty"));
    }
    if let Some(b) = field("bias")
        && b.as_str() != Some("none")
    {
        return Err(config_error(path, "bias", format!("only \"none\" is supported, found {b}")));
    }
    for flag in ["use_dora", "use_rslora", "fan_in_fan_out"] {
        if let Some(x) = field(flag)
            && x.as_bool() != Some(false)
        {
            return Err(config_error(path, flag, format!("not supported (found {x})")));
        }
    }
    for unsupported in [
        "rank_pattern",
        "alpha_pattern",
        "modules_to_save",
        "layers_to_transform",
        "exclude_modules",
        "target_parameters",
        "trainable_token_indices",
    ] {
        let empty = match field(unsupported) {
            None => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if !empty {
            return Err(config_error(path, unsupported, "not supported by wax's LoRA"));
        }
    }
    Ok(LoraConfig { rank, alpha, dropout, targets })
}
