"""bench_eps.py -- the cost of the Python layer on a 1-image eps: Model.eps against the same
ddpm_model_eps called from C (a small program compiled here with gcc against the library in use) and
through cffi with nothing around it, on THREADS threads (default 1: the least noise from thread wake-ups).
Prints microseconds per call: the fastest of 15 runs of N calls (the least disturbed by other load), the
Python runs interleaved with the raw cffi ones.

    DDPM_LIBRARY=build/libddpm.so.0 PYTHONPATH=python/src python3 python/tools/bench_eps.py MODEL_DIR [N [THREADS]]
"""
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import ddpm
from ddpm._lib import ffi, lib, LIBRARY

C_PROGRAM = r"""
#include <ddpm.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    ddpm_model *m; ddpm_model_info i;
    int n = atoi(argv[2]);
    ddpm_set_threads(atoi(argv[3]));
    if (ddpm_model_load(argv[1], &m) || ddpm_model_get_info(m, &i)) return 1;
    size_t sz = (size_t)i.in_channels * i.sample_size * i.sample_size;
    float *x = calloc(sz, 4), *e = calloc(sz, 4);
    int32_t t = 500 % i.num_train_timesteps;
    for (int k = 0; k < 50; k++) ddpm_model_eps(m, 1, x, &t, NULL, e);
    for (int r = 0; r < 15; r++) {
        double t0 = ddpm_now();
        for (int k = 0; k < n; k++) if (ddpm_model_eps(m, 1, x, &t, NULL, e)) return 1;
        printf("%.3f\n", (ddpm_now() - t0) / n * 1e6);
    }
    ddpm_model_free(m);
    return 0;
}
"""


def main():
    model_dir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    threads = ddpm.set_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    repo = pathlib.Path(ddpm._lib.HEADER).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = pathlib.Path(tmp, "b.c"), pathlib.Path(tmp, "b")
        src.write_text(C_PROGRAM)
        so = pathlib.Path(LIBRARY).resolve()
        subprocess.run(["gcc", "-O2", f"-I{ddpm._lib.HEADER.parent}", f"-I{repo / 'include'}", str(src), "-o",
                        str(exe), str(so), f"-Wl,-rpath,{so.parent}"], check=True)
        out = subprocess.run([str(exe), model_dir, str(n), str(threads)], capture_output=True, text=True,
                             check=True).stdout
        c_us = min(float(v) for v in out.split())

    m = ddpm.Model.load(model_dir)
    i = m.info
    x = np.zeros((1, i.in_channels, i.sample_size, i.sample_size), dtype=np.float32)
    t = 500 % i.num_train_timesteps
    e = np.empty_like(x)
    tt = np.array([t], dtype=np.int32)
    px, pe, pt = ffi.cast("float *", x.ctypes.data), ffi.cast("float *", e.ctypes.data), ffi.cast("int32_t *", tt.ctypes.data)

    def run(fn):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    raw = lambda: lib.ddpm_model_eps(m._h, 1, px, pt, ffi.NULL, pe)  # noqa: E731
    wrapped = lambda: m.eps(x, t)  # noqa: E731
    run(raw), run(wrapped)
    raw_runs, py_runs = zip(*((run(raw), run(wrapped)) for _ in range(15)))
    raw_us, py_us = min(raw_runs), min(py_runs)
    print(f"model {model_dir}: {i.in_channels}x{i.sample_size}x{i.sample_size}, {i.num_parameters} parameters, "
          f"{threads} threads")
    print(f"C ddpm_model_eps        {c_us:9.1f} us/call")
    print(f"cffi ddpm_model_eps     {raw_us:9.1f} us/call  (+{raw_us - c_us:.1f})")
    print(f"ddpm.Model.eps          {py_us:9.1f} us/call  (+{py_us - c_us:.1f} over C, +{py_us - raw_us:.1f} over cffi)")


if __name__ == "__main__":
    main()
