#!/usr/bin/python3
"""test_checksums.py -- the checksums ddpm stores in its safetensors files are what src/io/safetensors.h
says, and the files stay plain safetensors for the real safetensors (0.4.5) and diffusers (0.31.0).

  1. ddpm trains a tiny model (tests/fixtures/unet_b's config) for 2 steps.
  2. training_state.safetensors and model/diffusion_pytorch_model.safetensors load with
     safetensors.torch.load_file, their metadata is str -> str, and "ddpm.xxh64" holds, for every tensor,
     the XXH64 (seed 0) of its bytes and, under "__metadata__", that of the other metadata pairs in key order
     (key NUL value NUL each) -- recomputed here by a Python XXH64, independent of libxxhash.
  3. UNet2DModel.from_pretrained(RUN/model) loads, with ddpm's weights.
  4. The weights re-saved by safetensors with the same metadata (its own header) still verify in ddpm;
     one tensor changed under the old metadata is refused naming the tensor (exit 2), and read with
     --no-verify; diffusers' save_pretrained (no checksums) loads as before.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_checksums.py
Exits non-zero on any failure.
"""
import json
import pathlib
import shutil
import struct
import sys
import tempfile

import numpy as np

from ddpmtest import CONFIG, check, ddpm, finish, tiny_idx  # noqa: E402


M = (1 << 64) - 1
P1, P2, P3 = 11400714785074694791, 14029467366897019727, 1609587929392839161
P4, P5 = 9650029242287828579, 2870177450012600261


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def rnd(acc, lane):
    return (rotl((acc + lane * P2) & M, 31) * P1) & M


def xxh64(b, seed=0):
    """XXH64 as specified in xxHash's doc/xxhash_spec.md."""
    n, i = len(b), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            lanes = struct.unpack_from("<4Q", b, i)
            v = [rnd(v[k], lanes[k]) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4):
            h = ((h ^ rnd(0, v[k])) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, struct.unpack_from("<Q", b, i)[0]), 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ ((struct.unpack_from("<I", b, i)[0] * P1) & M), 23) * P2 + P3) & M
        i += 4
    while i < n:
        h = (rotl(h ^ ((b[i] * P5) & M), 11) * P1) & M
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M
    h = ((h ^ (h >> 29)) * P3) & M
    return h ^ (h >> 32)


def check_file(path):
    """The stored checksums of a ddpm safetensors file against the recomputed ones."""
    import safetensors.torch
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    tensors = safetensors.torch.load_file(str(path))
    check(set(tensors) == set(header), f"{path.name}: safetensors.torch.load_file reads {len(tensors)} tensors")
    check(all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()),
          f"{path.name}: metadata is str -> str ({sorted(meta)})")
    sums = json.loads(meta["ddpm.xxh64"])
    check(set(sums) == set(header) | {"__metadata__"} and all(len(v) == 16 for v in sums.values()),
          f"{path.name}: a 16-hex-digit checksum for every tensor and for the metadata")
    data = raw[8 + n:]
    bad = [k for k, t in header.items() if int(sums[k], 16) != xxh64(data[t["data_offsets"][0]:t["data_offsets"][1]])]
    check(not bad, f"{path.name}: every tensor's checksum is XXH64 of its bytes" + (f" (not: {bad})" if bad else ""))
    m = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in sorted(meta.items()) if k != "ddpm.xxh64")
    check(int(sums["__metadata__"], 16) == xxh64(m), f"{path.name}: the metadata's checksum")
    return tensors, meta


def main():
    import safetensors.torch
    import torch
    from diffusers import UNet2DModel

    check(xxh64(b"") == 0xEF46DB3751D8E999, "the Python XXH64 gives the specification's value for no bytes")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_checksums_"))
    data = tiny_idx(tmp / "images-idx3-ubyte", 16)
    run = tmp / "run"
    rc, log = ddpm("train", "--out", run, "--config", CONFIG, "--data", data, "--batch", 4, "--steps", 2,
                   "--threads", 1)
    check(rc == 0, f"ddpm trains (rc {rc})" + ("" if rc == 0 else "\n" + log))
    if rc:
        return 1
    check_file(run / "training_state.safetensors")
    weights, meta = check_file(run / "model" / "diffusion_pytorch_model.safetensors")

    model = UNet2DModel.from_pretrained(str(run / "model"))
    sd = model.state_dict()
    check(all(torch.equal(sd[k], v) for k, v in weights.items()) and len(sd) == len(weights),
          "UNet2DModel.from_pretrained loads ddpm's weights")

    x = tmp / "x.npy"
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    # Re-saved by safetensors with the same metadata: another file, the same checksums.
    again = tmp / "again"
    shutil.copytree(run / "model", again)
    w = again / "diffusion_pytorch_model.safetensors"
    safetensors.torch.save_file({k: v.clone() for k, v in reversed(list(weights.items()))}, str(w), metadata=meta)
    rc, log = ddpm("eps", "--model", again, "--x", x, "--t", 5, "--out", tmp / "e.npy", "--threads", 1)
    check(rc == 0, f"ddpm verifies the file safetensors re-saved (rc {rc})" + ("" if rc == 0 else "\n" + log))
    # One tensor changed under the old checksums: refused, naming it; --no-verify reads it.
    changed = dict(weights)
    changed["conv_out.bias"] = changed["conv_out.bias"] + 1
    safetensors.torch.save_file(changed, str(w), metadata=meta)
    rc, log = ddpm("eps", "--model", again, "--x", x, "--t", 5, "--out", tmp / "e.npy", "--threads", 1)
    check(rc == 2 and "tensor 'conv_out.bias' fails its checksum: the file is corrupt" in log,
          f"a changed tensor is refused (rc {rc}): {log.strip()}")
    rc, log = ddpm("eps", "--model", again, "--x", x, "--t", 5, "--out", tmp / "e.npy", "--threads", 1, "--no-verify")
    check(rc == 0, f"--no-verify reads it (rc {rc})")
    # diffusers' own files carry no checksums and load as before.
    model.save_pretrained(str(tmp / "hf"))
    rc, log = ddpm("eps", "--model", tmp / "hf", "--x", x, "--t", 5, "--out", tmp / "e.npy", "--threads", 1)
    check(rc == 0, f"a diffusers save_pretrained folder (no checksums) loads (rc {rc})" + ("" if rc == 0 else "\n" + log))

    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
