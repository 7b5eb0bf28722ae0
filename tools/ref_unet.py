#!/usr/bin/python3
"""ref_unet.py -- an independent PyTorch re-implementation of diffusers' UNet2DModel (DDPM subset).

Written from the behaviour described in docs/diffusers.md (config.json, parameter names and shapes, the
forward pass, safetensors); it does not use
diffusers. Module and parameter names are exactly the diffusers state-dict keys, so a state dict
loads/saves one-to-one with a diffusers model folder.

Supported config: DownBlock2D / AttnDownBlock2D, UpBlock2D / AttnUpBlock2D, UNetMidBlock2D,
positional time embedding, act_fn silu/swish, attention_head_dim null (one head per attention),
downsample_padding 0 (pad bottom/right by 1, stride-2 conv pad 0) or 1 (symmetric pad 1),
center_input_sample, mid_block_scale_factor, attn_norm_num_groups, time_embedding_dim.
Anything else is rejected with an error.

Library:
    build_model(cfg)            -> UNet2DModel (cfg: dict as in config.json; absent keys -> diffusers defaults)
    load_model(folder)          -> model (config.json + diffusion_pytorch_model.safetensors [or .bin],
                                   flat or pipeline layout, legacy attention names accepted)
    save_model(model, folder, legacy_attn_names=False)
    init_official(model, seed)  the paper's official initialisation
    timestep_embedding(t, dim, flip_sin_to_cos, freq_shift)  float32, the diffusers sequence

CLI:
    ref_unet.py eps   --model DIR --x in.npy --t T [--double] --out eps.npy
    ref_unet.py count --model DIR            (or --config FILE)
    ref_unet.py verify-spec [--spec FILE]   (FILE: an outside diffusers spec whose section 2.3 numbers the
                                           google cifar10 tensors; not in the repository, whose rules are
                                           in docs/diffusers.md)
"""
import argparse
import json
import math
import os
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402

# UNet2DModel class defaults (docs/diffusers.md, config.json), applied only for absent keys.
UNET_DEFAULTS = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.21.0",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "trained_betas": None,
    "variance_type": "fixed_small",
}

LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}

CIFAR10_CONFIG = {
    "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}

CELEBAHQ_CONFIG = dict(
    CIFAR10_CONFIG,
    block_out_channels=[128, 128, 256, 256, 512, 512],
    down_block_types=["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
    sample_size=256,
)


# --------------------------------------------------------------------------------------------------
# building blocks


def timestep_embedding(timesteps, dim, flip_sin_to_cos, freq_shift, max_period=10000):
    """Sinusoidal embedding, computed in float32 exactly in diffusers' order of operations:
    a = (-ln(max_period) as f32) * k ; a / (half - shift) ; exp ; t * freq ; [sin | cos] (or [cos | sin])."""
    timesteps = torch.as_tensor(timesteps)
    if timesteps.dim() == 0:
        timesteps = timesteps[None]
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - freq_shift)
    freqs = torch.exp(exponent)
    arg = timesteps[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, e):
        return self.linear_2(self.act(self.linear_1(e)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb_dim, groups, eps, dropout, output_scale_factor=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(cin, cout, 1, stride=1, padding=0) if cin != cout else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x, temb):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        r = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (r + h) / self.output_scale_factor


class Attention(nn.Module):
    """diffusers Attention as used by the DDPM blocks: one head, GroupNorm first, residual add."""

    def __init__(self, c, groups, eps, rescale_output_factor=1.0):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=eps, affine=True)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])
        self.scale = c ** -0.5
        self.rescale_output_factor = rescale_output_factor

    def forward(self, x):
        n, c, h, w = x.shape
        g = self.group_norm(x).reshape(n, c, h * w).transpose(1, 2)  # [N, HW, C]
        q, k, v = self.to_q(g), self.to_k(g), self.to_v(g)
        scores = torch.bmm(q, k.transpose(1, 2)) * self.scale
        a = torch.softmax(scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores, dim=-1)
        o = torch.bmm(a.to(v.dtype), v)
        o = self.to_out[1](self.to_out[0](o))
        o = o.transpose(1, 2).reshape(n, c, h, w)
        return (o + x) / self.rescale_output_factor


