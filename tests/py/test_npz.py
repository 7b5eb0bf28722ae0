#!/usr/bin/python3
"""test_npz.py -- numpy reads the .npz that ddpm's C writer (src/io/npz.c) produced.

How the two sides meet: tests/test_npz.c (test_handoff) writes npz_roundtrip.npz next to its own
binary, i.e. $DDPM_BUILD/tests/npz_roundtrip.npz; scripts/run-tests.sh runs the C tests before the
Python ones and sets DDPM_BUILD (default here: build). This test recomputes every array from the
same formulas as rt_fill() in tests/test_npz.c and requires np.load to give exactly those values,
dtypes and shapes, and zipfile (and Info-ZIP's unzip -t, when installed) to find every CRC-32
correct. (The other direction, C reading
numpy's files, is tests/fixtures/npz_*.npz from tools/fixtures_npz.py.)

    /usr/bin/python3 tests/py/test_npz.py        (after build/tests/test_npz)
Exits non-zero on any failure.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np

D, N, K = 400, 50, 10


def expected():
    i, j = np.indices((D, D))
    return {
        "mu": (np.arange(D) + 1) / 7.0 - 20.0,
        "sigma": 1.0 / (i + j + 1) + np.eye(D),
        "features": (np.arange(N * D) % 1000).astype(np.float32).reshape(N, D) / np.float32(3),
        "logits": (np.arange(N)[:, None] - np.arange(K)[None, :]).astype(np.float32) * np.float32(0.25),
        "img": ((np.arange(24) * 37 + 5) % 256).astype(np.uint8).reshape(2, 3, 4),
        "scalar": np.float64(1.0 / 3.0),
        "special": np.array([-0.0, np.inf, -np.inf, np.nan, 5e-324]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def main():
    build = pathlib.Path(os.environ.get("DDPM_BUILD", "build"))
    path = build / "tests" / "npz_roundtrip.npz"
    if not path.exists():
        print(f"FAIL: {path} is missing; run {build}/tests/test_npz first (it writes the file)")
        return 1
    failures = 0

    def check(cond, what):
        nonlocal failures
        print(f"  {'ok  ' if cond else 'FAIL'} {what}")
        failures += not cond

    with zipfile.ZipFile(path) as z:
        check(z.testzip() is None, "zipfile: every CRC-32 correct")
        infos = z.infolist()
        check([i.filename for i in infos] == [k + ".npy" for k in expected()], "entry names and order")
        check(all(i.compress_type == zipfile.ZIP_STORED for i in infos), "stored entries")
    if shutil.which("unzip"):  # a second, independent zip reader (Info-ZIP), when installed
        r = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True)
        check(r.returncode == 0, f"unzip -tq: {(r.stdout + r.stderr).strip()}")
    want = expected()
    with np.load(path) as got:
        check(list(got.files) == list(want), f"np.load files {got.files}")
        for name, w in want.items():
            if name not in got.files:
                continue
            g = got[name]
            same = g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w, equal_nan=True)
            if same and g.dtype.kind == "f":  # signs of zeros too
                same = bool(np.array_equal(np.signbit(g), np.signbit(w)))
            check(same, f"{name}: {g.dtype} {g.shape} exact")
    print(f"test_npz.py: {failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
