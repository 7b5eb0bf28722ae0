#!/usr/bin/python3
"""test_ctypes.py -- libddpm.so used from another language, as a binding written by someone else
would use it: Python's ctypes with nothing but include/ddpm.h's declarations.

  1. ddpm_version() is the header's DDPM_VERSION; ddpm_status_name names the codes.
  2. A missing model folder: ddpm_model_load returns DDPM_ERR_INPUT and ddpm_errmsg(NULL) names it.
  3. A tiny model trained by `ddpm train`: ddpm_model_eps through ctypes (NCHW float32) equals the
     real diffusers UNet2DModel.from_pretrained(RUN/model) on the same x and t.
  4. ddpm_sample with a ctypes mirror of ddpm_sample_options (after ddpm_sample_options_init): DDIM
     samples equal `ddpm sample`'s samples.npy bit for bit (5 images: an unsharded network, so both
     run with the same explicit thread count; docs/determinism.md), the progress callback sees every
     network call, and a callback returning non-zero cancels (DDPM_ERR_CANCELLED after exactly 3 calls).

A library built with SAN=1 needs the sanitizer runtimes loaded first: the test then runs itself again
with them in LD_PRELOAD (and LeakSanitizer off: Python's own allocations are not ours to check).

diffusers' attention runs with tools/diffusers_fix.py's patch (Debian's torch 1.13 otherwise returns NaN
now and then).

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_ctypes.py
Exits non-zero on any failure.
"""
import ctypes as C
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

from ddpmtest import BUILD, CONFIG, check, ddpm, finish, fix_diffusers, tiny_idx

DDPM_ERR_INPUT, DDPM_ERR_CANCELLED = 2, 6
THREADS = 2
PROGRESS = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_longlong, C.c_longlong)


class SampleOptions(C.Structure):
    """ddpm_sample_options, field for field (include/ddpm.h)."""
    _fields_ = [("sampler", C.c_int), ("steps", C.c_int), ("eta", C.c_float), ("seed", C.c_uint64),
                ("spacing", C.c_char_p), ("x0", C.c_int), ("threshold_ratio", C.c_float),
                ("threshold_max", C.c_float), ("raw", C.c_int), ("batch", C.c_int),
                ("classes", C.POINTER(C.c_int32)), ("guidance", C.c_float), ("guidance_rescale", C.c_float),
                ("noise", C.POINTER(C.c_float)), ("start_t", C.c_int), ("ntrack", C.c_int),
                ("track_t", C.POINTER(C.c_int)), ("track_x0", C.POINTER(C.c_float)), ("first_index", C.c_int),
                ("progress", PROGRESS), ("progress_ctx", C.c_void_p), ("precision", C.c_char_p),
                ("guidance_interval", C.c_float * 2)]


def floats(a):
    return a.ctypes.data_as(C.POINTER(C.c_float))


LIBRARY = str(pathlib.Path(BUILD, "libddpm.so.0").resolve())


def preload_sanitizers():
    """Re-runs this test with the ASan/UBSan runtimes preloaded when LIBRARY needs them."""
    needed = subprocess.run(["readelf", "-d", LIBRARY], capture_output=True, text=True).stdout
    runtimes = [subprocess.run(["gcc", f"-print-file-name={r}.so"], capture_output=True, text=True).stdout.strip()
                for r in ("libasan", "libubsan") if r + ".so" in needed]
    if runtimes and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        env = dict(os.environ, LD_PRELOAD=" ".join(runtimes), ASAN_OPTIONS="detect_leaks=0")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def load_library():
    lib = C.CDLL(LIBRARY)
    lib.ddpm_version.restype = C.c_char_p
    lib.ddpm_status_name.restype = C.c_char_p
    lib.ddpm_errmsg.restype = C.c_char_p
    lib.ddpm_errmsg.argtypes = [C.c_void_p]
    lib.ddpm_set_threads.argtypes = [C.c_int]
    lib.ddpm_model_load.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
    lib.ddpm_model_free.argtypes = [C.c_void_p]
    lib.ddpm_model_eps.argtypes = [C.c_void_p, C.c_int, C.POINTER(C.c_float), C.POINTER(C.c_int32),
                                   C.POINTER(C.c_int32), C.POINTER(C.c_float)]
    lib.ddpm_sample_options_init.argtypes = [C.POINTER(SampleOptions)]
    lib.ddpm_sample.argtypes = [C.c_void_p, C.POINTER(SampleOptions), C.c_int, C.POINTER(C.c_float), C.c_void_p]
    return lib