class Downsample2D(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, temb_dim, n, attn, add_down, groups, eps, dropout, pad):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if j == 0 else cout, cout, temb_dim, groups, eps, dropout) for j in range(n)])
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, groups, eps) for _ in range(n)])
        self.has_attn = attn
        if add_down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, pad)])
        self.has_down = add_down

    def forward(self, h, temb):
        outs = []
        for j, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.has_attn:
                h = self.attentions[j](h)
            outs.append(h)
        if self.has_down:
            h = self.downsamplers[0](h)
            outs.append(h)
        return h, outs


class UpBlock(nn.Module):
    def __init__(self, skip_in, cout, prev, temb_dim, n, attn, add_up, groups, eps, dropout):
        super().__init__()
        res = []
        for j in range(n):
            res_skip = skip_in if j == n - 1 else cout
            rin = prev if j == 0 else cout
            res.append(ResnetBlock2D(rin + res_skip, cout, temb_dim, groups, eps, dropout))
        self.resnets = nn.ModuleList(res)
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, groups, eps) for _ in range(n)])
        self.has_attn = attn
        if add_up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])
        self.has_up = add_up

    def forward(self, h, skips, temb):
        for j, r in enumerate(self.resnets):
            s = skips.pop()
            h = r(torch.cat([h, s], dim=1), temb)
            if self.has_attn:
                h = self.attentions[j](h)
        if self.has_up:
            h = self.upsamplers[0](h)
        return h


class UNetMidBlock2D(nn.Module):
    def __init__(self, c, temb_dim, groups, attn_groups, eps, dropout, scale):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, temb_dim, groups, eps, dropout, scale) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(c, attn_groups, eps, scale)])

    def forward(self, h, temb):
        h = self.resnets[0](h, temb)
        h = self.attentions[0](h)
        return self.resnets[1](h, temb)


# --------------------------------------------------------------------------------------------------
# the model


def full_config(cfg):
    """cfg with every UNet2DModel key present (absent keys take diffusers' class defaults)."""
    out = {k: cfg.get(k, v) for k, v in UNET_DEFAULTS.items()}
    return out


def _check_config(c):
    def need(cond, msg):
        if not cond:
            raise ValueError("unsupported UNet2DModel config: " + msg)

    need(c["time_embedding_type"] == "positional", f"time_embedding_type {c['time_embedding_type']!r}")
    need(c["mid_block_type"] == "UNetMidBlock2D", f"mid_block_type {c['mid_block_type']!r}")
    need(c["downsample_type"] == "conv", f"downsample_type {c['downsample_type']!r}")
    need(c["upsample_type"] == "conv", f"upsample_type {c['upsample_type']!r}")
    need(c["resnet_time_scale_shift"] == "default", f"resnet_time_scale_shift {c['resnet_time_scale_shift']!r}")
    need(c["add_attention"] is True, "add_attention must be true")
    need(c["class_embed_type"] is None and c["num_class_embeds"] is None, "class embeddings")
    need(c["act_fn"] in ("silu", "swish"), f"act_fn {c['act_fn']!r}")
    need(c["attention_head_dim"] is None,
         f"attention_head_dim {c['attention_head_dim']!r} (only null = one head is supported)")
    need(c["downsample_padding"] in (0, 1), f"downsample_padding {c['downsample_padding']!r}")
    B = c["block_out_channels"]
    L = len(B)
    need(L >= 1 and len(c["down_block_types"]) == L and len(c["up_block_types"]) == L,
         "block type lists must match block_out_channels")
    for t in c["down_block_types"]:
        need(t in ("DownBlock2D", "AttnDownBlock2D"), f"down block {t!r}")
    for t in c["up_block_types"]:
        need(t in ("UpBlock2D", "AttnUpBlock2D"), f"up block {t!r}")
    g = c["norm_num_groups"]
    for ch in B:
        need(ch % g == 0, f"channels {ch} not divisible by norm_num_groups {g}")


