//! Seeded random initialisation of a builtin model, written straight to `model.safetensors`.
//!
//! Every matrix is drawn from N(0, 0.02²), every norm weight is 1. Each tensor gets its own
//! ChaCha8 stream (its index in [`LadderSize::tensors`] order) keyed by the seed, and normals
//! come from the Box–Muller transform written out here, so a seed determines the bytes of the
//! file on every machine.

use std::collections::HashMap;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::BuiltinError;
use super::ladder::LadderSize;

/// Standard deviation of the weight matrices.
pub const INIT_STD: f64 = 0.02;

const KEY_TAG: &[u8; 24] = b"wax/builtin-model-init\0\0";

fn stream(seed: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..].copy_from_slice(KEY_TAG);
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

fn unit_open(rng: &mut ChaCha8Rng) -> f64 {
    // (0, 1]: never zero, so the logarithm below is finite.
    ((rng.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// `n` little-endian f32 values from N(0, std²).
fn normal_bytes(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    while out.len() < n * 4 {
        let (u1, u2) = (unit_open(rng), unit_open(rng));
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        for z in [r * theta.cos(), r * theta.sin()] {
            if out.len() < n * 4 {
                out.extend_from_slice(&(z as f32).to_le_bytes());
            }
        }
    }
    out
}

/// Writes the seeded initial weights of `size` to `path` (float32 safetensors).
pub fn write_initial_weights(
    size: &LadderSize,
    vocab_size: i64,
    seed: u64,
    path: &Path,
) -> Result<(), BuiltinError> {
    let tensors = size.tensors(vocab_size);
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (index, (name, shape, is_norm)) in tensors.into_iter().enumerate() {
        let n: i64 = shape.iter().product();
        let data = if is_norm {
            1f32.to_le_bytes().repeat(n as usize)
        } else {
            normal_bytes(&mut stream(seed, index as u64), n as usize, INIT_STD)
        };
        buffers.push((name, shape.iter().map(|&d| d as usize).collect(), data));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, data) in &buffers {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|e| BuiltinError::io(path, e))?;
        views.push((name.as_str(), view));
    }
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| BuiltinError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_the_requested_moments() {
        let bytes = normal_bytes(&mut stream(7, 3), 100_001, INIT_STD);
        let xs: Vec<f64> = bytes
            .chunks(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        assert_eq!(xs.len(), 100_001);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 5e-4, "mean {mean}");
        assert!((var.sqrt() - INIT_STD).abs() < 5e-4, "std {}", var.sqrt());
        assert_ne!(
            normal_bytes(&mut stream(7, 3), 8, 1.0),
            normal_bytes(&mut stream(7, 4), 8, 1.0)
        );
        assert_eq!(
            normal_bytes(&mut stream(7, 3), 8, 1.0),
            normal_bytes(&mut stream(7, 3), 8, 1.0)
        );
    }
}
