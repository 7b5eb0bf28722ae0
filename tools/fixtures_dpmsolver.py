#!/usr/bin/python3
"""fixtures_dpmsolver.py OUTDIR -- DPM-Solver++ (2M) fixtures from the real diffusers package.

Writes OUTDIR/dpmsolver.safetensors, checked step by step by tests/test_sampler.c. Every value
comes from diffusers' own DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_order
2, solver_type "midpoint", lower_order_final, final_sigmas_type "zero"; pinned diffusers==0.31.0,
installed beside Debian's torch 1.13 with --no-deps): nothing of the scheduler is re-implemented.

For each case below, 3 images of 48 values (a [3, 3, 4, 4] batch; the math is element-wise or
per image, so the C test reads them as flat [3, 48] rows) are sampled from x_T = N(0, 1) by a
stand-in model whose eps at step k is
    (x - 1.3 sqrt(ab_t) x0*) / sqrt(1 - ab_t) + 0.2 n_k
for a fixed x0* in [-1, 1] and fixed noise n_k: a nearly perfect model whose x0 predictions
overshoot [-1, 1], so that thresholding has work to do. Tensors, for case C with K steps:
    C.timesteps [K]        the scheduler's timesteps (exact integers as float)
    C.sigmas    [K + 1]    its sigma table (float32, last 0)
    C.x         [K + 1, 3, 48]  x before step k (x[0] = x_T) and the result x[K]
    C.eps       [K, 3, 48]      the model output handed to step k
"""
import pathlib
import sys

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402

# name: (beta_schedule, steps, timestep_spacing, steps_offset, thresholding ratio (0 = off), sample_max_value)
CASES = {
    "lin10": ("linear", 10, "linspace", 0, 0.0, 1.0),
    "lin20": ("linear", 20, "linspace", 0, 0.0, 1.0),
    "lead7": ("linear", 7, "leading", 1, 0.0, 1.0),
    "trail12": ("linear", 12, "trailing", 0, 0.0, 1.0),
    "thr10": ("linear", 10, "linspace", 0, 0.9, 1.5),
    "cos10": ("squaredcos_cap_v2", 10, "linspace", 0, 0.0, 1.0),
    "lin1": ("linear", 1, "linspace", 0, 0.0, 1.0),
    "lin2": ("linear", 2, "linspace", 0, 0.0, 1.0),
}


def run_case(kind, steps, spacing, offset, ratio, smax, gen):
    sch = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule=kind,
        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
        timestep_spacing=spacing, steps_offset=offset, thresholding=ratio > 0,
        dynamic_thresholding_ratio=ratio if ratio > 0 else 0.995, sample_max_value=smax)
    sch.set_timesteps(steps)
    ac = sch.alphas_cumprod
    x0_star = (torch.randn(3, 3, 4, 4, generator=gen) * 0.6).clamp(-1, 1)
    x = torch.randn(3, 3, 4, 4, generator=gen)
    xs, es = [x.clone()], []
    for t in sch.timesteps:
        ab = ac[int(t)]
        eps = (x - 1.3 * ab.sqrt() * x0_star) / (1 - ab).sqrt() + 0.2 * torch.randn(3, 3, 4, 4, generator=gen)
        es.append(eps.clone())
        x = sch.step(eps, t, x).prev_sample
        xs.append(x.clone())
    return {
        "timesteps": sch.timesteps.to(torch.float32),
        "sigmas": sch.sigmas.to(torch.float32),
        "x": torch.stack(xs).reshape(len(xs), 3, 48),
        "eps": torch.stack(es).reshape(len(es), 3, 48),
    }


def main(outdir):
    gen = torch.Generator().manual_seed(2024)
    tensors = {}
    for name, case in CASES.items():
        for key, v in run_case(*case, gen).items():
            tensors[f"{name}.{key}"] = v.contiguous().numpy().astype(np.float32)
    st.write(str(pathlib.Path(outdir) / "dpmsolver.safetensors"), tensors)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