class UNet2DModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = full_config(cfg)
        _check_config(c)
        self.config = c
        B = list(c["block_out_channels"])
        n = c["layers_per_block"]
        groups, eps, dropout = c["norm_num_groups"], float(c["norm_eps"]), float(c["dropout"])
        temb_dim = c["time_embedding_dim"] or 4 * B[0]

        self.conv_in = nn.Conv2d(c["in_channels"], B[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(B[0], temb_dim)

        self.down_blocks = nn.ModuleList()
        out_ch = B[0]
        for i, t in enumerate(c["down_block_types"]):
            in_ch, out_ch = out_ch, B[i]
            self.down_blocks.append(DownBlock(in_ch, out_ch, temb_dim, n, t == "AttnDownBlock2D", i != len(B) - 1,
                                              groups, eps, dropout, c["downsample_padding"]))

        attn_groups = c["attn_norm_num_groups"] if c["attn_norm_num_groups"] is not None else groups
        self.mid_block = UNetMidBlock2D(B[-1], temb_dim, groups, attn_groups, eps, dropout,
                                        float(c["mid_block_scale_factor"]))

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(B))
        out_ch = rev[0]
        for i, t in enumerate(c["up_block_types"]):
            prev, out_ch = out_ch, rev[i]
            skip_in = rev[min(i + 1, len(B) - 1)]
            self.up_blocks.append(UpBlock(skip_in, out_ch, prev, temb_dim, n + 1, t == "AttnUpBlock2D",
                                          i != len(B) - 1, groups, eps, dropout))

        self.conv_norm_out = nn.GroupNorm(groups, B[0], eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(B[0], c["out_channels"], 3, padding=1)

    def time_embed(self, t, batch):
        t = torch.as_tensor(t)
        if t.dim() == 0:
            t = t[None]
        if t.is_floating_point():
            t = t.round().long()
        t = t * torch.ones(batch, dtype=t.dtype)
        e = timestep_embedding(t, self.config["block_out_channels"][0], self.config["flip_sin_to_cos"],
                               self.config["freq_shift"])
        return e.to(self.conv_in.weight.dtype)  # float32 embedding, then cast (as diffusers does)

    def forward(self, x, t):
        if self.config["center_input_sample"]:
            x = 2 * x - 1.0
        temb = self.time_embedding(self.time_embed(t, x.shape[0]))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down_blocks:
            h, outs = blk(h, temb)
            skips.extend(outs)
        h = self.mid_block(h, temb)
        for blk in self.up_blocks:
            h = blk(h, skips, temb)
        assert not skips
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


def build_model(cfg):
    return UNet2DModel(cfg)


# --------------------------------------------------------------------------------------------------
# initialisation


def _variance_scaling_uniform_(w, scale, gen):
    """TF variance_scaling(scale, mode='fan_avg', distribution='uniform')."""
    receptive = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    limit = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        u = torch.rand(w.shape, generator=gen, dtype=torch.float64)
        w.copy_(((2 * u - 1) * limit).to(w.dtype))


def _near_zero_names(model):
    names = set()
    for name, mod in model.named_modules():
        if isinstance(mod, ResnetBlock2D):
            names.add(name + ".conv2.weight")
        elif isinstance(mod, Attention):
            names.add(name + ".to_out.0.weight")
    names.add("conv_out.weight")
    return names


def init_official(model, seed, zero_scale=1e-10):
    """Official DDPM init: every conv/linear weight ~ variance scaling (fan_avg, uniform, scale 1), biases 0,
    GroupNorm weight 1 / bias 0; resnet conv2, attention to_out.0 and conv_out use scale 1e-10."""
    gen = torch.Generator().manual_seed(seed)
    near_zero = _near_zero_names(model)
    norm_params = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.GroupNorm):
            norm_params.add(name + ".weight")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif name in norm_params:
                p.fill_(1.0)
            else:
                _variance_scaling_uniform_(p, zero_scale if name in near_zero else 1.0, gen)
    return model


# --------------------------------------------------------------------------------------------------
# loading / saving


def _resolve_folder(folder):
    folder = pathlib.Path(folder)
    if (folder / "config.json").exists():
        return folder
    if (folder / "unet" / "config.json").exists():
        return folder / "unet"
    raise FileNotFoundError(f"{folder}: no config.json or unet/config.json")


def read_weights(mdir):
    p = mdir / "diffusion_pytorch_model.safetensors"
    if p.exists():
        return {k: torch.from_numpy(np.asarray(v)) for k, v in st.read(p).items()}
    p = mdir / "diffusion_pytorch_model.bin"
    if p.exists():
        return dict(torch.load(p, map_location="cpu"))
    raise FileNotFoundError(f"{mdir}: no diffusion_pytorch_model.safetensors / .bin")


def _current_name(name):
    parts = name.split(".")
    for i in range(len(parts) - 2):
        if parts[i] == "attentions" and parts[i + 1].isdigit() and parts[i + 2] in LEGACY_ATTN:
            return ".".join(parts[: i + 2] + [LEGACY_ATTN[parts[i + 2]]] + parts[i + 3:])
    return name


def load_state(model, sd):
    """Copy a (possibly legacy-named) state dict into model; raises on missing/unexpected/shape errors."""
    own = dict(model.state_dict())
    fixed = {}
    for k, v in sd.items():
        ck = k if k in own else _current_name(k)
        if ck in fixed:
            raise ValueError(f"duplicate tensor for {ck} ({k})")
        fixed[ck] = v
    missing = [k for k in own if k not in fixed]
    unexpected = [k for k in fixed if k not in own]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing[:8]}{'...' if len(missing) > 8 else ''} "
                         f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    with torch.no_grad():
        for k, p in own.items():
            v = fixed[k]
            if v.dim() == 4 and p.dim() == 2 and tuple(v.shape[2:]) == (1, 1) and ".attentions." in k:
                v = v[:, :, 0, 0]
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{k}: shape {list(v.shape)} in file, model expects {list(p.shape)}")
            p.copy_(v.to(p.dtype))
    return model


