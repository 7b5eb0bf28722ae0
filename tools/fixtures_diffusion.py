#!/usr/bin/python3
"""fixtures_diffusion.py -- reference values for the diffusion math (src/diffusion), written to
tests/fixtures/diffusion.safetensors and checked by tests/test_diffusion.c.

An independent re-implementation of diffusers' DDPMScheduler / DDIMScheduler formulas (docs/diffusers.md,
"scheduler_config.json"), in torch float32 with the same operations in the same order as diffusers,
plus the official DDPM code's posterior tables and the variational-bound terms (computed in float64).
It does not use diffusers. Every tensor is documented in tools/FIXTURES_DIFFUSION.md.

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures       (all fixtures)
    /usr/bin/python3 tools/fixtures_diffusion.py tests/fixtures  (this one alone)
"""
import math
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402  (the project's safetensors writer)

F32 = torch.float32


# ----------------------------------------------------------------------------- schedules

def betas_for(kind, T, beta_start=0.0001, beta_end=0.02):
    """diffusers' beta tables (docs/diffusers.md, "Beta tables"), float32."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=F32)
    if kind == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=F32) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        b = []
        for i in range(T):
            t1, t2 = i / T, (i + 1) / T
            b.append(min(1 - abar(t2) / abar(t1), 0.999))
        return torch.tensor(b, dtype=F32)
    raise ValueError(kind)


class Sched:
    """The scheduler's float32 tensors (diffusers) and the official code's posterior tables."""

    def __init__(self, kind, T, beta_start=0.0001, beta_end=0.02):
        self.T = T
        self.betas = betas_for(kind, T, beta_start, beta_end)
        self.alphas = 1.0 - self.betas
        self.ac = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)
        # posterior tables in float64 from the float32 alphas_cumprod, with the per-step
        # beta' = 1 - ac_t / ac_prev of DDPMScheduler.step (what src/diffusion/schedule.c stores)
        ac = self.ac.double()
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        cur_beta = 1.0 - ac / ac_prev
        pv = (1.0 - ac_prev) / (1.0 - ac) * cur_beta
        self.post_var = pv.float()
        self.post_log_var_clipped = torch.log(torch.cat([pv[1:2], pv[1:]])).float()
        self.post_c0 = (torch.sqrt(ac_prev) * cur_beta / (1.0 - ac)).float()
        self.post_ct = (torch.sqrt(ac / ac_prev) * (1.0 - ac_prev) / (1.0 - ac)).float()

    def tables(self, prefix):
        return {
            prefix + ".betas": self.betas,
            prefix + ".alphas_cumprod": self.ac,
            prefix + ".sqrt_alphas_cumprod": (self.ac.double() ** 0.5).float(),
            prefix + ".sqrt_one_minus_alphas_cumprod": ((1 - self.ac.double()) ** 0.5).float(),
            prefix + ".posterior_variance": self.post_var,
            prefix + ".posterior_log_variance_clipped": self.post_log_var_clipped,
            prefix + ".posterior_mean_coef1": self.post_c0,
            prefix + ".posterior_mean_coef2": self.post_ct,
        }

    # DDPMScheduler.add_noise
    def add_noise(self, x0, eps, t):
        sa = self.ac[t] ** 0.5
        sb = (1 - self.ac[t]) ** 0.5
        return sa * x0 + sb * eps

    # DDPMScheduler._get_variance (fixed_small / fixed_large)
    def ddpm_variance(self, t, prev_t, variance_type):
        a_t = self.ac[t]
        a_prev = self.ac[prev_t] if prev_t >= 0 else self.one
        current_beta_t = 1 - a_t / a_prev
        variance = (1 - a_prev) / (1 - a_t) * current_beta_t
        variance = torch.clamp(variance, min=1e-20)
        if variance_type == "fixed_small":
            return variance
        if variance_type == "fixed_large":
            return current_beta_t
        raise ValueError(variance_type)

    # DDPMScheduler.step, epsilon prediction, noise injected
    def ddpm_step(self, eps, t, prev_t, xt, z, variance_type, clip=True, clip_range=1.0):
        a_t = self.ac[t]
        a_prev = self.ac[prev_t] if prev_t >= 0 else self.one
        b_t = 1 - a_t
        b_prev = 1 - a_prev
        cur_alpha = a_t / a_prev
        cur_beta = 1 - cur_alpha
        x0 = (xt - b_t ** 0.5 * eps) / a_t ** 0.5
        if clip:
            x0 = x0.clamp(-clip_range, clip_range)
        c0 = (a_prev ** 0.5 * cur_beta) / b_t
        ct = cur_alpha ** 0.5 * b_prev / b_t
        prev = c0 * x0 + ct * xt
        if t > 0:
            prev = prev + (self.ddpm_variance(t, prev_t, variance_type) ** 0.5) * z
        return prev, x0

    # DDIMScheduler.step (set_alpha_to_one, epsilon prediction, use_clipped_model_output=False)
    def ddim_step(self, eps, t, N, xt, eta, z, clip=True, clip_range=1.0):
        prev_t = t - self.T // N
        a_t = self.ac[t]
        a_prev = self.ac[prev_t] if prev_t >= 0 else self.one
        b_t = 1 - a_t
        x0 = (xt - b_t ** 0.5 * eps) / a_t ** 0.5
        if clip:
            x0 = x0.clamp(-clip_range, clip_range)
        b_prev = 1 - a_prev
        variance = (b_prev / b_t) * (1 - a_t / a_prev)
        std = eta * variance ** 0.5
        direction = (1 - a_prev - std ** 2) ** 0.5 * eps
        prev = a_prev ** 0.5 * x0 + direction
        if eta > 0:
            prev = prev + std * z
        return prev, x0


# ----------------------------------------------------------------------------- timesteps

def timesteps(T, N, spacing, steps_offset=0):
    """DDPMScheduler/DDIMScheduler.set_timesteps (numpy, as diffusers)."""
    if spacing == "leading":
        r = T // N
        ts = (np.arange(0, N) * r).round()[::-1].copy().astype(np.int64) + steps_offset
    elif spacing == "trailing":
        r = T / N
        ts = np.round(np.arange(T, 0, -r)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1].copy().astype(np.int64)
    else:
        raise ValueError(spacing)
    return ts


# ----------------------------------------------------------------------------- bits/dim terms (float64)

def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + math.exp(lv1 - lv2) + (m1 - m2) ** 2 * math.exp(-lv2))


def std_normal_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def disc_gauss_loglik(x, mean, log_scale):
    """Paper Eq. 13 / official discretized_gaussian_log_likelihood, exact normal CDF (erfc),
    with the official code's 1e-12 floor inside the logs."""
    inv = math.exp(-log_scale)
    plus_in = inv * (x - mean + 1.0 / 255.0)
    min_in = inv * (x - mean - 1.0 / 255.0)
    if x < -0.999:
        return math.log(max(std_normal_cdf(plus_in), 1e-12))
    if x > 0.999:
        return math.log(max(0.5 * math.erfc(min_in / math.sqrt(2.0)), 1e-12))
    if min_in > 0:  # both in the upper tail: difference of upper-tail masses
        delta = 0.5 * (math.erfc(min_in / math.sqrt(2.0)) - math.erfc(plus_in / math.sqrt(2.0)))
    else:
        delta = std_normal_cdf(plus_in) - std_normal_cdf(min_in)
    return math.log(max(delta, 1e-12))


# ----------------------------------------------------------------------------- main

def main(outdir):
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=F32)

    out = {}
    lin = Sched("linear", 1000)
    cos = Sched("squaredcos_cap_v2", 1000)
    sl = Sched("scaled_linear", 100, 0.00085, 0.012)
    out.update(lin.tables("linear"))
    out.update(cos.tables("cosine"))
    out.update(sl.tables("scaled_linear_100"))

    shape = (2, 3, 8, 8)
    x0 = randn(*shape).clamp(-1, 1)
    eps = randn(*shape)
    out["x0"] = x0
    out["eps"] = eps

    # q_sample at t = 300
    out["q_sample.t300"] = lin.add_noise(x0, eps, 300)

    # L_simple at t = 300: MSE between eps and a given eps prediction
    eps_pred = 0.8 * eps + 0.3 * randn(*shape)
    out["eps_pred"] = eps_pred
    out["l_simple.t300"] = torch.nn.functional.mse_loss(eps_pred, eps).reshape(1)

    # one reverse step: xt, the model output and the noise z
    xt = randn(*shape)
    eps_model = randn(*shape)
    z = randn(*shape)
    out["step.xt"] = xt
    out["step.eps"] = eps_model
    out["step.z"] = z
    for vt in ("fixed_small", "fixed_large"):
        for t, prev in ((500, 499), (0, -1)):
            xp, x0p = lin.ddpm_step(eps_model, t, prev, xt, z, vt)
            out[f"ddpm.{vt}.t{t}.x_prev"] = xp
            out[f"ddpm.{vt}.t{t}.x0_pred"] = x0p
    xp, x0p = lin.ddpm_step(eps_model, 500, 499, xt, z, "fixed_small", clip=False)
    out["ddpm.fixed_small.noclip.t500.x_prev"] = xp
    out["ddpm.fixed_small.noclip.t500.x0_pred"] = x0p
    # a strided DDPM step (set_timesteps(50), leading: 500 -> 480)
    xp, x0p = lin.ddpm_step(eps_model, 500, 480, xt, z, "fixed_small")
    out["ddpm.fixed_small.t500p480.x_prev"] = xp

    for eta, name in ((0.0, "eta0"), (0.5, "eta0.5")):
        for t in (500, 0):
            xp, x0p = lin.ddim_step(eps_model, t, 50, xt, eta, z)
            out[f"ddim.{name}.n50.t{t}.x_prev"] = xp
            out[f"ddim.{name}.n50.t{t}.x0_pred"] = x0p

    for sp in ("leading", "trailing", "linspace"):
        out[f"timesteps.T1000.N50.{sp}"] = torch.from_numpy(timesteps(1000, 50, sp).astype(np.float32))

    # posterior mean (official tables, float32) at t = 1 and t = 500
    for t in (1, 500):
        out[f"posterior_mean.t{t}"] = lin.post_c0[t] * x0 + lin.post_ct[t] * xt

    # bits/dim terms in float64 on float32 inputs
    n = 64
    m1, lv1, m2, lv2 = randn(n), randn(n) - 2.0, randn(n), randn(n) - 2.0
    out["kl.mean1"], out["kl.logvar1"], out["kl.mean2"], out["kl.logvar2"] = m1, lv1, m2, lv2
    kl = [normal_kl(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(m1, lv1, m2, lv2)]
    out["kl.value"] = torch.tensor(kl, dtype=torch.float64).to(F32)

    pix = torch.randint(0, 256, (n,), generator=g)
    pix[:6] = torch.tensor([0, 255, 0, 255, 128, 100])
    x = (pix.to(torch.float64) / 127.5 - 1.0).to(F32)
    mean = (x + 0.05 * randn(n)).to(F32)
    log_scale = (0.5 * torch.log(torch.rand(n, generator=g) * 1e-2 + 1e-5)).to(F32)
    # interior bins 6 standard deviations into the upper / lower tail of their Gaussian
    mean[4] = x[4] - 6.0 * torch.exp(log_scale[4])
    mean[5] = x[5] + 6.0 * torch.exp(log_scale[5])
    out["dgl.x"], out["dgl.mean"], out["dgl.log_scale"] = x, mean, log_scale
    dgl = [disc_gauss_loglik(float(a), float(b), float(c)) for a, b, c in zip(x, mean, log_scale)]
    out["dgl.value"] = torch.tensor(dgl, dtype=torch.float64).to(F32)

    # prior term: KL(q(x_T | x0) || N(0, I)) summed over x0, float64 from the float32 table
    aT = float(lin.ac[-1])
    prior = sum(normal_kl(math.sqrt(aT) * float(v), math.log(1.0 - aT), 0.0, 0.0) for v in x0.flatten())
    out["prior_kl.linear"] = torch.tensor([prior], dtype=F32)

    st.write(str(outdir / "diffusion.safetensors"), {k: v.contiguous() for k, v in out.items()})
    print(f"  wrote {outdir / 'diffusion.safetensors'} ({len(out)} tensors)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
