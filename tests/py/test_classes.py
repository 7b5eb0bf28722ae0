#!/usr/bin/python3
"""test_classes.py -- a class-conditional model folder made by `ddpm train --classes` opens in the real
diffusers (0.31.0) and gives the same eps; classifier-free guidance matches diffusers end to end.

  1. ddpm trains a tiny conditional model (tests/fixtures/unet_b's config, 4 classes from an IDX label
     file, a high learning rate so that the class embeddings move) and writes RUN/model.
  2. diffusers' UNet2DModel.from_pretrained(RUN/model) has num_class_embeds 5 (4 classes + the null
     class); `ddpm eps --class ...` equals model(x, t, class_labels=...).sample for given classes and for
     the null class (no --class); the classes change eps (the check can fail).
  3. `ddpm sample --sampler ddim --guidance 3 --guidance-interval all --class ...` from a given x_T equals a
     loop of diffusers' DDIMScheduler over eps = eps(x, t, null) + 3 (eps(x, t, y) - eps(x, t, null)); with
     --guidance-rescale 0.7, the same loop with diffusers' rescale_noise_cfg on each guided eps; with the
     default guidance interval, the loop guided only where sigma_t is in (0, 2].

diffusers' attention runs with tools/diffusers_fix.py's patch (Debian's torch 1.13 otherwise returns NaN
now and then).

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_classes.py
Exits non-zero on any failure.
"""
import json
import pathlib
import sys
import tempfile

import numpy as np
import torch

from ddpmtest import CONFIG, check, finish, fix_diffusers, write_idx  # noqa: E402
from ddpmtest import ddpm as run  # noqa: E402
from ddpmtest import ddpm as ddpm_log  # noqa: E402  (main's `run` is the run folder)


def ddpm(*args):
    rc, log = run(*args)
    if rc:
        print(log)
    return rc


