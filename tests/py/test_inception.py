#!/usr/bin/python3
"""test_inception.py -- ddpm's FID Inception-v3 (`ddpm eval stats --features inception`) against pytorch-fid's.

Run by scripts/run-tests.sh from the repository root with /usr/bin/python3 and DDPM_BUILD=BUILD (default
"build"); exits non-zero on any failure. No download: the weights are random, with the real key names and
shapes taken from pytorch-fid's own module structure.

 1. A random state_dict of pytorch-fid's FID Inception (conv weights ~ N(0, 2/fan_in), BN weight U(0.5, 1.5),
    bias N(0, 0.1), running_mean N(0, 0.1), running_var U(0.5, 2), fc N(0, 1/2048)) saved with torch.save as a
    .pth; converted by tools/convert_inception.py (a separate process) and read back: same key names less the
    num_batches_tracked counters, float32, bit-identical values, __metadata__ arch/source. The converter must
    also reject (exit status 2, the key named) a state_dict with a missing key, one with a wrongly shaped key
    and one with an unexpected key.
 2. The reference: pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True,
    use_fid_inception=True) with load_state_dict_from_url monkeypatched to hand back the random state_dict, in
    float64, eval mode, on (x + 1) / 2 (gray images repeated to 3 channels); features = pool3 output [n, 2048],
    logits = features @ fc.weight^T (no bias). Sanity of the random network: the features are neither ~0 nor
    huge and no conv+BN+ReLU layer is dead (each has a fair share of positive outputs).
 3. `BUILD/ddpm eval stats --data X.npy --out S.npz --features inception --inception W.safetensors
    --save-features --batch 2` on float32 NCHW images in [-1, 1]: 3 RGB 32x32 (CIFAR-size), then 2 gray 28x28
    (Fashion-MNIST size, 1 channel; ddpm replicates it to RGB). Under a "-san" build 2 RGB and 2 gray images.
    Asserts max|c - ref| / max|ref| <= 1e-4 for the features and for the logits, and that the npz's mu and
    sigma equal numpy's mean and np.cov(rowvar=False) of its own float32 features to 1e-6 relative
    (sigma skipped for n < 2). On a mismatch the reference is recomputed with a list of plausible deviations
    (count_include_pad, max/avg pool in Mixed_7c, align_corners, BN eps, input scaling, channel order, ...)
    and the one closest to ddpm's output is reported, to tell where the C side differs.
"""
import contextlib
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import convert_inception as ci  # noqa: E402
import st  # noqa: E402
import pytorch_fid.inception as pfi  # noqa: E402

BUILD = os.environ.get("DDPM_BUILD", "build")
SAN = BUILD.rstrip("/").endswith("-san")
DDPM = ROOT / BUILD / "ddpm" if not os.path.isabs(BUILD) else pathlib.Path(BUILD) / "ddpm"
TOL_FEAT = 1e-4
TOL_STATS = 1e-6

failures = []


def check(ok, msg):
    print(("ok    " if ok else "FAIL  ") + msg, flush=True)
    if not ok:
        failures.append(msg)
    return ok


# ----------------------------------------------------------------------------------------------- weights

