//! `wax bench attention`: the decode step's attention alone — libtorch's SDPA over the window with
//! the step's mask, against the split-K kernel of [`super::attend`] — on random queries and a
//! random cache of a model's head shape, for several windows and fill levels.
//!
//! Each timed call is what one layer of one decode step runs (the mask is built once per step, so
//! it is built outside the timing for SDPA, as the kernel's real-slot inputs are).

use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::attend::{SlotAttention, StepAttention};
use super::decoder::masked_attention;
use super::error::ModelError;
use super::step::step_mask;

/// What to measure.
#[derive(Debug, Clone)]
pub struct AttnBenchConfig {
    pub device: Device,
    pub kind: Kind,
    pub batch: i64,
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
    /// Attention windows (slots `0..view`); each is measured with the new token at the window's
    /// last slot and at its middle.
    pub views: Vec<i64>,
    pub iters: usize,
}

/// One window and slot.
#[derive(Debug, Clone, Serialize)]
pub struct AttnBenchRow {
    pub view: i64,
    pub slot: i64,
    /// Key and value bytes of the attended slots (`slot + 1` per row and kv head).
    pub attended_bytes: f64,
    /// Key and value bytes of the whole window (what SDPA reads).
    pub window_bytes: f64,
    pub sdpa_us: f64,
    /// `None` where the kernel does not apply (not CUDA, or an unsupported shape or kind).
    pub kernel_us: Option<f64>,
    /// Largest |kernel − SDPA| over the outputs.
    pub max_abs_diff: Option<f64>,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median microseconds per call of `f` over `iters` calls after two warm-up calls.
fn time_us(
    device: Device,
    iters: usize,
    mut f: impl FnMut() -> Result<Tensor, ModelError>,
) -> Result<f64, ModelError> {
    for _ in 0..2 {
        drop(f()?);
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        sync(device);
        let t0 = Instant::now();
        drop(f()?);
        sync(device);
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs the measurement.
pub fn attention_bench(cfg: &AttnBenchConfig) -> Result<Vec<AttnBenchRow>, ModelError> {
    let (b, nh, nkv, hd) = (cfg.batch, cfg.heads, cfg.kv_heads, cfg.head_dim);
    if b <= 0 || nh <= 0 || nkv <= 0 || hd <= 0 || nh % nkv != 0 {
        return Err(ModelError::Input(format!(
            "bench attention: batch {b}, heads {nh}, kv heads {nkv} and head size {hd} must be \
             positive, heads a multiple of kv heads"
        )));
    }
    if cfg.views.is_empty() || cfg.views.iter().any(|&v| v < 2) {
        return Err(ModelError::Input(format!(
            "bench attention: windows {:?} must be at least 2 slots",
            cfg.views
        )));
    }
    let group = nh / nkv;
    let capacity = *cfg.views.iter().max().unwrap_or(&2);
    let (device, kind) = (cfg.device, cfg.kind);
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    let keys = Tensor::randn([b, nkv, capacity, hd], (Kind::Float, device)).to_kind(kind);
    let values = Tensor::randn([b, nkv, capacity, hd], (Kind::Float, device)).to_kind(kind);
    let q = Tensor::randn([b, nh, 1, hd], (Kind::Float, device)).to_kind(kind);
    let real = Tensor::ones([b, capacity], (Kind::Bool, device));
    let bytes_per_slot = (2 * b * nkv * hd * kind.elt_size_in_bytes() as i64) as f64;
    let mut rows = Vec::new();
    for &view in &cfg.views {
        for slot in [view - 1, view / 2 - 1] {
            let slot_t = Tensor::from_slice(&[slot]).to_device(device);
            let (k, v) = (keys.narrow(2, 0, view), values.narrow(2, 0, view));
            let mask = step_mask(&real, &slot_t, view, group, kind);
            let sdpa = || Ok(masked_attention(&q, &k, &v, &mask, group));
            let sdpa_us = time_us(device, cfg.iters, sdpa)?;
            let slots = SlotAttention::resolve(
                StepAttention::Kernel,
                nh,
                nkv,
                hd,
                kind,
                device,
                &real,
                &slot_t,
                view,
            );
            let (kernel_us, max_abs_diff) = match slots {
                Some(s) => {
                    let us = time_us(device, cfg.iters, || s.attend(&q, &k, &v))?;
                    let diff = (s.attend(&q, &k, &v)?.to_kind(Kind::Float)
                        - masked_attention(&q, &k, &v, &mask, group).to_kind(Kind::Float))
                    .abs()
                    .max()
                    .double_value(&[]);
                    (Some(us), Some(diff))
                }
                None => (None, None),
            };
            rows.push(AttnBenchRow {
                view,
                slot,
                attended_bytes: bytes_per_slot * (slot + 1) as f64,
                window_bytes: bytes_per_slot * view as f64,
                sdpa_us,
                kernel_us,
                max_abs_diff,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_cpu_sdpa_is_measured_and_the_kernel_reported_absent() {
        let cfg = AttnBenchConfig {
            device: Device::Cpu,
            kind: Kind::Float,
            batch: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
            views: vec![16, 64],
            iters: 2,
        };
        let rows = attention_bench(&cfg).unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.view, r.slot)).collect::<Vec<_>>(),
            [(16, 15), (16, 7), (64, 63), (64, 31)]
        );
        for r in &rows {
            assert!(r.sdpa_us > 0.0 && r.kernel_us.is_none() && r.max_abs_diff.is_none());
            // 2 (keys, values) · 2 rows · 2 kv heads · 8 · 4 bytes per slot.
            assert_eq!(r.window_bytes, 256.0 * r.view as f64);
            assert_eq!(r.attended_bytes, 256.0 * (r.slot + 1) as f64);
        }
        let bad = AttnBenchConfig { heads: 5, ..cfg.clone() };
        assert!(attention_bench(&bad).unwrap_err().to_string().contains("multiple"));
        let bad = AttnBenchConfig { views: vec![1], ..cfg };
        assert!(attention_bench(&bad).is_err());
    }
}
