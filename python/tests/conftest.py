"""conftest.py -- what the ddpm package's pytest tests share: the tiny network config of the C tests
(8x8 gray images), trained with T = 100, tiny IDX data sets, a tiny model trained from Python once per session (an
unconditional and a class-conditional one), and the `ddpm` CLI of the build folder DDPM_BUILD.

The package is the one on sys.path: tests/py/test_python_pkg.py runs these tests against a build
folder (PYTHONPATH=python/src, DDPM_LIBRARY=BUILD/libddpm.so.0); in an environment where the wheel is
installed they test the installed package (then DDPM_BUILD names the CLI to compare with)."""
import os
import pathlib
import struct
import subprocess

import numpy as np
import pytest

import ddpm

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "fixtures" / "unet_b" / "config.json"  # 8x8x1; trained here with T = 100 (a short bound for nll)
BUILD = pathlib.Path(os.environ.get("DDPM_BUILD", REPO / "build")).resolve()
# The thread count of every library call and `ddpm` run: networks of fewer than 8 images round by it.
THREADS = 2


def write_idx(path, n, classes=0):
    """n 8x8 gray images of fixed pseudo-random pixels as an IDX file (and with classes > 0 a label
    file beside it, image i of class i % classes)."""
    path = pathlib.Path(path)
    pixels = bytes((i * 7919 + 13) % 256 for i in range(n * 64))
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", n, 8, 8) + pixels)
    if classes:
        lp = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        lp.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + bytes(i % classes for i in range(n)))
    return path


def cli(*args, timeout=600):
    """Runs `ddpm ARGS` of DDPM_BUILD; returns the completed process (stdout and stderr as text)."""
    return subprocess.run([str(BUILD / "ddpm"), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def train_tiny(out, data, steps=8, **options):
    t = ddpm.Trainer(out, data=data, config=CONFIG, batch=8, lr=1e-2, warmup=0, T=100, **options)
    t.run(steps=steps)
    t.close()
    return out


@pytest.fixture(scope="session", autouse=True)
def threads():
    ddpm.set_threads(THREADS)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return write_idx(tmp_path_factory.mktemp("data") / "tiny-images-idx3-ubyte", 32, classes=3)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data):
    """A run folder: the tiny network trained 8 steps from Python."""
    return train_tiny(tmp_path_factory.mktemp("runs") / "uncond", tiny_data)


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory, tiny_data):
    """A class-conditional run (3 classes and the null class), 4 steps."""
    return train_tiny(tmp_path_factory.mktemp("runs") / "cond", tiny_data, steps=4, classes=True)


@pytest.fixture
def model(tiny_run):
    m = ddpm.Model.load(tiny_run)
    yield m
    m.close()


def noise(n, seed=7):
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8)).astype(np.float32)
