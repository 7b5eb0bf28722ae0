#!/usr/bin/python3
"""fixtures_stats.py -- reference values for the sample-quality statistics (src/eval/stats.c), written to
tests/fixtures/stats.safetensors and checked by tests/test_stats.c.

References: numpy (np.mean, np.cov) for the Gaussian statistics, pytorch-fid 0.3.0's
calculate_frechet_distance (scipy.linalg.sqrtm) for FID, plus the exact trace of the square root as the
nuclear norm of X1c X2c^T (no square root of a matrix involved), and straightforward numpy brute force
for the Inception Score (the original improved-gan code's formula) and improved precision/recall.
Every tensor is documented in tools/FIXTURES.md (section "stats.safetensors").

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures    (all fixtures)
    /usr/bin/python3 tools/fixtures_stats.py tests/fixtures   (this one alone)
"""
import pathlib
import sys

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402  (the project's safetensors writer)


# ----------------------------------------------------------------------------- FID

def inception_like(rng, n, d, shift):
    """Non-negative, correlated features (a ReLU of a rank-d/4 Gaussian plus noise), float32."""
    a = rng.standard_normal((d, d // 4)) / np.sqrt(d / 4)
    z = rng.standard_normal((n, d // 4))
    x = np.maximum(z @ a.T + shift + 0.3 * rng.standard_normal((n, d)), 0)
    return x.astype(np.float32)


def exact_fid(x1, x2):
    """FID of the exact statistics of float32 rows: tr (S1 S2)^{1/2} = ||X1c X2c^T||_* / sqrt((n1-1)(n2-1))
    (the non-zero eigenvalues of S1 S2 are the squared singular values of X1c X2c^T over (n1-1)(n2-1)).
    Centring and products in long double; singular values have no square-root amplification of rounding."""
    a, b = x1.astype(np.longdouble), x2.astype(np.longdouble)
    mu1, mu2 = a.mean(0), b.mean(0)
    a, b = a - mu1, b - mu2
    g = (a @ b.T).astype(np.float64)
    tr_sqrt = np.linalg.svd(g, compute_uv=False).sum() / np.sqrt((len(x1) - 1) * (len(x2) - 1))
    tr1 = (a * a).sum() / (len(x1) - 1)
    tr2 = (b * b).sum() / (len(x2) - 1)
    dmu = ((mu1 - mu2) ** 2).sum()
    return float(dmu + tr1 + tr2) - 2 * tr_sqrt


# (name, d, n1, n2, second set = first set)
FID_CASES = [
    ("fid_d64_n300", 64, 300, 300, False),
    ("fid_d64_n30_n200", 64, 30, 200, False),
    ("fid_d128_n60", 128, 60, 60, False),
    ("fid_d256_n100", 256, 100, 100, False),
    ("fid_d256_n400", 256, 400, 400, False),
    ("fid_d256_n100_same", 256, 100, 100, True),
]


def fid_fixtures(out):
    rng = np.random.default_rng(20240601)
    for name, d, n1, n2, same in FID_CASES:
        x1 = inception_like(rng, n1, d, 0.0)
        x2 = x1.copy() if same else inception_like(rng, n2, d, 0.1)
        mu1, mu2 = np.mean(x1.astype(np.float64), axis=0), np.mean(x2.astype(np.float64), axis=0)
        s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
        ref = calculate_frechet_distance(mu1, s1, mu2, s2)
        out[f"{name}.x1"], out[f"{name}.x2"] = x1, x2
        out[f"{name}.fid_ref"] = np.array([ref], np.float64)
        out[f"{name}.fid_exact"] = np.array([exact_fid(x1, x2)], np.float64)
        out[f"{name}.scale"] = np.array([((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)], np.float64)
        if d == 64 and n1 == 300:  # the mean/covariance check
            out[f"{name}.mu1"], out[f"{name}.sigma1"] = mu1, s1
        print(f"  {name}: pytorch-fid {ref:.10g}, exact {out[name + '.fid_exact'][0]:.10g}")


# ----------------------------------------------------------------------------- Inception Score

def inception_score(logits, splits):
    """The original inception_score.py loop on softmax(logits) computed in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    preds = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return np.mean(scores), np.std(scores)


# (name, n, k, splits, logit scale)
IS_CASES = [("is_a", 103, 10, 10, 3.0), ("is_b", 40, 1000, 4, 20.0), ("is_c", 57, 7, 3, 0.5)]


def is_fixtures(out):
    rng = np.random.default_rng(7)
    for name, n, k, splits, scale in IS_CASES:
        logits = (scale * rng.standard_normal((n, k))).astype(np.float32)
        m, s = inception_score(logits, splits)
        out[f"{name}.logits"] = logits
        out[f"{name}.splits"] = np.array([splits], np.int32)
        out[f"{name}.expected"] = np.array([m, s], np.float64)
        print(f"  {name}: IS {m:.10g} +- {s:.10g}")


# ----------------------------------------------------------------------------- precision / recall

def pr_brute(real, fake, k):
    """Precision, recall and the decision margins (min over rows of |d^2/r^2 - 1| at the deciding pair)."""
    r, f = real.astype(np.float64), fake.astype(np.float64)

    def d2(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    def radii2(x):
        dd = d2(x, x)
        np.fill_diagonal(dd, np.inf)  # itself excluded
        return np.sort(dd, axis=1)[:, k - 1]

    rr, fr = radii2(r), radii2(f)
    dfr = d2(f, r)                    # [nf, nr]
    gp = (dfr / rr[None, :] - 1).min(1)   # fake j precise iff gp[j] <= 0
    gr = (dfr / fr[:, None] - 1).min(0)   # real i recalled iff gr[i] <= 0
    margin = min(np.abs(gp).min(), np.abs(gr).min())
    return float((gp <= 0).mean()), float((gr <= 0).mean()), margin


# (name, nr, nf, d, ks): more than 1024 rows so the C side's column tiling is crossed
PR_CASES = [("pr_a", 1100, 700, 16, (3, 5)), ("pr_b", 300, 260, 64, (1, 3))]


def pr_fixtures(out):
    rng = np.random.default_rng(11)
    for name, nr, nf, d, ks in PR_CASES:
        while True:  # redraw until no decision is within 1e-4 (relative) of a tie: float32 cannot flip it
            real = rng.standard_normal((nr, d)).astype(np.float32)
            fake = (1.2 * rng.standard_normal((nf, d)) + 0.3).astype(np.float32)
            res = [pr_brute(real, fake, k) for k in ks]
            if min(m for _, _, m in res) > 1e-4:
                break
        out[f"{name}.real"], out[f"{name}.fake"] = real, fake
        out[f"{name}.k"] = np.array(ks, np.int32)
        out[f"{name}.expected"] = np.array([v for p, r, _ in res for v in (p, r)], np.float64)
        print(f"  {name}: " + ", ".join(f"k={k}: P {p:.4f} R {r:.4f} (margin {m:.1e})"
                                        for k, (p, r, m) in zip(ks, res)))


def main(outdir):
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = {}
    fid_fixtures(out)
    is_fixtures(out)
    pr_fixtures(out)
    st.write(str(outdir / "stats.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
