#!/usr/bin/python3
"""test_learned_variance.py -- model folders with a learned variance (Improved DDPM, Nichol & Dhariwal 2021):
diffusers' UNet2DModel with out_channels 2C and DDPMScheduler variance_type "learned_range" (issue 24).

  1. A tiny UNet2DModel (tests/fixtures/unet_b's config, out_channels 2) with seeded random weights, saved by
     the real diffusers (0.31.0) with a DDPMScheduler config of variance_type learned_range.
  2. `ddpm eps` equals the model's output, both halves (the mean half, then the variance half).
  3. `ddpm sample --sampler ddpm` equals diffusers' DDPMPipeline on the folder (the harness of
     test_defaults.py: the same x_T, ddpm's own per-step noise), with x0 as predicted (the default; against
     clip_sample false) and as configured (--x0 config).
  4. The check can fail: the same noise through DDPMScheduler with the fixed_small variance on the mean half
     alone gives other images.
  6. A folder ddpm trains with --variance learned_range (see trained()).
  7. Guidance with a learned variance (see guided()).
  5. `ddpm eval nll` runs on the folder (T = 100) and gives finite, non-negative terms (not checked against a
     reference implementation); the folder's config rewritten to
     fixed_small is refused with a message that names the variance type.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_learned_variance.py
Exits non-zero on any failure.
"""
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import torch

from ddpmtest import CONFIG, check, finish, fix_diffusers, tiny_idx, write_idx  # noqa: E402
from ddpmtest import ddpm as run  # noqa: E402
from test_defaults import N, SEED, STEPS, ddpm_noise, err, pipeline, sample  # noqa: E402

TOL = 2e-5