def load_model(folder):
    mdir = _resolve_folder(folder)
    with open(mdir / "config.json") as f:
        cfg = json.load(f)
    model = build_model(cfg)
    load_state(model, read_weights(mdir))
    model.eval()
    return model


def legacy_name(name):
    parts = name.split(".")
    inv = {"to_q": "query", "to_k": "key", "to_v": "value"}
    for i in range(len(parts) - 2):
        if parts[i] == "attentions" and parts[i + 1].isdigit():
            if parts[i + 2] in inv:
                return ".".join(parts[: i + 2] + [inv[parts[i + 2]]] + parts[i + 3:])
            if parts[i + 2] == "to_out" and i + 3 < len(parts) and parts[i + 3] == "0":
                return ".".join(parts[: i + 2] + ["proj_attn"] + parts[i + 4:])
    return name


def save_model(model, folder, legacy_attn_names=False, scheduler=None):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"_class_name": "UNet2DModel", "_diffusers_version": "0.21.0"}
    cfg.update(model.config)
    with open(folder / "config.json", "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    sd = {}
    for k, v in model.state_dict().items():
        sd[legacy_name(k) if legacy_attn_names else k] = v.detach().to(torch.float32).contiguous()
    st.write(folder / "diffusion_pytorch_model.safetensors", sd)
    with open(folder / "scheduler_config.json", "w") as f:
        f.write(json.dumps(scheduler or SCHEDULER_CONFIG, indent=2, sort_keys=True) + "\n")


def count(model):
    sd = model.state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


# --------------------------------------------------------------------------------------------------
# CLI


def _parse_spec(path):
    """The numbered tensor list of the --spec file's section 2.3: [(name, shape)]."""
    import re

    rows = []
    text = pathlib.Path(path).read_text()
    sec = text[text.index("### 2.3"):text.index("### 2.4")]
    for m in re.finditer(r"^\s*(\d+)\s+(\S+)\s+\[([\d,]+)\]\s*$", sec, re.M):
        rows.append((m.group(2), [int(s) for s in m.group(3).split(",")]))
    return rows


def cmd_verify_spec(args):
    ok = True
    m = build_model(CIFAR10_CONFIG)
    nt, npar = count(m)
    print(f"cifar10: {nt} tensors, {npar:,} parameters")
    ok &= (nt, npar) == (328, 35746307)
    spec = _parse_spec(args.spec)
    mine = {k: list(v.shape) for k, v in m.state_dict().items()}
    same = len(spec) == len(mine) and dict(spec) == mine
    # (the spec lists a block's resnets and attentions interleaved; order is irrelevant, files are by name)
    print(f"spec list: {len(spec)} rows; identical name -> shape map: {same}")
    if not same:
        ok = False
        sd = dict(spec)
        print("  only in spec:", sorted(set(sd) - set(mine))[:10])
        print("  only in model:", sorted(set(mine) - set(sd))[:10])
        print("  shape differences:", [k for k in sd if k in mine and sd[k] != mine[k]][:10])
    del m
    m = build_model(CELEBAHQ_CONFIG)
    nt, npar = count(m)
    print(f"celebahq-256: {nt} tensors, {npar:,} parameters")
    ok &= (nt, npar) == (450, 113673219)
    ch = [m.up_blocks[i].resnets[j].norm1.num_channels for i in range(6) for j in range(3)]
    print("up-block resnet input channels:", ch)
    ok &= ch == [1024, 1024, 1024, 1024, 1024, 768, 768, 512, 512, 512, 512, 384, 384, 256, 256, 256, 256, 256]
    print("verify-spec:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def cmd_count(args):
    if args.config:
        with open(args.config) as f:
            m = build_model(json.load(f))
    else:
        m = load_model(args.model)
    nt, npar = count(m)
    print(f"tensors {nt}")
    print(f"parameters {npar}")
    return 0


def cmd_eps(args):
    m = load_model(args.model)
    dtype = torch.float64 if args.double else torch.float32
    m = m.to(dtype)
    x = torch.from_numpy(np.load(args.x).astype(np.float64)).to(dtype)
    if x.dim() == 3:
        x = x[None]
    ts = [int(s) for s in str(args.t).split(",")]
    t = torch.tensor(ts if len(ts) > 1 else ts[0], dtype=torch.long)
    with torch.no_grad():
        y = m(x, t)
    np.save(args.out, y.to(torch.float32).numpy())
    print(f"eps {list(y.shape)} mean {y.mean().item():.6g} std {y.std().item():.6g} -> {args.out}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("eps", help="run the model on x (NCHW float32 .npy) at timestep t")
    p.add_argument("--model", required=True)
    p.add_argument("--x", required=True)
    p.add_argument("--t", required=True, help="integer timestep, or comma list with one per sample")
    p.add_argument("--out", required=True)
    p.add_argument("--double", action="store_true", help="compute in float64 (output still float32)")
    p = sub.add_parser("count", help="print tensor and parameter counts")
    p.add_argument("--model")
    p.add_argument("--config")
    p = sub.add_parser("verify-spec", help="check names/shapes against the numbered tensor list of an outside spec file (--spec)")
    p.add_argument("--spec", default=os.environ.get("DIFFUSERS_MD", "/work/shared/DIFFUSERS.md"))
    args = ap.parse_args(argv)
    if args.cmd == "count" and not (args.model or args.config):
        ap.error("count needs --model or --config")
    return {"eps": cmd_eps, "count": cmd_count, "verify-spec": cmd_verify_spec}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
