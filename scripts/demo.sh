#!/usr/bin/env bash
# demo.sh [DDPM_BIN] -- the README's main job: train the fmnist-small U-Net on
# Fashion-MNIST for a bounded time, then sample 64 images to a grid.
#   DEMO_OUT   run folder            (default runs/demo; an existing run is continued)
#   DEMO_TIME  training time budget  (default 12m; the whole demo stays under 15 minutes on 2 cores)
#   DEMO_CLASSES=1  a class-conditional model (`make demo-classes`, default run folder
#              runs/demo-classes): the grid has one row of 8 per Fashion-MNIST class, drawn
#              with classifier-free guidance DEMO_GUIDANCE (default 3, docs/classes.md)
# The recipe is --recipe short (docs/quality.md): the paper's network with the batch,
# learning rate (decaying on a cosine to the end of the budget), warm-up, EMA decay,
# dropout (none) and Min-SNR loss weights that measured best on 2 CPU cores. Sampling uses `ddpm sample`'s default sampler
# (ancestral, 50 network calls).
set -euo pipefail
bin=${1:-build/ddpm}
classes=${DEMO_CLASSES:-0}
guidance=${DEMO_GUIDANCE:-3}
if [ "$classes" = 1 ]; then out=${DEMO_OUT:-runs/demo-classes}; else out=${DEMO_OUT:-runs/demo}; fi
budget=${DEMO_TIME:-12m}
fid_n=${DEMO_FID_N:-1000}
start=$(date +%s)

if [ -e "$out/training_state.safetensors" ]; then
    echo "demo: continuing the run in $out for $budget"
    "$bin" train --out "$out" --resume --time "$budget"
else
    cond=()
    [ "$classes" = 1 ] && cond=(--classes)
    echo "demo: training fmnist-small on Fashion-MNIST for $budget into $out ${cond[*]}"
    "$bin" train --out "$out" --preset fmnist-small --recipe short --time "$budget" --log-every 100 "${cond[@]}"
fi
trained=$(date +%s)

if [ "$classes" = 1 ]; then
    echo "demo: sampling 8 images of each class from the EMA weights, guidance $guidance (one row per class)"
    "$bin" sample --model "$out" --out "$out/samples" --per-class 8 --guidance "$guidance" --seed 0
else
    echo "demo: sampling 64 images from the EMA weights"
    "$bin" sample --model "$out" --out "$out/samples" --n 64 --seed 0
fi
sampled=$(date +%s)

if [ "$fid_n" -gt 0 ]; then
    echo "demo: FID (F-MNIST features) of $fid_n samples against the 10,000 test images"
    "$bin" eval fid --samples "$out" --n "$fid_n" --seed 1 \
        --ref fashion-mnist --ref-split test --json "$out/fid.json"
fi
end=$(date +%s)

echo "demo: training $((trained - start)) s, sampling $((sampled - trained)) s, FID $((end - sampled)) s, total $((end - start)) s"
echo "demo: grid at $out/samples/grid.png; model folder (diffusers layout) at $out/model; FID in $out/fid.json"
