#!/bin/sh
# bench_bf16.sh -- ddpm's bf16 mixed precision on a CPU that has it (AVX512_BF16 or AMX-BF16): `make bench-bf16`.
#
#   bench/bench_bf16.sh [BUILD=build]
#
# 1. tests/test_bf16 (BUILD/tests/test_bf16): oneDNN's bf16 kernels against bf16-emulated, per convolution
#    and over a U-Net training pass; it fails here if they disagree.
# 2. bench/bench_torch.sh with BENCH_BF16=1: ddpm fp32 and bf16 against PyTorch fp32 and bf16 autocast on
#    every preset, with the targets (ddpm bf16 >= 2.5x torch fp32, >= 1.5x torch bf16).
# On a CPU without bf16 arithmetic it says so and exits 2 (nothing to measure: bf16-emulated runs on the
# fp32 kernels, slower than fp32).
set -eu
BUILD=${1:-build}
BT=$BUILD/bench/bench_train
for f in "$BT" "$BUILD/tests/test_bf16"; do
    [ -x "$f" ] || { echo "bench_bf16: $f is missing (make bench-bf16 builds it)" >&2; exit 1; }
done
if ! msg=$("$BT" fmnist-small 2 sample 1 1 0 bf16 2>&1 >/dev/null); then
    echo "bench_bf16: ddpm cannot run bf16 here: $msg" >&2
    echo "bench_bf16: run it on a CPU with AVX512_BF16 (Zen 4 and later, Cooper Lake) or AMX-BF16 (Sapphire Rapids and later)" >&2
    exit 2
fi
echo "== tests/test_bf16: oneDNN's bf16 kernels against bf16-emulated"
"$BUILD/tests/test_bf16"
echo
echo "== ddpm and PyTorch, fp32 and bf16"
BENCH_BF16=1 bench/bench_torch.sh "$BUILD"
