//! Finding the CUDA driver and its devices without ever panicking when there is none.

use cudarc::driver::result;

/// One visible CUDA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: i32,
    pub name: String,
    pub total_memory_bytes: usize,
}

/// What the CUDA driver API reports on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaProbe {
    /// No `libcuda.so` could be loaded: a CPU-only machine.
    NoDriver,
    /// The driver library loaded but failed to initialise (no device node, version mismatch…).
    DriverError(String),
    /// The driver works; the list may be empty.
    Devices { driver_version: i32, devices: Vec<GpuInfo> },
}

/// Errors from the driver while listing devices.
#[derive(Debug, thiserror::Error)]
#[error("CUDA driver call {call} failed: {source}")]
pub struct ProbeError {
    call: &'static str,
    #[source]
    source: result::DriverError,
}

/// Looks for the CUDA driver and lists its devices.
pub fn probe() -> CudaProbe {
    // SAFETY: only tries to dlopen the driver library by its well-known names; loading has no
    // side effects beyond the library's own initialisers.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return CudaProbe::NoDriver;
    }
    match list_devices() {
        Ok((driver_version, devices)) => CudaProbe::Devices { driver_version, devices },
        Err(e) => CudaProbe::DriverError(e.to_string()),
    }
}

fn list_devices() -> Result<(i32, Vec<GpuInfo>), ProbeError> {
    let wrap = |call| move |source| ProbeError { call, source };
    result::init().map_err(wrap("cuInit"))?;
    let mut driver_version = 0;
    // SAFETY: cuDriverGetVersion writes one int to a valid pointer; the library is loaded.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(wrap("cuDriverGetVersion"))?;
    let count = result::device::get_count().map_err(wrap("cuDeviceGetCount"))?;
    let mut devices = Vec::with_capacity(count.max(0) as usize);
    for ordinal in 0..count {
        let dev = result::device::get(ordinal).map_err(wrap("cuDeviceGet"))?;
        let name = result::device::get_name(dev).map_err(wrap("cuDeviceGetName"))?;
        // SAFETY: `dev` was returned by cuDeviceGet above.
        let total_memory_bytes =
            unsafe { result::device::total_mem(dev) }.map_err(wrap("cuDeviceTotalMem"))?;
        devices.push(GpuInfo { ordinal, name, total_memory_bytes });
    }
    Ok((driver_version, devices))
}

impl std::fmt::Display for CudaProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CudaProbe::NoDriver => write!(f, "no CUDA driver (libcuda.so not found): CPU only"),
            CudaProbe::DriverError(e) => write!(f, "CUDA driver present but unusable: {e}"),
            CudaProbe::Devices { driver_version, devices } => {
                let (major, minor) = (driver_version / 1000, (driver_version % 1000) / 10);
                write!(f, "CUDA driver {major}.{minor}, {} device(s)", devices.len())?;
                for d in devices {
                    let gib = d.total_memory_bytes as f64 / (1u64 << 30) as f64;
                    write!(f, "\n  cuda:{} {} ({gib:.1} GiB)", d.ordinal, d.name)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_never_panics_and_is_consistent() {
        // On a CPU machine this is NoDriver; on the GPU machine it lists at least one device.
        let first = probe();
        assert_eq!(first, probe());
        if let CudaProbe::Devices { devices, .. } = &first {
            for (i, d) in devices.iter().enumerate() {
                assert_eq!(d.ordinal, i as i32);
                assert!(!d.name.is_empty());
            }
        }
        assert!(!first.to_string().is_empty());
    }
}
