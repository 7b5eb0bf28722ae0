"""ddpmtest.py -- what the Python tests in tests/py share (not a test itself: scripts/run-tests.sh
runs test_*.py only): where the ddpm binary is (DDPM_BUILD, default build), the tiny fixture
config, the pass/fail bookkeeping, tools/diffusers_fix.py's patch (fix_diffusers), tiny IDX data sets,
and a state file's metadata."""
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from diffusers_fix import patch as fix_diffusers  # noqa: E402,F401  (re-exported for the tests)

BUILD = os.environ.get("DDPM_BUILD", "build")
DDPM = str(pathlib.Path(BUILD, "ddpm").resolve())
CONFIG = str(pathlib.Path("tests/fixtures/unet_b/config.json").resolve())  # 8x8x1, T = 1000

failures = []


def check(ok, what):
    """Prints one result line; a failure is remembered for finish()."""
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def finish(tmp, extra=""):
    """Removes the scratch folder tmp when everything passed (else keeps it and says where);
    returns the exit status."""
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)" + (f"; scratch kept in {tmp}{extra}" if failures else ""))
    return 1 if failures else 0


def ddpm(*args, timeout=600):
    """Runs `ddpm ARGS`; returns (exit status, stdout + stderr)."""
    p = subprocess.run([DDPM, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr



def tiny_idx(path, n):
    """An IDX file of n 8x8 gray images of fixed pseudo-random pixels (the tiny fixture config's size)."""
    return write_idx(path, (((i * 7919 + 13) % 256 for i in range(n * 64)), n, 8, 8))


def write_idx(images_path, images, labels=None):
    """images = (bytes of n h x w gray images, n, h, w): writes an IDX image file, and with labels
    (n bytes) the label file beside it (images-idx3 -> labels-idx1)."""
    data, n, h, w = images
    images_path = pathlib.Path(images_path)
    images_path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", n, h, w) + bytes(data))
    if labels is not None:
        lp = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
        lp.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(labels))
    return images_path


def saved_step(path):
    """The step stored in a training state file, or None when it is missing or unreadable."""
    try:
        raw = pathlib.Path(path).read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        return int(json.loads(raw[8:8 + n])["__metadata__"]["step"])
    except (OSError, ValueError, KeyError, struct.error):
        return None


def metrics(run_dir):
    """(step, loss, grad_norm) of every loss line of RUN/metrics.jsonl."""
    rows = [json.loads(l) for l in pathlib.Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r]
