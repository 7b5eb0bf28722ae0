"""ddpm -- Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020) on the CPU: the libddpm C
library from Python, with NumPy arrays.

    import ddpm
    trainer = ddpm.Trainer("runs/fm", recipe="short")      # Fashion-MNIST, the fmnist-small preset
    trainer.run(time=300)                                   # five minutes, then save
    model = ddpm.Model.load("runs/fm")
    x = model.sample(16, sampler="ddim", steps=50)          # float32 [16, 1, 28, 28] in [-1, 1]
    q = ddpm.fid(model.sample(1000), ddpm.Dataset(limit=10000))

Every call is one libddpm call (include/ddpm.h) with its arguments converted: see README.md.
A failure raises ddpm.Error (a subclass per ddpm_status) with ddpm's message.
"""
from . import _lib
from ._convert import cstr, fptr, images_in
from ._lib import (ArgumentError, BackendError, CancelledError, Error, InputError, NonFiniteError,
                   OutOfMemoryError, WriteError, ffi, lib)
from .dataset import Dataset, DatasetInfo
from .model import NLL, Model, ModelInfo, SampleReport
from .quality import Quality, fid
from .trainer import Metrics, Trainer

__version__ = _lib.VERSION
version = _lib.VERSION

__all__ = ["Model", "ModelInfo", "SampleReport", "NLL", "Trainer", "Metrics", "Dataset", "DatasetInfo", "fid",
           "Quality", "Error", "ArgumentError", "InputError", "OutOfMemoryError", "WriteError", "NonFiniteError",
           "CancelledError", "BackendError", "set_threads", "set_verify", "set_conv_algorithm", "cpu_level", "set_log", "save_grid", "read_png",
           "version"]


def set_threads(n=0):
    """Uses n CPU threads (0: every CPU this process may use); returns the count in use."""
    with _lib.LOCK:
        return lib.ddpm_set_threads(int(n))


def set_verify(on=True):
    """Whether weights are checked against ddpm's XXH64 checksums when read (on by default)."""
    with _lib.LOCK:
        lib.ddpm_set_verify(1 if on else 0)


def set_conv_algorithm(name="measure"):
    """How the 3x3 convolutions of networks made from now on are computed: "measure" (the default: per
    shape and pass, the fastest algorithm on this CPU, measured once and cached in ~/.cache/ddpm),
    "direct", "winograd" or "onednn-winograd" (that algorithm wherever it applies)."""
    _lib.call(lib.ddpm_set_conv_algorithm, str(name).encode())


def cpu_level():
    """The instruction-set level ddpm's own kernels run at: "x86-64", "avx2" or "avx512", the highest
    this CPU supports, capped by the environment's ONEDNN_MAX_CPU_ISA (which caps oneDNN's kernels too)."""
    return ffi.string(lib.ddpm_cpu_level()).decode()


_log_callback = None


def set_log(fn=None):
    """Sends the library's notes and warnings to fn(level, message) (level "info" or "warn"), or
    nowhere (None, the default). E.g. ddpm.set_log(lambda level, msg: print(level, msg))."""
    global _log_callback
    if fn is None:
        cb = ffi.NULL
    else:
        @ffi.callback("ddpm_log_fn")
        def cb(ctx, level, msg):
            try:
                fn("warn" if level == lib.DDPM_LOG_WARN else "info", ffi.string(msg).decode(errors="replace"))
            except Exception:  # a broken log function must not stop the library
                pass
    with _lib.LOCK:
        lib.ddpm_set_log(cb, ffi.NULL)
        _log_callback = cb


def save_grid(path, images, cols=0, gap=2):
    """Writes images (float32 NCHW, or uint8 NHWC) as one PNG grid of cols columns (0: ~sqrt(n))
    (ddpm_png_write_grid)."""
    x = images_in(images, "images")
    n, c, h, w = x.shape
    keep = []
    _lib.call(lib.ddpm_png_write_grid, cstr(path, keep), fptr(x), n, c, h, w, int(cols), int(gap))


def read_png(path):
    """A PNG (gray or RGB, 8 bit) as a float32 [C, H, W] array in [-1, 1] (ddpm_png_read; a copy of the
    library's buffer, which is freed)."""
    import numpy as np
    keep = []
    p, c, h, w = ffi.new("float **"), ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
    _lib.call(lib.ddpm_png_read, cstr(path, keep), p, c, h, w)
    try:
        n = c[0] * h[0] * w[0]
        return np.frombuffer(ffi.buffer(p[0], 4 * n), dtype=np.float32).reshape(c[0], h[0], w[0]).copy()
    finally:
        lib.ddpm_free(p[0])
