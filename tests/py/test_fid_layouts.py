#!/usr/bin/python3
"""test_fid_layouts.py -- `ddpm eval fid` and `ddpm eval stats` take the image arrays users have
(cli/fid_sources.c): a .npy in NCHW, NHWC or (N, H, W), uint8 or float32/float64, and an .npz
holding arr_0 (guided-diffusion's sample batches: NHWC uint8, np.savez; np.savez_compressed too).

The same images in every layout and file type must give the same FID, bit for bit: the JSON's
"fid" is "%.17g" of the double, compared as text. (uint8 pixels p and float32 p / 127.5 - 1 are the
same floats, so they are compared too.) Gray 28x28 images use the built-in F-MNIST features
against statistics of 100 Fashion-MNIST test images; RGB images use pytorch-fid's Inception-v3
with random weights under the real names (made as tests/py/test_inception.py makes them), which
also shows the channel order survives the NHWC transpose. A 4-d shape whose layout cannot be told
(dimensions 1 and 3 both 1 or 3) must fail with a message naming --layout nchw|nhwc, and give the
same FID once --layout says which. eval stats writes the same statistics file from each layout.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_fid_layouts.py
Exits non-zero on any failure.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ddpmtest import check, ddpm, finish  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def fid_text(out, *args):
    """Runs eval fid with --json; returns (status, fid as the JSON's text or None, output)."""
    js = os.path.join(out, "r.json")
    if os.path.exists(js):
        os.remove(js)
    rc, log = ddpm("eval", "fid", *args, "--json", js, "--threads", 2)
    if rc != 0:
        return rc, None, log
    with open(js) as f:
        return rc, json.load(f, parse_float=str)["fid"], log


def same_fid(tmp, ref, base_name, cases, extra=()):
    """eval fid of each (name, file, flags) in cases against ref: exit 0 and the FID of the first."""
    want = None
    for name, path, flags in cases:
        rc, fid, log = fid_text(tmp, "--samples", path, "--ref", ref, *flags, *extra)
        if want is None:
            want = fid
            check(rc == 0 and fid is not None, f"{base_name}: {name}: FID {fid} (exit {rc})"
                  + ("" if rc == 0 else f": {log.strip().splitlines()[-1:]}"))
        else:
            check(rc == 0 and fid == want, f"{base_name}: {name}: FID {fid}, the same as {cases[0][0]}'s {want}"
                  + ("" if rc == 0 else f" (exit {rc}: {log.strip().splitlines()[-1:]})"))


def expect_error(what, args, needle):
    rc, log = ddpm(*args)
    check(rc == 2 and needle in log, f"{what}: exit {rc} (want 2), message names '{needle}': "
          f"{log.strip().splitlines()[-1:] if log.strip() else ''}")


def gray(tmp):
    rng = np.random.default_rng(7)
    # 30 gray 28x28 images: a blob on noise, so the features vary.
    yy, xx = np.mgrid[0:28, 0:28]
    imgs = []
    for i in range(30):
        cy, cx, r = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(4, 10)
        blob = 200.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
        imgs.append(np.clip(blob + rng.uniform(0, 55, (28, 28)), 0, 255))
    u8 = np.stack(imgs).astype(np.uint8)  # [n, H, W]
    f32 = u8.astype(np.float32) / np.float32(127.5) - np.float32(1)
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    np.save(p("nchw_u8.npy"), u8[:, None])
    np.save(p("nhwc_u8.npy"), u8[:, :, :, None])
    np.save(p("nhw_u8.npy"), u8)
    np.save(p("nchw_f32.npy"), f32[:, None])
    np.save(p("nhwc_f32.npy"), f32[:, :, :, None])
    np.save(p("nhw_f64.npy"), f32.astype(np.float64))
    np.savez(p("gd_u8.npz"), u8[:, :, :, None])  # guided-diffusion: np.savez(out_path, arr)
    np.savez_compressed(p("gdz_u8.npz"), u8[:, :, :, None])
    np.savez(p("f32.npz"), arr_0=f32[:, None], arr_1=np.arange(30))

    ref = p("ref.npz")
    rc, log = ddpm("eval", "stats", "--data", FMNIST, "--split", "test", "--n", 100, "--out", ref,
                   "--save-features", "--threads", 2)
    if not check(rc == 0, f"eval stats of 100 Fashion-MNIST test images (exit {rc})"):
        print(log)
        return
    same_fid(tmp, ref, "gray 30x28x28", [
        ("NCHW uint8 .npy", p("nchw_u8.npy"), ()),
        ("NHWC uint8 .npy", p("nhwc_u8.npy"), ()),
        ("[n, H, W] uint8 .npy", p("nhw_u8.npy"), ()),
        ("NCHW float32 .npy", p("nchw_f32.npy"), ()),
        ("NHWC float32 .npy", p("nhwc_f32.npy"), ()),
        ("[n, H, W] float64 .npy", p("nhw_f64.npy"), ()),
        ("NHWC uint8 .npz arr_0 (np.savez, guided-diffusion)", p("gd_u8.npz"), ()),
        ("NHWC uint8 .npz arr_0 (np.savez_compressed)", p("gdz_u8.npz"), ()),
        ("NCHW float32 .npz arr_0", p("f32.npz"), ()),
        ("NHWC uint8 .npy, --layout nhwc", p("nhwc_u8.npy"), ("--layout", "nhwc")),
        ("NCHW uint8 .npy, --layout nchw", p("nchw_u8.npy"), ("--layout", "nchw")),
    ])
    # An image array as the reference too (both sides from arrays, different layouts).
    rc1, f1, _ = fid_text(tmp, "--samples", p("nchw_u8.npy"), "--ref", p("gd_u8.npz"))
    rc2, f2, _ = fid_text(tmp, "--samples", p("nhw_u8.npy"), "--ref", p("nchw_f32.npy"))
    check(rc1 == 0 and rc2 == 0 and f1 == f2 and abs(float(f1)) < 1e-9,
          f"the same images as samples and reference, in other layouts: FID {f1} and {f2} (want 0 up to rounding)")

    # eval stats: the same statistics file (bytes) from each layout.
    blobs = {}
    for name in ("nchw_u8.npy", "nhwc_u8.npy", "nhw_u8.npy", "gd_u8.npz", "gdz_u8.npz"):
        out = p(f"stats_{name}.npz")
        rc, log = ddpm("eval", "stats", "--data", p(name), "--out", out, "--save-features", "--threads", 2)
        blobs[name] = pathlib.Path(out).read_bytes() if rc == 0 else None
        check(rc == 0, f"eval stats --data {name} (exit {rc})")
    first = blobs["nchw_u8.npy"]
    check(first is not None and all(b == first for b in blobs.values()),
          "eval stats writes the same bytes from NCHW, NHWC, [n, H, W], .npz and compressed .npz")

    # Errors: each one line, exit 2.
    np.save(p("amb.npy"), np.zeros((4, 1, 5, 1), np.uint8))
    expect_error("a shape that could be NCHW or NHWC", ("eval", "fid", "--samples", p("amb.npy"), "--ref", ref),
                 "--layout nchw|nhwc")
    expect_error("the same in eval stats", ("eval", "stats", "--data", p("amb.npy"), "--out", p("x.npz")),
                 "--layout nchw|nhwc")
    expect_error("--layout nchw on NHWC images", ("eval", "fid", "--samples", p("nhwc_u8.npy"), "--ref", ref,
                                                  "--layout", "nchw"), "are not NCHW")
    np.save(p("c2.npy"), np.zeros((4, 28, 28, 2), np.uint8))
    expect_error("2 channels", ("eval", "fid", "--samples", p("c2.npy"), "--ref", ref), "C = 1 or 3")
    np.save(p("d5.npy"), np.zeros((2, 1, 1, 28, 28), np.uint8))
    expect_error("a 5-d array", ("eval", "fid", "--samples", p("d5.npy"), "--ref", ref), "[n, H, W]")
    np.savez(p("other.npz"), images=u8)
    expect_error("an .npz with neither arr_0 nor mu/sigma", ("eval", "fid", "--samples", p("nchw_u8.npy"),
                                                              "--ref", p("other.npz")), "arr_0")
    bad = bytearray(pathlib.Path(p("gd_u8.npz")).read_bytes())
    bad[len(bad) // 2] ^= 0x55  # inside arr_0's pixels
    pathlib.Path(p("bad.npz")).write_bytes(bytes(bad))
    expect_error("a corrupt arr_0 (reported as such, not read as statistics)",
                 ("eval", "fid", "--samples", p("bad.npz"), "--ref", ref), "CRC-32")
    expect_error("a bad --layout word", ("eval", "fid", "--samples", p("nchw_u8.npy"), "--layout", "chw"),
                 "--layout")


def inception_weights(tmp):
    """Random Inception-v3 weights in ddpm's format (as tests/py/test_inception.py makes them)."""
    import torch
    import test_inception as ti
    pth = os.path.join(tmp, ti.ci.PTH_NAME)
    out = os.path.join(tmp, "inception.safetensors")
    torch.save(ti.random_state_dict(), pth)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "convert_inception.py"), pth, out],
                       capture_output=True, text=True)
    return out if check(r.returncode == 0, f"random Inception weights converted (exit {r.returncode})") else None


