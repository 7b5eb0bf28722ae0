#!/usr/bin/python3
"""fixtures_unet.py -- two tiny UNet2DModel folders and their forward/backward references.

    tests/fixtures/unet_a/            google-style config, attention weights saved under LEGACY names
    tests/fixtures/unet_a_io.safetensors
    tests/fixtures/unet_b/            3 levels, flip_sin_to_cos, downsample_padding 1, current names
    tests/fixtures/unet_b_io.safetensors

Weights: the official init with scale 1 everywhere (no near-zero layers), then noise on every bias and
GroupNorm parameter, rounded to float32 (what is stored). The io file is computed in float64 from the
stored float32 weights after reloading the folder with ref_unet.load_model (so the legacy-name loader is
exercised too). See tools/FIXTURES.md.
"""
import pathlib
import sys

import torch
import torch.nn as nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ref_unet  # noqa: E402
import st  # noqa: E402

CONFIG_A = {
    "sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8, "norm_eps": 1e-6, "flip_sin_to_cos": False, "freq_shift": 1, "downsample_padding": 0,
    "attention_head_dim": None, "dropout": 0.0, "act_fn": "silu", "mid_block_scale_factor": 1,
    "center_input_sample": False, "time_embedding_type": "positional",
}

CONFIG_B = {
    "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16, 16], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 4, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "attention_head_dim": None, "dropout": 0.0, "act_fn": "silu", "mid_block_scale_factor": 1,
    "center_input_sample": False, "time_embedding_type": "positional",
}


def init_test(model, seed, noise=0.1):
    """Official init with every weight at scale 1, plus noise on biases and GroupNorm affine parameters."""
    ref_unet.init_official(model, seed, zero_scale=1.0)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.GroupNorm):
                mod.weight.add_(torch.randn(mod.weight.shape, generator=g, dtype=torch.float64).to(mod.weight.dtype)
                                * noise)
                mod.bias.add_(torch.randn(mod.bias.shape, generator=g, dtype=torch.float64).to(mod.bias.dtype)
                              * noise)
            elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                mod.bias.add_(torch.randn(mod.bias.shape, generator=g, dtype=torch.float64).to(mod.bias.dtype)
                              * noise)
    return model


def make(outdir, tag, cfg, seed, legacy, ts):
    folder = pathlib.Path(outdir) / f"unet_{tag}"
    model = init_test(ref_unet.build_model(cfg), seed).float()
    ref_unet.save_model(model, folder, legacy_attn_names=legacy)

    # reload through the (legacy-aware) loader and check it is bit-identical
    m = ref_unet.load_model(folder)
    for (k, a), (k2, b) in zip(model.state_dict().items(), m.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    names = st.read_header(folder / "diffusion_pytorch_model.safetensors")[0]
    has_legacy = any(".query." in k or ".proj_attn." in k for k in names)
    assert has_legacy == legacy

    m = m.double()
    c = cfg["in_channels"]
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(2, c, 8, 8, generator=g, dtype=torch.float64).float().double().requires_grad_(True)
    eps = torch.randn(2, c, 8, 8, generator=g, dtype=torch.float64).float().double()
    t = torch.tensor(ts, dtype=torch.long)
    out = m(x, t)
    loss = ((out - eps) ** 2).mean()
    loss.backward()

    rec = {"x": x.detach(), "t": t.to(torch.float64), "eps": eps, "out": out.detach(), "loss": loss.detach().reshape(1),
           "grad.x": x.grad}
    for k, p in m.named_parameters():
        if k.endswith(".to_k.bias"):
            # softmax is invariant to q.b_k (the same for every key of a row): the exact gradient is 0
            assert p.grad.abs().max() < 1e-12, k
            rec["grad." + k] = torch.zeros_like(p.grad)
            continue
        assert p.grad is not None and p.grad.abs().max() > 1e-6, f"(near) zero gradient for {k}"
        rec["grad." + k] = p.grad
    st.write(pathlib.Path(outdir) / f"unet_{tag}_io.safetensors", {k: v.to(torch.float32) for k, v in rec.items()})
    nt, npar = ref_unet.count(m)
    gmin = min(p.grad.abs().max().item() for k, p in m.named_parameters() if not k.endswith(".to_k.bias"))
    print(f"  unet_{tag}: {nt} tensors, {npar} params; out std {out.std().item():.4f}, loss {loss.item():.6f}, "
          f"smallest per-tensor max|grad| (to_k.bias aside) {gmin:.3e}")


def main(outdir):
    make(outdir, "a", CONFIG_A, 2024, legacy=True, ts=[3, 917])
    make(outdir, "b", CONFIG_B, 4048, legacy=False, ts=[3, 917])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