def make_folder(path):
    import safetensors.torch  # noqa: F401
    from diffusers import DDPMScheduler, UNet2DModel
    fix_diffusers()
    cfg = json.loads(pathlib.Path(CONFIG).read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["out_channels"] = 2 * cfg.get("in_channels", 1)
    torch.manual_seed(5)
    unet = UNet2DModel.from_config(cfg)
    with torch.no_grad():
        for p in unet.parameters():  # random weights large enough that both halves matter
            p.add_(0.05 * torch.randn_like(p))
    unet.save_pretrained(path, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=100, variance_type="learned_range").save_pretrained(path)
    return unet.eval()


def main():
    torch.set_num_threads(1)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_learned_"))
    folder = tmp / "model"
    unet = make_folder(folder)

    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    rc, log = run("eps", "--model", folder, "--x", tmp / "x.npy", "--t", 50, "--out", tmp / "eps.npy")
    if check(rc == 0, "ddpm eps on a learned-variance folder"):
        ours = np.load(tmp / "eps.npy")
        with torch.no_grad():
            ref = unet(torch.from_numpy(x), 50).sample.numpy()
        check(ours.shape == ref.shape == (2, 2, 8, 8) and err(ours, ref) < 1e-5,
              f"eps, both halves, against diffusers: shape {ours.shape}, max error {err(ours, ref):.2e}")
    else:
        print(log)

    xT = rng.standard_normal((N, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT.npy", xT)
    got = {}
    for label, ref_kind, extra in (("x0 as predicted", "ddpm-noclip", ()), ("--x0 config", "ddpm", ("--x0", "config"))):
        ref, ref_raw = pipeline(ref_kind, folder, xT)
        tag = "learned" + ("-config" if extra else "")
        s = sample(tmp, folder, tag, "ddpm", *extra)
        raw = sample(tmp, folder, tag + "-raw", "ddpm", *extra, "--raw")
        if s is None or raw is None:
            continue
        check(s.shape == ref.shape and err(s, ref) < TOL,
              f"learned_range, {label}: samples against diffusers' DDPMPipeline: max error {err(s, ref):.2e}")
        check(raw.shape == ref_raw.shape and err(raw, ref_raw) < TOL,
              f"learned_range, {label}: unclamped, against the pipeline's last step: max error {err(raw, ref_raw):.2e}")
        got[tag] = raw

    # The variance half matters: the fixed_small update on the mean half alone (DDPMScheduler.step's formulas,
    # by hand so that ddpm's per-step noise goes in), the same x_T, is another result.
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(num_train_timesteps=100)
    sched.set_timesteps(STEPS)
    ts = [int(t) for t in sched.timesteps]
    xs = torch.from_numpy(xT).double()
    with torch.no_grad():
        for k, t in enumerate(ts):
            prev = ts[k + 1] if k + 1 < len(ts) else -1
            ab = float(sched.alphas_cumprod[t])
            abp = float(sched.alphas_cumprod[prev]) if prev >= 0 else 1.0
            xin = xs.float()
            eps = unet(xin, t).sample[:, :1].double()
            x0 = (xs - (1 - ab) ** 0.5 * eps) / ab ** 0.5
            beta = 1 - ab / abp
            mean = abp ** 0.5 * beta / (1 - ab) * x0 + (ab / abp) ** 0.5 * (1 - abp) / (1 - ab) * xs
            var = max((1 - abp) / (1 - ab) * beta, 1e-20)
            xs = mean + (var ** 0.5 * torch.from_numpy(ddpm_noise(t, tuple(xs.shape))).double() if t > 0 else 0)
    if "learned" in got:
        d = err(got["learned"], xs.float().numpy())
        check(d > 1e-3, f"the variance half matters: fixed_small on the mean half differs by {d:.2e}")

    rc, log = run("eval", "nll", "--model", folder, "--data", tiny_idx(tmp / "tiny-images-idx3-ubyte", 2), "--n", 2,
                  "--csv", tmp / "nll.csv")
    rows = (tmp / "nll.csv").read_text().splitlines()[1:] if rc == 0 and (tmp / "nll.csv").exists() else []
    ok = len(rows) == 101 and all(np.isfinite(float(r.split(",")[1])) and float(r.split(",")[1]) >= 0 for r in rows)
    if not check(ok, "ddpm eval nll on a learned-variance folder"):
        print(log)
    fixed = tmp / "fixed"
    shutil.copytree(folder, fixed)
    sc = json.loads((fixed / "scheduler_config.json").read_text())
    sc["variance_type"] = "fixed_small"
    (fixed / "scheduler_config.json").write_text(json.dumps(sc))
    rc, log = run("sample", "--model", fixed, "--out", tmp / "refused", "--n", 1, "--steps", 2)
    check(rc != 0 and "fixed_small" in log, f"a 2C-output folder with fixed_small is refused: exit {rc}: "
          f"{log.strip().splitlines()[-1] if log.strip() else ''}")
    trained(tmp, rng)
    guided(tmp, rng)
    return finish(tmp)


def guided(tmp, rng):
    """7. Guidance with a learned variance, as diffusers' pixel-space guided pipelines do it (DiTPipeline):
    the mean halves mixed, eps = eps(null) + W (eps(y) - eps(null)), the variance half the conditional
    row's. A conditional model trained here (--classes --variance learned_range), `ddpm sample --class 1,2
    --guidance 3` against that rule in a loop of the real DDPMScheduler (learned_range) with ddpm's noise."""
    from diffusers import DDPMScheduler, UNet2DModel
    fix_diffusers()
    n = 32
    labels = np.arange(n) % 4
    img = (np.arange(n * 64) * 7919 % 256).astype(np.uint8)
    data = write_idx(tmp / "cls-images-idx3-ubyte", (img.tobytes(), n, 8, 8), labels.astype(np.uint8).tobytes())
    out = tmp / "run-cls"
    rc, log = run("train", "--config", CONFIG, "--data", data, "--steps", 8, "--batch", 8, "--lr", "1e-2", "--warmup",
                  0, "--out", out, "--threads", 2, "--classes", "--variance", "learned_range")
    if not check(rc == 0, "ddpm train --classes --variance learned_range"):
        print(log)
        return
    folder = out / "model"
    xT = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT-cls.npy", xT)
    w = 3.0
    rc, log = run("sample", "--model", folder, "--noise", tmp / "xT-cls.npy", "--sampler", "ddpm", "--steps", STEPS,
                  "--seed", SEED, "--class", "1,2", "--guidance", w, "--guidance-interval", "all", "--raw",
                  "--out", tmp / "s-cls", "--threads", 1)
    if not check(rc == 0, "ddpm sample --guidance 3 on a learned-variance model"):
        print(log)
        return
    unet = UNet2DModel.from_pretrained(folder).float().eval()
    sched = DDPMScheduler.from_pretrained(folder, clip_sample=False)
    sched.set_timesteps(STEPS)
    from diffusers.schedulers import scheduling_ddpm
    state = {}
    saved = scheduling_ddpm.randn_tensor
    scheduling_ddpm.randn_tensor = lambda shape, **_: torch.from_numpy(ddpm_noise(state["t"], tuple(shape)))
    xs = torch.from_numpy(xT)
    y, null = torch.tensor([1, 2]), torch.tensor([4, 4])
    try:
        with torch.no_grad():
            for tt in sched.timesteps:
                state["t"] = int(tt)
                oc = unet(xs, tt, class_labels=y).sample
                ou = unet(xs, tt, class_labels=null).sample
                eps = ou[:, :1] + w * (oc[:, :1] - ou[:, :1])
                xs = sched.step(torch.cat([eps, oc[:, 1:]], dim=1), tt, xs).prev_sample
    finally:
        scheduling_ddpm.randn_tensor = saved
    ours = np.load(tmp / "s-cls" / "samples.npy")
    check(err(ours, xs.numpy()) < 1e-4, f"guided, learned variance: against the DDPMScheduler loop (mean halves mixed, "
          f"the conditional variance): max error {err(ours, xs.numpy()):.2e}")


def trained(tmp, rng):
    """6. A folder ddpm trains with --variance learned_range (L_hybrid): out_channels 2, variance_type
    learned_range; the real diffusers gives the same output (both halves) and the same DDPMPipeline images.
    The bound term trains the variance half: the final convolution's variance row moves from its step-0 value
    with the default --vlb-weight and stays exactly there with --vlb-weight 0 (its only gradient is the
    bound's)."""
    from safetensors.numpy import load_file
    data = tiny_idx(tmp / "train-idx3-ubyte", 32)
    runs = {}
    for name, extra in (("hybrid", ()), ("simple", ("--vlb-weight", 0))):
        out = tmp / ("run-" + name)
        rc, log = run("train", "--config", CONFIG, "--data", data, "--steps", 8, "--batch", 8, "--lr", "1e-2",
                      "--warmup", 0, "--out", out, "--threads", 2, "--variance", "learned_range", *extra)
        if not check(rc == 0, f"ddpm train --variance learned_range {' '.join(map(str, extra))}"):
            print(log)
            return
        runs[name] = out
    folder = runs["hybrid"] / "model"
    cfg = json.loads((folder / "config.json").read_text())
    sc = json.loads((folder / "scheduler_config.json").read_text())
    check(cfg.get("out_channels") == 2 and sc.get("variance_type") == "learned_range",
          f"the trained folder: out_channels {cfg.get('out_channels')}, variance_type {sc.get('variance_type')}")
    for name, path in runs.items():
        # The variance row of conv_out (the last parameters: weight [2, C, 3, 3], then bias [2]) at the end and
        # at step 0 (the state before the last save: ddpm saves at step 0 and at the end here).
        w = load_file(str(path / "model-raw" / "diffusion_pytorch_model.safetensors"))
        p0 = load_file(str(path / "training_state.prev.safetensors"))["params"]
        nw = w["conv_out.weight"].size
        w0 = p0[-2 - nw:-2].reshape(w["conv_out.weight"].shape)
        moved = max(float(np.abs(w["conv_out.weight"][1] - w0[1]).max()), abs(float(w["conv_out.bias"][1] - p0[-1])))
        if name == "hybrid":
            check(moved > 1e-4, f"L_hybrid trains the variance half (its conv_out row moved by {moved:.2e})")
        else:
            check(moved == 0, f"--vlb-weight 0: the variance half gets no gradient (moved by {moved:.2e})")
    from diffusers import UNet2DModel
    fix_diffusers()
    unet = UNet2DModel.from_pretrained(folder).float().eval()
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "x-trained.npy", x)
    rc, log = run("eps", "--model", folder, "--x", tmp / "x-trained.npy", "--t", 300, "--out", tmp / "eps-trained.npy")
    if check(rc == 0, "ddpm eps on the trained folder"):
        with torch.no_grad():
            ref = unet(torch.from_numpy(x), 300).sample.numpy()
        ours = np.load(tmp / "eps-trained.npy")
        check(ours.shape == ref.shape and err(ours, ref) < 1e-5,
              f"the trained folder in diffusers: both halves, max error {err(ours, ref):.2e}")
    xT = rng.standard_normal((N, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT.npy", xT)
    ref, _ = pipeline("ddpm-noclip", folder, xT)
    got = sample(tmp, folder, "trained", "ddpm")
    if got is not None:
        check(got.shape == ref.shape and err(got, ref) < TOL,
              f"the trained folder: samples against diffusers' DDPMPipeline: max error {err(got, ref):.2e}")


if __name__ == "__main__":
    sys.exit(main())
