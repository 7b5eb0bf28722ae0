#!/usr/bin/env bash
# install-deps.sh [--test|--bench] -- install ddpm's Debian 12 build and data dependencies (idempotent);
# --test adds what the tests run, --bench what `make bench-torch` runs.
# Runs apt-get only when something is missing; needs root (or sudo) in that case.
set -euo pipefail
# pkg-config: what programs built on the installed library use (ddpm.pc), and tests/test_install.sh.
# protobuf-c (library and protoc-c): the TensorBoard event files (src/io/tfevents.proto).
pkgs=(gcc make pkg-config libdnnl-dev libopenblas-openmp-dev libcjson-dev libpng-dev zlib1g-dev libxxhash-dev
      libprotobuf-c-dev protobuf-c-compiler dataset-fashion-mnist openmpi-bin libopenmpi-dev)
# --test: also what the parity tests run (Debian's torch, numpy/scipy, and pytorch-fid and diffusers
# from PyPI, with the Debian packages diffusers imports; tensorboard from PyPI with the Debian packages
# its event reader imports: protobuf, absl), clang-14 with its libFuzzer (libclang-rt-14-dev) for the
# fuzz smoke test, and what the Python package's tests need (cffi, pytest, python3-venv; its build
# backend hatchling, pinned, from PyPI), qemu-user (tests/test_install.sh runs the installed ddpm on
# emulated CPUs: one without AVX, one with AVX2).
if [ "${1:-}" = "--test" ]; then
    pkgs+=(python3-torch python3-torchvision python3-scipy python3-numpy python3-pil python3-pip
           python3-packaging python3-filelock python3-requests python3-regex python3-yaml python3-tqdm
           python3-protobuf python3-absl clang-14 libclang-rt-14-dev python3-cffi python3-pytest python3-venv
           qemu-user)
fi
# --bench: what `make bench-torch` runs PyTorch with (Debian's torch, and tcmalloc, its best allocator).
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(python3-torch python3-numpy libtcmalloc-minimal4)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The real reference packages, pinned, beside Debian's torch (their other imports are Debian's;
# huggingface_hub and safetensors, which Debian 12 lacks, pinned from PyPI too).
if [ "${1:-}" = "--test" ] && ! /usr/bin/python3 -c 'import pytorch_fid' 2>/dev/null; then
    echo "install-deps: installing pytorch-fid==0.3.0 from PyPI"
    $sudo /usr/bin/python3 -m pip install -q --break-system-packages --no-deps pytorch-fid==0.3.0
fi
if [ "${1:-}" = "--test" ] && ! /usr/bin/python3 -c 'import diffusers' 2>/dev/null; then
    echo "install-deps: installing diffusers==0.31.0 (huggingface_hub==0.26.2, safetensors==0.4.5) from PyPI"
    $sudo /usr/bin/python3 -m pip install -q --break-system-packages --no-deps diffusers==0.31.0 \
        huggingface_hub==0.26.2 safetensors==0.4.5
fi
if [ "${1:-}" = "--test" ] && ! /usr/bin/python3 -c 'import tensorboard' 2>/dev/null; then
    echo "install-deps: installing tensorboard==2.18.0 from PyPI"
    $sudo /usr/bin/python3 -m pip install -q --break-system-packages --no-deps tensorboard==2.18.0
fi
if [ "${1:-}" = "--test" ] && ! /usr/bin/python3 -c 'import hatchling' 2>/dev/null; then
    echo "install-deps: installing hatchling==1.27.0 (python/'s build backend) from PyPI"
    $sudo /usr/bin/python3 -m pip install -q --break-system-packages hatchling==1.27.0
fi
