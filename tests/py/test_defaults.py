#!/usr/bin/python3
"""test_defaults.py -- `ddpm sample` with no sampler flags gives what the real diffusers (0.31.0) pipeline gives
on the same model folder, for every sampler (issue 25: defaults that match the reference they name).

  1. ddpm trains a tiny model (tests/fixtures/unet_b's config, 8x8x1) and writes RUN/model: a default folder,
     whose scheduler_config.json has clip_sample true and thresholding false, as every folder ddpm writes.
  2. For each sampler, `ddpm sample --model RUN/model --n 3 --steps 10 --seed S --noise x_T.npy` and nothing
     else, against the real pipeline on the same folder, the scheduler loaded from it with from_pretrained:
       ddim     DDIMPipeline, DDIMScheduler (eta 0)
       dpm++2m  DDPMPipeline with DPMSolverMultistepScheduler (what diffusers' docs do to swap a scheduler);
                it has no clip_sample, so x0 must not be clipped
       ddpm     DDPMPipeline, DDPMScheduler with clip_sample false: ddpm's one measured departure (x0 as
                predicted; docs/quality.md, docs/diffusers.md); `--x0 config` gives DDPMScheduler as the
                folder configures it.
     The pipelines draw their noise through randn_tensor: it is replaced by the given x_T, and in
     DDPMScheduler.step by ddpm's own per-step noise (Philox-4x32-10 + Box-Muller, src/core/rng.c, written
     again below), so both sides add the same noise.
     Compared: the pipeline's images ((x/2 + 0.5) clamped to [0, 1]) with ddpm's samples.npy (clamped to
     [-1, 1]), and the last scheduler output before that clamp with the same run under --raw.
  3. The check can fail: the model's samples leave [-1, 1] far, and dpm++2m with the config's clipping
     (--x0 config) differs from diffusers.

diffusers' attention runs with tools/diffusers_fix.py's patch (Debian's torch 1.13 otherwise returns NaN
now and then).

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_defaults.py
Exits non-zero on any failure.
"""
import json
import math
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import torch

from ddpmtest import CONFIG, check, finish, fix_diffusers, tiny_idx  # noqa: E402
from ddpmtest import ddpm as run  # noqa: E402

SEED, N, STEPS = 3, 3, 10
RNG_SAMPLE = 7  # enum rng_purpose in src/core/rng.h
M32 = 0xFFFFFFFF


def philox(ctr, key):
    """Philox-4x32-10 (src/core/rng.c rng_philox)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def rng_normal(n, seed, purpose, stream):
    """src/core/rng.c rng_normal: value i of stream (seed, purpose, stream), float32."""
    key = ((seed & M32) ^ ((purpose * 0x85EBCA6B) & M32), (seed >> 32) ^ purpose)
    out = []
    for blk in range((n + 3) // 4):
        w = philox((blk & M32, blk >> 32, stream & M32, stream >> 32), key)
        for p in range(2):
            u1 = ((w[2 * p] >> 8) + 1.0) * (1.0 / 16777216.0)
            u2 = (w[2 * p + 1] >> 8) * (1.0 / 16777216.0)
            r, th = math.sqrt(-2.0 * math.log(u1)), 6.283185307179586 * u2
            out += [r * math.cos(th), r * math.sin(th)]
    return np.array(out[:n], dtype=np.float32)


def ddpm_noise(t, shape):
    """The noise ddpm's ancestral sampler adds at timestep t: image i's is rng_normal(D, seed, RNG_SAMPLE,
    rng_stream(t, i)), NHWC (the same as NCHW for one channel)."""
    n, c, h, w = shape
    assert c == 1
    return np.stack([rng_normal(c * h * w, SEED, RNG_SAMPLE, (t << 32) ^ i).reshape(c, h, w) for i in range(n)])


def pipeline(kind, folder, xT):
    """The real diffusers pipeline for sampler kind on folder, from noise xT: (images as [-1, 1] NCHW, the last
    scheduler output before the pipeline's clamp)."""
    import safetensors.torch  # noqa: F401  (diffusers reads .safetensors once this is imported)
    from diffusers import (DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler,
                           UNet2DModel)
    from diffusers.pipelines.ddim import pipeline_ddim
    from diffusers.pipelines.ddpm import pipeline_ddpm
    from diffusers.schedulers import scheduling_ddpm

    fix_diffusers()
    unet = UNet2DModel.from_pretrained(folder).float().eval()

    if kind == "ddim":
        pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_pretrained(folder))
    elif kind == "dpm++2m":
        pipe = DDPMPipeline(unet=unet, scheduler=DPMSolverMultistepScheduler.from_pretrained(folder))
    elif kind == "ddpm-noclip":
        pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_pretrained(folder, clip_sample=False))
    else:
        pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_pretrained(folder))
    pipe.set_progress_bar_config(disable=True)

    state = {}
    step = pipe.scheduler.step

    def recording_step(model_output, t, sample, *a, **k):
        state["t"] = int(t)
        out = step(model_output, t, sample, *a, **k)
        state["last"] = out.prev_sample.clone()
        return out
    pipe.scheduler.step = recording_step

    def prior(shape, **_):
        assert tuple(shape) == xT.shape
        return torch.from_numpy(xT)

    def step_noise(shape, **_):
        return torch.from_numpy(ddpm_noise(state["t"], tuple(shape)))

    saved = pipeline_ddpm.randn_tensor, pipeline_ddim.randn_tensor, scheduling_ddpm.randn_tensor
    pipeline_ddpm.randn_tensor = pipeline_ddim.randn_tensor = prior
    scheduling_ddpm.randn_tensor = step_noise
    try:
        with torch.no_grad():
            kw = {"eta": 0.0} if kind == "ddim" else {}
            img = pipe(batch_size=xT.shape[0], num_inference_steps=STEPS, output_type="np", **kw).images
    finally:
        pipeline_ddpm.randn_tensor, pipeline_ddim.randn_tensor, scheduling_ddpm.randn_tensor = saved
    return img.transpose(0, 3, 1, 2) * 2 - 1, state["last"].numpy()


