#!/usr/bin/env python3
"""scaling_model.py -- a projection (not a measurement) of data-parallel training time per step
against the number of machines, for the cifar10 preset, from numbers measured on one machine.

    python3 bench/scaling_model.py --img-per-s 4.9 --update-s 0.15 [--params 35.7e6] [--latency-us 30]

Model of one step on N machines, each computing its share of the global batch:
    step(N) = compute(images per machine) + update + allreduce(N)
    compute(b) = b / img_per_s              (linear in the batch: optimistic for tiny shares)
    update     = Adam + EMA + gradient norm over all parameters, done by every machine (measured)
    allreduce  = 2 (N-1)/N * bytes / bandwidth + 2 log2(N) * latency
                 (recursive halving then doubling, as dist_sum_tree; bandwidth = 90% of the link)
No overlap of the sum with the backward pass (ddpm does not overlap them).
Strong scaling keeps the paper's global batch of 128 (efficiency = step(1) / (N step(N)));
weak scaling gives every machine 128 images (efficiency = step(1) / step(N)).
"""
import argparse
import math


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--img-per-s", type=float, required=True, help="training img/s of one machine (cifar10)")
    ap.add_argument("--update-s", type=float, required=True, help="seconds of Adam+EMA+norm per step")
    ap.add_argument("--params", type=float, default=35.7e6)
    ap.add_argument("--latency-us", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    nbytes = 4 * a.params

    def allreduce(n, gbps):
        if n == 1:
            return 0.0
        bw = 0.9 * gbps * 1e9 / 8
        return 2 * (n - 1) / n * nbytes / bw + 2 * math.log2(n) * a.latency_us * 1e-6

    def step(n, gbps, per_machine):
        return per_machine / a.img_per_s + a.update_s + allreduce(n, gbps)

    one = step(1, 10, a.batch)
    print(f"# projection: cifar10 preset, {a.params / 1e6:.1f}M parameters ({nbytes / 1e6:.0f} MB of gradients), "
          f"one machine {a.img_per_s} img/s, update {a.update_s} s/step; step(1) = {one:.2f} s at batch {a.batch}")
    print()
    print("| network | machines | allreduce s | strong: step s | strong: efficiency | weak: step s | weak: efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for gbps in (10, 25, 100):
        for n in (1, 8, 32, 128):
            ar = allreduce(n, gbps)
            strong = step(n, gbps, a.batch / n)
            weak = step(n, gbps, a.batch)
            print(f"| {gbps} Gb/s | {n} | {ar:.3f} | {strong:.3f} | {one / (n * strong):.0%} | {weak:.2f} | "
                  f"{one / weak:.0%} |")


if __name__ == "__main__":
    main()