def main():
    import safetensors.torch  # noqa: F401  (diffusers reads .safetensors once this is imported)
    from diffusers import DDIMScheduler, UNet2DModel
    fix_diffusers()

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_classes_"))
    n, k = 48, 4
    rng = np.random.default_rng(5)
    labels = np.arange(n) % k
    # Each class a different brightness, so the classes mean something.
    img = np.clip(rng.normal(40 + 50 * labels[:, None, None], 30, (n, 8, 8)), 0, 255).astype(np.uint8)
    write_idx(tmp / "tiny-images-idx3-ubyte", (img.tobytes(), n, 8, 8), labels.astype(np.uint8).tobytes())
    run = tmp / "run"
    rc = ddpm("train", "--config", CONFIG, "--data", tmp / "tiny-images-idx3-ubyte", "--classes", "--steps", 25,
              "--batch", 8, "--lr", "1e-2", "--warmup", 0, "--out", run, "--threads", 2)
    check(rc == 0, "ddpm train --classes")
    if rc:
        return 1
    cfg = json.loads((run / "model" / "config.json").read_text())
    check(cfg.get("num_class_embeds") == 5 and cfg.get("_class_names") == ["0", "1", "2", "3"],
          f"config.json: num_class_embeds {cfg.get('num_class_embeds')}, _class_names {cfg.get('_class_names')}")

    model = UNet2DModel.from_pretrained(run / "model").float().eval()
    check(model.class_embedding is not None and tuple(model.class_embedding.weight.shape) == (5, 32),
          "diffusers builds the class embedding from ddpm's config")

    # eps for given classes and for the null class.
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    t = 500
    eps = {}
    for name, cls in (("classes", "0,3,1,2"), ("null", None)):
        args = ["eps", "--model", run / "model", "--x", tmp / "x.npy", "--t", t, "--out", tmp / f"eps_{name}.npy"]
        check(ddpm(*args, *(["--class", cls] if cls else [])) == 0, f"ddpm eps ({name})")
        ours = np.load(tmp / f"eps_{name}.npy")
        y = torch.tensor([0, 3, 1, 2] if cls else [4] * 4)
        with torch.no_grad():
            ref = model(torch.from_numpy(x), t, class_labels=y).sample.numpy()
        err = float(np.abs(ours - ref).max())
        check(err < 1e-5 * max(1.0, float(np.abs(ref).max())), f"eps ({name}) against diffusers: max |diff| {err:.2e}")
        eps[name] = ours
    spread = float(np.abs(eps["classes"] - eps["null"]).max())
    check(spread > 1e-4, f"the class changes eps (max |diff| {spread:.3g} between the classes and the null class)")

    # Guidance through a whole DDIM run.
    xT = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.save(tmp / "xT.npy", xT)
    w, steps, cls = 3.0, 5, [1, 2]
    out = tmp / "s"
    check(ddpm("sample", "--model", run / "model", "--noise", tmp / "xT.npy", "--sampler", "ddim", "--steps", steps,
               "--class", "1,2", "--guidance", w, "--guidance-interval", "all", "--raw", "--out", out, "--threads", 1) == 0,
          "ddpm sample --guidance 3 --guidance-interval all")
    sched = DDIMScheduler.from_pretrained(run / "model")
    sched.set_timesteps(steps)
    xs = torch.from_numpy(xT)
    y, null = torch.tensor(cls), torch.tensor([4, 4])
    with torch.no_grad():
        for tt in sched.timesteps:
            ec = model(xs, tt, class_labels=y).sample
            eu = model(xs, tt, class_labels=null).sample
            xs = sched.step(eu + w * (ec - eu), tt, xs).prev_sample
    ours = np.load(out / "samples.npy")
    err = float(np.abs(ours - xs.numpy()).max())
    check(err < 1e-4, f"guided DDIM samples against diffusers' DDIMScheduler loop: max |diff| {err:.2e}")

    # The default guidance interval: guided only where sigma_t = sqrt((1 - alphabar_t) / alphabar_t) is in (0, 2]
    # (here t = 200 and 0 of 800, 600, 400, 200, 0), the conditional eps as it is elsewhere.
    out_i = tmp / "s-interval"
    rc, log = ddpm_log("sample", "--model", run / "model", "--noise", tmp / "xT.npy", "--sampler", "ddim", "--steps",
                       steps, "--class", "1,2", "--guidance", w, "--raw", "--out", out_i, "--threads", 1)
    check(rc == 0 and "guidance 3 where sigma_t is in (0, 2] (t 0..395)" in log,
          "ddpm sample --guidance 3 (the default guidance interval), which it names")
    sched.set_timesteps(steps)
    xi = torch.from_numpy(xT)
    guided = []
    with torch.no_grad():
        for tt in sched.timesteps:
            ab = float(sched.alphas_cumprod[tt])
            ec = model(xi, tt, class_labels=y).sample
            if ((1 - ab) / ab) ** 0.5 <= 2:
                guided.append(int(tt))
                eu = model(xi, tt, class_labels=null).sample
                ec = eu + w * (ec - eu)
            xi = sched.step(ec, tt, xi).prev_sample
    interval = np.load(out_i / "samples.npy")
    err = float(np.abs(interval - xi.numpy()).max())
    check(0 < len(guided) < steps and err < 1e-4, f"the default guidance interval (guided at t = {guided}) against "
          f"a DDIMScheduler loop guided there: max |diff| {err:.2e}")
    moved = float(np.abs(interval - ours).max())
    check(moved > 1e-3, f"the guidance interval changes the samples (max |diff| {moved:.2e})")

    # An interval that holds no timestep (sigma_t stays below 500 on this schedule) is plain conditioning, bit for bit.
    runs = {}
    for name, extra in (("none", ["--guidance", w, "--guidance-interval", "500,600"]), ("w1", ["--guidance", 1]),
                        ("w0-none", ["--guidance", 0, "--guidance-interval", "500,600"]), ("w0", ["--guidance", 0])):
        rc, log = ddpm_log("sample", "--model", run / "model", "--noise", tmp / "xT.npy", "--sampler", "ddim",
                           "--steps", steps, "--class", "1,2", *extra, "--raw", "--out", tmp / name, "--threads", 1)
        check(rc == 0, f"ddpm sample {extra}")
        runs[name] = (log, np.load(tmp / name / "samples.npy"))
    check("at no timestep, so plain conditioning" in runs["none"][0] and np.array_equal(runs["none"][1], runs["w1"][1]),
          "an empty guidance interval: named, and the samples of --guidance 1 bit for bit")
    check(np.array_equal(runs["w0-none"][1], runs["w0"][1]) and not np.array_equal(runs["w0"][1], runs["w1"][1]),
          "--guidance 0 stays the unconditional model whatever the interval")

    # With guidance_rescale: diffusers' own rescale_noise_cfg on each guided output (issue 24). Its module imports
    # transformers, which the pixel-space tests do not need: the function's own source is taken from the file.
    import ast
    import diffusers.pipelines as dp
    src = pathlib.Path(dp.__file__).parent / "stable_diffusion" / "pipeline_stable_diffusion.py"
    fn = next(n for n in ast.parse(src.read_text()).body
              if isinstance(n, ast.FunctionDef) and n.name == "rescale_noise_cfg")
    space = {"torch": torch}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(src), "exec"), space)
    rescale_noise_cfg = space["rescale_noise_cfg"]
    rs = 0.7
    out_r = tmp / "s-rescaled"
    check(ddpm("sample", "--model", run / "model", "--noise", tmp / "xT.npy", "--sampler", "ddim", "--steps", steps,
               "--class", "1,2", "--guidance", w, "--guidance-rescale", rs, "--guidance-interval", "all", "--raw",
               "--out", out_r, "--threads", 1) == 0, "ddpm sample --guidance 3 --guidance-rescale 0.7")
    sched.set_timesteps(steps)
    xr = torch.from_numpy(xT)
    with torch.no_grad():
        for tt in sched.timesteps:
            ec = model(xr, tt, class_labels=y).sample
            eu = model(xr, tt, class_labels=null).sample
            xr = sched.step(rescale_noise_cfg(eu + w * (ec - eu), ec, guidance_rescale=rs), tt, xr).prev_sample
    rescaled = np.load(out_r / "samples.npy")
    err = float(np.abs(rescaled - xr.numpy()).max())
    check(err < 1e-4, f"guidance_rescale {rs}: against diffusers' rescale_noise_cfg in a DDIMScheduler loop: "
          f"max |diff| {err:.2e}")
    moved = float(np.abs(rescaled - ours).max())
    check(moved > 1e-3, f"guidance_rescale changes the samples (max |diff| {moved:.2e})")

    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