def rgb(tmp):
    w = inception_weights(tmp)
    if w is None:
        return
    rng = np.random.default_rng(11)
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    inc = ("--features", "inception", "--inception", w)
    # The reference: statistics of 6 other RGB images.
    np.save(p("rgb_ref.npy"), rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8))
    ref = p("rgb_ref.npz")
    rc, log = ddpm("eval", "stats", "--data", p("rgb_ref.npy"), "--out", ref, *inc, "--threads", 2)
    if not check(rc == 0, f"eval stats of 6 RGB images with Inception features (exit {rc})"):
        print(log)
        return
    # 16x16 RGB, uint8: NCHW .npy, NHWC .npy, guided-diffusion's NHWC .npz.
    x = rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    np.save(p("rgb_nchw.npy"), x)
    np.save(p("rgb_nhwc.npy"), x.transpose(0, 2, 3, 1).copy())
    np.savez(p("rgb_gd.npz"), x.transpose(0, 2, 3, 1).copy())
    same_fid(tmp, ref, "RGB 4x16x16x3 (Inception)", [
        ("NCHW uint8 .npy", p("rgb_nchw.npy"), ()),
        ("NHWC uint8 .npy", p("rgb_nhwc.npy"), ()),
        ("NHWC uint8 .npz arr_0 (guided-diffusion)", p("rgb_gd.npz"), ()),
    ], extra=inc)
    # A swapped channel order is a different image: the transpose is not a no-op.
    np.save(p("rgb_bgr.npy"), x[:, ::-1].copy())
    _, a, _ = fid_text(tmp, "--samples", p("rgb_nchw.npy"), "--ref", ref, *inc)
    _, b, _ = fid_text(tmp, "--samples", p("rgb_bgr.npy"), "--ref", ref, *inc)
    check(a is not None and b is not None and a != b, f"control: BGR images give another FID ({b} vs {a})")
    # 8x3 RGB images: NCHW [n, 3, 8, 3] cannot be told from NHWC; --layout nchw settles it.
    y = rng.integers(0, 256, (4, 3, 8, 3), dtype=np.uint8)
    np.save(p("amb_nchw.npy"), y)
    np.save(p("amb_nhwc.npy"), y.transpose(0, 2, 3, 1).copy())  # [n, 8, 3, 3]: NHWC only
    expect_error("RGB [4, 3, 8, 3] without --layout", ("eval", "fid", "--samples", p("amb_nchw.npy"), "--ref", ref,
                                                        *inc), "--layout nchw|nhwc")
    same_fid(tmp, ref, "RGB 4x8x3x3 (Inception)", [
        ("NHWC [4, 8, 3, 3]", p("amb_nhwc.npy"), ()),
        ("[4, 3, 8, 3] with --layout nchw", p("amb_nchw.npy"), ("--layout", "nchw")),
    ], extra=inc)


def main():
    tmp = tempfile.mkdtemp(prefix="test_fid_layouts_")
    gray(tmp)
    rgb(tmp)
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
