//! `save_pretrained`: a snapshot transformers' `from_pretrained` can load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use tch::{Device, Kind, Tensor};

use super::decoder::Model;
use super::error::ModelError;

impl Model {
    /// Writes `dir/config.json` (the loaded config with `dtype` updated and any
    /// `quantization_config` removed) and `dir/model.safetensors` with every parameter under its
    /// Hugging Face name (GPT-OSS experts dequantized); tied embeddings are written once. LoRA
    /// adapters are folded into the base weights (merged or not), so the snapshot is a plain
    /// model without adapter tensors.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
        let mut raw = self.config().raw.clone();
        let dtype = match self.kind() {
            Kind::BFloat16 => "bfloat16",
            Kind::Half => "float16",
            _ => "float32",
        };
        if let Some(obj) = raw.as_object_mut() {
            obj.insert("dtype".into(), dtype.into());
            obj.remove("torch_dtype");
            // MXFP4 experts were dequantized at load and are written as plain tensors.
            obj.remove("quantization_config");
        }
        let config_path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&raw)
            .map_err(|source| ModelError::Json { path: config_path.clone(), source })?;
        std::fs::write(&config_path, text + "\n")
            .map_err(|source| ModelError::Io { path: config_path.clone(), source })?;

        let (adapters, merged) = self.lora_for_save();
        let tensors: Vec<(String, Tensor)> = self
            .var_store()
            .variables()
            .into_iter()
            .filter(|(name, _)| !adapters.contains(name))
            .map(|(name, t)| match merged.get(&name) {
                Some(m) => (name, m.shallow_clone()),
                None => (name, t),
            })
            .collect();
        write_safetensors(&dir.join("model.safetensors"), tensors)?;
        Ok(())
    }
}

/// Writes `tensors` (float32, bfloat16 or float16; any device) to the safetensors file `path`,
/// sorted by name, with the `format: pt` metadata transformers expects.
pub(super) fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
) -> Result<(), ModelError> {
    let vars: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(vars.len());
    for (name, t) in vars {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let (dtype, size) = match t.kind() {
            Kind::Float => (Dtype::F32, 4),
            Kind::BFloat16 => (Dtype::BF16, 2),
            Kind::Half => (Dtype::F16, 2),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        let numel = t.numel();
        let mut data = vec![0u8; numel * size];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name, dtype, shape, data));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, data) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), data).map_err(|e| {
            ModelError::Safetensors { path: path.to_path_buf(), message: e.to_string() }
        })?;
        views.push((name.as_str(), view));
    }
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| ModelError::Safetensors { path: path.to_path_buf(), message: e.to_string() })
}
