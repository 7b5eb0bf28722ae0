#!/usr/bin/python3
"""fixtures_ops.py -- per-op reference fixtures (tests/fixtures/op_<name>.safetensors).

Every tensor is NCHW / PyTorch layout, stored as F32. Inputs are drawn with fixed seeds and rounded to
float32 first; the reference is then computed in float64 from exactly those float32 values and rounded to
float32 once at the end. For ops with gradients the file also holds "dout" (a random upstream gradient)
and "d<name>" = d sum(out * dout) / d <name> for every input and parameter. See tools/FIXTURES.md.
"""
import pathlib
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402
from ref_unet import timestep_embedding  # noqa: E402

D = torch.float64


class Rng:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=1.0, mean=0.0):
        """float32-representable values, returned as float64."""
        return (torch.randn(shape, generator=self.g, dtype=D) * std + mean).float().double()

    def uniform(self, *shape, lo=-1.0, hi=1.0):
        return (torch.rand(shape, generator=self.g, dtype=D) * (hi - lo) + lo).float().double()


def grad_fixture(path, rng, tensors, fn):
    """tensors: ordered dict name -> float64 tensor; fn(dict) -> out. Writes inputs, out, dout, d<name>."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in tensors.items()}
    out = fn(leaves)
    dout = rng.normal(*out.shape)
    (out * dout).sum().backward()
    rec = {k: v.detach() for k, v in tensors.items()}
    rec["out"] = out.detach()
    rec["dout"] = dout
    for k, v in leaves.items():
        rec["d" + k] = v.grad.detach()
        if k == "to_k.bias":  # exactly 0 in exact arithmetic (softmax is shift-invariant per row)
            assert rec["d" + k].abs().max() < 1e-12
            rec["d" + k] = torch.zeros_like(rec["d" + k])
    st.write(path, {k: v.to(torch.float32) for k, v in rec.items()})
    return rec


def gn(x, w, b, groups=4, eps=1e-6):
    return F.group_norm(x, groups, w, b, eps)


def attention_block(p, groups=4, eps=1e-6):
    x = p["x"]
    n, c, h, w = x.shape
    g = gn(x, p["group_norm.weight"], p["group_norm.bias"], groups, eps).reshape(n, c, h * w).transpose(1, 2)
    q = F.linear(g, p["to_q.weight"], p["to_q.bias"])
    k = F.linear(g, p["to_k.weight"], p["to_k.bias"])
    v = F.linear(g, p["to_v.weight"], p["to_v.bias"])
    a = torch.softmax(q @ k.transpose(1, 2) / (c ** 0.5), dim=-1)
    o = F.linear(a @ v, p["to_out.0.weight"], p["to_out.0.bias"])
    return o.transpose(1, 2).reshape(n, c, h, w) + x


def main(outdir):
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)

    def conv_params(r, cout, cin, k):
        bound = (cin * k * k) ** -0.5
        return r.uniform(cout, cin, k, k, lo=-bound, hi=bound), r.uniform(cout, lo=-0.5, hi=0.5)

    # conv3x3, stride 1, pad 1
    r = Rng(101)
    w, b = conv_params(r, 7, 5, 3)
    grad_fixture(out / "op_conv3x3.safetensors", r, {"x": r.normal(2, 5, 6, 6), "weight": w, "bias": b},
                 lambda p: F.conv2d(p["x"], p["weight"], p["bias"], stride=1, padding=1))

    # conv3x3 stride 2, TF "SAME": pad bottom/right by one, then pad 0
    r = Rng(102)
    w, b = conv_params(r, 6, 4, 3)
    grad_fixture(out / "op_conv3x3_s2_tf.safetensors", r, {"x": r.normal(2, 4, 6, 6), "weight": w, "bias": b},
                 lambda p: F.conv2d(F.pad(p["x"], (0, 1, 0, 1)), p["weight"], p["bias"], stride=2, padding=0))

    # conv3x3 stride 2, symmetric pad 1
    r = Rng(103)
    w, b = conv_params(r, 6, 4, 3)
    grad_fixture(out / "op_conv3x3_s2_sym.safetensors", r, {"x": r.normal(2, 4, 6, 6), "weight": w, "bias": b},
                 lambda p: F.conv2d(p["x"], p["weight"], p["bias"], stride=2, padding=1))

    # conv1x1
    r = Rng(104)
    w, b = conv_params(r, 4, 6, 1)
    grad_fixture(out / "op_conv1x1.safetensors", r, {"x": r.normal(2, 6, 5, 5), "weight": w, "bias": b},
                 lambda p: F.conv2d(p["x"], p["weight"], p["bias"]))

    # linear
    r = Rng(105)
    grad_fixture(out / "op_linear.safetensors", r,
                 {"x": r.normal(3, 10), "weight": r.uniform(7, 10, lo=-0.3, hi=0.3), "bias": r.uniform(7)},
                 lambda p: F.linear(p["x"], p["weight"], p["bias"]))

    # groupnorm (4 groups, eps 1e-6), random affine; input with a non-zero mean and non-unit scale
    r = Rng(106)
    grad_fixture(out / "op_groupnorm.safetensors", r,
                 {"x": r.normal(2, 8, 5, 5, std=2.0, mean=0.5), "weight": r.normal(8, std=0.5, mean=1.0),
                  "bias": r.normal(8, std=0.5)},
                 lambda p: gn(p["x"], p["weight"], p["bias"]))

    r = Rng(107)
    grad_fixture(out / "op_groupnorm_silu.safetensors", r,
                 {"x": r.normal(2, 8, 5, 5, std=2.0, mean=0.5), "weight": r.normal(8, std=0.5, mean=1.0),
                  "bias": r.normal(8, std=0.5)},
                 lambda p: F.silu(gn(p["x"], p["weight"], p["bias"])))

    # silu
    r = Rng(108)
    grad_fixture(out / "op_silu.safetensors", r, {"x": r.normal(3, 17, std=3.0)}, lambda p: F.silu(p["x"]))

    # the whole single-head attention block
    r = Rng(109)
    c = 8
    t = {"x": r.normal(2, c, 4, 4), "group_norm.weight": r.normal(c, std=0.3, mean=1.0),
         "group_norm.bias": r.normal(c, std=0.3)}
    for nm in ("to_q", "to_k", "to_v", "to_out.0"):
        t[nm + ".weight"] = r.uniform(c, c, lo=-0.6, hi=0.6)
        t[nm + ".bias"] = r.uniform(c, lo=-0.3, hi=0.3)
    grad_fixture(out / "op_attention.safetensors", r, t, attention_block)

    # nearest 2x upsample
    r = Rng(110)
    grad_fixture(out / "op_upsample.safetensors", r, {"x": r.normal(2, 3, 3, 3)},
                 lambda p: F.interpolate(p["x"], scale_factor=2.0, mode="nearest"))

    # timestep embedding (float32, diffusers sequence), no gradient
    ts = torch.tensor([0, 1, 7, 999], dtype=torch.long)
    st.write(out / "op_temb.safetensors", {
        "t": ts.to(torch.float32),
        "out_flip0_shift1": timestep_embedding(ts, 16, flip_sin_to_cos=False, freq_shift=1),
        "out_flip1_shift0": timestep_embedding(ts, 16, flip_sin_to_cos=True, freq_shift=0),
    })

    # mse loss: out = mean((pred - target)^2), dpred = d out / d pred (no dout)
    r = Rng(112)
    pred = r.normal(2, 3, 4, 4).requires_grad_(True)
    target = r.normal(2, 3, 4, 4)
    loss = ((pred - target) ** 2).mean()
    loss.backward()
    st.write(out / "op_mse.safetensors", {"pred": pred.detach().float(), "target": target.float(),
                                          "out": loss.detach().reshape(1).float(), "dpred": pred.grad.float()})

    bf16_fixture(out)


def bf16_fixture(out):
    """op_bf16: float32 values x and PyTorch's x.bfloat16() widened back to float32 (its 16 bits on top):
    random magnitudes over the whole exponent range, every rounding case (ties to even and odd, just
    above and below a tie), subnormals, signed zeros, the largest floats (which round to infinity),
    infinities and NaNs of several payloads."""
    g = torch.Generator().manual_seed(113)
    words = torch.randint(0, 2**32, (4096,), generator=g, dtype=torch.int64)  # any bit pattern
    normal = (torch.randn(4096, generator=g) * torch.exp(torch.randn(4096, generator=g) * 8)).float()
    cases = []
    for hi in (0x3F80, 0x3F81, 0x0000, 0x0001, 0x8000, 0x8001, 0x7F7F, 0xFF7F, 0x0080, 0x7F7E):
        for lo in (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF):
            cases.append(hi << 16 | lo)
    cases += [0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF, 0x7FFF8000]
    bits = torch.cat([words, torch.tensor(cases, dtype=torch.int64)])
    x = torch.cat([(bits - (bits >= 2**31).long() * 2**32).int().view(torch.float32), normal])
    st.write(out / "op_bf16.safetensors", {"x": x, "out": x.bfloat16().float()})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