def random_state_dict(seed=1234):
    """Real key names and shapes, random values that keep activations O(1) through the ~95 conv+BN+ReLU layers."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in ci.expected_shapes().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.long)
        elif k.endswith(".conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif k.endswith(".bn.weight"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith(".bn.bias") or k.endswith(".bn.running_mean"):
            sd[k] = torch.randn(shape, generator=g) * 0.1
        elif k.endswith(".bn.running_var"):
            sd[k] = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif k == "fc.weight":
            sd[k] = torch.randn(shape, generator=g) * (1.0 / shape[1]) ** 0.5
        elif k == "fc.bias":
            sd[k] = torch.randn(shape, generator=g) * 0.01
        else:
            raise SystemExit(f"test_inception: no rule for key {k} {shape}")
    return sd


def test_converter(sd, tmp):
    """Saves sd as a .pth, converts it; returns the safetensors path (None on failure)."""
    pth = os.path.join(tmp, ci.PTH_NAME)
    out = os.path.join(tmp, "inception.safetensors")
    torch.save(sd, pth)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_inception.py"), pth, out],
                       capture_output=True, text=True)
    if not check(r.returncode == 0 and os.path.exists(out),
                 f"convert_inception.py exit status {r.returncode}" + (f": {r.stderr.strip()}" if r.stderr else "")):
        return None
    back = st.read(out)
    hdr, _ = st.read_header(out)
    want = {k for k in sd if not k.endswith("num_batches_tracked")}
    check(set(back) == want, f"converted key set: {len(back)} tensors, expected {len(want)} "
                             f"(missing {sorted(want - set(back))[:3]}, extra {sorted(set(back) - want)[:3]})")
    bad = [k for k in want & set(back)
           if back[k].dtype != np.float32 or back[k].shape != tuple(sd[k].shape)
           or not np.array_equal(back[k], sd[k].numpy())]
    check(not bad, f"converted tensors float32, same shapes and values (bad: {bad[:3]})")
    meta = hdr.get("__metadata__", {})
    check(meta == {"format": "pt", "arch": ci.ARCH, "source": ci.PTH_NAME}, f"converted __metadata__ {meta}")

    # rejections: exit status 2 with the key named (the first one as a process, the others in-process)
    def reject(name, bad_sd, key, in_process):
        p = os.path.join(tmp, f"bad_{name}.pth")
        o = os.path.join(tmp, f"bad_{name}.safetensors")
        torch.save(bad_sd, p)
        if in_process:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = ci.main([p, o])
            msg = err.getvalue()
        else:
            r = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_inception.py"), p, o],
                               capture_output=True, text=True)
            rc, msg = r.returncode, r.stderr
        check(rc == 2 and key in msg and not os.path.exists(o),
              f"converter rejects a {name} ({key}): exit status {rc}, message: {msg.strip().splitlines()[-1:]}")

    missing = dict(sd)
    del missing["Mixed_6c.branch7x7_2.conv.weight"]
    reject("missing key", missing, "Mixed_6c.branch7x7_2.conv.weight", False)
    wrong = dict(sd)
    wrong["Mixed_7b.branch3x3_2a.conv.weight"] = torch.zeros(384, 384, 3, 1)
    reject("wrong shape", wrong, "Mixed_7b.branch3x3_2a.conv.weight", True)
    extra = dict(sd)
    extra["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    reject("unexpected key", extra, "AuxLogits.fc.weight", True)
    return out


# ----------------------------------------------------------------------------------------------- reference

class FShim:
    """Stands in for torch.nn.functional inside pytorch_fid.inception, with some functions replaced."""

    def __init__(self, **over):
        self.__dict__.update(over)

    def __getattr__(self, name):
        return getattr(F, name)


def reference_model(sd, variant=None):
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: {k2: v.clone() for k2, v in sd.items()}
    try:
        m = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    finally:
        pfi.load_state_dict_from_url = orig
    m = m.double().eval()
    if variant == "bn_eps_1e-5":
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eps = 1e-5
    return m


# name -> (what it would mean, F overrides or None, input transform or None, model variant or None)
def variants():
    ap = F.avg_pool2d
    mp = F.max_pool2d
    it = F.interpolate
    return {
        "count_include_pad": ("the 3x3 average pools of Mixed_5*/6*/7b count the zero padding (torchvision's, "
                              "not TF's)", dict(avg_pool2d=lambda x, *a, **k: ap(x, *a, **{**k, "count_include_pad": True})),
                              None, None),
        "avgpool_in_7c": ("Mixed_7c's pool branch averages (pytorch-fid/TF max-pools there)",
                          dict(max_pool2d=lambda x, *a, **k: ap(x, *a, **{**k, "count_include_pad": False})), None, None),
        "maxpool_everywhere": ("every Mixed block's pool branch max-pools",
                               dict(avg_pool2d=lambda x, kernel_size, stride, padding, count_include_pad=True:
                                    mp(x, kernel_size, stride, padding)), None, None),
        "align_corners": ("the 299x299 resize uses align_corners=True",
                          dict(interpolate=lambda x, *a, **k: it(x, *a, **{**k, "align_corners": True})), None, None),
        "nearest_resize": ("the resize is nearest-neighbour",
                           dict(interpolate=lambda x, size, mode, align_corners: it(x, size=size, mode="nearest")),
                           None, None),
        "bn_eps_1e-5": ("BatchNorm eps 1e-5 instead of torchvision's BasicConv2d eps 1e-3", None, None, "bn_eps_1e-5"),
        "no_input_map": ("the [-1, 1] images are fed as if they were [0, 1] (2x-1 applied to [-1, 1] data)",
                         None, lambda x: x, None),
        "input_0_1": ("the network sees [0, 1] instead of [-1, 1]", None, lambda x: (x + 3) / 4, None),
        "bgr": ("channels reversed (BGR)", None, lambda x: (x.flip(1) + 1) / 2, None),
    }


def reference(sd, x, variant=None, model=None):
    """x: float32 NCHW in [-1, 1] (1 or 3 channels). Returns (features [n, 2048], logits [n, 1008]) float64."""
    xt = torch.from_numpy(x).double()
    if xt.shape[1] == 1:
        xt = xt.repeat(1, 3, 1, 1)
    shim = None
    tf = None
    mv = None
    if variant is not None:
        _, shim, tf, mv = variants()[variant]
    inp = tf(xt) if tf else (xt + 1) / 2
    m = model if model is not None and mv is None else reference_model(sd, mv)
    saved = pfi.F
    if shim:
        pfi.F = FShim(**shim)  # InceptionV3.forward and the FID blocks call F.* through this module global
    try:
        with torch.no_grad():
            feat = m(inp)[0].squeeze(-1).squeeze(-1)
    finally:
        pfi.F = saved
    logits = feat @ sd["fc.weight"].double().T
    return feat.numpy(), logits.numpy()


def sanity(sd, model, x):
    """Activation statistics of the random network: every conv+BN+ReLU layer alive, features O(1)."""
    stats = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torchvision_basic_conv()):
            def hook(m, i, o, name=name):
                stats.append((name, float((o > 0).double().mean()), float(o.std())))
            hooks.append(mod.register_forward_hook(hook))
    try:
        feat, logits = reference(sd, x, model=model)
    finally:
        for h in hooks:
            h.remove()
    alive = min(s[1] for s in stats)
    stds = [s[2] for s in stats]
    worst = min(stats, key=lambda s: s[1])
    check(len(stats) == 94, f"random network: {len(stats)} conv+BN+ReLU layers seen (expected 94)")
    check(alive > 0.02, f"random network: no dead layer (least active {worst[0]}: {100 * worst[1]:.1f}% of outputs > 0)")
    check(0.01 < min(stds) and max(stds) < 100,
          f"random network: activation std per layer in [{min(stds):.3g}, {max(stds):.3g}] (O(1))")
    fm, fx = float(np.abs(feat).mean()), float(np.abs(feat).max())
    check(0.01 < fm and fx < 1000 and (feat > 0).mean() > 0.2,
          f"random network: features mean |f| {fm:.3g}, max {fx:.3g}, {100 * (feat > 0).mean():.0f}% > 0")
    return feat, logits


def torchvision_basic_conv():
    import torchvision
    return torchvision.models.inception.BasicConv2d


# ----------------------------------------------------------------------------------------------- ddpm

def ddpm_has_stats():
    if not DDPM.exists():
        return False, f"{DDPM} does not exist (build it: make {BUILD}/ddpm)"
    r = subprocess.run([str(DDPM), "eval", "stats", "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"`{DDPM} eval stats --help` exit status {r.returncode}: " \
                      f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return True, ""


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


def run_ddpm(x, weights, tmp, tag):
    data = os.path.join(tmp, f"{tag}.npy")
    out = os.path.join(tmp, f"{tag}.npz")
    np.save(data, x)
    cmd = [str(DDPM), "eval", "stats", "--data", data, "--out", out, "--features", "inception",
           "--inception", weights, "--save-features", "--batch", "2"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if not check(r.returncode == 0 and os.path.exists(out),
                 f"{tag}: ddpm eval stats exit status {r.returncode} ({dt:.1f} s)"
                 + (f"\n{r.stderr.strip()}" if r.returncode else "")):
        return None
    z = np.load(out)
    return {k: z[k] for k in z.files}


def compare(tag, x, sd, model, weights, tmp, diagnose):
    n = x.shape[0]
    t0 = time.time()
    feat_ref, log_ref = reference(sd, x, model=model)
    t_ref = time.time() - t0
    z = run_ddpm(x, weights, tmp, tag)
    if z is None:
        return None
    want = {"mu": ((2048,), np.float64), "sigma": ((2048, 2048), np.float64),
            "features": ((n, 2048), np.float32), "logits": ((n, 1008), np.float32)}
    ok = True
    for k, (shape, dt) in want.items():
        if k not in z:
            ok = check(False, f"{tag}: npz lacks {k} (has {sorted(z)})")
            continue
        ok &= check(z[k].shape == shape and z[k].dtype == dt,
                    f"{tag}: npz {k} {z[k].dtype} {list(z[k].shape)} (expected {np.dtype(dt)} {list(shape)})")
    if not ok or any(k not in z for k in want):
        return None
    ef = rel(z["features"], feat_ref)
    el = rel(z["logits"], log_ref)
    ok_f = check(ef <= TOL_FEAT, f"{tag}: features max|c - ref| / max|ref| = {ef:.3g} (<= {TOL_FEAT:g}); "
                                 f"max|ref| {np.abs(feat_ref).max():.3g}, reference {t_ref:.1f} s")
    check(el <= TOL_FEAT, f"{tag}: logits   max|c - ref| / max|ref| = {el:.3g} (<= {TOL_FEAT:g}); "
                          f"max|ref| {np.abs(log_ref).max():.3g}")
    f64 = z["features"].astype(np.float64)
    emu = rel(z["mu"], f64.mean(0))
    check(emu <= TOL_STATS, f"{tag}: mu = mean of its features, rel. error {emu:.3g} (<= {TOL_STATS:g})")
    es = None
    if n >= 2:
        es = rel(z["sigma"], np.cov(f64, rowvar=False))
        check(es <= TOL_STATS, f"{tag}: sigma = np.cov(features, rowvar=False), rel. error {es:.3g} (<= {TOL_STATS:g})")
    if not ok_f and diagnose:
        print(f"{tag}: features disagree; trying plausible deviations of the reference:", flush=True)
        res = []
        for name, (what, *_rest) in variants().items():
            if x.shape[1] == 1 and name == "bgr":
                continue
            fv, _ = reference(sd, x, variant=name)
            res.append((rel(z["features"], fv), name, what))
            print(f"    {name:20s} rel. error {res[-1][0]:.3g}   ({what})", flush=True)
        best = min(res)
        if best[0] <= TOL_FEAT * 10:
            print(f"{tag}: DIAGNOSIS: ddpm matches the variant '{best[1]}': {best[2]}", flush=True)
        else:
            print(f"{tag}: DIAGNOSIS: no listed variant explains it (closest '{best[1]}', {best[0]:.3g}); "
                  f"per-image errors: {[round(rel(z['features'][i], feat_ref[i]), 6) for i in range(n)]}", flush=True)
    return ef, el, emu, es


def main():
    t_start = time.time()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"test_inception: DDPM_BUILD={BUILD}{' (sanitizer build: fewer images)' if SAN else ''}", flush=True)
    sd = random_state_dict()
    rng = np.random.default_rng(5)
    n_rgb, n_gray = (2, 2) if SAN else (3, 2)  # ddpm eval stats needs n >= 2 (a covariance)
    x_rgb = rng.uniform(-1, 1, (n_rgb, 3, 32, 32)).astype(np.float32)
    x_gray = rng.uniform(-1, 1, (n_gray, 1, 28, 28)).astype(np.float32)
    summary = {}
    with tempfile.TemporaryDirectory(prefix="test_inception_") as tmp:
        weights = test_converter(sd, tmp)
        model = reference_model(sd)
        sanity(sd, model, x_rgb[:1])
        have, why = ddpm_has_stats()
        if not check(have, f"ddpm has `eval stats`: {why or 'yes'}"):
            pass
        elif weights is not None:
            summary["rgb"] = compare(f"rgb {n_rgb}x3x32x32", x_rgb, sd, model, weights, tmp, diagnose=True)
            summary["gray"] = compare(f"gray {n_gray}x1x28x28", x_gray, sd, model, weights, tmp, diagnose=False)
    parts = []
    for k, v in summary.items():
        if v:
            parts.append(f"{k}: features {v[0]:.2e}, logits {v[1]:.2e}, mu {v[2]:.1e}"
                         + (f", sigma {v[3]:.1e}" if v[3] is not None else ""))
    print(f"test_inception: {'PASS' if not failures else 'FAIL'} ({len(failures)} failed check(s), "
          f"{time.time() - t_start:.0f} s); max rel. errors: " + ("; ".join(parts) if parts else "n/a"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
