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
    build_cuda_runtime(&libtorch, &lib_dir);
}

/// Builds `csrc/cuda_runtime.cpp` into `$OUT_DIR/libdfl_cuda.so`, linked to libtorch_cuda and
/// c10_cuda, and tells the crate where it is (`DFL_CUDA_RUNTIME`, empty when it cannot be
/// built). It is a separate library so that the binary does not link the CUDA libraries:
/// `device::cuda_runtime` opens it after libtorch_cuda.so is loaded.
///
/// A torch without CUDA (no libtorch_cuda.so, or no CUDA headers in the venv) builds no
/// library; the CUDA-only features then say they are unavailable.
fn build_cuda_runtime(libtorch: &std::path::Path, lib_dir: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/cuda_runtime.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.h");
    // pip installs the CUDA runtime's headers beside torch (site-packages/nvidia/cu13).
    let cuda_include = libtorch.parent().map(|p| p.join("nvidia/cu13/include"));
    let cuda_include = match cuda_include {
        Some(dir) if dir.join("cuda_runtime_api.h").exists() => dir,
        _ => {
            println!(
                "cargo:warning=no CUDA headers beside {}: CUDA extras not built",
                libtorch.display()
            );
            println!("cargo:rustc-env=DFL_CUDA_RUNTIME=");
            return;
        }
    };
    let cuda_lib = cuda_include.with_file_name("lib");
    // NCCL's header comes with torch's own NCCL wheel; `nv/target` with nvidia-cuda-cccl.
    let nccl_include = cuda_include.join("../../nccl/include");
    let complete = cuda_include.join("nv/target").exists() && nccl_include.join("nccl.h").exists();
    if !complete {
        println!(
            "cargo:warning=no NCCL or CCCL headers beside {}: CUDA extras not built (run scripts/setup.sh)",
            libtorch.display()
        );
        println!("cargo:rustc-env=DFL_CUDA_RUNTIME=");
        return;
    }
    if !lib_dir.join("libtorch_cuda.so").exists() || !cuda_lib.join("libcudart.so.13").exists() {
        println!("cargo:rustc-env=DFL_CUDA_RUNTIME=");
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("libdfl_cuda.so");
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-O2", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w"])
        .arg("-I")
        .arg(libtorch.join("include"))
        .arg("-I")
        .arg(libtorch.join("include/torch/csrc/api/include"))
        .arg("-I")
        .arg(&cuda_include)
        .arg("-I")
        .arg(&nccl_include)
        .arg("csrc/cuda_runtime.cpp")
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib_dir.display()))
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"])
        .arg(format!("-L{}", cuda_lib.display()))
        .arg("-l:libcudart.so.13")
        .arg(format!("-Wl,-rpath,{}:{}", lib_dir.display(), cuda_lib.display()))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler for csrc/cuda_runtime.cpp: {e}"));
    assert!(status.success(), "compiling csrc/cuda_runtime.cpp failed ({status})");
    println!("cargo:rustc-env=DFL_CUDA_RUNTIME={}", out.display());
}

/// Compiles `csrc/` but the CUDA library (bfloat16 autocast regions, which tch cannot set up;
/// whether the CUDA backend is registered, and its TF32 and cuDNN benchmark flags; libtorch's op
/// profiler, for `examples/train_step.rs --profile`; `leaky_relu` with a slope, which tch
/// generates without one; the channels-last memory format, which tch cannot name)
/// `distributed.cpp`: c10d's rendezvous store, Gloo backend and collectives, for data-parallel
/// training) against the same libtorch headers `torch-sys` uses. Gloo's own headers, which the
/// torch wheel leaves out, come from Debian's libgloo-dev (declarations only: the code is
/// libtorch's).
fn build_shim(libtorch: &std::path::Path) {
    if !std::path::Path::new("/usr/include/gloo/context.h").exists() {
        panic!(
            "Gloo's headers (/usr/include/gloo) are missing; run scripts/setup.sh (it installs \
             Debian's libgloo-dev)"
        );
    }
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    println!("cargo:rerun-if-changed=csrc/profile.cpp");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.h");
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .file("csrc/cuda.cpp")
        .file("csrc/profile.cpp")
        .file("csrc/ops.cpp")
        .file("csrc/distributed.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("dfl_autocast");
}
