#!/usr/bin/python3
"""bench_torch.py -- the PyTorch side of `make bench-torch`: the same model as ddpm (tools/ref_unet.py built
from the preset's config.json, official init), timed like bench/bench_train.c, same one-line JSON output.

    /usr/bin/python3 bench/bench_torch.py PRESET BATCH train|sample [steps=10] [threads=all] [warmup=2]
                                          [--format auto|contiguous|channels_last] [--probe-steps 2]
                                          [--precision fp32|bf16]

train:  one full training step: x0 from a synthetic uint8 dataset (2048 random images, as bench_train),
        t ~ U{0..999}, eps ~ N(0, I), q_sample, forward (dropout 0.1 active), MSE, backward,
        clip_grad_norm_(1.0), torch.optim.Adam(foreach=True) with linear lr warm-up, EMA of the weights
        with torch._foreach_mul_/_foreach_add_, loss.item() (the finiteness check ddpm does).
sample: one forward of BATCH images under torch.inference_mode(), model.eval() (no dropout).
--precision bf16: the forward (and the loss) under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's
        mixed precision (weights, Adam and EMA stay fp32): the bf16 baseline (oneDNN's bf16 kernels on CPUs
        with AVX512_BF16 or AMX; elsewhere PyTorch's reference kernels, many times slower than its fp32).

PyTorch gets its best CPU setting: torch.set_num_threads(len(os.sched_getaffinity(0))) (or `threads`),
tcmalloc preloaded (the script re-executes itself with LD_PRELOAD=libtcmalloc_minimal.so.4; BENCH_NO_TCMALLOC=1
turns that off), OpenBLAS instead of the netlib reference BLAS Debian's torch otherwise gets (see find_openblas;
BENCH_TORCH_BLAS=system keeps the system's), and with --format auto (the default) both memory formats
(contiguous NCHW, channels_last) and, for sampling, a TorchScript version (jit: trace + freeze +
optimize_for_inference) are measured briefly, each in its own process, and the fastest is then measured in a
fresh process (so the peak RSS reported is that of one configuration only). The model's config, parameter count and forward
FLOPs per image come from `build/bench/bench_train PRESET 1 info` (override the binary with
$BENCH_TRAIN_BIN), so both sides build the same network and count FLOPs the same way.
"""
import argparse
import json
import math
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
DATASET_N = 2048


def tcmalloc_loaded():
    try:
        with open("/proc/self/maps") as f:
            return "libtcmalloc" in f.read()
    except OSError:
        return False


