#!/usr/bin/python3
"""bench_inception.py -- FID Inception-v3 throughput: pytorch-fid's InceptionV3 (PyTorch, CPU) against
`ddpm eval stats --features inception`.

    /usr/bin/python3 bench/bench_inception.py [--n 500] [--batch 50] [--threads T] [--format auto]
                                              [--ddpm build/ddpm [--ddpm-only]] [--inception W.safetensors]

PyTorch: pytorch_fid.inception.InceptionV3([3]) (resize to 299 bilinear, 2x-1, pool3 features) with random
weights (real names and shapes, the same generator as tests/py/test_inception.py), float32, eval mode,
torch.no_grad, torch.set_num_threads(T) (default: all cores this process may use), on N CIFAR-size 3x32x32
images in batches of B, the way pytorch_fid.fid_score feeds it. One warm-up batch is not timed. --format auto
(default) times one batch in each memory format (contiguous NCHW, channels_last), then all N in the faster.

ddpm (--ddpm PATH): the same images (float32 NCHW .npy in [-1, 1]) through
    PATH eval stats --features inception --inception W --data X.npy --out TMP.npz --batch B [--threads T]
timed as a whole process (wall clock: loading the weights and data, the network, mu/sigma, writing the npz).
W is --inception if given, else the random weights converted with tools/convert_inception.py into a temporary
folder. Unless --no-marginal, ddpm also runs once on B images; (t_N - t_B) / (N - B) is then its marginal
time per image (start-up costs removed), reported beside the whole-process rate.
--ddpm-only skips PyTorch (e.g. `--n 10000 --ddpm-only` for the cost of a 10k-image FID).

Prints one line per measurement and, last, one JSON line with every number.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def random_weights():
    sys.path.insert(0, str(ROOT / "tests" / "py"))
    import test_inception  # noqa: E402 (random_state_dict: real key names and shapes, O(1) activations)
    return test_inception.random_state_dict()


def torch_model(sd, fmt):
    import torch
    import pytorch_fid.inception as pfi
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    try:
        m = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    finally:
        pfi.load_state_dict_from_url = orig
    m = m.float().eval()
    if fmt == "channels_last":
        m = m.to(memory_format=torch.channels_last)
    return m


def torch_runner(sd, x, batch, fmt):
    """A function timing the model on images [i0, i1) of x (after one untimed warm-up batch at creation)."""
    import torch
    m = torch_model(sd, fmt)
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    xt = ((torch.from_numpy(x) + 1) / 2).contiguous(memory_format=mf)
    with torch.no_grad():
        m(xt[:batch])  # warm-up (oneDNN primitive creation)

    def timed(i0, i1):
        with torch.no_grad():
            t0 = time.perf_counter()
            for i in range(i0, i1, batch):
                out = m(xt[i:min(i + batch, i1)])[0]
                assert out.shape[1] == 2048
            return time.perf_counter() - t0
    return timed


def run_ddpm(exe, weights, data, out, batch, threads):
    cmd = [exe, "eval", "stats", "--features", "inception", "--inception", weights, "--data", data, "--out", out,
           "--batch", str(batch)]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"bench_inception: {' '.join(cmd)} failed (exit status {r.returncode}):\n{r.stderr}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split("--", 1)[1].strip())
    ap.add_argument("--n", type=int, default=500, help="images (default 500)")
    ap.add_argument("--batch", type=int, default=50, help="images per network call (default 50)")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: all cores; ddpm's own default)")
    ap.add_argument("--format", choices=["auto", "contiguous", "channels_last"], default="auto",
                    help="PyTorch memory format (auto: the faster on one batch)")
    ap.add_argument("--ddpm", metavar="BUILD/ddpm", help="also time this ddpm binary")
    ap.add_argument("--ddpm-only", action="store_true", help="time ddpm alone (no PyTorch)")
    ap.add_argument("--inception", metavar="W.safetensors",
                    help="weights for ddpm (default: the random weights, converted into a temporary folder)")
    ap.add_argument("--no-marginal", action="store_true", help="skip ddpm's extra run on one batch")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.ddpm_only and not a.ddpm:
        ap.error("--ddpm-only needs --ddpm")
    if a.n < 1 or a.batch < 1:
        ap.error("--n and --batch must be positive")

    import torch
    ncpu = len(os.sched_getaffinity(0))
    threads = a.threads or ncpu
    torch.set_num_threads(threads)
    x = np.random.default_rng(a.seed).uniform(-1, 1, (a.n, 3, 32, 32)).astype(np.float32)
    sd = random_weights() if (not a.ddpm_only or not a.inception) else None
    res = {"n": a.n, "batch": a.batch, "threads": threads, "ncpu": ncpu, "torch": torch.__version__,
           "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    print(f"bench_inception: {a.n} images 3x32x32 (resized to 299x299 inside), batch {a.batch}, "
          f"{threads} thread(s) of {ncpu} cores", flush=True)

    best = None
    if not a.ddpm_only:
        fmts = ["contiguous", "channels_last"] if a.format == "auto" else [a.format]
        if len(fmts) > 1:  # probe: one timed batch each, the faster format is then timed on all N images
            probe = {}
            for fmt in fmts:
                nb = min(a.batch, a.n)
                dt = torch_runner(sd, x, a.batch, fmt)(0, nb)
                probe[fmt] = nb / dt
                res[f"torch_probe_{fmt}_img_s"] = round(probe[fmt], 3)
                print(f"pytorch-fid probe, one batch, {fmt:13s}: {probe[fmt]:8.2f} img/s", flush=True)
            fmts = [max(probe, key=probe.get)]
        fmt = fmts[0]
        dt = torch_runner(sd, x, a.batch, fmt)(0, a.n)
        best = (fmt, a.n / dt)
        res["torch_format"], res["torch_s"], res["torch_img_s"] = fmt, round(dt, 3), round(best[1], 3)
        print(f"pytorch-fid InceptionV3 float32 {fmt:13s}: {dt:8.2f} s  {best[1]:8.2f} img/s", flush=True)

    if a.ddpm:
        exe = a.ddpm if os.path.sep in a.ddpm else os.path.join(".", a.ddpm)
        with tempfile.TemporaryDirectory(prefix="bench_inception_") as tmp:
            weights = a.inception
            if not weights:
                sys.path.insert(0, str(ROOT / "tools"))
                import convert_inception as ci
                pth = os.path.join(tmp, ci.PTH_NAME)
                weights = os.path.join(tmp, "inception.safetensors")
                torch.save(sd, pth)
                import contextlib
                import io
                with contextlib.redirect_stdout(io.StringIO()):
                    if ci.main([pth, weights]) != 0:
                        sys.exit("bench_inception: converting the random weights failed")
            data = os.path.join(tmp, "x.npy")
            np.save(data, x)
            out = os.path.join(tmp, "stats.npz")
            dt = run_ddpm(exe, weights, data, out, a.batch, a.threads)
            ips = a.n / dt
            res["ddpm_s"], res["ddpm_img_s"] = round(dt, 3), round(ips, 3)
            print(f"ddpm eval stats --features inception : {dt:8.2f} s  {ips:8.2f} img/s (whole process)", flush=True)
            if not a.no_marginal and a.n > a.batch:
                np.save(data, x[:a.batch])
                d1 = run_ddpm(exe, weights, data, out, a.batch, a.threads)
                mips = (a.n - a.batch) / (dt - d1) if dt > d1 else float("inf")
                res["ddpm_one_batch_s"], res["ddpm_marginal_img_s"] = round(d1, 3), round(mips, 3)
                print(f"ddpm on {a.batch} images: {d1:.2f} s; marginal rate (t_{a.n} - t_{a.batch}) / "
                      f"{a.n - a.batch}: {mips:.2f} img/s", flush=True)
            if best:
                res["ratio_ddpm_torch"] = round(ips / best[1], 3)
                line = f"ratio ddpm / PyTorch ({best[0]}): {ips / best[1]:.2f}x (whole process)"
                if "ddpm_marginal_img_s" in res:
                    res["ratio_marginal"] = round(res["ddpm_marginal_img_s"] / best[1], 3)
                    line += f", {res['ratio_marginal']:.2f}x (marginal)"
                print(line, flush=True)
    res["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    if res["loadavg_end"][0] > 1.25 * ncpu or res["loadavg_start"][0] > 1.25 * ncpu:
        print(f"bench_inception: warning: the machine was busy (load average {res['loadavg_start'][0]} at the "
              f"start, {res['loadavg_end'][0]} at the end, {ncpu} cores): the numbers are unreliable", flush=True)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
