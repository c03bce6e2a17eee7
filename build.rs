//! Links the `wax` binary against libtorch so that it starts without LD_LIBRARY_PATH and sees
//! CUDA when libtorch_cuda exists. Does nothing when built without the `worker` feature.
include!("build/libtorch.rs");

fn main() {
    link_libtorch();
}
