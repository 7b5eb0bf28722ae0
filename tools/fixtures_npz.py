#!/usr/bin/python3
"""fixtures_npz.py -- .npz archives written by real numpy (np.savez, np.savez_compressed), read by
tests/test_npz.c, which recomputes every value below from its formula and compares exactly.
Needs numpy only (no torch). Documented in tools/FIXTURES.md ("npz_*.npz").

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures   (all fixtures)
    /usr/bin/python3 tools/fixtures_npz.py tests/fixtures    (this one alone)

Each file holds the same arrays (i, j, k index the C-order elements):
    mu       float64 [5]      (i + 1) / 3
    sigma    float64 [4, 4]   1 / (i + j + 1)
    features float32 [3, 4]   float32(k - 5.5) / float32(7), k = 4 i + j, divided in float32
    img      uint8   [2, 3]   (37 k + 5) % 256
    scalar   float64 0-d      pi
    special  float64 [7]      0, -0, inf, -inf, nan, 5e-324 (smallest subnormal), 1.7976931348623157e308
    empty    float32 [0, 3]
npz_stored.npz   np.savez (stored entries)
npz_deflated.npz np.savez_compressed (deflated entries)
npz_stream.npz   np.savez_compressed into a stream that cannot seek, so every entry has a data
                 descriptor (flag bit 3) and zero CRC and sizes in its local header
numpy writes every entry with force_zip64=True: a ZIP64 extra field in each local header.
"""
import io
import pathlib
import sys

import numpy as np


def arrays():
    k = np.arange(12, dtype=np.float32).reshape(3, 4)
    i, j = np.indices((4, 4))
    return {
        "mu": (np.arange(5, dtype=np.float64) + 1) / 3,
        "sigma": 1.0 / (i + j + 1).astype(np.float64),
        "features": (k - np.float32(5.5)) / np.float32(7),
        "img": ((37 * np.arange(6) + 5) % 256).astype(np.uint8).reshape(2, 3),
        "scalar": np.float64(np.pi),
        "special": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


class Unseekable(io.RawIOBase):
    """A write-only stream without seek or tell: zipfile then writes data descriptors."""

    def __init__(self, f):
        self.f = f

    def writable(self):
        return True

    def write(self, b):
        return self.f.write(b)


def main(outdir):
    outdir = pathlib.Path(outdir)
    a = arrays()
    assert a["features"].dtype == np.float32 and a["sigma"].dtype == np.float64
    np.savez(outdir / "npz_stored.npz", **a)
    np.savez_compressed(outdir / "npz_deflated.npz", **a)
    with open(outdir / "npz_stream.npz", "wb") as f:
        np.savez_compressed(Unseekable(f), **a)
    for name in ("npz_stored.npz", "npz_deflated.npz", "npz_stream.npz"):
        back = np.load(outdir / name)
        assert sorted(back.files) == sorted(a), back.files
        for key, v in a.items():
            assert back[key].dtype == v.dtype and np.array_equal(back[key], v, equal_nan=True), (name, key)
        print(f"  wrote {outdir / name} ({(outdir / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
