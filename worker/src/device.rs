//! What this machine offers the worker: libtorch's view (threads, CUDA) and the CUDA driver's.

use serde::Serialize;

/// A report for `wax doctor` and for worker registration.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// The libtorch version the binary was linked against (from torch's `version.py` at build
    /// time).
    pub libtorch_version: &'static str,
    /// Where the binary looks for libtorch (its rpath).
    pub libtorch_dir: &'static str,
    pub torch_threads: i64,
    pub torch_cuda_available: bool,
    pub torch_cuda_devices: i64,
    pub torch_cudnn_available: bool,
    /// A small computation on the CPU, proving libtorch loads and runs: sum of 1..=100.
    pub cpu_smoke_sum: f64,
    /// The CUDA driver as seen directly (independently of libtorch).
    pub driver: String,
}

/// Asks libtorch and the CUDA driver what they see.
pub fn report() -> DeviceReport {
    let t = tch::Tensor::arange_start(1, 101, (tch::Kind::Double, tch::Device::Cpu));
    DeviceReport {
        libtorch_version: option_env!("WAX_LIBTORCH_VERSION").unwrap_or("unknown"),
        libtorch_dir: option_env!("WAX_LIBTORCH_LIB").unwrap_or("unknown"),
        torch_threads: tch::get_num_threads() as i64,
        torch_cuda_available: tch::Cuda::is_available(),
        torch_cuda_devices: tch::Cuda::device_count(),
        torch_cudnn_available: tch::Cuda::cudnn_is_available(),
        cpu_smoke_sum: t.sum(tch::Kind::Double).double_value(&[]),
        driver: wax_kernels::cuda::probe().to_string(),
    }
}

/// Parses a device name: `cpu`, `cuda` (device 0) or `cuda:N`; `None` for anything else.
pub fn parse_device(s: &str) -> Option<tch::Device> {
    match s {
        "cpu" => Some(tch::Device::Cpu),
        "cuda" => Some(tch::Device::Cuda(0)),
        _ => s.strip_prefix("cuda:").and_then(|i| i.parse().ok()).map(tch::Device::Cuda),
    }
}

/// Parses a dtype name: `f32` or `bf16`; `None` for anything else.
pub fn parse_kind(s: &str) -> Option<tch::Kind> {
    match s {
        "f32" => Some(tch::Kind::Float),
        "bf16" => Some(tch::Kind::BFloat16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn libtorch_runs_and_agrees_with_the_driver() {
        let r = super::report();
        assert_eq!(r.cpu_smoke_sum, 5050.0);
        assert!(r.libtorch_version.starts_with("2.11"), "{}", r.libtorch_version);
        // libtorch sees CUDA exactly when the driver lists devices.
        assert_eq!(r.torch_cuda_available, r.driver.contains("cuda:0"), "{r:?}");
    }
}
