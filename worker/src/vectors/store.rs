//! Files of the vector stages: `.safetensors` with string metadata (written atomically) and
//! JSON / JSONL tables that pandas reads (`pd.read_json(path, lines=True)`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, View};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::VectorError;

/// A float32 tensor in safetensors' view.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn f32_view(t: &Tensor) -> Result<F32View, VectorError> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = Vec::<f32>::try_from(t.reshape([-1]))?;
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(F32View { shape, bytes })
}

/// Writes `tensors` (as float32) with `metadata` to `path` via a temporary file and a rename.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), VectorError> {
    let views: Vec<(String, F32View)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), f32_view(t)?)))
        .collect::<Result<_, VectorError>>()?;
    let data: Vec<(&str, &F32View)> = views.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(data, Some(meta))
        .map_err(|e| VectorError::io(path, format!("cannot serialise: {e}")))?;
    write_atomically(path, &bytes)
}

/// Tensors of a file by name.
pub type Tensors = BTreeMap<String, Tensor>;
/// String metadata of a safetensors file.
pub type Metadata = BTreeMap<String, String>;

/// Reads every tensor (as float32 on the CPU) and the metadata of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<(Tensors, Metadata), VectorError> {
    let bytes =
        std::fs::read(path).map_err(|e| VectorError::io(path, format!("cannot read: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| VectorError::io(path, format!("not a safetensors file: {e}")))?;
    let meta: BTreeMap<String, String> =
        header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| VectorError::io(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(VectorError::io(
                path,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, Tensor::from_slice(&values).view(shape.as_slice()));
    }
    Ok((out, meta))
}

/// Parses a TOML settings file into `T`; errors read `file:line:column: message`.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, VectorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| VectorError::io(path, format!("cannot read: {e}")))?;
    parse_toml(&text, &path.display().to_string())
}

/// Parses TOML text; `origin` names it in errors.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, VectorError> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let place = e.span().map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        });
        VectorError::Io { path: format!("{origin}{}", place.unwrap_or_default()), why: msg }
    })
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VectorError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| VectorError::io(dir, format!("cannot create: {e}")))?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| VectorError::io(&tmp, format!("cannot create: {e}")))?;
    f.write_all(bytes).map_err(|e| VectorError::io(&tmp, format!("cannot write: {e}")))?;
    f.sync_all().map_err(|e| VectorError::io(&tmp, format!("cannot sync: {e}")))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| VectorError::io(path, format!("cannot rename into place: {e}")))
}

/// Writes one JSON document (pretty) atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), VectorError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| VectorError::io(path, format!("cannot serialise: {e}")))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// Writes rows as JSON lines atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), VectorError> {
    let mut text = String::new();
    for r in rows {
        text.push_str(
            &serde_json::to_string(r)
                .map_err(|e| VectorError::io(path, format!("cannot serialise: {e}")))?,
        );
        text.push('\n');
    }
    write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_values_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, -1.0]).view([2, 3]);
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), "builtin:1m".to_string());
        write_safetensors(&p, &[("v.mold".into(), a.shallow_clone())], &meta).unwrap();
        let (t, m) = read_safetensors(&p).unwrap();
        assert_eq!(m.get("model").map(String::as_str), Some("builtin:1m"));
        assert!(t["v.mold"].allclose(&a, 0.0, 0.0, false));
        let err = read_safetensors(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        let err = parse_toml::<S>("a = 1\nb = 2\n", "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml:2:1: "), "{err}");
        assert!(err.contains("unknown field `b`"), "{err}");
    }
}
