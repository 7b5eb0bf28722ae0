#!/bin/sh
# scaling.sh -- how ddpm's cost grows with the batch, the thread count and the image size, so that a
# user can predict it: `make bench-scaling` runs it and prints two markdown tables (docs/perf.md).
#
#   bench/scaling.sh [BUILD=build] [PRESET=fmnist]
#
# Table 1: img/s of a training step and of a sampling step (one forward pass) of PRESET at batch
#          8..128, with 1 thread and with every CPU, and the peak RSS.
# Table 2: milliseconds per image of both steps for PRESET's network on 16x16, 28x28, 32x32 and 64x64
#          images (batch 32, every CPU), and GFLOP per image.
# Each number is the median of 3 timed steps after 1 warm-up step, from build/bench/bench_train.
set -eu

BUILD=${1:-build}
PRESET=${2:-fmnist}
BT=$BUILD/bench/bench_train
[ -x "$BT" ] || { echo "scaling: $BT is missing (make $BT)" >&2; exit 1; }
NCPU=$(nproc)

field() { # field NAME JSON
    printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}

echo "## Batch size and threads ($PRESET, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $NCPU CPUs)"
echo
echo "| batch | train img/s, 1 thread | train img/s, $NCPU threads | sample img/s, 1 thread | sample img/s, $NCPU threads | peak RSS train / sample, $NCPU threads (MB) |"
echo "|------:|------:|------:|------:|------:|------:|"
for B in 8 16 32 64 128; do
    row="| $B"
    for mode in train sample; do
        for th in 1 "$NCPU"; do
            j=$($BT "$PRESET" "$B" "$mode" 3 "$th" 1)
            row="$row | $(field img_s "$j")"
            [ "$th" = "$NCPU" ] && eval "rss_$mode=\$(field peak_rss_mb \"\$j\")"
        done
    done
    echo "$row | $rss_train / $rss_sample |"
done
echo
echo "## Image size ($PRESET's network, batch 32, $NCPU threads)"
echo
echo "| image | GFLOP per image (forward) | train ms/image | sample ms/image | train GFLOP/s | sample GFLOP/s |"
echo "|------:|------:|------:|------:|------:|------:|"
for S in 16 28 32 64; do
    jt=$($BT "$PRESET@$S" 32 train 3 0 1)
    js=$($BT "$PRESET@$S" 32 sample 3 0 1)
    awk -v s="$S" -v f="$(field flops_per_image "$jt")" -v t="$(field img_s "$jt")" -v u="$(field img_s "$js")" \
        -v gt="$(field gflops "$jt")" -v gs="$(field gflops "$js")" \
        'BEGIN { printf "| %dx%d | %.2f | %.1f | %.1f | %.1f | %.1f |\n", s, s, f / 1e9, 1000 / t, 1000 / u, gt, gs }'
done
