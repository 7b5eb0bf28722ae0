"""test_memory.py -- 1000 load/sample/free cycles of the tiny model leave the process's resident memory
where it was after the first 200 (no leak in the package's handles, buffers, callbacks or the library)."""
import gc

import numpy as np

import ddpm

CYCLES, WARMUP = 1000, 200
# A leak of 1 KiB a cycle would add 800 KiB; the allocators' noise after warm-up is far below this.
LIMIT = 512 * 1024


def rss():
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_load_sample_free_cycles(tiny_run):
    base = None
    for i in range(CYCLES):
        m = ddpm.Model.load(tiny_run)
        x = m.sample(1, sampler="ddim", steps=2, seed=i, progress=lambda d, t: False)
        assert x.shape == (1, 1, 8, 8) and np.isfinite(x).all()
        m.close()
        if i + 1 == WARMUP:
            gc.collect()
            base = rss()
    gc.collect()
    grown = rss() - base
    assert grown < LIMIT, f"resident memory grew {grown / 1024:.0f} KiB over {CYCLES - WARMUP} cycles"
