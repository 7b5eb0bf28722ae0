#!/bin/sh
# mpi.sh -- data-parallel training on one machine: img/s of one process with T threads
# against T processes (mpirun) with 1 thread each, at the same global batch, for the fmnist and
# cifar10 presets, and the seconds per step the processes spend in the gradient sum. `make
# bench-mpi` runs it (docs/scaling.md).
#
#   bench/mpi.sh [BUILD=build] [STEPS=5]
#
# Each img/s is the median over steps 2..STEPS of `ddpm train` (metrics.jsonl, --log-every 1);
# fmnist trains on Fashion-MNIST (batch 128, the paper's), cifar10 on random 32x32x3 images in
# CIFAR-10's binary format (batch 32, to keep the run short: about 6 s per step on 2 cores).
# Then bench_reduce times the sum alone for the presets' gradient sizes.
set -eu

BUILD=${1:-build}
STEPS=${2:-5}
DDPM=$BUILD/ddpm
T=$(nproc)
[ -x "$DDPM" ] && [ -x "$BUILD/bench/bench_reduce" ] || { echo "mpi.sh: build $DDPM and $BUILD/bench/bench_reduce first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi.sh: mpirun is missing (apt-get install openmpi-bin)" >&2; exit 1; }
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 256 random CIFAR-10 records (label 0, then 3072 pixel bytes).
i=0
while [ $i -lt 256 ]; do printf '\000'; head -c 3072 /dev/urandom; i=$((i + 1)); done > "$TMP/cifar.bin"

median() { # median FIELD RUN: the median of FIELD over metrics lines 2..
    sed -n "2,\$s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" "$2/metrics.jsonl" | sort -g |
        awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "-"}'
}

echo "## Data-parallel training on one machine ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $T CPUs)"
echo
echo "| preset | batch | 1 process x $T threads img/s | $T processes x 1 thread img/s | ratio | sum over processes, s/step |"
echo "|---|---:|---:|---:|---:|---:|"
for spec in "fmnist 128" "cifar10 32"; do
    set -- $spec
    preset=$1 B=$2
    data=""
    [ "$preset" = cifar10 ] && data="--data $TMP/cifar.bin"
    args="train --preset $preset --batch $B --steps $STEPS --log-every 1 --save-every 1000000 $data --limit 256"
    $DDPM $args --out "$TMP/$preset-1" --threads "$T" >"$TMP/log" 2>&1 || { cat "$TMP/log" >&2; exit 1; }
    mpirun -np "$T" --bind-to core $DDPM $args --out "$TMP/$preset-$T" --threads 1 >"$TMP/log" 2>&1 ||
        { cat "$TMP/log" >&2; exit 1; }
    a=$(median img_per_s "$TMP/$preset-1") b=$(median img_per_s "$TMP/$preset-$T") r=$(median reduce_s "$TMP/$preset-$T")
    echo "| $preset | $B | $a | $b | $(echo "$b $a" | awk '{printf "%.3f", $1 / $2}') | $r |"
done
echo
mpirun -np "$T" --bind-to core "$BUILD/bench/bench_reduce"