def sample(tmp, folder, name, sampler, *extra):
    """`ddpm sample` with only model/n/steps/seed/noise (and extra); returns samples.npy, or None."""
    out = tmp / name
    rc, log = run("sample", "--model", folder, "--out", out, "--n", N, "--steps", STEPS, "--seed", SEED,
                  "--noise", tmp / "xT.npy", *(["--sampler", sampler] if sampler else []), *extra)
    if not check(rc == 0, f"ddpm sample {name}"):
        print(log)
        return None
    return np.load(out / "samples.npy")


def err(a, b):
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def main():
    torch.set_num_threads(1)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_defaults_"))
    rc, log = run("train", "--config", CONFIG, "--data", tiny_idx(tmp / "tiny-images-idx3-ubyte", 32), "--steps", 8,
                  "--batch", 8, "--lr", "1e-2", "--warmup", 0, "--out", tmp / "run", "--threads", 2)
    if not check(rc == 0, "ddpm train (a default model folder)"):
        print(log)
        return finish(tmp)
    folder = tmp / "run" / "model"
    sc = json.loads((folder / "scheduler_config.json").read_text())
    check(sc.get("clip_sample") is True and sc.get("thresholding") is False,
          f"the folder's scheduler_config: clip_sample {sc.get('clip_sample')}, thresholding {sc.get('thresholding')}")

    rng = np.random.default_rng(11)
    xT = rng.standard_normal((N, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT.npy", xT)

    tol = 2e-5
    cases = [("ddpm (the default sampler)", None, "ddpm-noclip", ()),
             ("ddpm", "ddpm", "ddpm-noclip", ()),
             ("ddim", "ddim", "ddim", ()),
             ("dpm++2m", "dpm++2m", "dpm++2m", ()),
             ("ddpm --x0 config", "ddpm", "ddpm", ("--x0", "config"))]
    raws = {}
    for label, sampler, ref_kind, extra in cases:
        ref, ref_raw = pipeline(ref_kind, folder, xT)
        name = label.split()[0] + ("-default" if sampler is None else "") + ("-config" if extra else "")
        got = sample(tmp, folder, name, sampler, *extra)
        raw = sample(tmp, folder, name + "-raw", sampler, *extra, "--raw")
        if got is None or raw is None:
            continue
        against = "DDPMScheduler, clip_sample false" if ref_kind == "ddpm-noclip" else \
            {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm++2m": "DPMSolverMultistepScheduler"}[ref_kind]
        check(got.shape == ref.shape and err(got, ref) < tol,
              f"{label}: samples against diffusers' pipeline with {against}: max error {err(got, ref):.2e}")
        check(raw.shape == ref_raw.shape and err(raw, ref_raw) < tol,
              f"{label}: unclamped result against the pipeline's last step: max error {err(raw, ref_raw):.2e} "
              f"(max |x| {float(np.abs(ref_raw).max()):.3g})")
        raws[name] = raw

    # A folder whose scheduler_config.json names no timestep_spacing (google/ddpm-cifar10-32's, for one): each
    # scheduler's own default applies, "linspace" for DPMSolverMultistepScheduler, "leading" for the others.
    bare = tmp / "bare"
    shutil.copytree(folder, bare)
    sc.pop("timestep_spacing", None)
    (bare / "scheduler_config.json").write_text(json.dumps(sc))
    for sampler in ("dpm++2m", "ddim"):
        ref, _ = pipeline(sampler, bare, xT)
        got = sample(tmp, bare, "bare-" + sampler, sampler)
        if got is not None:
            check(got.shape == ref.shape and err(got, ref) < tol,
                  f"{sampler} on a folder without timestep_spacing against diffusers' pipeline: max error "
                  f"{err(got, ref):.2e}")
    leading = sample(tmp, bare, "bare-dpm-leading", "dpm++2m", "--spacing", "leading")
    linspace = sample(tmp, bare, "bare-dpm++2m-again", "dpm++2m")
    if leading is not None and linspace is not None:
        check(err(leading, linspace) > 1e-3, "dpm++2m's spacing on a folder without timestep_spacing matters here")

    # The comparison can fail: clipping changes these results.
    clipped = sample(tmp, folder, "dpm-config", "dpm++2m", "--x0", "config", "--raw")
    if clipped is not None and "dpm++2m" in raws:
        check(err(clipped, raws["dpm++2m"]) > 1e-2,
              f"dpm++2m with the config's clip_sample differs from the default (max error "
              f"{err(clipped, raws['dpm++2m']):.2e})")
    if "ddpm" in raws and "ddpm-config" in raws:
        check(err(raws["ddpm"], raws["ddpm-config"]) > 1e-2, "ddpm with the config's clip_sample differs from the default")
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
