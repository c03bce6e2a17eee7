//! Text generation from a snapshot: a prompt (optionally rendered with the chat template),
//! sampled with [`Session`], optionally steered at one layer's residual stream.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::BuiltinError;
use crate::generate::{Chunk, GenerateOptions, Sampling, Session, SteerSpec};
use crate::model::{HookPoint, LayerSite, Model, SteerScope, TokenRole};
use crate::tokenizer::{ChatArgs, Message, Tokenizer};

/// `--steer <vectors.safetensors>:<layer>:<alpha>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerArg {
    pub path: PathBuf,
    pub layer: usize,
    pub alpha: f64,
    /// Which tensor of the file (required when it holds several).
    pub key: Option<String>,
}

impl SteerArg {
    /// Parses `<path>:<layer>:<alpha>` (the path may itself contain `:`).
    pub fn parse(spec: &str) -> Result<SteerArg, BuiltinError> {
        let bad = |why: String| {
            BuiltinError::Steer(format!(
                "`{spec}`: {why} (expected <vectors.safetensors>:<layer>:<alpha>)"
            ))
        };
        let mut parts = spec.rsplitn(3, ':');
        let (alpha, layer, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(l), Some(p)) if !p.is_empty() => (a, l, p),
            _ => return Err(bad("needs three `:`-separated parts".into())),
        };
        let layer = layer
            .parse::<usize>()
            .map_err(|_| bad(format!("layer `{layer}` is not a non-negative integer")))?;
        let alpha = alpha
            .parse::<f64>()
            .ok()
            .filter(|a| a.is_finite())
            .ok_or_else(|| bad(format!("alpha `{alpha}` is not a finite number")))?;
        Ok(SteerArg { path: PathBuf::from(path), layer, alpha, key: None })
    }

    /// Reads the `[hidden]` vector from the file.
    pub fn load_vector(&self, hidden: i64) -> Result<Tensor, BuiltinError> {
        let p = &self.path;
        if !p.is_file() {
            return Err(BuiltinError::Steer(format!("{}: no such file", p.display())));
        }
        let mut tensors = Tensor::read_safetensors(p).map_err(|e| {
            BuiltinError::Steer(format!("{}: not a safetensors file: {e}", p.display()))
        })?;
        // The file's order is not meaningful; list names sorted so messages are stable.
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let names = || tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().join(", ");
        let (name, vector) = match &self.key {
            Some(k) => tensors.iter().find(|(n, _)| n == k).ok_or_else(|| {
                BuiltinError::Steer(format!("{}: no tensor `{k}` (has: {})", p.display(), names()))
            })?,
            None if tensors.len() == 1 => &tensors[0],
            None => {
                return Err(BuiltinError::Steer(format!(
                    "{}: holds {} tensors ({}); pick one with --steer-key",
                    p.display(),
                    tensors.len(),
                    names()
                )));
            }
        };
        if vector.size() != [hidden] {
            return Err(BuiltinError::Steer(format!(
                "{}: tensor `{name}` has shape {:?}, expected [{hidden}] (the model's hidden size)",
                p.display(),
                vector.size()
            )));
        }
        Ok(vector.to_kind(Kind::Float))
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRequest {
    pub prompt: String,
    /// Render the prompt as a user turn with the snapshot's chat template.
    pub chat: bool,
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    pub steer: Option<SteerArg>,
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextResult {
    /// The prompt as fed to the model (after the chat template).
    pub prompt: String,
    pub prompt_tokens: usize,
    pub text: String,
    pub tokens: Vec<i64>,
    /// Ended on an end-of-sequence token.
    pub stopped: bool,
}

/// Generates from the snapshot in `dir`.
pub fn generate_text(dir: &Path, req: &TextRequest) -> Result<TextResult, BuiltinError> {
    let _guard = tch::no_grad_guard();
    let tok = Tokenizer::load(dir)?;
    let device = Device::cuda_if_available();
    let model = Model::load(dir, device, Kind::Float)?;
    let (prompt, tokens, roles) = if req.chat {
        let template = tok
            .chat_template()
            .ok_or_else(|| BuiltinError::io(dir, "--chat: the snapshot has no chat template"))?;
        let messages = [Message::user(req.prompt.clone())];
        let head = template.render(&messages, &ChatArgs::new(false))?;
        let full = template.render(&messages, &ChatArgs::new(true))?;
        let head_ids = tok.encode(&head, false)?;
        let ids = tok.encode(&full, false)?;
        // The opened assistant turn's header counts as assistant tokens (for steering).
        let split = if ids.starts_with(&head_ids) { head_ids.len() } else { ids.len() };
        let roles: Vec<TokenRole> = (0..ids.len())
            .map(|i| if i < split { TokenRole::Prompt } else { TokenRole::Assistant })
            .collect();
        (full, ids, roles)
    } else {
        let ids = tok.encode(&req.prompt, true)?;
        let roles = vec![TokenRole::Prompt; ids.len()];
        (req.prompt.clone(), ids, roles)
    };
    if tokens.is_empty() {
        return Err(BuiltinError::BadReference {
            reference: "--prompt".into(),
            why: "encodes to no tokens".into(),
        });
    }
    let mut steering = Vec::new();
    if let Some(s) = &req.steer {
        let layers = model.config().num_layers as usize;
        if s.layer >= layers {
            return Err(BuiltinError::Steer(format!(
                "layer {} is out of range: the model has {layers} layers (0..{layers})",
                s.layer
            )));
        }
        steering.push(SteerSpec {
            point: HookPoint::layer(s.layer, LayerSite::ResidPost),
            vector: s.load_vector(model.config().hidden_size)?,
            alpha: s.alpha,
            scope: SteerScope::AssistantTurns,
        });
    }
    let capacity = (tokens.len() + req.max_new_tokens + 1) as i64;
    let mut session = Session::new(&model, &[req.seed], capacity, steering)?;
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    session.append(&[Chunk { tokens: ids, roles }])?;
    let out = session.generate(&GenerateOptions {
        max_new_tokens: req.max_new_tokens,
        sampling: req.sampling,
        stop_tokens: tok.eos_ids().iter().map(|&t| i64::from(t)).collect(),
        ..Default::default()
    })?;
    let generated = out.tokens.into_iter().next().unwrap_or_default();
    let as_u32: Vec<u32> = generated.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
    Ok(TextResult {
        prompt,
        prompt_tokens: tokens.len(),
        text: tok.decode(&as_u32, true)?,
        tokens: generated,
        stopped: out.stopped.first().copied().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steer_specs_parse_from_the_right() {
        let s = SteerArg::parse("C:/vecs/v.safetensors:3:-1.5").unwrap();
        assert_eq!((s.path, s.layer, s.alpha), (PathBuf::from("C:/vecs/v.safetensors"), 3, -1.5));
        for (bad, part) in [
            ("v.safetensors:3", "three"),
            ("v:x:1", "layer `x`"),
            ("v:1:nan", "alpha `nan`"),
            (":1:1", "three"),
        ] {
            let e = SteerArg::parse(bad).unwrap_err().to_string();
            assert!(e.contains(part) && e.contains("<layer>:<alpha>"), "{bad}: {e}");
        }
    }
}
