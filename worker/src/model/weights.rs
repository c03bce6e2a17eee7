//! Reading safetensors snapshots (single file or sharded with an index) through memory maps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::error::ModelError;

/// The memory-mapped weight files of a snapshot and which file holds each tensor.
pub struct WeightFiles {
    files: Vec<(PathBuf, Mmap)>,
    index: HashMap<String, usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

fn st_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Safetensors { path: path.to_path_buf(), message: e.to_string() }
}

impl WeightFiles {
    /// Opens `model.safetensors.index.json` (sharded) or `model.safetensors`, or failing both
    /// every `*.safetensors` file in `dir`.
    pub fn open(dir: &Path) -> Result<WeightFiles, ModelError> {
        let index_path = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(io(&index_path))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|source| ModelError::Json { path: index_path.clone(), source })?;
            let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                ModelError::Config {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    message: "missing or not an object".into(),
                }
            })?;
            let mut files = BTreeSet::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| ModelError::Config {
                    path: index_path.clone(),
                    field: format!("weight_map.{name}"),
                    message: "expected a file name".into(),
                })?;
                files.insert(dir.join(file));
            }
            files.into_iter().collect()
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                let path = entry.map_err(io(dir))?.path();
                if path.extension().is_some_and(|e| e == "safetensors") {
                    found.push(path);
                }
            }
            found.sort();
            found
        };
        if names.is_empty() {
            return Err(ModelError::NoWeights { dir: dir.to_path_buf() });
        }
        let mut files: Vec<(PathBuf, Mmap)> = Vec::with_capacity(names.len());
        let mut index = HashMap::new();
        for (i, path) in names.into_iter().enumerate() {
            let file = File::open(&path).map_err(io(&path))?;
            // SAFETY: the snapshot is treated as read-only while it is mapped; tensors are copied
            // out of the map before it is dropped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(io(&path))?;
            let (_, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| st_err(&path, e))?;
            for name in meta.tensors().keys() {
                if let Some(prev) = index.insert(name.clone(), i) {
                    let other = files[prev].0.display().to_string();
                    return Err(st_err(
                        &path,
                        format!("tensor `{name}` is also stored in {other}"),
                    ));
                }
            }
            files.push((path, mmap));
        }
        Ok(WeightFiles { files, index })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let sorted: BTreeMap<&String, ()> = self.index.keys().map(|k| (k, ())).collect();
        sorted.into_keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn searched(&self) -> String {
        self.files.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Copies tensor `name` out of its file, checks its shape, converts it to `kind` on `device`.
    pub fn load(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let t = self.read(name, shape, false)?;
        Ok(t.f_to_kind(kind)?.f_to_device(device)?)
    }

    /// Tensor `name` as stored, uint8 (MXFP4 blocks and scales), on the CPU.
    pub fn load_bytes(&self, name: &str, shape: &[i64]) -> Result<Tensor, ModelError> {
        self.read(name, shape, true)
    }

    /// Tensor `name` in its stored kind on the CPU after a shape check: a float kind, or uint8
    /// when `bytes`.
    fn read(&self, name: &str, shape: &[i64], bytes: bool) -> Result<Tensor, ModelError> {
        let &i = self.index.get(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            searched: self.searched(),
        })?;
        let (path, mmap) = &self.files[i];
        let st = SafeTensors::deserialize(mmap).map_err(|e| st_err(path, e))?;
        let view = st.tensor(name).map_err(|e| st_err(path, e))?;
        let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if found != shape {
            return Err(ModelError::ShapeMismatch {
                path: path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        let src_kind = match view.dtype() {
            Dtype::U8 if bytes => Kind::Uint8,
            Dtype::F32 if !bytes => Kind::Float,
            Dtype::BF16 if !bytes => Kind::BFloat16,
            Dtype::F16 if !bytes => Kind::Half,
            Dtype::F64 if !bytes => Kind::Double,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(Tensor::f_from_data_size(view.data(), &found, src_kind)?)
    }
}
