#!/usr/bin/python3
"""train_fmnist_features.py -- the built-in feature network for "FID (F-MNIST features)".

Trains a small all-conv classifier on the Fashion-MNIST TRAIN split, reports its accuracy on the test split,
and writes the weights to src/eval/fmnist_features.safetensors; then writes the parity fixture
tests/fixtures/fmnist_features_io.safetensors for the C implementation.

Architecture ("ddpm-fmnist-features-v1"; the C side implements exactly this, NCHW):
    input  x = pixel/127.5 - 1, [B,1,28,28]
    conv1  Conv2d(1, 32, 3, padding=1)   + ReLU
    conv2  Conv2d(32, 32, 3, padding=1)  + ReLU, MaxPool2d(2)      -> 14x14
    conv3  Conv2d(32, 64, 3, padding=1)  + ReLU
    conv4  Conv2d(64, 64, 3, padding=1)  + ReLU, MaxPool2d(2)      -> 7x7
    conv5  Conv2d(64, 128, 3, padding=1) + ReLU
    conv6  Conv2d(128, 256, 3, padding=1)+ ReLU, global average pool -> [B,256] = FEATURES
    fc     Linear(256, 10)                                         -> logits
(dropout 0.3 before fc during training only). All convs have a bias; no normalisation layers.

Training: Adam lr 1e-3, linear warm-up then cosine decay to 0, batch 128, fixed seed, 2 threads.
Augmentation is deliberately light (random horizontal flip, random translation of at most --shift pixels
with zero = -1 padding); no noise or blur, so the features stay sensitive to both.

Files (safetensors, written with tools/st.py):
    weights: conv{1..6}.weight [out,in,3,3], conv{1..6}.bias [out], fc.weight [10,256], fc.bias [10], all F32;
             __metadata__: format=pt, arch=ddpm-fmnist-features-v1, test_accuracy, train_steps, seed
    fixture: x [10,1,28,28] F32 = the first 8 test images in [-1,1] + 2 images uniform in [-1,1] (seed 1234);
             features [10,256], logits [10,10] F32, computed in float64 (model and x converted to double)
             and rounded to float32 once.

Usage:
    /usr/bin/python3 tools/train_fmnist_features.py                 # train (default 5 epochs, BatchNorm folded), then fixture
    /usr/bin/python3 tools/train_fmnist_features.py --fixture       # fixture only, from the weights file
"""
import argparse
import gzip
import math
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import st  # noqa: E402

ARCH = "ddpm-fmnist-features-v1"
DATA_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
WEIGHTS = ROOT / "src" / "eval" / "fmnist_features.safetensors"
FIXTURE = ROOT / "tests" / "fixtures" / "fmnist_features_io.safetensors"
NOISE_SEED = 1234


