#!/usr/bin/python3
"""fid_validation.py -- validates a feature network for FID as Heusel et al. (2017,
Appendix A1) validated Inception FID: real images disturbed at rising strength
must score a rising FID. Prints the Markdown table of docs/fid.md.

    /usr/bin/python3 tools/fid_validation.py [--ddpm build/ddpm] [--n 1000] [--features fmnist]

Samples: the first N Fashion-MNIST *train* images, disturbed; reference: the
statistics of the 10,000 test images (made once with `ddpm eval stats`). The
disturbances, with strength alpha in {0, 0.1, 0.25, 0.5, 0.75}:
  gaussian noise   (1 - alpha) x + alpha n, n ~ N(127.5, 127.5^2) clipped to [0, 255]
  gaussian blur    a Gaussian kernel of standard deviation 4 alpha pixels
  salt and pepper  a fraction alpha/2 of the pixels set to 0 or 255 (half each)
  black rectangles 5 rectangles of side alpha * 28 / 2 at random places, set to 0
Only numpy and scipy.ndimage are used to disturb; ddpm computes every FID.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage

DATA = "/usr/share/datasets/fashion-mnist"
ALPHAS = [0.0, 0.1, 0.25, 0.5, 0.75]


def idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w).astype(np.float64)


def gaussian_noise(x, a, rng):
    n = np.clip(rng.normal(127.5, 127.5, x.shape), 0, 255)
    return (1 - a) * x + a * n


def blur(x, a, rng):
    return x if a == 0 else np.stack([ndimage.gaussian_filter(im, 4 * a, mode="nearest") for im in x])


def salt_pepper(x, a, rng):
    y = x.copy()
    u = rng.random(x.shape)
    y[u < a / 4] = 0
    y[(u >= a / 4) & (u < a / 2)] = 255
    return y


def rectangles(x, a, rng):
    y = x.copy()
    s = int(round(a * 28 / 2))
    if s == 0:
        return y
    for im in y:
        for _ in range(5):
            r, c = rng.integers(0, 28 - s + 1, 2)
            im[r:r + s, c:c + s] = 0
    return y


KINDS = [("Gaussian noise", gaussian_noise), ("Gaussian blur", blur), ("salt and pepper", salt_pepper),
         ("black rectangles", rectangles)]


def fid(ddpm, samples, ref, features, tmp):
    out = os.path.join(tmp, "fid.json")
    subprocess.run([ddpm, "eval", "fid", "--samples", samples, "--ref", ref, "--features", features, "--json", out],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ddpm", default="build/ddpm")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--features", default="fmnist")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x = idx_images(os.path.join(DATA, "train-images-idx3-ubyte.gz"))[: a.n]
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "test.npz")
        subprocess.run([a.ddpm, "eval", "stats", "--data", "fashion-mnist", "--split", "test", "--features",
                        a.features, "--save-features", "--out", ref], check=True, stdout=subprocess.DEVNULL)
        rows, monotone = [], True
        for name, fn in KINDS:
            rng = np.random.default_rng(a.seed)
            vals = []
            for alpha in ALPHAS:
                y = np.clip(np.rint(fn(x, alpha, rng)), 0, 255).astype(np.uint8)[:, None]  # NCHW uint8
                path = os.path.join(tmp, "s.npy")
                np.save(path, y)
                vals.append(fid(a.ddpm, path, ref, a.features, tmp))
            fids = [v["fid"] for v in vals]
            ok = all(b > c for b, c in zip(fids[1:], fids[:-1]))
            monotone &= ok
            rows.append((name, vals, ok))
            print(f"{name}: " + ", ".join(f"{v:.2f}" for v in fids) + ("" if ok else "  NOT MONOTONE"),
                  file=sys.stderr)
    print(f"| disturbance ({a.n} train images vs test stats) | " + " | ".join(f"alpha {al}" for al in ALPHAS) +
          " | rises |")
    print("|---|" + "---:|" * len(ALPHAS) + ":-:|")
    for name, vals, ok in rows:
        cells = " | ".join(f"{v['fid']:.2f} (P {v['precision']:.2f}, R {v['recall']:.2f})" for v in vals)
        print(f"| {name} | {cells} | {'yes' if ok else '**no**'} |")
    return 0 if monotone else 1


if __name__ == "__main__":
    sys.exit(main())
