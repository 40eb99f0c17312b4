//! Shared build script for every crate whose binaries link libtorch.
//!
//! torch-sys links against `$LIBTORCH/lib` but puts no rpath on the final binary, so without
//! this the nodes only start with `LD_LIBRARY_PATH` set — and dora spawns nodes with the
//! daemon's environment, not the user's shell. We resolve the symlinked set-up folder to the
//! real `torch/lib` of the venv (whose own `$ORIGIN` rpaths then find the CUDA runtime wheels).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(root) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set: binaries will need LD_LIBRARY_PATH to find libtorch");
        return;
    };
    let lib = PathBuf::from(root).join("lib").join("libtorch_cpu.so");
    match lib.canonicalize() {
        Ok(real) => {
            let dir = real.parent().expect("a file has a parent folder");
            // Plain `rustc-link-arg` covers every linked target of the package (binaries, the
            // library's unit-test harness, integration tests, cdylibs) and, unlike the
            // per-kind variants, is not refused when a package lacks one of those kinds.
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
        Err(e) => println!("cargo:warning=cannot resolve {}: {e}", lib.display()),
    }
}
