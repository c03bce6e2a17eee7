//! [`import`]: a GGUF file → a Hugging Face snapshot directory (`config.json`,
//! `generation_config.json`, `model.safetensors` in float32, `tokenizer.json`,
//! `tokenizer_config.json`), plus [`MARKER`] recording the import.
//!
//! Everything is checked before anything is written: the architecture, every tensor's name,
//! type and shape against the metadata, the complete set of tensors, and the tokenizer (loaded
//! once with the `tokenizers` crate). The snapshot is built in a hidden sibling directory and
//! renamed into place, so `--out` holds either nothing new or a complete import. An existing
//! `--out` is replaced only when it is empty or an earlier import (it holds [`MARKER`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::config::{
    Layout, SpecialIds, architecture, generation_config, llama_config, llama_dims,
};
use super::dequant::dequantize;
use super::error::GgufError;
use super::names::{Target, llama_required, llama_target, unpermute_rows};
use super::reader::{GgufFile, TensorInfo};
use super::safetensors_out::{Entry, header, write_f32};
use super::tokenizer::tokenizer_files;
use super::types::GgmlType;

/// The file an import writes last; its presence marks a directory as a complete import that a
/// later import may replace.
pub const MARKER: &str = "gguf-import.json";

/// How far an import has got.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    /// The Hugging Face name of the tensor just written.
    pub tensor: &'a str,
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportSummary {
    pub source: PathBuf,
    pub out: PathBuf,
    pub architecture: String,
    /// `general.name`, if the file has one.
    pub name: Option<String>,
    /// Tensors written to `model.safetensors`.
    pub tensors: usize,
    pub parameters: u64,
    pub layers: u64,
    pub hidden_size: u64,
    pub vocab_size: u64,
    pub tied_embeddings: bool,
    /// How many tensors of the source had each ggml type.
    pub source_types: BTreeMap<String, usize>,
    /// An earlier import in `out` was replaced.
    pub replaced_previous: bool,
    pub safetensors_bytes: u64,
}

/// One tensor to convert.
struct Planned<'a> {
    info: &'a TensorInfo,
    ty: GgmlType,
    target: Target,
}

fn tensor_err(f: &GgufFile, tensor: &str, why: impl Into<String>) -> GgufError {
    GgufError::Tensor { path: f.path().to_path_buf(), tensor: tensor.to_string(), why: why.into() }
}

/// Maps and checks every tensor of a Llama file.
fn plan<'a>(
    f: &'a GgufFile,
    dims: &super::config::LlamaDims,
    layout: &Layout,
) -> Result<Vec<Planned<'a>>, GgufError> {
    let required: BTreeSet<String> = llama_required(dims, layout).into_iter().collect();
    let mut planned = Vec::with_capacity(f.tensors().len());
    for info in f.tensors() {
        let target =
            llama_target(&info.name, dims).map_err(|why| tensor_err(f, &info.name, why))?;
        if !required.contains(&info.name) {
            return Err(tensor_err(
                f,
                &info.name,
                "unexpected: the other layers (or layer 0) do not have it, so the model's \
                 layout is not a Llama one",
            ));
        }
        let ty = info.ggml_type().ok_or_else(|| GgufError::UnsupportedType {
            path: f.path().to_path_buf(),
            tensor: info.name.clone(),
            ggml_type: info.type_name(),
            supported: GgmlType::supported_list(),
        })?;
        if info.shape() != target.shape {
            return Err(tensor_err(
                f,
                &info.name,
                format!(
                    "shape {:?}, but the `llama.*` metadata implies {:?}",
                    info.shape(),
                    target.shape
                ),
            ));
        }
        planned.push(Planned { info, ty, target });
    }
    for name in &required {
        if f.tensor(name).is_none() {
            return Err(tensor_err(f, name, "missing"));
        }
    }
    planned.sort_by(|a, b| a.target.hf_name.cmp(&b.target.hf_name));
    Ok(planned)
}

/// What `out` holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Nothing,
    EmptyDir,
    EarlierImport,
}

fn inspect_out(out: &Path) -> Result<Existing, GgufError> {
    let refuse = |why: &str| GgufError::OutputExists { dir: out.to_path_buf(), why: why.into() };
    let meta = match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(GgufError::Io { path: out.to_path_buf(), source: e }),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(refuse("exists and is not a directory"));
    }
    let mut entries = fs::read_dir(out).map_err(GgufError::io(out))?;
    if entries.next().is_none() {
        Ok(Existing::EmptyDir)
    } else if out.join(MARKER).is_file() {
        Ok(Existing::EarlierImport)
    } else {
        Err(refuse("exists and is not empty"))
    }
}

/// A hidden directory next to `out`, removed on drop unless [`Staging::keep`] was called.
struct Staging {
    dir: PathBuf,
    keep: bool,
}

impl Staging {
    fn sibling(out: &Path, what: &str) -> PathBuf {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = out.file_name().map_or_else(|| "snapshot".into(), |n| n.to_string_lossy());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        parent.join(format!(".{name}.{what}-{}-{nanos}", std::process::id()))
    }

