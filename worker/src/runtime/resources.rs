//! What a worker offers: CPU cores, memory and GPUs (with their memory, from the CUDA driver),
//! and how many stages it runs at once.

use wax_proto::v1::Resources;

/// A worker's offer to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Thousandths of a core.
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    /// The CUDA ordinals this worker may use.
    pub gpus: Vec<usize>,
    /// Memory of the smallest of those GPUs.
    pub gpu_memory_bytes: u64,
    /// Stages run at once.
    pub slots: u32,
}

impl Offer {
    /// This machine: every core, the physical memory, every GPU the driver lists; one slot per
    /// core (the scheduler still only leases what fits the free resources).
    pub fn detect() -> Offer {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let (gpus, gpu_memory_bytes) = match wax_kernels::cuda::probe() {
            wax_kernels::cuda::CudaProbe::Devices { devices, .. } if !devices.is_empty() => (
                devices.iter().map(|d| d.ordinal as usize).collect(),
                devices.iter().map(|d| d.total_memory_bytes as u64).min().unwrap_or(0),
            ),
            _ => (Vec::new(), 0),
        };
        Offer {
            cpu_millis: cores * 1000,
            memory_bytes: physical_memory().unwrap_or(1 << 30),
            gpus,
            gpu_memory_bytes,
            slots: cores.max(1),
        }
    }

    /// `n` equal parts of this offer (GPUs dealt out in turn), for `n` in-process workers.
    pub fn split(&self, n: usize) -> Vec<Offer> {
        let n = n.max(1);
        (0..n)
            .map(|i| {
                let gpus: Vec<usize> = self.gpus.iter().copied().skip(i).step_by(n).collect();
                let cpu = (self.cpu_millis / n as u32).max(1000);
                Offer {
                    cpu_millis: cpu,
                    memory_bytes: self.memory_bytes / n as u64,
                    gpu_memory_bytes: if gpus.is_empty() { 0 } else { self.gpu_memory_bytes },
                    slots: (cpu / 1000).max(1),
                    gpus,
                }
            })
            .collect()
    }

    pub fn to_wire(&self) -> Resources {
        Resources {
            gpus: self.gpus.len() as u32,
            gpu_memory_bytes: self.gpu_memory_bytes,
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
        }
    }
}

/// `MemTotal` of /proc/meminfo.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let o = Offer::detect();
        assert!(o.cpu_millis >= 1000 && o.slots >= 1);
        assert!(o.memory_bytes > 1 << 28);
    }

    #[test]
    fn splits_evenly_and_deals_gpus() {
        let o = Offer {
            cpu_millis: 16_000,
            memory_bytes: 64 << 30,
            gpus: vec![0, 1, 2],
            gpu_memory_bytes: 80 << 30,
            slots: 16,
        };
        let parts = o.split(2);
        assert_eq!(parts[0].gpus, [0, 2]);
        assert_eq!(parts[1].gpus, [1]);
        assert_eq!(parts[0].cpu_millis, 8000);
        assert_eq!(parts[1].slots, 8);
        assert_eq!(parts[1].memory_bytes, 32 << 30);
        let cpu = Offer { gpus: vec![], gpu_memory_bytes: 0, ..o }.split(32);
        assert!(
            cpu.iter().all(|p| p.cpu_millis == 1000 && p.slots == 1 && p.gpu_memory_bytes == 0)
        );
    }
}
