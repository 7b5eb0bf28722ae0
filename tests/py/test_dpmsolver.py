#!/usr/bin/python3
"""test_dpmsolver.py -- `ddpm sample --sampler dpm++2m` against the real diffusers (0.31, from PyPI).

1. The committed fixture tests/fixtures/dpmsolver.safetensors (which tests/test_sampler.c checks
   step by step) is exactly what tools/fixtures_dpmsolver.py makes with the installed diffusers:
   the C parity test is held against the real scheduler, not a stale or hand-made file.
2. End to end: the fixture model tests/fixtures/unet_b loaded by diffusers' UNet2DModel and sampled
   with diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, lower_order_final) from a
   given x_T gives the samples that `ddpm sample --noise x_T --sampler dpm++2m --raw` writes, for
   each timestep spacing, and with dynamic thresholding.
3. The samples contract: without --raw, samples.npy is the raw result clamped to [-1, 1].

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_dpmsolver.py
Exits non-zero on any failure (also when diffusers is missing: the test command installs it).
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import safetensors.torch  # noqa: F401  (diffusers loads .safetensors only once this is imported)
import torch
from diffusers import DPMSolverMultistepScheduler, UNet2DModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
import diffusers_fix  # noqa: E402

diffusers_fix.patch()

ROOT = pathlib.Path(__file__).resolve().parents[2]
DDPM = ROOT / os.environ.get("DDPM_BUILD", "build") / "ddpm"
MODEL = ROOT / "tests/fixtures/unet_b"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def fixture_is_current():
    import fixtures_dpmsolver
    with tempfile.TemporaryDirectory() as tmp:
        fixtures_dpmsolver.main(tmp)
        fresh = (pathlib.Path(tmp) / "dpmsolver.safetensors").read_bytes()
    committed = (ROOT / "tests/fixtures/dpmsolver.safetensors").read_bytes()
    check(fresh == committed, "tests/fixtures/dpmsolver.safetensors equals what the installed diffusers makes")


def diffusers_samples(xT, steps, spacing, thresholding=None):
    unet = UNet2DModel.from_pretrained(str(MODEL)).eval()
    cfg = json.loads((MODEL / "scheduler_config.json").read_text())
    kw = {}
    if thresholding:
        kw = dict(thresholding=True, dynamic_thresholding_ratio=thresholding[0], sample_max_value=thresholding[1])
    sch = DPMSolverMultistepScheduler(num_train_timesteps=cfg["num_train_timesteps"], beta_start=cfg["beta_start"],
                                      beta_end=cfg["beta_end"], beta_schedule=cfg["beta_schedule"],
                                      algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                                      timestep_spacing=spacing, **kw)
    sch.set_timesteps(steps)
    x = torch.from_numpy(xT)
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(unet(x, t).sample, t, x).prev_sample
    return x.numpy()


def ddpm_samples(tmp, xT, steps, spacing, raw=True, thresholding=None):
    np.save(tmp / "xT.npy", xT)
    out = tmp / "out"
    cmd = [str(DDPM), "sample", "--model", str(MODEL), "--out", str(out), "--noise", str(tmp / "xT.npy"),
           "--sampler", "dpm++2m", "--steps", str(steps), "--spacing", spacing, "--threads", "1"]
    cmd += ["--x0", "threshold", "--threshold", str(thresholding[0]), "--threshold-max", str(thresholding[1])] \
        if thresholding else ["--x0", "none"]
    if raw:
        cmd.append("--raw")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        raise SystemExit(f"ddpm sample failed ({r.returncode})")
    return np.load(out / "samples.npy"), r.stderr


def end_to_end():
    rng = np.random.default_rng(7)
    xT = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = pathlib.Path(tmpname)
        for steps, spacing, thr in [(12, "linspace", None), (7, "leading", None), (25, "trailing", None),
                                    (10, "linspace", (0.9, 1.5))]:
            ref = diffusers_samples(xT, steps, spacing, thr)
            got, _ = ddpm_samples(tmp, xT, steps, spacing, True, thr)
            err = float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))
            check(got.shape == ref.shape and err < 1e-4,
                  f"dpm++2m {steps} steps, {spacing}{', thresholding' if thr else ''}: max error {err:.2e} vs diffusers")
        raw, _ = ddpm_samples(tmp, xT, 12, "linspace", True)
        clamped, log = ddpm_samples(tmp, xT, 12, "linspace", False)
        check(float(np.abs(raw).max()) > 1, f"the fixture model's raw samples leave [-1, 1] (max |x| {np.abs(raw).max():.3g})")
        check(np.array_equal(clamped, np.clip(raw, -1, 1)), "samples.npy without --raw is the raw result clamped to [-1, 1]")
        check("beyond +-1.05" in log and "out of range (more than 1% of their pixels)" in log,
              "ddpm sample reports the out-of-range share of pixels and of images")


if __name__ == "__main__":
    torch.set_num_threads(1)
    fixture_is_current()
    end_to_end()
    print(f"test_dpmsolver: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)
