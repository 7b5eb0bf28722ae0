#!/usr/bin/python3
"""convert_inception.py -- pytorch-fid's FID Inception weights (.pth) -> safetensors for `ddpm eval fid/stats`.

    /usr/bin/python3 tools/convert_inception.py [IN.pth [OUT.safetensors]]

IN is pytorch-fid's weights file pt_inception-2015-12-05-6726825d.pth: a plain state_dict of torchvision's
Inception3 (num_classes=1008, aux_logits=False) patched with pytorch-fid's FIDInceptionA/C/E_1/E_2 blocks,
the TensorFlow "inception-2015-12-05" graph used by the original FID code, ported to PyTorch. pytorch-fid
downloads it on first use to the torch hub cache, ~/.cache/torch/hub/checkpoints/ (or $TORCH_HOME/hub/checkpoints/),
from FID_WEIGHTS_URL in pytorch_fid/inception.py:
    https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(for instance `python3 -m pytorch_fid DIR1 DIR2` once, or fetch that URL yourself). Without IN the torch hub
cache copy is used if present.

OUT defaults to where ddpm looks for the weights when --inception is not given:
    $XDG_CACHE_HOME/ddpm/inception-2015-12-05.safetensors   (~/.cache/ddpm/... when XDG_CACHE_HOME is unset)

The key set and every shape are checked against the architecture (pytorch-fid's own module structure, built
without weights; torchvision's Inception3 with the same names if pytorch-fid is not installed); any missing,
unexpected or wrongly shaped key, a non-float tensor or a non-finite value is an error (exit status 2, the key
named). Every float tensor is written as float32 under the SAME key name (Conv2d_1a_3x3.conv.weight,
Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}, Mixed_5b.branch1x1.conv.weight, ..., fc.weight
[1008, 2048], fc.bias [1008]); the BatchNorm counters num_batches_tracked are dropped. The header carries
__metadata__ {"format": "pt", "arch": "pytorch-fid-inception-2015-12-05", "source": basename of IN}.
No safetensors package is needed (tools/st.py writes the file). Exit status: 0 ok, 1 I/O or usage error,
2 the weights do not match the architecture.
"""
import argparse
import functools
import os
import pathlib
import sys

ARCH = "pytorch-fid-inception-2015-12-05"
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
OUT_NAME = "inception-2015-12-05.safetensors"
EXIT_MISMATCH = 2

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import st  # noqa: E402


def default_out():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ddpm", OUT_NAME)


def default_in():
    try:
        import torch.hub
        hub = torch.hub.get_dir()
    except Exception:
        hub = os.path.join(os.environ.get("TORCH_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "torch"),
                           "hub")
    return os.path.join(hub, "checkpoints", PTH_NAME)


def build_module():
    """pytorch-fid's FID Inception (torchvision Inception3 patched exactly as pytorch_fid.inception.fid_inception_v3
    does), built without downloading anything: its load_state_dict_from_url is monkeypatched to hand back a
    state_dict of the same structure. Falls back to torchvision's Inception3(num_classes=1008, aux_logits=False)
    (the FID blocks subclass torchvision's and keep every parameter name and shape) without pytorch-fid."""
    import torchvision
    try:
        import pytorch_fid.inception as pfi
    except ImportError:
        return torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    plain = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: plain
    try:
        return pfi.fid_inception_v3()
    finally:
        pfi.load_state_dict_from_url = orig


@functools.lru_cache(maxsize=None)
def expected_shapes():
    """name -> shape of every tensor in the FID Inception's state_dict (num_batches_tracked included)."""
    return {k: tuple(v.shape) for k, v in build_module().state_dict().items()}


def optional_key(name):
    return name.endswith(".num_batches_tracked")


def validate(sd, expected):
    """A list of error strings (empty: sd matches the architecture)."""
    import torch
    errs = []
    for k in expected:
        if k not in sd and not optional_key(k):
            errs.append(f"missing key {k} (expected shape {list(expected[k])})")
    for k, v in sd.items():
        if k not in expected:
            errs.append(f"unexpected key {k}" + (f" (shape {list(v.shape)})" if hasattr(v, "shape") else ""))
            continue
        if not isinstance(v, torch.Tensor):
            errs.append(f"key {k}: not a tensor ({type(v).__name__})")
            continue
        if tuple(v.shape) != expected[k]:
            errs.append(f"key {k}: shape {list(v.shape)}, expected {list(expected[k])}")
            continue
        if optional_key(k):
            continue
        if not v.is_floating_point():
            errs.append(f"key {k}: dtype {v.dtype}, expected a float tensor")
        elif not bool(torch.isfinite(v).all()):
            errs.append(f"key {k}: non-finite values")
    return errs


def load_state_dict(path):
    import torch
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # a broken or non-torch file
        raise OSError(f"cannot read {path} as a PyTorch file: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    return obj


def convert(src, dst):
    """Returns the process exit status."""
    import torch
    try:
        sd = load_state_dict(src)
    except OSError as e:
        print(f"convert_inception: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"convert_inception: {e}", file=sys.stderr)
        return EXIT_MISMATCH
    errs = validate(sd, expected_shapes())
    if errs:
        print(f"convert_inception: {src} does not match the FID Inception architecture ({ARCH}): "
              f"{len(errs)} problem(s):", file=sys.stderr)
        for e in errs[:20]:
            print("  " + e, file=sys.stderr)
        if len(errs) > 20:
            print(f"  ... and {len(errs) - 20} more", file=sys.stderr)
        return EXIT_MISMATCH
    out = {k: v.detach().to(torch.float32).contiguous().numpy() for k, v in sd.items() if not optional_key(k)}
    meta = {"format": "pt", "arch": ARCH, "source": os.path.basename(src)}
    d = os.path.dirname(os.path.abspath(dst))
    tmp = dst + ".tmp"
    try:
        os.makedirs(d, exist_ok=True)
        st.write(tmp, out, metadata=meta)
        os.replace(tmp, dst)
    except OSError as e:
        print(f"convert_inception: cannot write {dst}: {e}", file=sys.stderr)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return 1
    nparam = sum(a.size for a in out.values())
    print(f"convert_inception: wrote {dst}: {len(out)} tensors, {nparam} float32 values "
          f"({os.path.getsize(dst) / 2**20:.1f} MiB), arch {ARCH}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].split("--", 1)[1].strip(),
                                 epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", metavar="IN.pth", nargs="?",
                    help=f"pytorch-fid's {PTH_NAME} (default: the torch hub cache copy, {default_in()})")
    ap.add_argument("dst", metavar="OUT.safetensors", nargs="?",
                    help=f"output file (default: {default_out()})")
    a = ap.parse_args(argv)
    src = a.src or default_in()
    if not os.path.exists(src):
        print(f"convert_inception: {src}: no such file. pytorch-fid downloads {PTH_NAME} to "
              f"~/.cache/torch/hub/checkpoints/ on first use (URL: FID_WEIGHTS_URL in pytorch_fid/inception.py); "
              f"pass its path as IN.pth", file=sys.stderr)
        return 1
    return convert(src, a.dst or default_out())


if __name__ == "__main__":
    sys.exit(main())
