#!/usr/bin/python3
"""broken_grids.py -- pictures for docs/quality.md of what `ddpm eval fid` calls broken: grids of
the flagged samples (two rows dark, two white, one noisy), of samples that are out of range but not broken, and of
the unflagged ones, from a samples .npy ([n, 1, 28, 28] float, as `ddpm sample --raw` writes it)
against Fashion-MNIST's test images.

The rule (src/eval/broken.h) is redone here in numpy to pick the images, and the count is checked
against `ddpm eval fid --json` on the same files, so a picture cannot show another rule than ddpm's.

    /usr/bin/python3 tools/broken_grids.py SAMPLES.npy OUT_PREFIX [DDPM_BINARY]
writes OUT_PREFIX-broken.png, OUT_PREFIX-out-not-broken.png, OUT_PREFIX-not-broken.png.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
TAIL = 0.001


def idx_images(path):
    b = gzip.open(path).read()
    n, h, w = struct.unpack(">III", b[4:16])
    return np.frombuffer(b, np.uint8, offset=16).reshape(n, h, w).astype(np.float32) / 127.5 - 1


def looks(x):
    """[n, 3]: ink, white, rough of gray images x [n, h, w] (broken.h)."""
    x = np.clip(x, -1, 1).astype(np.float64)
    ink = (x > -0.5).mean((1, 2))
    white = (x > 0.9).mean((1, 2))
    p = np.concatenate([x[:, :, :-1].reshape(len(x), -1), x[:, :-1, :].reshape(len(x), -1)], 1)
    q = np.concatenate([x[:, :, 1:].reshape(len(x), -1), x[:, 1:, :].reshape(len(x), -1)], 1)
    vp, vq = p.var(1), q.var(1)
    cov = (p * q).mean(1) - p.mean(1) * q.mean(1)
    ok = vp * vq > 1e-12
    rough = np.where(ok, 1 - cov / np.sqrt(np.where(ok, vp * vq, 1)), 0)
    return np.stack([ink, white, rough], 1)


def order_stat(v, q):
    return np.sort(v)[int(q * (len(v) - 1))]


def png(path, g):
    h, w = g.shape
    raw = b"".join(b"\0" + g[r].tobytes() for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
                           chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def grid(path, x, rows, cols=16):
    """rows: lists of image indices, one grid row each (at most cols shown); a gray gap between images."""
    g = np.full((len(rows) * 30, cols * 30), 96, np.uint8)
    for r, idx in enumerate(rows):
        for c, i in enumerate(list(idx)[:cols]):
            g[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = np.floor((np.clip(x[i], -1, 1) + 1) * 127.5 + 0.5)
    png(path, np.kron(g, np.ones((2, 2), np.uint8)))


def main():
    samples, prefix = sys.argv[1], sys.argv[2]
    ddpm = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.environ.get("DDPM_BUILD", "build"), "ddpm")
    x = np.load(samples)[:, 0]
    ref = looks(idx_images(FMNIST))
    lo, hi_w, hi_r = order_stat(ref[:, 0], TAIL), order_stat(ref[:, 1], 1 - TAIL), order_stat(ref[:, 2], 1 - TAIL)
    mine = looks(x)
    why = np.stack([mine[:, 0] < lo, mine[:, 1] > hi_w, mine[:, 2] > hi_r], 1)
    broken = why.any(1)
    out = (np.abs(x) > 1.05).reshape(len(x), -1).mean(1) > 0.01
    with tempfile.TemporaryDirectory() as t:
        js = os.path.join(t, "q.json")
        subprocess.run([ddpm, "eval", "fid", "--samples", samples, "--ref", "fashion-mnist", "--ref-split", "test",
                        "--json", js], check=True, capture_output=True)
        q = json.load(open(js))
    want = round(q["broken"] * q["n"])
    if want != int(broken.sum()):
        sys.exit(f"broken_grids: {int(broken.sum())} broken here, {want} by ddpm eval fid: the rules differ")
    rng = np.random.default_rng(0)
    pick = lambda m: rng.permutation(np.flatnonzero(m))  # noqa: E731
    dark, white, noisy = (pick(why[:, k]) for k in range(3))
    grid(prefix + "-broken.png", x, [dark[:16], dark[16:32], white[:16], white[16:32], noisy[:16]])
    grid(prefix + "-out-not-broken.png", x, [pick(out & ~broken)[i * 16:(i + 1) * 16] for i in range(3)])
    grid(prefix + "-not-broken.png", x, [pick(~broken)[i * 16:(i + 1) * 16] for i in range(3)])
    print(f"{len(x)} samples: {int(broken.sum())} broken ({int(why[:, 0].sum())} dark, {int(why[:, 1].sum())} white, "
          f"{int(why[:, 2].sum())} noisy), {int(out.sum())} out of range, {int((out & ~broken).sum())} of them not broken"
          f" (ddpm eval fid agrees: {want})")


if __name__ == "__main__":
    main()
