#!/usr/bin/python3
"""fixtures_class.py -- a class-conditional UNet2DModel made by the real diffusers (0.31.0, from PyPI),
and its forward/backward with class labels.

    tests/fixtures/unet_c/                 UNet2DModel.save_pretrained: config.json (num_class_embeds 5)
                                           + diffusion_pytorch_model.safetensors
    tests/fixtures/unet_c_io.safetensors   x, t, y (labels, as float32), eps, out, loss, grad.x, grad.<param>

The network is unet_b's config (tests/fixtures/unet_b) with num_class_embeds = 5, diffusers' own
initialisation from a fixed seed, then noise on every bias and GroupNorm parameter (so nothing is
exactly 0 or 1), stored in float32. The forward and backward run in float64 (the stored float32
weights, widened), on 4 images with labels 0, 3, 4, 3 (a class used twice, the last class = ddpm's
null class). Loss: the MSE against eps.

diffusers' attention runs with tools/diffusers_fix.py's patch (Debian's torch 1.13 otherwise returns NaN
now and then).
"""
import pathlib
import sys

import torch

CONFIG = {
    "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16, 16], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 4, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "attention_head_dim": None, "dropout": 0.0, "act_fn": "silu", "mid_block_scale_factor": 1,
    "center_input_sample": False, "time_embedding_type": "positional", "num_class_embeds": 5,
}
LABELS = [0, 3, 4, 3]
TIMESTEPS = [3, 917, 500, 42]


def main(outdir):
    import safetensors.torch  # noqa: F401  (diffusers reads/writes .safetensors only once this is imported)
    from diffusers import UNet2DModel
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import diffusers_fix
    import st
    diffusers_fix.patch()

    torch.manual_seed(77)
    model = UNet2DModel(**CONFIG)
    g = torch.Generator().manual_seed(78)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    model = model.float()
    folder = pathlib.Path(outdir) / "unet_c"
    model.save_pretrained(folder, safe_serialization=True)
    model = UNet2DModel.from_pretrained(folder).double()
    assert model.class_embedding.weight.shape == (5, 32)

    c = CONFIG["in_channels"]
    n = len(LABELS)
    gx = torch.Generator().manual_seed(79)
    x0 = torch.randn(n, c, 8, 8, generator=gx, dtype=torch.float64).float().double()
    eps = torch.randn(n, c, 8, 8, generator=gx, dtype=torch.float64).float().double()
    t = torch.tensor(TIMESTEPS, dtype=torch.long)
    y = torch.tensor(LABELS, dtype=torch.long)

    def run():
        model.zero_grad()
        x = x0.clone().requires_grad_(True)
        out = model(x, t, class_labels=y).sample
        loss = ((out - eps) ** 2).mean()
        loss.backward()
        grads = tuple(p.grad.clone() for p in model.parameters())
        return (out.detach(), loss.detach().reshape(1), x.grad.clone()) + grads

    r = run()
    out, loss, gradx = r[:3]
    rec = {"x": x0, "t": t.to(torch.float64), "y": y.to(torch.float64), "eps": eps, "out": out, "loss": loss,
           "grad.x": gradx}
    for (k, p), gr in zip(model.named_parameters(), r[3:]):
        if k.endswith(".to_k.bias"):
            # softmax is invariant to q.b_k (the same for every key of a row): the exact gradient is 0
            assert gr.abs().max() < 1e-9, (k, gr.abs().max().item())
            gr = torch.zeros_like(gr)
        rec["grad." + k] = gr
    st.write(pathlib.Path(outdir) / "unet_c_io.safetensors", {k: v.to(torch.float32) for k, v in rec.items()})
    ce = rec["grad.class_embedding.weight"]
    print(f"  unet_c: {sum(p.numel() for p in model.parameters())} params; loss {loss.item():.6f}; "
          f"class_embedding grad rows |max|: {[round(v, 6) for v in ce.abs().amax(1).tolist()]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
