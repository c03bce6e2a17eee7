// Shared by the build scripts of every package that links libtorch (the `wax` binary, wax-worker,
// wax-tests) through `include!`. Cargo passes `rustc-link-arg` only to the targets of the package
// whose build script printed it, so each such package repeats these two steps:
//
// 1. an rpath to libtorch's directory, so that binaries and test executables start without
//    LD_LIBRARY_PATH;
// 2. libtorch_cuda linked with --no-as-needed when it exists: nothing in the Rust code references
//    it directly, so the default --as-needed would drop it and `tch::Cuda::is_available()` would
//    then be false on a GPU machine.
//
// torch-sys (links = "tch") tells direct dependents where libtorch lives via
// DEP_TCH_LIBTORCH_LIB; the package must therefore depend on torch-sys itself.

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // The torch version the binary was built against, for `wax doctor`.
    let version_py = dir.join("../version.py");
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WAX_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=WAX_LIBTORCH_LIB={}", dir.display());
}
