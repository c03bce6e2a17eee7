//! Reading `tokenizer_config.json`, `chat_template.jinja` and `generation_config.json`.

use super::TokenizerError;
use serde_json::Value;
use std::path::Path;

/// The special tokens a snapshot names (as strings; `AddedToken` objects are reduced to their
/// `content`). They are also the variables `bos_token`, `eos_token`, … of chat templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
    pub sep: Option<String>,
    pub cls: Option<String>,
    pub mask: Option<String>,
}

impl SpecialTokens {
    /// `(variable name, token)` for every token that is set, in transformers' order.
    pub fn variables(&self) -> Vec<(&'static str, &str)> {
        [
            ("bos_token", &self.bos),
            ("eos_token", &self.eos),
            ("unk_token", &self.unk),
            ("sep_token", &self.sep),
            ("pad_token", &self.pad),
            ("cls_token", &self.cls),
            ("mask_token", &self.mask),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

pub(crate) struct SnapshotConfig {
    pub special: SpecialTokens,
    /// `(name, source)`; the unnamed template is `default`.
    pub templates: Vec<(String, String)>,
    pub generation_eos: Vec<u32>,
}

fn read_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::Json { path: path.to_path_buf(), why: e.to_string() })
}

fn field_err(path: &Path, field: &str, why: impl Into<String>) -> TokenizerError {
    TokenizerError::Field { path: path.to_path_buf(), field: field.into(), why: why.into() }
}

/// A special token given as a string, `null`, or an `AddedToken` object with `content`.
fn special_token(cfg: &Value, path: &Path, field: &str) -> Result<Option<String>, TokenizerError> {
    match cfg.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(field_err(path, field, "an AddedToken object needs a string `content`")),
        },
        Some(other) => Err(field_err(
            path,
            field,
            format!("expected a string, null or an AddedToken object, found {other}"),
        )),
    }
}

fn templates(cfg: &Value, path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    match cfg.get("chat_template") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![("default".into(), s.clone())]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => Ok((n.to_string(), t.to_string())),
                    _ => Err(field_err(
                        path,
                        &format!("chat_template[{i}]"),
                        "expected an object with string `name` and `template`",
                    )),
                }
            })
            .collect(),
        Some(other) => Err(field_err(
            path,
            "chat_template",
            format!("expected a string or a list of {{name, template}}, found {other}"),
        )),
    }
}

fn generation_eos(dir: &Path) -> Result<Vec<u32>, TokenizerError> {
    let path = dir.join("generation_config.json");
    let Some(cfg) = read_json(&path)? else { return Ok(Vec::new()) };
    let as_id = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| field_err(&path, "eos_token_id", format!("not a token id: {v}")))
    };
    match cfg.get("eos_token_id") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

pub(crate) fn read_snapshot(dir: &Path) -> Result<SnapshotConfig, TokenizerError> {
    let path = dir.join("tokenizer_config.json");
    let cfg = read_json(&path)?.unwrap_or(Value::Object(Default::default()));
    if !cfg.is_object() {
        return Err(TokenizerError::Json { path, why: "expected a JSON object".into() });
    }
    let special = SpecialTokens {
        bos: special_token(&cfg, &path, "bos_token")?,
        eos: special_token(&cfg, &path, "eos_token")?,
        pad: special_token(&cfg, &path, "pad_token")?,
        unk: special_token(&cfg, &path, "unk_token")?,
        sep: special_token(&cfg, &path, "sep_token")?,
        cls: special_token(&cfg, &path, "cls_token")?,
        mask: special_token(&cfg, &path, "mask_token")?,
    };
    let mut templates = templates(&cfg, &path)?;
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let source = std::fs::read_to_string(&jinja).map_err(|e| TokenizerError::io(&jinja, e))?;
        templates.retain(|(n, _)| n != "default");
        templates.push(("default".into(), source));
    }
    Ok(SnapshotConfig { special, templates, generation_eos: generation_eos(dir)? })
}
