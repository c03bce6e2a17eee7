//! Compiles wax/v1/*.proto with protox (pure Rust: no system protoc) into tonic/prost code, and
//! saves the file descriptor set for gRPC reflection.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["wax/v1/common.proto", "wax/v1/sweep.proto", "wax/v1/worker.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("wax_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
