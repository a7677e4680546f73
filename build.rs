//! Build script: checks that the libtorch found by `torch-sys` is the version `tch` expects, and
//! gives the binary (and the test executables) an rpath to it, so `dfl` runs without
//! `LD_LIBRARY_PATH`.
//!
//! `scripts/setup.sh` installs torch into a venv outside the checkout and writes
//! `.cargo/config.toml` with `LIBTORCH=<venv>/…/site-packages/torch`, which `torch-sys` reads too.

use std::path::PathBuf;

/// The libtorch version `tch 0.26` is built against (its `torch-sys` says so).
const EXPECTED_TORCH: &str = "2.13.0";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!(
            "LIBTORCH is not set, so the build cannot find libtorch; run scripts/setup.sh \
             (it installs torch {EXPECTED_TORCH} into a venv and writes .cargo/config.toml)"
        );
    };
    let version_file = libtorch.join("version.py");
    let version = std::fs::read_to_string(&version_file).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run scripts/setup.sh to (re)install torch {EXPECTED_TORCH}",
            version_file.display()
        )
    });
    let found = version
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = '"))
        .and_then(|v| v.split(['+', '\'']).next())
        .unwrap_or("unknown");
    if found != EXPECTED_TORCH {
        panic!(
            "{} is torch {found}, but tch needs {EXPECTED_TORCH}; run scripts/setup.sh",
            libtorch.display()
        );
    }
    let lib_dir = libtorch.join("lib");
    let lib_dir = lib_dir.canonicalize().unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    // libtorch_cuda (with the CUDA libraries it pulls in: about 270 MB resident and most of a
    // second to load) is not linked: nothing references its symbols, so --as-needed drops it.
    // `device::load_cuda_backend` loads it at run time, only for commands that may use a GPU.
    println!("cargo:rustc-env=DFL_LIBTORCH_LIB={}", lib_dir.display());
    build_shim(&libtorch);
}

/// Compiles `csrc/` (bfloat16 autocast regions, which tch cannot set up; whether the CUDA
/// backend is registered; libtorch's op profiler, for `examples/train_step.rs --profile`;
/// `leaky_relu` with a slope, which tch generates without one)
/// against the same libtorch headers `torch-sys` uses.
fn build_shim(libtorch: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    println!("cargo:rerun-if-changed=csrc/profile.cpp");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .file("csrc/cuda.cpp")
        .file("csrc/profile.cpp")
        .file("csrc/ops.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("dfl_autocast");
}
