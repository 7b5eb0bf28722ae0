#!/usr/bin/python3
"""test_prediction.py -- models that predict x0 ("sample") or v ("v_prediction") instead of the noise (issue 24):
trained by ddpm with --prediction, they sample in ddpm as in the real diffusers (0.31.0) pipelines.

For each prediction type:
  1. ddpm trains a tiny model (tests/fixtures/unet_b's config, 8x8x1) with --prediction sample|v and
     --lr-schedule cosine --loss-weight min-snr (the options the run records); its scheduler_config.json must
     say the prediction_type.
  2. `ddpm sample` with each sampler (ddpm, ddim, dpm++2m, and ddpm --x0 config) against the real pipeline
     on the same folder (the harness of test_defaults.py: the same x_T, ddpm's own per-step noise in
     DDPMScheduler.step), on the images and on the last unclamped step.
  3. The check can fail: the same weights read as an epsilon model (the folder's prediction_type rewritten)
     give other images.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_prediction.py
Exits non-zero on any failure.
"""
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import torch

from ddpmtest import CONFIG, check, finish, tiny_idx  # noqa: E402
from ddpmtest import ddpm as run  # noqa: E402
from test_defaults import N, err, pipeline, sample  # noqa: E402

TOL = 2e-5


def main():
    torch.set_num_threads(1)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_prediction_"))
    rng = np.random.default_rng(12)
    xT = rng.standard_normal((N, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT.npy", xT)
    data = tiny_idx(tmp / "tiny-images-idx3-ubyte", 32)
    for flag, name in (("sample", "sample"), ("v", "v_prediction")):
        out = tmp / ("run-" + flag)
        rc, log = run("train", "--config", CONFIG, "--data", data, "--steps", 8, "--batch", 8, "--lr", "1e-2",
                      "--warmup", 0, "--out", out, "--threads", 2, "--prediction", flag, "--lr-schedule", "cosine",
                      "--loss-weight", "min-snr")
        if not check(rc == 0, f"ddpm train --prediction {flag}"):
            print(log)
            continue
        folder = out / "model"
        sc = json.loads((folder / "scheduler_config.json").read_text())
        check(sc.get("prediction_type") == name, f"--prediction {flag}: scheduler_config says {sc.get('prediction_type')}")
        results = {}
        for sampler, ref_kind, extra in (("ddpm", "ddpm-noclip", ()), ("ddim", "ddim", ()),
                                         ("dpm++2m", "dpm++2m", ()), ("ddpm", "ddpm", ("--x0", "config"))):
            ref, ref_raw = pipeline(ref_kind, folder, xT)
            label = f"{name} {sampler}" + (" --x0 config" if extra else "")
            tag = f"{flag}-{sampler}" + ("-config" if extra else "")
            got = sample(tmp, folder, tag, sampler, *extra)
            raw = sample(tmp, folder, tag + "-raw", sampler, *extra, "--raw")
            if got is None or raw is None:
                continue
            check(got.shape == ref.shape and err(got, ref) < TOL,
                  f"{label}: samples against diffusers' pipeline: max error {err(got, ref):.2e}")
            check(raw.shape == ref_raw.shape and err(raw, ref_raw) < TOL,
                  f"{label}: unclamped result against the pipeline's last step: max error {err(raw, ref_raw):.2e} "
                  f"(max |x| {float(np.abs(ref_raw).max()):.3g})")
            results[tag] = raw
        # The same weights read as an epsilon model sample to other images: the comparison can fail.
        eps_folder = tmp / ("as-epsilon-" + flag)
        shutil.copytree(folder, eps_folder)
        sc["prediction_type"] = "epsilon"
        (eps_folder / "scheduler_config.json").write_text(json.dumps(sc))
        other = sample(tmp, eps_folder, f"as-epsilon-{flag}", "ddim", "--raw")
        if other is not None and f"{flag}-ddim" in results:
            check(err(other, results[f"{flag}-ddim"]) > 1e-2,
                  f"{name}: the prediction type matters (read as epsilon, max difference "
                  f"{err(other, results[f'{flag}-ddim']):.2e})")
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