    fn create(out: &Path) -> Result<Staging, GgufError> {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(GgufError::io(parent))?;
        }
        let dir = Staging::sibling(out, "importing");
        fs::create_dir(&dir).map_err(GgufError::io(&dir))?;
        Ok(Staging { dir, keep: false })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<(), GgufError> {
    let path = dir.join(name);
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    fs::write(&path, text).map_err(GgufError::io(&path))
}

/// Moves the finished `staging` directory to `out`.
fn publish(staging: &mut Staging, out: &Path) -> Result<bool, GgufError> {
    let existing = inspect_out(out)?;
    let io = |p: &Path| GgufError::io(p.to_path_buf());
    match existing {
        Existing::Nothing => fs::rename(&staging.dir, out).map_err(io(out))?,
        Existing::EmptyDir => {
            fs::remove_dir(out).map_err(io(out))?;
            fs::rename(&staging.dir, out).map_err(io(out))?;
        }
        Existing::EarlierImport => {
            let old = Staging::sibling(out, "replaced");
            fs::rename(out, &old).map_err(io(out))?;
            if let Err(e) = fs::rename(&staging.dir, out) {
                let _ = fs::rename(&old, out);
                return Err(GgufError::Io { path: out.to_path_buf(), source: e });
            }
            // The new import is in place; a leftover old copy is only wasted space.
            let _ = fs::remove_dir_all(&old);
        }
    }
    staging.keep = true;
    Ok(existing == Existing::EarlierImport)
}

/// Imports the GGUF file `gguf` into the snapshot directory `out`, calling `progress` after
/// each tensor.
pub fn import(
    gguf: &Path,
    out: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ImportSummary, GgufError> {
    let f = GgufFile::open(gguf)?;
    let arch = architecture(&f)?.to_string();
    let ids = SpecialIds::read(&f)?;
    let n_tokens =
        f.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len() as u64);
    let dims = llama_dims(&f, n_tokens)?;
    let layout = Layout {
        tied: f.tensor("output.weight").is_none(),
        attention_bias: f.tensor("blk.0.attn_q.bias").is_some(),
        mlp_bias: f.tensor("blk.0.ffn_gate.bias").is_some(),
    };
    let planned = plan(&f, &dims, &layout)?;
    let config = llama_config(&f, &dims, &layout, &ids)?;
    let context = f.req_u64("llama.context_length")?;
    let tok = tokenizer_files(&f, &ids, context)?;
    if tok.vocab_size as u64 > dims.vocab {
        return Err(f.metadata_error(
            "tokenizer.ggml.tokens",
            format!("{} tokens, but the embedding has only {} rows", tok.vocab_size, dims.vocab),
        ));
    }
    let tokenizer_text = serde_json::to_string(&tok.tokenizer).expect("JSON values serialize");
    tokenizers::Tokenizer::from_bytes(tokenizer_text.as_bytes())
        .map_err(|e| GgufError::Tokenizer { path: f.path().to_path_buf(), why: e.to_string() })?;

    inspect_out(out)?;
    let mut staging = Staging::create(out)?;
    let dir = staging.dir.clone();
    write_json(&dir, "config.json", &config)?;
    write_json(&dir, "generation_config.json", &generation_config(&ids))?;
    write_json(&dir, "tokenizer_config.json", &tok.config)?;
    let tok_path = dir.join("tokenizer.json");
    fs::write(&tok_path, tokenizer_text).map_err(GgufError::io(&tok_path))?;

    let entries: Vec<Entry> = planned
        .iter()
        .map(|p| Entry { name: p.target.hf_name.clone(), shape: p.target.shape.clone() })
        .collect();
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), "gguf".to_string()),
    ]);
    let st_path = dir.join("model.safetensors");
    let file = fs::File::create(&st_path).map_err(GgufError::io(&st_path))?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    let head = header(&entries, &metadata);
    w.write_all(&head).map_err(GgufError::io(&st_path))?;
    let mut values: Vec<f32> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        values.clear();
        values.resize(p.info.n_elements as usize, 0.0);
        dequantize(p.ty, f.tensor_bytes(p.info), &mut values).map_err(|e| {
            tensor_err(
                &f,
                &p.info.name,
                format!("{} bytes of {} data, expected {}", e.found_bytes, p.ty, e.expected_bytes),
            )
        })?;
        match p.target.unpermute_heads {
            Some(heads) => {
                let rows = p.target.shape[0] as usize;
                let cols = p.target.shape.get(1).map_or(1, |&c| c as usize);
                let restored = unpermute_rows(&values, rows, cols, heads as usize);
                write_f32(&mut w, &restored)
            }
            None => write_f32(&mut w, &values),
        }
        .map_err(GgufError::io(&st_path))?;
        progress(Progress { done: i + 1, total: planned.len(), tensor: &p.target.hf_name });
    }
    w.flush().map_err(GgufError::io(&st_path))?;
    drop(w);
    let data_bytes: u64 = entries.iter().map(Entry::n_bytes).sum();

    let mut source_types = BTreeMap::new();
    for t in f.tensors() {
        *source_types.entry(t.type_name()).or_insert(0) += 1;
    }
    let source = fs::canonicalize(gguf).unwrap_or_else(|_| gguf.to_path_buf());
    write_json(
        &dir,
        MARKER,
        &json!({
            "importer": "wax model import",
            "format": 1,
            "source": source,
            "source_bytes": fs::metadata(gguf).map(|m| m.len()).ok(),
            "architecture": arch,
            "tensors": planned.len(),
        }),
    )?;
    let replaced_previous = publish(&mut staging, out)?;
    Ok(ImportSummary {
        source,
        out: out.to_path_buf(),
        architecture: arch,
        name: f.opt_str("general.name")?.map(str::to_string),
        tensors: planned.len(),
        parameters: planned.iter().map(|p| p.info.n_elements).sum(),
        layers: dims.layers,
        hidden_size: dims.hidden,
        vocab_size: dims.vocab,
        tied_embeddings: layout.tied,
        source_types,
        replaced_previous,
        safetensors_bytes: head.len() as u64 + data_bytes,
    })
}