# ----------------------------------------------------------------------------------------------- data
def read_idx(path):
    """IDX (optionally .gz) -> numpy uint8 array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(raw) - off != n:
        raise ValueError(f"{path}: {len(raw) - off} data bytes, expected {n}")
    return np.frombuffer(raw, dtype=np.uint8, offset=off).reshape(dims).copy()


def load_split(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    if x.shape[1:] != (28, 28) or x.shape[0] != y.shape[0]:
        raise ValueError(f"{split}: unexpected shapes {x.shape} {y.shape}")
    return x, y.astype(np.int64)


def to_input(u8):
    """uint8 [N,28,28] -> float32 tensor [N,1,28,28] in [-1,1], x = pixel/127.5 - 1 (computed in float32)."""
    return torch.from_numpy(u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).unsqueeze(1)


def augment(x, rng, shift):
    """Random horizontal flip + random integer translation in [-shift, shift] (pad value -1 = black)."""
    b = x.shape[0]
    flip = torch.from_numpy(rng.random(b) < 0.5)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift <= 0:
        return x
    pad = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    dx = rng.integers(0, 2 * shift + 1, size=b)
    dy = rng.integers(0, 2 * shift + 1, size=b)
    out = torch.empty_like(x)
    for i in range(b):
        out[i] = pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


# ---------------------------------------------------------------------------------------------- model
class FeatNet(nn.Module):
    """The network ddpm runs. With bn=True (training only) each convolution is
    followed by a BatchNorm2d, which folded() merges into the convolution's
    weight and bias, so the exported network is exactly the architecture above."""

    def __init__(self, dropout=0.3, bn=False):
        super().__init__()
        chans = [32, 32, 64, 64, 128, 256]
        self.bn = nn.ModuleList(nn.BatchNorm2d(c) for c in chans) if bn else None
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv5 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv6 = nn.Conv2d(128, 256, 3, padding=1)
        self.fc = nn.Linear(256, 10)
        self.dropout = nn.Dropout(dropout)

    def init_weights(self):
        # He init keeps the activation scale through six ReLU convs without normalisation layers.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def layer(self, i, x):
        y = getattr(self, f"conv{i}")(x)
        return F.relu(self.bn[i - 1](y) if self.bn is not None else y)

    def features(self, x):
        x = self.layer(1, x)
        x = F.max_pool2d(self.layer(2, x), 2)
        x = self.layer(3, x)
        x = F.max_pool2d(self.layer(4, x), 2)
        x = self.layer(5, x)
        x = self.layer(6, x)
        return x.mean(dim=(2, 3))

    @torch.no_grad()
    def folded(self):
        """The same function without BatchNorm: w' = w g / s, b' = (b - mean) g / s + beta, s = sqrt(var + eps)."""
        plain = FeatNet()
        for i in range(1, 7):
            conv, dst = getattr(self, f"conv{i}"), getattr(plain, f"conv{i}")
            w, b = conv.weight.double(), conv.bias.double()
            if self.bn is not None:
                bn = self.bn[i - 1]
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                w = w * scale[:, None, None, None]
                b = (b - bn.running_mean.double()) * scale + bn.bias.double()
            dst.weight.copy_(w.float())
            dst.bias.copy_(b.float())
        plain.fc.load_state_dict(self.fc.state_dict())
        return plain.eval()

    def forward(self, x):
        f = self.features(x)
        return f, self.fc(self.dropout(f))


TENSOR_NAMES = [f"conv{i}.{p}" for i in range(1, 7) for p in ("weight", "bias")] + ["fc.weight", "fc.bias"]


def state_tensors(model):
    sd = model.state_dict()
    return {k: sd[k].detach().to(torch.float32).contiguous() for k in TENSOR_NAMES}


def load_model(path):
    t = st.read(path)
    missing = set(TENSOR_NAMES) ^ set(t)
    if missing:
        raise ValueError(f"{path}: tensor names differ: {sorted(missing)}")
    model = FeatNet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in t.items()}, strict=True)
    return model.eval()


@torch.no_grad()
def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        _, logits = model(x[i:i + batch])
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


# ------------------------------------------------------------------------------------------- training
def train(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    xtr_u8, ytr = load_split(args.data, "train")
    xte_u8, yte = load_split(args.data, "test")
    xtr, ytr = to_input(xtr_u8), torch.from_numpy(ytr)
    xte, yte = to_input(xte_u8), torch.from_numpy(yte)
    print(f"data: train {tuple(xtr.shape)}, test {tuple(xte.shape)}", flush=True)

    model = FeatNet(dropout=args.dropout, bn=not args.no_bn)
    model.init_weights()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {ARCH}, {nparams} parameters ({nparams * 4} bytes of float32)", flush=True)

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = xtr.shape[0]
    steps_per_epoch = n // args.batch  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    warm = min(args.warmup, total // 10)

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        p = (step - warm) / max(1, total - warm)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * p))

    step = 0
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        run_loss, run_acc, run_n = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb = augment(xtr[idx], rng, args.shift)
            yb = ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            _, logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss += float(loss) * yb.shape[0]
            run_acc += int((logits.argmax(1) == yb).sum())
            run_n += yb.shape[0]
            if step % 50 == 0:
                el = time.time() - t0
                print(f"epoch {epoch + 1} step {step}/{total} loss {run_loss / run_n:.4f} "
                      f"train_acc {run_acc / run_n:.4f} lr {lr_at(step - 1):.2e} "
                      f"{el:.0f}s (eta {el / step * (total - step):.0f}s)", flush=True)
                run_loss, run_acc, run_n = 0.0, 0, 0
        acc = evaluate(model, xte, yte)
        print(f"== epoch {epoch + 1}: test_accuracy {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)

    train_s = time.time() - t0
    model = model.eval().folded()
    acc = evaluate(model, xte, yte)
    print(f"final: test_accuracy {acc:.4f}, {step} steps, {train_s:.0f}s training", flush=True)

    meta = {"format": "pt", "arch": ARCH, "test_accuracy": f"{acc:.4f}", "train_steps": str(step),
            "seed": str(args.seed)}
    args.weights.parent.mkdir(parents=True, exist_ok=True)
    st.write(str(args.weights), state_tensors(model), metadata=meta)
    print(f"wrote {args.weights} ({args.weights.stat().st_size} bytes)", flush=True)

    # The file must give back exactly this model.
    reread = load_model(args.weights)
    acc2 = evaluate(reread, xte, yte)
    if f"{acc2:.4f}" != f"{acc:.4f}":
        raise RuntimeError(f"reloaded weights give test accuracy {acc2:.4f}, expected {acc:.4f}")


# -------------------------------------------------------------------------------------------- fixture
def make_fixture(args):
    model = load_model(args.weights).double()
    xte_u8, _ = load_split(args.data, "test")
    x_img = to_input(xte_u8[:8])  # float32
    g = torch.Generator().manual_seed(NOISE_SEED)
    x_noise = (torch.rand((2, 1, 28, 28), generator=g, dtype=torch.float64) * 2.0 - 1.0).float()
    x = torch.cat([x_img, x_noise], 0).contiguous()  # float32 [10,1,28,28]
    with torch.no_grad():
        feats, logits = model(x.double())  # eval mode: dropout off
    out = {"x": x, "features": feats.float().contiguous(), "logits": logits.float().contiguous()}
    meta = {"format": "pt", "arch": ARCH,
            "note": "x = first 8 Fashion-MNIST test images (pixel/127.5-1) + 2 uniform[-1,1] images "
                    f"(torch.Generator seed {NOISE_SEED}); features/logits computed in float64"}
    args.fixture_out.parent.mkdir(parents=True, exist_ok=True)
    st.write(str(args.fixture_out), out, metadata=meta)
    print(f"wrote {args.fixture_out} ({args.fixture_out.stat().st_size} bytes); "
          f"logits argmax {logits.argmax(1).tolist()}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", action="store_true", help="only (re)write the fixture from --weights")
    ap.add_argument("--data", type=pathlib.Path, default=DATA_DIR)
    ap.add_argument("--weights", type=pathlib.Path, default=WEIGHTS)
    ap.add_argument("--fixture-out", type=pathlib.Path, default=FIXTURE)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--no-bn", action="store_true", help="train without BatchNorm (by default it is folded away)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps before the cosine decay")
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--shift", type=int, default=1, help="max random translation in pixels (<= 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not 0 <= args.shift <= 2:
        ap.error("--shift must be 0, 1 or 2")
    torch.set_num_threads(args.threads)
    if not args.fixture:
        train(args)
    make_fixture(args)


if __name__ == "__main__":
    main()