def blas_loaded():
    """Which BLAS library torch's libblas.so.3 resolved to (torch runs Linear and bmm through it)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    except OSError:
        return "?"
    for lib in sorted(libs):
        if "openblas" in lib:
            return "openblas (" + os.path.dirname(lib) + ")"
    for lib in sorted(libs):
        if "libblas.so" in lib:
            return "netlib" if os.path.realpath(lib).startswith("/usr/lib/x86_64-linux-gnu/blas/") else lib
    return "?"


OPENBLAS_DIRS = ["/usr/lib/x86_64-linux-gnu/openblas-openmp", "/usr/lib/x86_64-linux-gnu/openblas-pthread",
                 str(ROOT / "build" / "openblas" / "usr/lib/x86_64-linux-gnu/openblas-openmp")]


def find_openblas():
    """A directory holding OpenBLAS's libblas.so.3, per $BENCH_TORCH_BLAS: 'system' (none: whatever
    libblas.so.3 the system resolves), a directory, or 'auto' (default): Debian's OpenBLAS if installed, else
    libopenblas0-openmp fetched once with `apt-get download` and unpacked (not installed) under build/openblas.
    Debian's python3-torch links the generic libblas.so.3, which is the unoptimised netlib reference BLAS
    unless an optimised provider is installed; torch runs every Linear and bmm (the attention) through it."""
    want = os.environ.get("BENCH_TORCH_BLAS", "auto")
    if want == "system":
        return None
    if want != "auto":
        return want
    real = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    if "openblas" in real:
        return None  # the system's libblas.so.3 already is OpenBLAS
    for d in OPENBLAS_DIRS:
        if os.path.exists(os.path.join(d, "libblas.so.3")):
            return d
    dest = ROOT / "build" / "openblas"
    print("bench_torch: no optimised BLAS for torch; fetching libopenblas0-openmp into " + str(dest) +
          " (BENCH_TORCH_BLAS=system to skip)", file=sys.stderr)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "-q", "libopenblas0-openmp"], cwd=dest, check=True,
                       stdout=subprocess.DEVNULL)
        for deb in sorted(dest.glob("libopenblas0-openmp_*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"bench_torch: could not fetch OpenBLAS ({e}); torch keeps the system BLAS", file=sys.stderr)
        return None
    d = OPENBLAS_DIRS[-1]
    return d if os.path.exists(os.path.join(d, "libblas.so.3")) else None


def ensure_env():
    """Re-execute (before torch is imported) with tcmalloc preloaded and OpenBLAS first on the library path,
    unless already so. BENCH_NO_TCMALLOC=1 leaves the allocator alone."""
    if os.environ.get("_BENCH_TORCH_REEXEC") == "1":
        return
    env = dict(os.environ)
    env["_BENCH_TORCH_REEXEC"] = "1"
    if os.environ.get("BENCH_NO_TCMALLOC") != "1" and not tcmalloc_loaded() and os.path.exists(TCMALLOC):
        env["LD_PRELOAD"] = (TCMALLOC + " " + env.get("LD_PRELOAD", "")).strip()
    blas = find_openblas()
    if blas:
        env["LD_LIBRARY_PATH"] = blas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def model_info(preset):
    exe = os.environ.get("BENCH_TRAIN_BIN", str(ROOT / "build" / "bench" / "bench_train"))
    out = subprocess.run([exe, preset, "1", "info"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run(args):
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "tools"))
    import ref_unet

    ncpu = len(os.sched_getaffinity(0))
    threads = args.threads if args.threads > 0 else ncpu
    torch.set_num_threads(threads)
    info = model_info(args.preset)
    cfg = info["config"]
    B, train = args.batch, args.mode == "train"
    if args.format == "jit" and (args.mode != "sample" or args.precision != "fp32"):
        raise SystemExit("--format jit is for fp32 sample mode only")
    import contextlib
    # bf16 mixed precision as PyTorch users get it: master weights, Adam and EMA fp32, the forward autocast.
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16"
                else contextlib.nullcontext)
    cl = args.format == "channels_last"
    mf = torch.channels_last if cl else torch.contiguous_format

    torch.manual_seed(1)
    model = ref_unet.build_model(cfg)
    ref_unet.init_official(model, 1)
    nparams = sum(p.numel() for p in model.parameters())
    if nparams != info["nparams"]:
        raise SystemExit(f"parameter count {nparams} differs from ddpm's {info['nparams']}")
    model = model.to(memory_format=mf)
    if args.precision == "bf16":
        # PyTorch 1.13's CPU autocast leaves group_norm off its fp32 list, and group_norm then refuses bf16
        # input with fp32 weights; PyTorch 2 autocasts it to fp32. Do what PyTorch 2 does.
        class GroupNormF32(torch.nn.GroupNorm):
            def forward(self, x):
                return super().forward(x.float())

        for mod in model.modules():
            if type(mod) is torch.nn.GroupNorm:
                mod.__class__ = GroupNormF32
    C, S = cfg["in_channels"], cfg["sample_size"]

    if train:
        model.train()
        gen = torch.Generator().manual_seed(7)
        data = torch.randint(0, 256, (DATASET_N, C, S, S), dtype=torch.uint8, generator=gen)
        T = 1000
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
        ac = torch.cumprod(1 - betas.double(), 0).float()
        sqrt_ac, sqrt_1m_ac = ac.sqrt(), (1 - ac).sqrt()
        params = [p for p in model.parameters()]
        base_lr, lr_warmup = 2e-4, 5000
        opt = torch.optim.Adam(params, lr=base_lr, betas=(0.9, 0.999), eps=1e-8, foreach=True)
        with torch.no_grad():
            ema = [p.detach().clone() for p in params]

        def step(k):
            idx = torch.randint(0, DATASET_N, (B,))
            x0 = data[idx].float().div_(127.5).sub_(1.0).contiguous(memory_format=mf)
            t = torch.randint(0, T, (B,))
            noise = torch.randn_like(x0)
            xt = sqrt_ac[t].view(B, 1, 1, 1) * x0 + sqrt_1m_ac[t].view(B, 1, 1, 1) * noise
            with autocast():
                out = model(xt, t)
                loss = F.mse_loss(out.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            for g in opt.param_groups:
                g["lr"] = base_lr * min(1.0, (k + 1) / lr_warmup)
            opt.step()
            d = min(0.9999, (1.0 + k + 1) / (10.0 + k + 1))
            with torch.no_grad():
                torch._foreach_mul_(ema, d)
                torch._foreach_add_(ema, params, alpha=1.0 - d)
            if not math.isfinite(loss.item()):
                raise SystemExit(f"loss not finite at step {k}")
    else:
        model.eval()
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(B, C, S, S, generator=gen).contiguous(memory_format=mf)
        t = torch.tensor([(i * 37 + 500) % 1000 for i in range(B)], dtype=torch.long)

        net = model
        if args.format == "jit":
            # TorchScript: traced for this batch, frozen (weights folded in) and optimize_for_inference'd
            # (oneDNN layouts, fusions); run twice here so the profiling executor has optimised the graph.
            import warnings
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                net = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, (x, t),
                                                                                        check_trace=False)))
                net(x, t)
                net(x, t)

        def step(k):
            with torch.inference_mode(), autocast():
                net(x, t)

    dts = []
    for k in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step(k)
        t1 = time.perf_counter()
        if k >= args.warmup:
            dts.append(t1 - t0)
    med = statistics.median(dts)
    flops = float(info["flops_per_image"])
    gf = (3.0 if train else 1.0) * flops * B / 1e9
    return {
        "impl": "torch", "preset": args.preset, "batch": B, "mode": args.mode, "threads": threads,
        "warmup": args.warmup, "steps": args.steps, "nparams": nparams, "flops_per_image": flops,
        "step_s": round(med, 6), "img_s": round(B / med, 3), "img_s_min": round(B / max(dts), 3),
        "img_s_max": round(B / min(dts), 3), "gflops": round(gf / med, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "format": args.format, "precision": args.precision, "tcmalloc": tcmalloc_loaded(), "blas": blas_loaded(), "torch": torch.__version__,
    }


def child(args, fmt, steps, warmup):
    """One measurement in a fresh process; returns its JSON."""
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), args.preset, str(args.batch), args.mode,
           str(steps), str(args.threads), str(warmup), "--format", fmt, "--precision", args.precision]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("batch", type=int)
    ap.add_argument("mode", choices=["train", "sample"])
    ap.add_argument("steps", type=int, nargs="?", default=10)
    ap.add_argument("threads", type=int, nargs="?", default=0)
    ap.add_argument("warmup", type=int, nargs="?", default=2)
    ap.add_argument("--format", choices=["auto", "contiguous", "channels_last", "jit"], default="auto",
                    help="jit (sample only): contiguous, torch.jit.trace + freeze + optimize_for_inference")
    ap.add_argument("--probe-steps", type=int, default=2, help="timed steps of each format probe (auto)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: the forward (and loss) under torch.autocast('cpu', dtype=torch.bfloat16)")
    args = ap.parse_args()
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("batch and steps must be >= 1, warmup >= 0")
    ensure_env()
    if args.format != "auto":
        res = run(args)
    else:
        fmts = ("contiguous", "channels_last") + (("jit",) if args.mode == "sample" and args.precision == "fp32" else ())
        probe = {f: child(args, f, args.probe_steps, 1)["img_s"] for f in fmts}
        best = max(probe, key=probe.get)
        res = child(args, best, args.steps, args.warmup)
        res["format_probe_img_s"] = probe
    print(json.dumps(res, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
