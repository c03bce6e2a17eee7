//! Gives this crate's test executables an rpath to libtorch (see build/libtorch.rs).
include!("../build/libtorch.rs");

fn main() {
    link_libtorch();
}