def main():
    import safetensors.torch  # noqa: F401  (diffusers reads .safetensors once this is imported)
    from diffusers import UNet2DModel
    fix_diffusers()

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_ctypes_"))
    lib = load_library()
    # The thread count of every `ddpm` run below too: a network of fewer than 8 images rounds by it.
    lib.ddpm_set_threads(THREADS)

    header = pathlib.Path("include/ddpm.h").read_text()
    want = re.search(r'#define DDPM_VERSION "([^"]+)"', header).group(1)
    got = lib.ddpm_version().decode()
    check(got == want, f"ddpm_version() {got!r} is the header's DDPM_VERSION {want!r}")
    check(lib.ddpm_status_name(DDPM_ERR_CANCELLED) == b"cancelled", "ddpm_status_name(DDPM_ERR_CANCELLED)")

    m = C.c_void_p()
    missing = str(tmp / "no-such-model").encode()
    st = lib.ddpm_model_load(missing, C.byref(m))
    msg = lib.ddpm_errmsg(None).decode()
    check(st == DDPM_ERR_INPUT and "no-such-model" in msg and not m.value,
          f"a missing folder: status {st}, message {msg!r}")

    run = tmp / "run"
    rc, log = ddpm("train", "--config", CONFIG, "--data", tiny_idx(tmp / "tiny-images-idx3-ubyte", 32), "--steps", 8,
                   "--batch", 8, "--lr", "1e-2", "--warmup", 0, "--out", run, "--threads", THREADS)
    if not check(rc == 0, "ddpm train (a tiny model)"):
        print(log)
        return finish(tmp)
    st = lib.ddpm_model_load(str(run).encode(), C.byref(m))
    why = "" if st == 0 else " " + lib.ddpm_errmsg(None).decode()
    if not check(st == 0 and m.value, f"ddpm_model_load(RUN): status {st}{why}"):
        return finish(tmp)

    # eps against diffusers.
    rng = np.random.default_rng(7)
    n = 3
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    t = np.array([0, 400, 999], dtype=np.int32)
    eps = np.zeros_like(x)
    st = lib.ddpm_model_eps(m, n, floats(x), t.ctypes.data_as(C.POINTER(C.c_int32)), None, floats(eps))
    check(st == 0, f"ddpm_model_eps: status {st}")
    model = UNet2DModel.from_pretrained(run / "model").float().eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(t).long()).sample.numpy()
    err = float(np.abs(eps - ref).max())
    check(err < 1e-5 * max(1.0, float(np.abs(ref).max())), f"ddpm_model_eps against diffusers: max |diff| {err:.2e}")

    # Sampling through the options struct, against the CLI.
    calls = []

    @PROGRESS
    def count(ctx, done, total):
        calls.append((done, total))
        return 0

    o = SampleOptions()
    lib.ddpm_sample_options_init(C.byref(o))
    check(o.batch == 64 and o.guidance < 0 and o.steps == 0 and list(o.guidance_interval) == [0.0, 2.0],
          "ddpm_sample_options_init's defaults, seen through ctypes (the last field too: the mirror is whole)")
    o.sampler, o.steps, o.seed, o.progress = 1, 10, 11, count  # DDIM
    k = 5
    xs = np.zeros((k, 1, 8, 8), dtype=np.float32)
    st = lib.ddpm_sample(m, C.byref(o), k, floats(xs), None)
    check(st == 0 and calls and calls[-1] == (10, 10), f"ddpm_sample (DDIM, 10 steps): status {st}, progress {calls[-1:]}")
    rc, log = ddpm("sample", "--model", run, "--sampler", "ddim", "--steps", 10, "--seed", 11, "--n", k,
                   "--out", tmp / "s", "--threads", THREADS)
    check(rc == 0, "ddpm sample")
    cli = np.load(tmp / "s" / "samples.npy") if rc == 0 else None
    check(cli is not None and np.array_equal(cli, xs), "ddpm_sample through ctypes equals `ddpm sample` bit for bit")

    @PROGRESS
    def cancel(ctx, done, total):
        calls.append(done)
        return done >= 3

    calls.clear()
    o.progress = cancel
    st = lib.ddpm_sample(m, C.byref(o), k, floats(xs), None)
    msg = lib.ddpm_errmsg(C.c_void_p(m.value)).decode()
    check(st == DDPM_ERR_CANCELLED and calls == [1, 2, 3] and msg,
          f"a progress callback returning 1: status {st} after calls {calls}, message {msg!r}")
    lib.ddpm_model_free(m)
    return finish(tmp)


if __name__ == "__main__":
    preload_sanitizers()
    sys.exit(main())
