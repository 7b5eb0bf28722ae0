#!/usr/bin/env bash
# same-bits.sh OLD_DDPM NEW_DDPM -- checks that a refactor changed no bits: runs the same jobs with
# two ddpm binaries (e.g. one built from the commit before, in a git worktree) and compares what
# they write, byte for byte:
#   train: --recipe short, 40 steps on 2000 Fashion-MNIST images, 2 threads, a grid and an FID at
#          step 40; then --resume to step 60 (weights, training state, grids, metrics.jsonl without
#          its timings);
#   a conditional run (--classes, 20 steps) and its --per-class samples with guidance 3;
#   sample: 16 images with each sampler (ddpm, ddim, dpm++2m, dpm++2m --x0 config);
#   eval fid: 100 samples of the model against the test split (the JSON without timings).
# Prints one line per file, "same" or "DIFFERENT", and exits 1 on any difference.
# Takes about 4 minutes per binary on 2 cores.
set -u
[ $# -eq 2 ] || { echo "usage: $0 OLD_DDPM NEW_DDPM" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

jobs() { # $1 = binary, $2 = output folder
    local d=$1 o=$2
    mkdir -p "$o"
    "$d" train --recipe short --steps 40 --limit 2000 --threads 2 --out "$o/run" --log-every 10 \
        --sample-every 40 --eval-every 40 --eval-n 100 > "$o/train.log" 2>&1 || echo "train failed: $o" >&2
    "$d" train --resume --steps 60 --threads 2 --out "$o/run" > "$o/resume.log" 2>&1 || echo "resume failed: $o" >&2
    "$d" train --recipe short --steps 20 --limit 2000 --classes --threads 2 --out "$o/cls" --log-every 10 \
        > "$o/cls.log" 2>&1 || echo "conditional train failed: $o" >&2
    "$d" sample --model "$o/cls" --out "$o/s-cls" --per-class 2 --threads 2 > /dev/null 2>&1 ||
        echo "conditional sample failed: $o" >&2
    for s in ddpm ddim dpm++2m; do
        "$d" sample --model "$o/run" --out "$o/s-$s" --n 16 --sampler "$s" --threads 2 > /dev/null 2>&1 ||
            echo "sample $s failed: $o" >&2
    done
    "$d" sample --model "$o/run" --out "$o/s-dpm-x0" --n 16 --sampler dpm++2m --x0 config --threads 2 \
        > /dev/null 2>&1 || echo "sample dpm++2m --x0 config failed: $o" >&2
    "$d" eval fid --samples "$o/run" --n 100 --steps 5 --ref fashion-mnist --ref-split test --threads 2 \
        --json "$o/fid.json" > /dev/null 2>&1 || echo "eval fid failed: $o" >&2
    # Timings differ from run to run: drop them.
    for f in "$o/run/metrics.jsonl" "$o/cls/metrics.jsonl" "$o/fid.json"; do
        [ -f "$f" ] && sed -E 's/"(img_per_s|elapsed_s|eval_s|seconds|[a-z_]*_s)":[^,}]*,?//g' "$f" > "$f.stable"
    done
}

jobs "$1" "$tmp/old"
jobs "$2" "$tmp/new"
rc=0
cd "$tmp/old" || exit 1
files=$(find . -type f \( -name '*.safetensors' -o -name '*.npy' -o -name '*.png' -o -name '*.stable' \
         -o -name '*.json' ! -name 'fid.json' \) ! -path '*/samples/0*' | sort) # the images: in samples.npy
[ "$(echo "$files" | grep -c .)" -ge 30 ] && [ -s fid.json.stable ] || { echo "too few outputs: a job failed"; rc=1; }
for f in $files; do
    if cmp -s "$f" "$tmp/new/$f"; then echo "same       $f $(sha256sum < "$f" | cut -c1-12)"
    else echo "DIFFERENT  $f"; rc=1; fi
done
exit $rc
