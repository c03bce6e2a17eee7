//! Gives this crate's test executables an rpath to libtorch (see build/libtorch.rs), and compiles
//! the CUDA-graph shim (csrc/cuda_graph.cpp) when libtorch has CUDA and the CUDA headers are found.
include!("../build/libtorch.rs");

fn main() {
    link_libtorch();
    build_cuda_graph_shim();
}

/// Compiles csrc/cuda_graph.cpp against libtorch's headers and links libtorch's CUDA libraries;
/// sets `--cfg wax_cuda_graph` on success. Without it, CUDA graphs report themselves unavailable
/// and decoding runs op by op.
fn build_cuda_graph_shim() {
    println!("cargo:rustc-check-cfg=cfg(wax_cuda_graph)");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-env-changed=WAX_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=WAX_NO_CUDA_GRAPH");
    if std::env::var_os("WAX_NO_CUDA_GRAPH").is_some() {
        return;
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::Path::new(&lib);
    let lib = lib.canonicalize().unwrap_or_else(|_| lib.to_path_buf());
    if !lib.join("libtorch_cuda.so").exists() || !lib.join("libc10_cuda.so").exists() {
        return;
    }
    let include = lib.join("../include");
    // CUDA runtime headers: an explicit directory, the CUDA wheel next to torch's, or a toolkit.
    let candidates = [
        std::env::var("WAX_CUDA_INCLUDE").ok().map(std::path::PathBuf::from),
        Some(lib.join("../../nvidia/cu13/include")),
        Some(lib.join("../../nvidia/cuda_runtime/include")),
        std::env::var("CUDA_HOME").ok().map(|h| std::path::Path::new(&h).join("include")),
        Some(std::path::PathBuf::from("/usr/local/cuda/include")),
    ];
    let Some(cuda_include) = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())
    else {
        println!(
            "cargo:warning=CUDA runtime headers (with crt/) not found: CUDA graphs disabled; \
             install nvidia-cuda-crt or set WAX_CUDA_INCLUDE"
        );
        return;
    };
    if !include.join("ATen/cuda/CUDAGraph.h").exists() {
        return;
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file("csrc/cuda_graph.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&cuda_include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("wax_cuda_graph");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-cfg=wax_cuda_graph");
}
