//! One forward pass that keeps its activations (`wax model forward`), in the spirit of
//! TransformerLens' `run_with_cache`: the logits of every position and chosen hook points of
//! chosen layers, for parity checks against other implementations and for users' own analyses.
//!
//! Names in the output file: `logits` `[T, V]`, `embed` `[T, H]` (the residual stream entering
//! layer 0, transformers' `hidden_states[0]`), `<site>.<layer>` `[T, H]` for each requested
//! site and layer (`resid_post.<l>` is transformers' `hidden_states[l + 1]`, except that
//! transformers applies the final norm to its last entry), and `final_norm` `[T, H]`. The
//! metadata holds the model, the rendered prompt and the token ids (JSON).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::BuiltinError;
use crate::model::{ForwardInput, HookPoint, Hooks, LayerSite, Model, Positions};
use crate::tokenizer::{ChatArgs, Message, Tokenizer};

/// The hook sites a forward can keep, by their names in the output file.
pub const SITES: [(&str, LayerSite); 5] = [
    ("resid_pre", LayerSite::ResidPre),
    ("attn_out", LayerSite::AttnOut),
    ("resid_mid", LayerSite::ResidMid),
    ("mlp_out", LayerSite::MlpOut),
    ("resid_post", LayerSite::ResidPost),
];

/// One forward request.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardRequest {
    pub prompt: String,
    /// Render the prompt as a user turn with the chat template and its generation prompt.
    pub chat: bool,
    /// Layers to keep; `None`: all.
    pub layers: Option<Vec<usize>>,
    /// Site names from [`SITES`].
    pub sites: Vec<String>,
    /// Most likely next tokens reported for the last position.
    pub top_k: usize,
}

/// One of the most likely next tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextToken {
    pub id: i64,
    pub text: String,
    pub logprob: f64,
}

/// What a forward kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardResult {
    /// The prompt as fed to the model (after the chat template).
    pub prompt: String,
    pub input_ids: Vec<i64>,
    /// Names and shapes of the saved tensors.
    pub tensors: Vec<(String, Vec<i64>)>,
    /// The most likely next tokens after the last position.
    pub next: Vec<NextToken>,
}

/// Runs the snapshot in `dir` on the prompt and writes the activations to `out`
/// (`.safetensors`, float32).
pub fn forward_to_file(
    dir: &Path,
    reference: &str,
    req: &ForwardRequest,
    out: &Path,
) -> Result<ForwardResult, BuiltinError> {
    let _guard = tch::no_grad_guard();
    let bad =
        |why: String| BuiltinError::BadReference { reference: "--layers/--sites".into(), why };
    let mut sites = Vec::new();
    for name in &req.sites {
        let site = SITES.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let names: Vec<&str> = SITES.iter().map(|(n, _)| *n).collect();
            bad(format!("unknown site `{name}` (one of {})", names.join(", ")))
        })?;
        sites.push(*site);
    }
    let tok = Tokenizer::load(dir)?;
    let model = Model::load(dir, Device::cuda_if_available(), Kind::Float)?;
    let num_layers = model.config().num_layers as usize;
    let layers = match &req.layers {
        None => (0..num_layers).collect(),
        Some(ls) => {
            if let Some(l) = ls.iter().find(|&&l| l >= num_layers) {
                return Err(bad(format!(
                    "layer {l} is out of range: the model has {num_layers} layers (0..{num_layers})"
                )));
            }
            ls.clone()
        }
    };
    let prompt = if req.chat {
        let template = tok
            .chat_template()
            .ok_or_else(|| BuiltinError::io(dir, "--chat: the snapshot has no chat template"))?;
        template.render(&[Message::user(req.prompt.clone())], &ChatArgs::new(true))?
    } else {
        req.prompt.clone()
    };
    // Plain prompts get the tokenizer's own special tokens (a BOS where it adds one), as
    // transformers' `tokenizer(prompt)` does; a chat rendering already has them.
    let ids: Vec<i64> = tok.encode(&prompt, !req.chat)?.into_iter().map(i64::from).collect();
    if ids.is_empty() {
        return Err(bad("--prompt encodes to no tokens".into()));
    }
    let n = ids.len() as i64;
    let device = model.device();
    let input = ForwardInput {
        input_ids: Tensor::from_slice(&ids).view([1, n]).to_device(device),
        positions: Tensor::arange(n, (Kind::Int64, device)).view([1, n]),
        attention_mask: Tensor::ones([1, n], (Kind::Bool, device)),
    };
    let mut hooks = Hooks::new();
    hooks.capture("embed", HookPoint::layer(0, LayerSite::ResidPre), Positions::All);
    for &l in &layers {
        for (name, site) in &sites {
            hooks.capture(format!("{name}.{l}"), HookPoint::layer(l, *site), Positions::All);
        }
    }
    hooks.capture("final_norm", HookPoint::FinalNorm, Positions::All);
    let logits = model.forward(&input, None, &mut hooks)?.get(0).to_kind(Kind::Float);

    let mut names: Vec<String> = vec!["logits".into(), "embed".into()];
    for &l in &layers {
        names.extend(sites.iter().map(|(name, _)| format!("{name}.{l}")));
    }
    names.push("final_norm".into());
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = if name == "logits" {
            logits.shallow_clone()
        } else {
            let t = hooks.take(&name).ok_or_else(|| {
                BuiltinError::io(dir, format!("the forward pass did not fill hook `{name}`"))
            })?;
            t.get(0).to_kind(Kind::Float)
        };
        tensors.push((name, t.to_device(Device::Cpu)));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "wax-forward/1".to_string());
    metadata.insert("model".to_string(), reference.to_string());
    metadata.insert("prompt".to_string(), prompt.clone());
    metadata.insert("input_ids".to_string(), serde_json::json!(ids).to_string());
    crate::vectors::store::write_safetensors(out, &tensors, &metadata)
        .map_err(|e| BuiltinError::io(out, e))?;

    let last = logits.get(n - 1).log_softmax(-1, Kind::Double).to_device(Device::Cpu);
    let (values, indices) =
        last.topk(req.top_k.min(last.size()[0] as usize) as i64, -1, true, true);
    let values = Vec::<f64>::try_from(values).map_err(|e| BuiltinError::io(out, e))?;
    let indices = Vec::<i64>::try_from(indices).map_err(|e| BuiltinError::io(out, e))?;
    let mut next = Vec::with_capacity(values.len());
    for (id, logprob) in indices.into_iter().zip(values) {
        let text = match u32::try_from(id) {
            Ok(u) => tok.decode(&[u], false)?,
            Err(_) => String::new(),
        };
        next.push(NextToken { id, text, logprob });
    }
    Ok(ForwardResult {
        prompt,
        input_ids: ids,
        tensors: tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        next,
    })
}
