//! `wax doctor`: is libtorch loadable, does it see CUDA, what does the driver report.

use clap::Args;
use std::io::Write;

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let r = wax_worker::device::report();
    if args.json {
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "wax {} (protocol {})", env!("CARGO_PKG_VERSION"), wax_proto::PROTOCOL_VERSION)?;
    writeln!(out, "libtorch {} at {}", r.libtorch_version, r.libtorch_dir)?;
    writeln!(
        out,
        "  CPU threads: {}; smoke test sum(1..=100) = {}",
        r.torch_threads, r.cpu_smoke_sum
    )?;
    writeln!(
        out,
        "  CUDA: {} ({} device(s), cuDNN {})",
        if r.torch_cuda_available { "available" } else { "not available" },
        r.torch_cuda_devices,
        if r.torch_cudnn_available { "available" } else { "not available" }
    )?;
    writeln!(out, "driver: {}", r.driver)?;
    anyhow::ensure!(
        r.cpu_smoke_sum == 5050.0,
        "libtorch computed {} for sum(1..=100)",
        r.cpu_smoke_sum
    );
    Ok(())
}
